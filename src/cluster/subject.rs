//! Room paths as NATS subjects, reversibly.
//!
//! A room's subject is the prefix (`--cluster-subject-prefix`, default
//! `ricochet.room.`) and its path as one subject token. A NATS subject
//! token may hold any printable character but `.` (the separator), and
//! `*` and `>` are wildcards (nats.io, "Subject-Based Messaging"); white
//! space ends a subject. So every byte of the path outside
//! `A-Z a-z 0-9 / - _ ~ + , ; = : @ ! $ & ' ( )` is written `%XX` (two
//! upper-case hex digits), `%` itself included: `/chat/room 1.a` becomes
//! `ricochet.room./chat/room%201%2Ea`. Decoding undoes exactly that, so two
//! paths never share a subject, and no path can reach a wildcard.

/// Whether `b` stands for itself in a subject token.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-_~+,;=:@!$&'()".contains(&b)
}

/// The subject of the room at `path` under `prefix`.
pub fn subject(prefix: &str, path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(prefix.len() + path.len() + 8);
    s.push_str(prefix);
    for &b in path.as_bytes() {
        if plain(b) {
            s.push(b as char);
        } else {
            s.push('%');
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
    }
    s
}

/// The room path of `subject`, if it is one [`subject`] makes under `prefix`.
pub fn path(prefix: &str, subject: &str) -> Option<String> {
    let token = subject.strip_prefix(prefix)?.as_bytes();
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        match token[i] {
            b'%' => {
                let hex = std::str::from_utf8(token.get(i + 1..i + 3)?).ok()?;
                if hex.bytes().any(|c| c.is_ascii_lowercase()) {
                    return None; // not what `subject` writes: one path, one subject
                }
                let b = u8::from_str_radix(hex, 16).ok()?;
                if plain(b) {
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a subject prefix: tokens of printable characters without
/// wildcards, ending with `.` so the room token follows it.
pub fn valid_prefix(prefix: &str) -> bool {
    let Some(body) = prefix.strip_suffix('.') else { return false };
    !body.is_empty()
        && body.split('.').all(|t| {
            !t.is_empty() && t != "*" && t != ">" && t.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dots_wildcards_spaces_and_percent_are_escaped() {
        let p = "ricochet.room.";
        assert_eq!(subject(p, "/"), "ricochet.room./");
        assert_eq!(subject(p, "/chat/lobby"), "ricochet.room./chat/lobby");
        assert_eq!(subject(p, "/a.b"), "ricochet.room./a%2Eb");
        assert_eq!(subject(p, "/*"), "ricochet.room./%2A");
        assert_eq!(subject(p, "/>"), "ricochet.room./%3E");
        assert_eq!(subject(p, "/a b\t"), "ricochet.room./a%20b%09");
        assert_eq!(subject(p, "/100%"), "ricochet.room./100%25");
        assert_eq!(subject(p, "/é"), "ricochet.room./%C3%A9");
    }

    #[test]
    fn only_what_subject_writes_decodes() {
        let p = "ricochet.room.";
        assert_eq!(path(p, "ricochet.room./a%2Eb").as_deref(), Some("/a.b"));
        assert_eq!(path(p, "other./a"), None, "another prefix");
        assert_eq!(path(p, "ricochet.room./a.b"), None, "a raw dot is a second token");
        assert_eq!(path(p, "ricochet.room./%2e"), None, "lower-case hex is not written");
        assert_eq!(path(p, "ricochet.room./%61"), None, "a plain byte escaped is not written");
        assert_eq!(path(p, "ricochet.room./%2"), None, "cut short");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(valid_prefix("ricochet.room."));
        assert!(valid_prefix("a."));
        for bad in ["", ".", "a", "a..", "a.*.", "a.>.", "a b.", "*."] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn every_path_round_trips_to_one_token_without_wildcards(path_text in "/\\PC{0,40}") {
            let s = subject("r.", &path_text);
            let token = &s[2..];
            prop_assert!(!token.contains('.') && !token.contains('*') && !token.contains('>'));
            prop_assert!(token.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(path("r.", &s), Some(path_text));
        }
    }
}
