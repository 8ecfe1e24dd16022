//! The Sender Rewriting Scheme: a message forwarded to another domain
//! leaves with an envelope sender in our domain, so the destination's SPF
//! check (RFC 7208) passes, and a bounce to that address comes back here
//! and is sent on to the original sender.
//!
//! Forms (after Shevek's scheme, as postsrsd and Postfix users know it):
//! `SRS0=HHHHHH=TT=orig-domain=orig-local@our-domain`, and for a sender
//! that is already another forwarder's SRS0 address,
//! `SRS1=HHHHHH=that-forwarder==HHHHHH=TT=orig-domain=orig-local@our-domain`.
//! `TT` is the day (two base32 digits, modulo 1024); `HHHHHH` the first 30
//! bits of HMAC-SHA256(key, the rest, lower case) in base32. Everything is
//! lower case: addresses reach us folded, and the check must survive it.
//! An address older than [`MAX_AGE_DAYS`] or with a wrong hash is refused.

use hmac::{Hmac, KeyInit, Mac};

/// How long a rewritten address stays valid for bounces.
pub const MAX_AGE_DAYS: i64 = 21;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn hash(key: &[u8], parts: &[&str]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p.to_ascii_lowercase().as_bytes());
        mac.update(b"\0");
    }
    let d = mac.finalize().into_bytes();
    let bits = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) >> 2;
    (0..6).map(|i| ALPHABET[((bits >> (25 - 5 * i)) & 31) as usize] as char).collect()
}

fn day_stamp(days: i64) -> String {
    let d = days.rem_euclid(1024) as usize;
    [ALPHABET[d >> 5] as char, ALPHABET[d & 31] as char].iter().collect()
}

fn stamp_age(stamp: &str, days: i64) -> Option<i64> {
    let digit = |c: u8| ALPHABET.iter().position(|&a| a == c);
    let b = stamp.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let then = (digit(b[0])? * 32 + digit(b[1])?) as i64;
    Some((days.rem_euclid(1024) - then).rem_euclid(1024))
}

/// The envelope sender for mail forwarded by `our_domain` (days since the
/// Unix epoch: `days`). The null sender stays null.
pub fn forward(sender: &str, our_domain: &str, key: &[u8], days: i64) -> String {
    let Some((local, domain)) = sender.rsplit_once('@') else { return sender.to_string() };
    let sender = sender.to_ascii_lowercase();
    let (local, domain) = (local.to_ascii_lowercase(), domain.to_ascii_lowercase());
    if let Some(rest) = local.strip_prefix("srs0=") {
        // Another forwarder's address: point at it (SRS1), keep its part.
        let h = hash(key, &[&domain, rest]);
        return format!("srs1={h}={domain}=={rest}@{our_domain}");
    }
    if let Some(rest) = local.strip_prefix("srs1=") {
        // Already SRS1: keep the first forwarder, re-sign for us.
        if let Some((_, tail)) = rest.split_once('=')
            && let Some((first, inner)) = tail.split_once("==")
        {
            let h = hash(key, &[first, inner]);
            return format!("srs1={h}={first}=={inner}@{our_domain}");
        }
        return sender;
    }
    let tt = day_stamp(days);
    let h = hash(key, &[&tt, &domain, &local]);
    format!("srs0={h}={tt}={domain}={local}@{our_domain}")
}

/// Why a rewritten address is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not of the form.
    Malformed,
    /// The hash does not match: forged, or another key.
    BadHash,
    /// Older than [`MAX_AGE_DAYS`].
    Expired,
}

/// Whether a local part is one of ours to reverse (`SRS0=`/`SRS1=`).
pub fn is_srs(local: &str) -> bool {
    let l = local.as_bytes();
    l.len() > 5 && l[..3].eq_ignore_ascii_case(b"srs") && (l[3] == b'0' || l[3] == b'1') && l[4] == b'='
}

/// The address a bounce to `local@(our domain)` goes back to.
pub fn reverse(local: &str, key: &[u8], days: i64) -> Result<String, Invalid> {
    let local = local.to_ascii_lowercase();
    if let Some(rest) = local.strip_prefix("srs0=") {
        let mut parts = rest.splitn(4, '=');
        let (Some(h), Some(tt), Some(domain), Some(orig)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Invalid::Malformed);
        };
        if domain.is_empty() || orig.is_empty() {
            return Err(Invalid::Malformed);
        }
        if hash(key, &[tt, domain, orig]) != h {
            return Err(Invalid::BadHash);
        }
        match stamp_age(tt, days) {
            None => Err(Invalid::Malformed),
            Some(age) if age > MAX_AGE_DAYS => Err(Invalid::Expired),
            Some(_) => Ok(format!("{orig}@{domain}")),
        }
    } else if let Some(rest) = local.strip_prefix("srs1=") {
        let Some((h, tail)) = rest.split_once('=') else { return Err(Invalid::Malformed) };
        let Some((first, inner)) = tail.split_once("==") else { return Err(Invalid::Malformed) };
        if first.is_empty() || inner.is_empty() {
            return Err(Invalid::Malformed);
        }
        if hash(key, &[first, inner]) != h {
            return Err(Invalid::BadHash);
        }
        Ok(format!("srs0={inner}@{first}"))
    } else {
        Err(Invalid::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a key for tests";

    #[test]
    fn forward_and_back() {
        let a = forward("Bob@Example.ORG", "fwd.test", KEY, 20_000);
        assert!(a.starts_with("srs0=") && a.ends_with("@fwd.test"), "{a}");
        let local = a.rsplit_once('@').unwrap().0;
        assert!(is_srs(local));
        assert_eq!(reverse(local, KEY, 20_000).unwrap(), "bob@example.org");
        // Folded to upper case on the way: still ours.
        assert_eq!(reverse(&local.to_uppercase(), KEY, 20_010).unwrap(), "bob@example.org");
    }

    #[test]
    fn null_sender_stays_null() {
        assert_eq!(forward("", "fwd.test", KEY, 1), "");
    }

    #[test]
    fn forged_and_expired_are_refused() {
        let a = forward("bob@example.org", "fwd.test", KEY, 20_000);
        let local = a.rsplit_once('@').unwrap().0;
        assert_eq!(reverse(local, b"another key", 20_000), Err(Invalid::BadHash));
        assert_eq!(reverse(&local.replace("example.org", "evil.test"), KEY, 20_000), Err(Invalid::BadHash));
        assert_eq!(reverse(local, KEY, 20_000 + MAX_AGE_DAYS), Ok("bob@example.org".into()));
        assert_eq!(reverse(local, KEY, 20_000 + MAX_AGE_DAYS + 1), Err(Invalid::Expired));
        assert_eq!(reverse("srs0=abc", KEY, 1), Err(Invalid::Malformed));
        assert_eq!(reverse("alice", KEY, 1), Err(Invalid::Malformed));
    }

    #[test]
    fn a_forwarders_address_becomes_srs1_and_back() {
        let first = forward("bob@example.org", "one.test", b"k1", 500);
        let second = forward(&first, "two.test", KEY, 501);
        assert!(second.starts_with("srs1=") && second.ends_with("@two.test"), "{second}");
        let back = reverse(second.rsplit_once('@').unwrap().0, KEY, 502).unwrap();
        assert_eq!(back, first);
        // Forwarded a third time: still points at the first forwarder.
        let third = forward(&second, "three.test", b"k3", 502);
        assert_eq!(reverse(third.rsplit_once('@').unwrap().0, b"k3", 502).unwrap(), first);
    }

    #[test]
    fn the_day_wraps() {
        let a = forward("bob@example.org", "fwd.test", KEY, 1023);
        assert_eq!(reverse(a.rsplit_once('@').unwrap().0, KEY, 1024 + 3).unwrap(), "bob@example.org");
    }
}
