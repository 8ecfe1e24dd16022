//! The rules every backend keeps, in one place: backends run statements,
//! these functions decide. Time comes from the caller (the backend's
//! injected [`crate::Clock`]).

use crate::{Result, StoreError};

/// The mailboxes every new user gets besides INBOX, with their RFC 6154
/// special-use attribute.
pub const DEFAULT_MAILBOXES: [(&str, &str); 5] =
    [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")];

/// Canonical form of an address or domain for lookups: lower case, trimmed.
pub fn canonical_address(address: &str) -> String {
    address.trim().to_lowercase()
}

/// A domain name as stored: canonical, non-empty, no `@`, no blanks.
pub fn domain_name(name: &str) -> Result<String> {
    let name = canonical_address(name);
    if name.is_empty() || name.contains('@') || name.contains(char::is_whitespace) {
        return Err(StoreError::Invalid(format!("{name:?} is not a domain name")));
    }
    Ok(name)
}

/// Split `user@domain` (both parts non-empty) at its last `@`.
pub fn split_address(address: &str) -> Result<(&str, &str)> {
    match address.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() => Ok((l, d)),
        _ => Err(StoreError::Invalid(format!("{address:?} is not an address of the form user@domain"))),
    }
}

/// A sender grant as stored: an address (`user@domain`) or a whole domain
/// (`@domain`), canonical.
pub fn sender_grant(address: &str) -> Result<String> {
    let address = canonical_address(address);
    let valid = match address.strip_prefix('@') {
        Some(domain) => !domain.is_empty() && !domain.contains('@'),
        None => split_address(&address).is_ok(),
    };
    if !valid || address.contains(char::is_whitespace) {
        return Err(StoreError::Invalid(format!(
            "{address:?} is neither an address (user@domain) nor a whole domain (@domain)"
        )));
    }
    Ok(address)
}

/// An alias key as stored: `user@domain`, or `@domain` for a catch-all;
/// returns it with its domain.
pub fn alias_key(address: &str) -> Result<(String, String)> {
    let key = sender_grant(address).map_err(|_| {
        StoreError::Invalid(format!("{address:?} is neither an address (user@domain) nor a catch-all (@domain)"))
    })?;
    let domain = key.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
    Ok((key, domain))
}

/// An alias target as stored: one address, `user@domain`.
pub fn alias_target(target: &str) -> Result<String> {
    let target = canonical_address(target);
    if split_address(&target).is_err() || target.contains(char::is_whitespace) || target.contains(',') {
        return Err(StoreError::Invalid(format!("alias target {target:?} is not one address (user@domain)")));
    }
    Ok(target)
}

/// 32 random bytes as 64 hex digits, for [`crate::Directory::secret`].
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Mailbox names are case-sensitive except INBOX (RFC 9051 §5.1).
pub fn normalize_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { name.to_string() }
}

/// The two steps a RENAME moves names in: `from` to a name no mailbox can
/// have (it starts with a control character, which [`mailbox_name`]
/// refuses), then to `to`. In one step a mailbox could take a name that
/// another one being moved still has (`A/B` to `A` when `A` was deleted:
/// `A/B/B` takes `A/B`), and the unique name refuses the statement when the
/// rows happen to be updated in that order.
pub fn rename_steps(from: &str, to: &str) -> [(String, String); 2] {
    let between = format!("\u{1}{to}");
    [(from.to_string(), between.clone()), (between, to.to_string())]
}

/// A new mailbox name as stored (`/` separates levels): INBOX in that
/// spelling; no empty level, no control characters, no wildcards.
pub fn mailbox_name(name: &str) -> Result<String> {
    let name = normalize_name(name);
    if name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.chars().any(|ch| ch.is_control() || ch == '*' || ch == '%')
    {
        return Err(StoreError::Invalid(format!("{name:?} is not a valid mailbox name")));
    }
    Ok(name)
}

/// What STORE makes of a message's flags (RFC 9051 §6.4.6): `None` when
/// nothing changes (flags compare case-insensitively), so no MODSEQ is
/// taken for it (RFC 7162 §3.1.3).
pub fn apply_flags(op: crate::FlagOp, current: &[String], flags: &[String]) -> Option<Vec<String>> {
    use crate::FlagOp;
    let has = |list: &[String], f: &str| list.iter().any(|x| x.eq_ignore_ascii_case(f));
    let mut new: Vec<String> = match op {
        FlagOp::Replace => Vec::new(),
        FlagOp::Add | FlagOp::Remove => current.to_vec(),
    };
    match op {
        FlagOp::Remove => new.retain(|x| !has(flags, x)),
        FlagOp::Add | FlagOp::Replace => {
            for f in flags {
                if !has(&new, f) {
                    new.push(f.clone());
                }
            }
        }
    }
    let same = new.len() == current.len() && new.iter().all(|f| has(current, f));
    (!same).then_some(new)
}

/// Flags as stored: one space-separated string.
pub fn parse_flags(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(str::to_string).collect()
}

/// The superior names of a (valid) mailbox name, outermost first: what
/// CREATE makes when missing (RFC 9051 §6.3.4).
pub fn superiors(name: &str) -> Vec<&str> {
    name.match_indices('/').map(|(i, _)| &name[..i]).collect()
}

/// What is wrong with a mailbox's UID counter (`uidnext`) given the highest
/// UID it holds or ever expunged, in words; `None` if nothing.
pub fn uid_counter_problem(mailbox: &str, uidnext: Option<i64>, highest_uid: i64) -> Option<String> {
    match uidnext {
        None => Some(format!("mailbox {mailbox} has no UID counter; highest stored UID is {highest_uid}")),
        Some(n) if n <= highest_uid => Some(format!("mailbox {mailbox} has UIDNEXT {n} but stores UID {highest_uid}")),
        _ => None,
    }
}

/// Recipients leased by a node that is not running (it stopped cleanly,
/// or never registered): nobody will deliver or renew them before their
/// lease runs out. `?1`/`$1` is now. Shared by both backends' checks.
pub const ORPHAN_LEASES: &str = "FROM recipients r
    WHERE r.lease_owner IS NOT NULL AND r.state = 'queued' AND r.lease_until > %NOW%
      AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.name = r.lease_owner AND n.stopped_at IS NULL)";

/// The audit line of an operator's delete.
pub fn deleted_detail(recipients: u64, sender_notified: bool) -> String {
    if sender_notified {
        format!("{recipients} recipient(s) deleted, sender notified")
    } else {
        format!("{recipients} recipient(s) deleted")
    }
}

/// The UIDVALIDITY of a mailbox created at `now` (unix seconds) by an owner
/// whose mailboxes, live or deleted, had at most `highest_before`: the time,
/// unless that would not be strictly above every earlier one, so a
/// re-created mailbox never looks like the old one to a client
/// (RFC 9051 §2.3.1.1).
pub fn next_uidvalidity(now: i64, highest_before: Option<i64>) -> u32 {
    (now & 0xFFFF_FFFF).max(highest_before.unwrap_or(0) + 1).clamp(1, u32::MAX as i64) as u32
}

/// Whether a mailbox renamed onto a name that last held `former` (its
/// UIDVALIDITY when that mailbox was deleted or renamed away) must take a
/// fresh UIDVALIDITY: a client may have cached the name with `former`, and
/// RFC 9051 §2.3.1.1 wants it to see a greater value, not an older one.
/// An owner's UIDVALIDITYs are never given twice, so an equal one is the
/// same mailbox coming back to its name, UIDs and all. Most renames keep
/// theirs.
pub fn renamed_needs_new_uidvalidity(former: Option<u32>, uidvalidity: u32) -> bool {
    former.is_some_and(|f| f > uidvalidity)
}

/// The next UID of a mailbox, given its stored counter (`uidnext`) and the
/// highest UID it holds or ever expunged. The counter is never trusted
/// alone: if it is missing or not above the data, the UID comes from the
/// data and the repair is logged as an error (RFC 9051 §2.3.1.1: UIDs
/// strictly ascend and are never reused).
pub fn next_uid(mailbox_id: i64, counter: Option<i64>, highest_uid: i64) -> Result<u32> {
    let uid = match counter {
        Some(c) if c > highest_uid => c,
        _ => {
            tracing::error!(
                mailbox_id,
                counter = ?counter,
                highest_uid,
                "UID counter missing or behind the stored UIDs; repaired from the data"
            );
            highest_uid + 1
        }
    };
    u32::try_from(uid).map_err(|_| StoreError::Internal(format!("mailbox {mailbox_id} has exhausted the UID space")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidvalidity_ascends_even_when_the_clock_does_not() {
        assert_eq!(next_uidvalidity(1_700_000_000, None), 1_700_000_000);
        assert_eq!(next_uidvalidity(1_700_000_000, Some(1_700_000_000)), 1_700_000_001);
        assert_eq!(next_uidvalidity(5, Some(1_700_000_000)), 1_700_000_001, "a clock set back");
        assert_eq!(next_uidvalidity(0, None), 1, "never 0");
        assert!(!renamed_needs_new_uidvalidity(None, 7), "a name never used");
        assert!(!renamed_needs_new_uidvalidity(Some(6), 7), "the name had an older one");
        assert!(!renamed_needs_new_uidvalidity(Some(7), 7), "the same mailbox back at its name");
        assert!(renamed_needs_new_uidvalidity(Some(8), 7), "the name had a newer one");
    }

    #[test]
    fn a_counter_behind_the_data_is_repaired() {
        assert_eq!(next_uid(1, Some(10), 9).unwrap(), 10);
        assert_eq!(next_uid(1, Some(5), 9).unwrap(), 10);
        assert_eq!(next_uid(1, None, 0).unwrap(), 1);
        assert!(next_uid(1, Some(u32::MAX as i64 + 1), 0).is_err());
    }

    #[test]
    fn names_and_grants() {
        assert_eq!(domain_name(" Example.TEST ").unwrap(), "example.test");
        assert!(domain_name("a@b").is_err() && domain_name("").is_err() && domain_name("a b").is_err());
        assert_eq!(split_address("a@b.test").unwrap(), ("a", "b.test"));
        assert!(split_address("@b").is_err() && split_address("a@").is_err() && split_address("ab").is_err());
        assert_eq!(sender_grant("@Alias.TEST").unwrap(), "@alias.test");
        assert!(sender_grant("@").is_err() && sender_grant("nobody").is_err());
        assert_eq!(mailbox_name("inbox").unwrap(), "INBOX");
        assert_eq!(superiors("a/b/c"), ["a", "a/b"]);
        assert!(superiors("a").is_empty());
        for bad in ["", "/a", "a/", "a//b", "a*", "a%b", "a\u{7}"] {
            assert!(mailbox_name(bad).is_err(), "{bad:?}");
        }
    }
}
