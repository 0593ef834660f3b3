//! Incremental UTF-8 validation across frames and reads (RFC 6455 §8.1).
//!
//! A text message may be split anywhere, also inside a code point. The
//! validator keeps the (at most 3) bytes of an unfinished code point and
//! reports the first invalid byte as soon as it is seen, so the connection
//! fails fast instead of after the whole message.

use simdutf8::compat::from_utf8;

/// Why a chunk was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

/// Validator state carried between chunks of one text message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Bytes of an incomplete code point from the previous chunk.
    partial: [u8; 4],
    /// How many bytes of `partial` are in use (0–3).
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator { partial: [0; 4], partial_len: 0 }
    }

    /// Validates the next chunk of the message. Fails at the first byte that
    /// can no longer be part of valid UTF-8, even if the chunk ends later.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            // Complete the pending code point with bytes from this chunk.
            let have = self.partial_len as usize;
            let take = (4 - have).min(chunk.len());
            let mut tmp = self.partial;
            tmp[have..have + take].copy_from_slice(&chunk[..take]);
            match from_utf8(&tmp[..have + take]) {
                Ok(_) => {
                    self.partial_len = 0;
                    chunk = &chunk[take..];
                }
                Err(e) => {
                    if e.error_len().is_some() && e.valid_up_to() == 0 {
                        return Err(Utf8Error);
                    }
                    if e.valid_up_to() == 0 {
                        // Still incomplete: the chunk was too short to finish it.
                        self.partial = tmp;
                        self.partial_len = (have + take) as u8;
                        return Ok(());
                    }
                    // The code point ended inside tmp; continue after it.
                    let used = e.valid_up_to() - have;
                    self.partial_len = 0;
                    chunk = &chunk[used..];
                }
            }
        }
        match from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(e) => {
                // Ends inside a code point that may still be completed.
                let tail = &chunk[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Called at the end of the message: an unfinished code point is invalid.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let r = if self.partial_len == 0 { Ok(()) } else { Err(Utf8Error) };
        *self = Utf8Validator::new();
        r
    }
}

/// Validates a complete byte string (close reasons).
pub fn validate(bytes: &[u8]) -> Result<(), Utf8Error> {
    simdutf8::basic::from_utf8(bytes).map(|_| ()).map_err(|_| Utf8Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], splits: &[usize]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut last = 0;
        for &s in splits {
            v.feed(&bytes[last..s])?;
            last = s;
        }
        v.feed(&bytes[last..])?;
        v.finish()
    }

    #[test]
    fn valid_text_passes_at_every_split() {
        let s = "κόσμε ascii 🎉 \u{10FFFF} \u{FFFF}".as_bytes();
        for a in 0..=s.len() {
            for b in a..=s.len() {
                assert_eq!(feed_split(s, &[a, b]), Ok(()), "splits {a} {b}");
            }
        }
    }

    #[test]
    fn invalid_byte_fails_in_the_chunk_that_holds_it() {
        // 0xF4 0x90 starts a code point above U+10FFFF: invalid at the 2nd byte.
        let mut v = Utf8Validator::new();
        v.feed(b"ok\xf4").unwrap();
        assert_eq!(v.feed(b"\x90\x80\x80"), Err(Utf8Error));
        // Surrogates (ED A0..) are invalid.
        assert_eq!(Utf8Validator::new().feed(b"\xed\xa0\x80"), Err(Utf8Error));
        // Overlong encodings are invalid.
        assert_eq!(Utf8Validator::new().feed(b"\xc0\xaf"), Err(Utf8Error));
    }

    #[test]
    fn message_ending_mid_code_point_is_invalid() {
        let mut v = Utf8Validator::new();
        v.feed(b"abc\xe2\x82").unwrap();
        assert_eq!(v.finish(), Err(Utf8Error));
    }

    #[test]
    fn agrees_with_std_on_every_split_of_mixed_input() {
        let samples: [&[u8]; 5] = [
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf0\x90\x80\x80\xf0\x90\x80",
            b"\xe0\x80\xaf",
            b"\xf8\x88\x80\x80\x80",
            b"\xef\xbf\xbf\xf4\x8f\xbf\xbf",
        ];
        for s in samples {
            let expect = std::str::from_utf8(s).is_ok();
            for a in 0..=s.len() {
                assert_eq!(feed_split(s, &[a]).is_ok(), expect, "{s:?} split {a}");
            }
        }
    }
}
