//! Mailbox names: what a new name may be, its one stored spelling, and
//! LIST's wildcard matching in linear time.
//!
//! - A new name (CREATE, RENAME's destination) must decode (strict modified
//!   UTF-7 before IMAP4rev2, RFC 3501 §5.1.3; UTF-8 after, RFC 9051 §5.1),
//!   has no empty, `.` or `..` component and none starting with `~`, no C0
//!   or C1 control, DEL, U+2028 or U+2029, and at most [`MAX_NAME_OCTETS`];
//!   otherwise `NO [CANNOT]`.
//! - Names are stored in Unicode NFC (RFC 5198 §2; RFC 9755 §3 for IMAP),
//!   and every name a client sends is normalised the same way, so `Café`
//!   typed as NFC or NFD is one mailbox.
//! - `*` and `%` (RFC 9051 §6.3.9) are matched by a bit-parallel automaton:
//!   time grows with the name times the pattern, never exponentially
//!   (`LIST "" "****…x"` once took seconds per star).

use std::borrow::Cow;

use crate::utf7::{self, Utf7Error};

/// The longest mailbox name, in octets of its UTF-8 form.
pub const MAX_NAME_OCTETS: usize = 1024;

/// The longest LIST pattern (reference and pattern together), in octets.
pub const MAX_PATTERN_OCTETS: usize = 2 * MAX_NAME_OCTETS;

/// Why a new mailbox name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid modified UTF-7 (RFC 3501 \u{a7}5.1.3): {0}")]
    Utf7(Utf7Error),
    #[error("not UTF-8")]
    NotUtf8,
    #[error("empty name")]
    Empty,
    #[error("empty hierarchy level (two separators in a row, or one at the start)")]
    EmptyLevel,
    #[error("a hierarchy level may not be \".\" or \"..\"")]
    DotLevel,
    #[error("a hierarchy level may not start with \"~\"")]
    Tilde,
    #[error("control character U+{0:04X} in the name")]
    Control(u32),
    #[error("longer than {MAX_NAME_OCTETS} octets")]
    TooLong,
}

/// Unicode NFC: the one spelling a name is stored and compared under.
pub fn nfc(name: &str) -> Cow<'_, str> {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(name)
}

/// A name as a client sent it, for looking a mailbox up: decoded when it
/// can be (an undecodable one stays as sent and simply matches nothing
/// that was created since names are checked), then NFC.
pub fn lookup_name(raw: &[u8], rev2: bool) -> String {
    let text = String::from_utf8_lossy(raw);
    let decoded = if rev2 { text.into_owned() } else { utf7::decode(&text).unwrap_or_else(|_| text.into_owned()) };
    nfc(&decoded).into_owned()
}

/// A name for a new mailbox: decoded strictly, NFC, and checked. A
/// trailing separator is dropped first (RFC 9051 §6.3.4: it only says
/// that children may follow).
pub fn new_name(raw: &[u8], rev2: bool) -> Result<String, NameError> {
    let text = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    let decoded = if rev2 { text.to_string() } else { utf7::decode(text).map_err(NameError::Utf7)? };
    let name = nfc(decoded.strip_suffix('/').unwrap_or(&decoded)).into_owned();
    check(&name)?;
    Ok(name)
}

fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_OCTETS {
        return Err(NameError::TooLong);
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() || c == '\u{2028}' || c == '\u{2029}') {
        return Err(NameError::Control(c as u32));
    }
    for level in name.split('/') {
        match level {
            "" => return Err(NameError::EmptyLevel),
            "." | ".." => return Err(NameError::DotLevel),
            l if l.starts_with('~') => return Err(NameError::Tilde),
            _ => {}
        }
    }
    Ok(())
}

/// Bring stored mailbox names to NFC (names made before facteur
/// normalised them): each is renamed, with its children, unless its NFC
/// spelling is taken, which is reported and left alone. Returns what was
/// done, for the log.
pub async fn normalise_stored<S: facteur_store::Mailstore>(store: &S) -> facteur_store::Result<Vec<String>> {
    let mut done = Vec::new();
    let mut taken = std::collections::HashSet::new();
    // A rename carries the children along, so look again after each one
    // (parents come first: the list is by name length).
    for _ in 0..10_000 {
        let next = store.non_ascii_mailboxes().await?.into_iter().find_map(|(owner, name)| {
            let normal = nfc(&name).into_owned();
            (normal != name && !taken.contains(&(owner.clone(), name.clone()))).then_some((owner, name, normal))
        });
        let Some((owner, name, normal)) = next else { break };
        if store.mailbox(&owner, &normal).await?.is_some() {
            done.push(format!("{owner}: {name:?} left as it is: its NFC spelling {normal:?} is another mailbox"));
            taken.insert((owner, name));
        } else {
            store.rename_mailbox(&owner, &name, &normal).await?;
            done.push(format!("{owner}: {name:?} renamed to its NFC spelling {normal:?}"));
        }
    }
    Ok(done)
}

/// RFC 9051 §6.3.9: `*` matches anything, `%` anything but the separator
/// `/`. A bit per pattern position says "the pattern up to here matches
/// the name so far"; each octet of the name moves every bit at once.
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    // Runs of wildcards match what their widest member matches.
    let mut pat: Vec<u8> = Vec::with_capacity(pattern.len());
    for &b in pattern {
        match (pat.last_mut(), b) {
            (Some(last @ (b'*' | b'%')), b'*' | b'%') => {
                if b == b'*' {
                    *last = b'*';
                }
            }
            _ => pat.push(b),
        }
    }
    let states = pat.len() + 1;
    let words = states.div_ceil(64);
    let bit = |v: &mut [u64], i: usize| v[i / 64] |= 1 << (i % 64);
    let (mut star, mut percent) = (vec![0u64; words], vec![0u64; words]);
    // eq[c]: bit i+1 for each literal position i holding octet c.
    let mut eq: Vec<Option<Vec<u64>>> = vec![None; 256];
    for (i, &b) in pat.iter().enumerate() {
        match b {
            b'*' => bit(&mut star, i),
            b'%' => bit(&mut percent, i),
            _ => bit(eq[usize::from(b)].get_or_insert_with(|| vec![0; words]), i + 1),
        }
    }
    // A wildcard matches the empty string: bit i set before one sets i + 1.
    // (No two wildcards are adjacent, so one step suffices.)
    let close = |v: &mut Vec<u64>| {
        let mut carry = 0u64;
        for w in 0..words {
            let wild = v[w] & (star[w] | percent[w]);
            let out = wild >> 63;
            v[w] |= (wild << 1) | carry;
            carry = out;
        }
    };
    let mut cur = vec![0u64; words];
    bit(&mut cur, 0);
    close(&mut cur);
    let mut next = vec![0u64; words];
    for &c in name {
        let lit = eq[usize::from(c)].as_deref();
        let mut carry = 0u64;
        let mut any = 0u64;
        for w in 0..words {
            let shifted = (cur[w] << 1) | carry;
            carry = cur[w] >> 63;
            let mut v = lit.map_or(0, |l| shifted & l[w]) | (cur[w] & star[w]);
            if c != b'/' {
                v |= cur[w] & percent[w];
            }
            next[w] = v;
            any |= v;
        }
        if any == 0 {
            return false;
        }
        close(&mut next);
        std::mem::swap(&mut cur, &mut next);
    }
    cur[pat.len() / 64] & (1 << (pat.len() % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_rfc_9051() {
        assert!(wildcard_match(b"*", b"a/b/c"));
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"%", b"Sent"));
        assert!(!wildcard_match(b"%", b"a/b"));
        assert!(wildcard_match(b"a/%", b"a/b"));
        assert!(!wildcard_match(b"a/%", b"a/b/c"));
        assert!(wildcard_match(b"a*c", b"a/b/c"));
        assert!(wildcard_match(b"a%c", b"abbbc") && !wildcard_match(b"a%c", b"ab/bc"));
        assert!(wildcard_match(b"%/%", b"a/b") && !wildcard_match(b"%/%", b"a/b/c"));
        assert!(wildcard_match(b"*%", b"a/b"), "a run with * is *");
        assert!(wildcard_match(b"INBOX", b"INBOX"));
        assert!(!wildcard_match(b"Sent", b"Sent/x"));
        assert!(!wildcard_match(b"Sent", b"Sen"));
        assert!(wildcard_match(b"", b"") && !wildcard_match(b"", b"x"));
    }

    /// The reference: the textbook backtracking matcher, on small inputs.
    fn slow(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| slow(rest, &n[i..])),
            Some((b'%', rest)) => {
                (0..=n.len()).take_while(|&i| i == 0 || n[i - 1] != b'/').any(|i| slow(rest, &n[i..]))
            }
            Some((c, rest)) => n.first() == Some(c) && slow(rest, &n[1..]),
        }
    }

    #[test]
    fn agrees_with_the_backtracking_matcher() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"ab/*%";
        for _ in 0..20_000 {
            let p: Vec<u8> = (0..rng.usize(0..8)).map(|_| alphabet[rng.usize(0..5)]).collect();
            let n: Vec<u8> = (0..rng.usize(0..8)).map(|_| alphabet[rng.usize(0..3)]).collect();
            assert_eq!(
                wildcard_match(&p, &n),
                slow(&p, &n),
                "{:?} vs {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&n)
            );
        }
        // Patterns longer than a machine word.
        let long_p = [b"a*".repeat(70), b"b".to_vec()].concat();
        assert!(wildcard_match(&long_p, &[b"a".repeat(70), b"xb".to_vec()].concat()));
        assert!(!wildcard_match(&long_p, &b"a".repeat(69)));
    }

    #[test]
    fn a_pathological_pattern_takes_no_time() {
        // 60 stars then a letter that never comes: exponential before.
        let p = [b"*".repeat(60), b"x".to_vec()].concat();
        let name = b"a".repeat(MAX_NAME_OCTETS);
        let alternating = [b"*a".repeat(1000), b"x".to_vec()].concat();
        let t = std::time::Instant::now();
        for _ in 0..100 {
            assert!(!wildcard_match(&p, &name));
            assert!(!wildcard_match(&alternating, &name));
        }
        // Generous: a debug build on a loaded machine; the old matcher did
        // not finish one call in minutes.
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn new_names_are_checked_and_normalised() {
        let new = |s: &str| new_name(s.as_bytes(), false);
        assert_eq!(new("Work/Projets"), Ok("Work/Projets".into()));
        assert_eq!(new("Caf&AOk-"), Ok("Café".into()), "modified UTF-7 decoded");
        assert_eq!(new("Archive/"), Ok("Archive".into()), "a trailing separator is dropped");
        // Invalid modified UTF-7 (RFC 3501 §5.1.3).
        assert!(matches!(new("&Jjo"), Err(NameError::Utf7(Utf7Error::Unterminated))));
        assert!(matches!(new("&2D0-"), Err(NameError::Utf7(_))), "a lone surrogate");
        assert!(matches!(new("&AGEAYgBj-"), Err(NameError::Utf7(_))), "ASCII in BASE64");
        // Levels.
        assert_eq!(new(""), Err(NameError::Empty));
        assert_eq!(new("a//b"), Err(NameError::EmptyLevel));
        assert_eq!(new("/a"), Err(NameError::EmptyLevel));
        assert_eq!(new("a/../b"), Err(NameError::DotLevel));
        assert_eq!(new(".."), Err(NameError::DotLevel));
        assert_eq!(new("a/./b"), Err(NameError::DotLevel));
        assert_eq!(new("~root"), Err(NameError::Tilde));
        assert_eq!(new("a/~b"), Err(NameError::Tilde));
        assert_eq!(new("a..b"), Ok("a..b".into()), "dots inside a level are fine");
        // Controls, C1, line and paragraph separators (after IMAP4rev2, as UTF-8).
        let rev2 = |s: &str| new_name(s.as_bytes(), true);
        assert_eq!(rev2("a\u{1}b"), Err(NameError::Control(1)));
        assert_eq!(rev2("a\u{7f}"), Err(NameError::Control(0x7f)));
        assert_eq!(rev2("a\u{85}b"), Err(NameError::Control(0x85)));
        assert_eq!(rev2("a\u{2028}b"), Err(NameError::Control(0x2028)));
        assert_eq!(new_name(b"caf\xe9", true), Err(NameError::NotUtf8));
        // NFC: the decomposed spelling is stored composed.
        assert_eq!(rev2("Cafe\u{301}"), Ok("Caf\u{e9}".into()));
        assert_eq!(lookup_name("Cafe\u{301}".as_bytes(), true), "Caf\u{e9}");
        assert_eq!(new("Cafe&AwE-"), Ok("Caf\u{e9}".into()), "NFD in modified UTF-7 too");
        // Length, at and past the edge.
        assert!(rev2(&"x".repeat(MAX_NAME_OCTETS)).is_ok());
        assert_eq!(rev2(&"x".repeat(MAX_NAME_OCTETS + 1)), Err(NameError::TooLong));
    }
}
