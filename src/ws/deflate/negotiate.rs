//! permessage-deflate negotiation (RFC 7692 §5, §7.1): read every offer in
//! every `Sec-WebSocket-Extensions` header, take the first acceptable one and
//! write the response parameters.
//!
//! Ricochet never compresses: it echoes the client's compressed frames as
//! they are (passthrough) or, where that would not be a valid server message,
//! echoes the inflated bytes uncompressed (fallback, allowed by §6.1). So it
//! can accept every valid offer, and always answers both
//! `no_context_takeover` parameters (§7.1.1.1 and §7.1.1.2 allow that even
//! when they were not offered): every client message is then a
//! self-contained deflate stream, which is what makes it a valid server
//! message too, and what lets an inflater be put back after each message.

use std::fmt::Write;

/// The extension's registered name (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// How compressed messages are echoed on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// The client's compressed frames go back unchanged: the client's
    /// window is no larger than the one the server may use.
    Passthrough,
    /// The client may compress with a larger window than it lets the server
    /// use (or asked for 8 bits): echo the inflated message uncompressed.
    Fallback,
}

/// An accepted offer: what the response says and how to echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// `server_max_window_bits` to answer (only when offered, §7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` to answer (only when offered, and always
    /// with a value, §7.1.2.2).
    pub client_max_window_bits: Option<u8>,
    /// Passthrough or fallback.
    pub echo: Echo,
}

impl Agreement {
    /// Appends the `Sec-WebSocket-Extensions` response header line (with CRLF).
    pub fn write_header(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(128);
        s.push_str(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if let Some(b) = self.server_max_window_bits {
            let _ = write!(s, "; server_max_window_bits={b}");
        }
        if let Some(b) = self.client_max_window_bits {
            let _ = write!(s, "; client_max_window_bits={b}");
        }
        s.push_str("\r\n");
        out.extend_from_slice(s.as_bytes());
    }
}

/// The parameters of one offer, validated (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// What Ricochet answers to this offer.
    fn agree(&self) -> Agreement {
        let server = self.server_max_window_bits;
        let (client, echo) = match (server, self.client_max_window_bits) {
            // The server may use a full window: any client stream is valid to echo.
            (None | Some(15), _) => (None, Echo::Passthrough),
            // 8 bits: zlib cannot make or be trusted with such streams; never
            // answered, never needed (nothing is compressed here).
            (Some(8), _) => (None, Echo::Fallback),
            // Bound the client's window to the server's: the answer must not
            // exceed the client's own value (§7.1.2.2), and never be 8.
            (Some(s), Some(c)) => match s.min(c.unwrap_or(15)) {
                w if w >= 9 => (Some(w), Echo::Passthrough),
                _ => (None, Echo::Fallback),
            },
            // The client may use up to 15 bits and did not let us bound it.
            (Some(_), None) => (None, Echo::Fallback),
        };
        Agreement { server_max_window_bits: server, client_max_window_bits: client, echo }
    }
}

/// Chooses the first acceptable permessage-deflate offer among the values of
/// every `Sec-WebSocket-Extensions` header, in order (RFC 7692 §5: the
/// server picks one; an offer with an unknown, repeated or invalid parameter
/// is declined, §7.1). `None`: answer without the extension.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreement> {
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else { continue };
        for ext in split_outside_quotes(text, ',') {
            let mut parts = split_outside_quotes(ext, ';');
            let name = parts.next().unwrap_or("").trim();
            if !name.eq_ignore_ascii_case(EXTENSION_NAME) {
                continue;
            }
            if let Some(offer) = parse_params(parts) {
                return Some(offer.agree());
            }
        }
    }
    None
}

/// Validates the parameters of one offer; `None` declines it.
fn parse_params<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut o = Offer::default();
    for p in params {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (p.trim(), None),
        };
        if key.is_empty() {
            return None;
        }
        match key.to_ascii_lowercase().as_str() {
            // §7.1.1.1 and §7.1.1.2: no value.
            "server_no_context_takeover" if value.is_none() && !o.server_no_context_takeover => {
                o.server_no_context_takeover = true
            }
            "client_no_context_takeover" if value.is_none() && !o.client_no_context_takeover => {
                o.client_no_context_takeover = true
            }
            // §7.1.2.1: a value is required.
            "server_max_window_bits" if o.server_max_window_bits.is_none() => {
                o.server_max_window_bits = Some(window_bits(value?)?)
            }
            // §7.1.2.2: the value is optional.
            "client_max_window_bits" if o.client_max_window_bits.is_none() => {
                o.client_max_window_bits = Some(match value {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                })
            }
            // Unknown or repeated (§7.1: "MUST decline").
            _ => return None,
        }
    }
    Some(o)
}

/// A window-bits value: a decimal integer 8 to 15 without leading zeros (§7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

/// A token or a quoted-string with its escapes removed (RFC 9110 §5.6.4);
/// `None` for an unterminated quote. Window-bits values never need escapes,
/// so an escaped character simply stays itself.
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            // An escaped digit would still be a digit; anything else fails
            // window_bits anyway, so escapes need no unescaping here.
            (!inner.contains('\\')).then_some(inner)
        }
        None => Some(v),
    }
}

/// Splits `s` at `sep` where it is not inside a quoted-string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(offers: &[&str]) -> Option<String> {
        negotiate(offers.iter().map(|s| s.as_bytes())).map(|a| {
            let mut v = Vec::new();
            a.write_header(&mut v);
            let s = String::from_utf8(v).unwrap();
            s.trim_end().strip_prefix("Sec-WebSocket-Extensions: ").unwrap().to_string()
        })
    }

    const BASE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn plain_offer_as_browsers_send_it() {
        // Chrome and Firefox: `permessage-deflate; client_max_window_bits`.
        assert_eq!(answer(&["permessage-deflate; client_max_window_bits"]).as_deref(), Some(BASE));
        assert_eq!(answer(&["permessage-deflate"]).as_deref(), Some(BASE));
        assert_eq!(answer(&["PerMessage-Deflate"]).as_deref(), Some(BASE));
    }

    #[test]
    fn context_takeover_offers_are_accepted() {
        for o in [
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        ] {
            assert_eq!(answer(&[o]).as_deref(), Some(BASE), "{o}");
        }
    }

    #[test]
    fn server_window_15_is_answered_and_passes_through() {
        let a = negotiate([b"permessage-deflate; server_max_window_bits=15".as_slice()]).unwrap();
        assert_eq!(a.echo, Echo::Passthrough);
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits=15"]),
            Some(format!("{BASE}; server_max_window_bits=15"))
        );
    }

    #[test]
    fn smaller_server_window_bounds_the_client_window_when_it_may() {
        // Autobahn 13.4/13.6 shape with 10: the client window is bounded to the server's.
        let o = "permessage-deflate; client_max_window_bits; server_max_window_bits=10";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=10; client_max_window_bits=10")));
        assert_eq!(negotiate([o.as_bytes()]).unwrap().echo, Echo::Passthrough);
        // The client's own smaller value is kept (the answer may not exceed it).
        let o = "permessage-deflate; client_max_window_bits=9; server_max_window_bits=12";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=12; client_max_window_bits=9")));
        // A larger client value is lowered to the server's.
        let o = "permessage-deflate; client_max_window_bits=14; server_max_window_bits=12";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=12; client_max_window_bits=12")));
    }

    #[test]
    fn small_server_window_without_client_bound_falls_back() {
        let o = "permessage-deflate; server_max_window_bits=10";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=10")));
        assert_eq!(negotiate([o.as_bytes()]).unwrap().echo, Echo::Fallback);
    }

    #[test]
    fn window_8_is_answered_but_never_used() {
        // Autobahn 13.3/13.5: the server window is 8; no client window of 8 is ever answered.
        let o = "permessage-deflate; client_max_window_bits; server_max_window_bits=8";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=8")));
        assert_eq!(negotiate([o.as_bytes()]).unwrap().echo, Echo::Fallback);
        let o = "permessage-deflate; client_max_window_bits=8; server_max_window_bits=12";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=12")));
        assert_eq!(negotiate([o.as_bytes()]).unwrap().echo, Echo::Fallback);
        // client_max_window_bits=8 alone: the server may use 15, so passthrough holds.
        assert_eq!(answer(&["permessage-deflate; client_max_window_bits=8"]).as_deref(), Some(BASE));
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; unknown",
            "permessage-deflate; =1",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad}");
            assert_eq!(answer(&[&format!("{bad}, permessage-deflate")]).as_deref(), Some(BASE), "{bad}");
        }
    }

    #[test]
    fn an_unterminated_quote_declines_the_rest_of_the_header() {
        assert_eq!(answer(&["permessage-deflate; client_max_window_bits=\"10, permessage-deflate"]), None);
    }

    #[test]
    fn quoted_values_are_accepted() {
        let o = "permessage-deflate; server_max_window_bits=\"12\"; client_max_window_bits=\"11\"";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=12; client_max_window_bits=11")));
    }

    #[test]
    fn every_header_and_every_list_item_is_read_in_order() {
        // Autobahn 13.7: three offers, the first one taken.
        let o = "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8, permessage-deflate; client_no_context_takeover; client_max_window_bits, permessage-deflate; client_max_window_bits";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=8")));
        // Other extensions are skipped; a later header is read too.
        assert_eq!(answer(&["x-webkit-deflate-frame", "foo; a=\"x,y\", permessage-deflate"]).as_deref(), Some(BASE));
        assert_eq!(answer(&["x-webkit-deflate-frame"]), None);
        assert_eq!(answer(&[]), None);
    }

    #[test]
    fn whitespace_and_case_are_tolerated() {
        let o = "  permessage-deflate ;Server_Max_Window_Bits = 15 ;  client_max_window_bits ";
        assert_eq!(answer(&[o]), Some(format!("{BASE}; server_max_window_bits=15")));
    }
}
