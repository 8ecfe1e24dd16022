//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3; RFC 9051 §5.1 keeps it
//! for clients that have not enabled UTF8=ACCEPT).
//!
//! Printable US-ASCII (0x20–0x7e) stands for itself, except `&`, written
//! `&-`. Any other run of characters is written `&` + modified BASE64 of
//! its UTF-16BE form (`,` in place of `/`, no `=` padding) + `-`.
//!
//! [`decode`] is strict, so that every name has one spelling: it refuses
//! what [`encode`] never writes (raw 8-bit or control octets, an open
//! shift, bad BASE64 or padding bits, printable ASCII in BASE64, unpaired
//! surrogates, and the null shift `-&` of two adjacent BASE64 runs).

use thiserror::Error;

/// Why a mailbox name is not valid modified UTF-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Utf7Error {
    #[error("octet {0:#04x} outside printable US-ASCII")]
    NotPrintable(u8),
    #[error("'&' shift not closed by '-'")]
    Unterminated,
    #[error("'{0}' is not a modified BASE64 character")]
    InvalidBase64(char),
    #[error("BASE64 run does not end on a UTF-16 boundary with zero padding bits")]
    BadPadding,
    #[error("BASE64 run is not valid UTF-16")]
    InvalidUtf16,
    #[error("printable US-ASCII must not be BASE64-encoded")]
    EncodedAscii,
    #[error("null shift: a BASE64 run follows another")]
    NullShift,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// The modified UTF-7 form of a mailbox name.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush(&mut out, &mut pending);
            match c {
                '&' => out.push_str("&-"),
                c => out.push(c),
            }
        } else {
            pending.extend_from_slice(c.encode_utf16(&mut [0; 2]));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Writes a run of UTF-16 code units as `&BASE64-`.
fn flush(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let (mut bits, mut n) = (0u32, 0u32);
    for byte in units.drain(..).flat_map(u16::to_be_bytes) {
        bits = (bits << 8) | u32::from(byte);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(ALPHABET[((bits >> n) & 0x3f) as usize].into());
        }
    }
    if n > 0 {
        out.push(ALPHABET[((bits << (6 - n)) & 0x3f) as usize].into());
    }
    out.push('-');
}

/// The mailbox name a modified UTF-7 string stands for.
pub fn decode(s: &str) -> Result<String, Utf7Error> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // Where the last BASE64 run ended, to detect `-&`.
    let mut run_end = None;
    while i < bytes.len() {
        match bytes[i] {
            b'&' => {
                let close = bytes[i + 1..].iter().position(|&b| b == b'-').ok_or(Utf7Error::Unterminated)? + i + 1;
                if close == i + 1 {
                    out.push('&');
                } else {
                    if run_end == Some(i) {
                        return Err(Utf7Error::NullShift);
                    }
                    out.push_str(&decode_run(&bytes[i + 1..close])?);
                    run_end = Some(close + 1);
                }
                i = close + 1;
            }
            b @ 0x20..=0x7e => {
                out.push(char::from(b));
                i += 1;
            }
            b => return Err(Utf7Error::NotPrintable(b)),
        }
    }
    Ok(out)
}

/// Decodes the BASE64 between `&` and `-`.
fn decode_run(run: &[u8]) -> Result<String, Utf7Error> {
    let mut units = Vec::with_capacity(run.len() * 6 / 16);
    let (mut bits, mut n) = (0u32, 0u32);
    for &b in run {
        let value = ALPHABET.iter().position(|&a| a == b).ok_or(Utf7Error::InvalidBase64(char::from(b)))?;
        bits = (bits << 6) | value as u32;
        n += 6;
        if n >= 16 {
            n -= 16;
            units.push((bits >> n) as u16);
            bits &= (1 << n) - 1;
        }
    }
    // What is left must be fewer than 6 bits (no extra character), all zero.
    if n >= 6 || bits != 0 || units.is_empty() {
        return Err(Utf7Error::BadPadding);
    }
    let text = char::decode_utf16(units).collect::<Result<String, _>>().map_err(|_| Utf7Error::InvalidUtf16)?;
    if text.chars().any(is_direct) {
        return Err(Utf7Error::EncodedAscii);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("台北", "&U,BTFw-"),
            ("&", "&-"),
            ("Tom & Jerry", "Tom &- Jerry"),
            // RFC 3501 §5.1.3's example.
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("", ""),
            ("😀", "&2D3eAA-"),
            ("a\tb", "a&AAk-b"),
        ];
        for (name, wire) in cases {
            assert_eq!(encode(name), wire, "{name}");
            assert_eq!(decode(wire).as_deref(), Ok(name), "{wire}");
        }
    }

    #[test]
    fn round_trips() {
        for name in ["Entwürfe", "台北", "&", "&&-&", "Gelöschte Elemente", "Ünïcödé/ß/€uro", "-&-", "x\u{7f}y"]
        {
            assert_eq!(decode(&encode(name)).as_deref(), Ok(name), "{name}");
        }
    }

    #[test]
    fn invalid_inputs() {
        use Utf7Error::*;
        let cases = [
            ("Entwürfe", NotPrintable(0xc3)),
            ("tab\there", NotPrintable(b'\t')),
            ("&U,BTFw", Unterminated),
            ("abc&", Unterminated),
            ("&U/BTFw-", InvalidBase64('/')),
            ("&AP=-", InvalidBase64('=')),
            ("&APw=-", InvalidBase64('=')),
            // "&APx-": ü with its padding bits set.
            ("&APx-", BadPadding),
            // One BASE64 character too many, and too few.
            ("&APwA-", BadPadding),
            ("&AP-", BadPadding),
            ("&A-", BadPadding),
            // A lone high surrogate, U+D83D.
            ("&2D0-", InvalidUtf16),
            // "a" (U+0061) must stand for itself.
            ("&AGE-", EncodedAscii),
            ("&AOQ-&APY-", NullShift),
        ];
        for (wire, error) in cases {
            assert_eq!(decode(wire), Err(error), "{wire}");
        }
        // Two runs separated by ASCII are fine.
        assert_eq!(decode("&AOQ-x&APY-").as_deref(), Ok("äxö"));
    }
}
