//! Authentication-Results fields already in a message.

use std::borrow::Cow;

/// The header section's fields: (start, end) byte ranges, each with its
/// continuation lines and line ending. Stops at the empty line.
fn fields(message: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..].iter().position(|&b| b == b'\n').map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        match (line.first(), out.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.1 = end,
            _ => out.push((pos, end)),
        }
        pos = end;
    }
    out
}

/// The authserv-id of an Authentication-Results value (RFC 8601 §2.2):
/// the first token, after any comments and blanks.
fn authserv_id(value: &[u8]) -> String {
    let mut depth = 0u32;
    let mut id = Vec::new();
    for &b in value {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            b' ' | b'\t' | b'\r' | b'\n' if id.is_empty() => {}
            b' ' | b'\t' | b'\r' | b'\n' | b';' => break,
            _ => id.push(b),
        }
    }
    String::from_utf8_lossy(&id).to_ascii_lowercase()
}

/// The message without the Authentication-Results fields that claim to
/// be ours (RFC 8601 §5: a forged one would be believed downstream), and
/// how many were removed.
pub fn strip_forged<'m>(message: &'m [u8], hostname: &str) -> (Cow<'m, [u8]>, usize) {
    const NAME: &[u8] = b"authentication-results:";
    let forged: Vec<(usize, usize)> = fields(message)
        .into_iter()
        .filter(|&(s, e)| {
            let f = &message[s..e];
            f.len() > NAME.len()
                && f[..NAME.len()].eq_ignore_ascii_case(NAME)
                && authserv_id(&f[NAME.len()..]).eq_ignore_ascii_case(hostname)
        })
        .collect();
    if forged.is_empty() {
        return (Cow::Borrowed(message), 0);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for &(s, e) in &forged {
        out.extend_from_slice(&message[pos..s]);
        pos = e;
    }
    out.extend_from_slice(&message[pos..]);
    (Cow::Owned(out), forged.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_fields_with_our_authserv_id() {
        let m = b"Authentication-Results: MX.example.test;\r\n\tdkim=pass header.d=bank.example\r\n\
Authentication-Results: (comment) mx.example.test; spf=pass\r\n\
Authentication-Results: relay.example.net; spf=fail\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.example.test; body, not a header\r\n";
        let (out, n) = strip_forged(m, "mx.example.test");
        assert_eq!(n, 2);
        assert_eq!(
            &out[..],
            &b"Authentication-Results: relay.example.net; spf=fail\r\nSubject: hi\r\n\r\n\
Authentication-Results: mx.example.test; body, not a header\r\n"[..]
        );
    }

    #[test]
    fn a_longer_name_is_not_ours() {
        let m = b"Authentication-Results: mx.example.test.evil; spf=pass\r\n\r\nbody";
        assert_eq!(strip_forged(m, "mx.example.test").1, 0);
    }
}
