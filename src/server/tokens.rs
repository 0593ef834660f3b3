//! Bearer tokens (`--auth-tokens FILE`): who may connect, decided at the
//! handshake. The file holds one token per line (blank lines and `#`
//! comments ignored) and is re-read on SIGHUP, like the certificates.
//!
//! Only SHA-256 digests of the tokens are kept, and a candidate is compared
//! with every one of them in constant time: the time a refusal takes says
//! nothing about how close a guess was, nor which token matched.

use ring::digest::{digest, SHA256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use thiserror::Error;

/// Why the token file could not be used; one line each.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("--auth-tokens {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no token (every client would be refused).
    #[error("--auth-tokens {path}: no token in it (one per line; blank lines and # comments are ignored)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

type Digest = [u8; 32];

/// The tokens in force, swapped whole on reload.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    digests: RwLock<Arc<Vec<Digest>>>,
}

impl Tokens {
    /// Reads `path`; returns the tokens and how many there are.
    pub fn load(path: &Path) -> Result<(Tokens, usize), TokenError> {
        let digests = read(path)?;
        let n = digests.len();
        Ok((Tokens { path: path.to_path_buf(), digests: RwLock::new(Arc::new(digests)) }, n))
    }

    /// Re-reads the file (SIGHUP): new handshakes are judged by the new
    /// tokens, open connections stay. A bad file keeps the old tokens.
    pub fn reload(&self) -> Result<usize, TokenError> {
        let digests = read(&self.path)?;
        let n = digests.len();
        *self.digests.write().expect("token lock") = Arc::new(digests);
        Ok(n)
    }

    /// Whether `candidate` is one of the tokens, in time that depends only
    /// on how many tokens there are.
    pub fn accepts(&self, candidate: &[u8]) -> bool {
        let d = sha256(candidate);
        let digests = self.digests.read().expect("token lock").clone();
        // Every entry is compared, and with no early exit.
        digests.iter().fold(false, |found, t| found | constant_time_eq(t, &d))
    }
}

fn sha256(b: &[u8]) -> Digest {
    let mut d = [0u8; 32];
    d.copy_from_slice(digest(&SHA256, b).as_ref());
    d
}

/// Equality of two digests that looks at every byte whatever they hold.
fn constant_time_eq(a: &Digest, b: &Digest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn read(path: &Path) -> Result<Vec<Digest>, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: path.into(), source })?;
    let digests: Vec<Digest> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|t| sha256(t.as_bytes()))
        .collect();
    if digests.is_empty() {
        return Err(TokenError::Empty { path: path.into() });
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comparison_looks_at_every_byte_and_every_token() {
        let a = sha256(b"alpha");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        // A difference anywhere, first byte or last, is found.
        for i in [0, 15, 31] {
            b = a;
            b[i] ^= 0x80;
            assert!(!constant_time_eq(&a, &b), "byte {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "# ops\n\n  first-token  \nsecond-token\n").unwrap();
        let (t, n) = Tokens::load(&f).unwrap();
        assert_eq!(n, 2);
        assert!(t.accepts(b"first-token") && t.accepts(b"second-token"));
        assert!(!t.accepts(b"first-toke") && !t.accepts(b"") && !t.accepts(b"# ops"));
    }

    #[test]
    fn reload_swaps_the_tokens_and_a_bad_file_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "old\n").unwrap();
        let (t, _) = Tokens::load(&f).unwrap();
        std::fs::write(&f, "new\n").unwrap();
        assert_eq!(t.reload().unwrap(), 1);
        assert!(t.accepts(b"new") && !t.accepts(b"old"));
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(matches!(t.reload(), Err(TokenError::Empty { .. })));
        assert!(t.accepts(b"new"));
    }
}
