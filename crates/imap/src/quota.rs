//! IMAP QUOTA (RFC 9208): a user's limits and usage as the QUOTA response
//! shows them, and whether more mail fits. Pure: the session reads the
//! user's [`Quota`] from storage, asks this module, and writes the answer.
//!
//! Each user has one quota root, [`ROOT`], over all of their mailboxes,
//! with the resources STORAGE (RFC 9208 §5.1) and MESSAGE (§5.2). Usage
//! counts every message in every mailbox at its stored size (storage keeps
//! it). Limits are set by the operator (`facteur user quota`), never over
//! IMAP: no SETQUOTA, no QUOTASET.

use facteur_store::Quota;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::quota::{QuotaGet, Resource};

/// The name of a user's one quota root: the empty string. RFC 9208 §3.2
/// lets a quota root be named anything (it need not be a mailbox name, and
/// clients treat it as opaque); `""` names "the whole account" as in
/// RFC 2087's examples (§4.2). Dovecot's default is `"User quota"`; clients
/// that show a quota look at its resources, not at its name.
pub const ROOT: &str = "";

/// RFC 9208 §5.1: STORAGE is counted in units of 1024 octets.
const UNIT: u64 = 1024;

/// RFC 9208 §3.1.2: usage and limits are 63-bit unsigned numbers (units
/// of 1024 octets always are; counts are held to it).
const MAX: u64 = i64::MAX as u64;

/// STORAGE usage in units of 1024 octets, rounded up: any octet used
/// shows.
pub fn storage_used(bytes: u64) -> u64 {
    bytes.div_ceil(UNIT)
}

/// A STORAGE limit in units of 1024 octets, rounded down: the limit shown
/// is never above the one enforced (in octets).
pub fn storage_limit(bytes: u64) -> u64 {
    bytes / UNIT
}

/// The QUOTA response's resources for `q`: only those with a limit, STORAGE
/// then MESSAGE (RFC 9208 §4.2.1: a resource not listed is not limited).
/// `None` when nothing is limited: the QUOTA response cannot have an empty
/// list (RFC 9208 §7, `quota-list`), so such a user has no quota root.
pub fn resources(q: &Quota) -> Option<Vec1<QuotaGet<'static>>> {
    let mut list = Vec::new();
    if let Some(limit) = q.limit_bytes {
        list.push(QuotaGet::new(Resource::Storage, storage_used(q.used_bytes), storage_limit(limit)));
    }
    if let Some(limit) = q.limit_messages {
        list.push(QuotaGet::new(Resource::Message, q.used_messages.min(MAX), limit.min(MAX)));
    }
    Vec1::try_from(list).ok()
}

/// Whether `messages` more messages of `bytes` octets in all fit (no quota:
/// they do). Adding nothing always fits, even over the limit: a COPY of no
/// message is not refused because an operator lowered the limit.
pub fn fits(q: Option<&Quota>, bytes: u64, messages: u64) -> bool {
    messages == 0 || q.is_none_or(|q| q.allows(bytes, messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(limit_bytes: Option<u64>, limit_messages: Option<u64>, used_bytes: u64, used_messages: u64) -> Quota {
        Quota { limit_bytes, limit_messages, used_bytes, used_messages, warned: false }
    }

    #[test]
    fn storage_rounds_usage_up_and_limits_down() {
        assert_eq!(storage_used(0), 0);
        assert_eq!(storage_used(1), 1);
        assert_eq!(storage_used(1024), 1);
        assert_eq!(storage_used(1025), 2);
        assert_eq!(storage_limit(1023), 0);
        assert_eq!(storage_limit(1024), 1);
        assert_eq!(storage_limit(2047), 1);
    }

    #[test]
    fn only_limited_resources_are_listed() {
        assert!(resources(&quota(None, None, 5000, 3)).is_none());
        let both = resources(&quota(Some(10 * 1024), Some(100), 1500, 3)).unwrap();
        assert_eq!(
            both.as_ref(),
            [QuotaGet::new(Resource::Storage, 2, 10), QuotaGet::new(Resource::Message, 3, 100)].as_slice()
        );
        let messages = resources(&quota(None, Some(7), 1500, 3)).unwrap();
        assert_eq!(messages.as_ref(), [QuotaGet::new(Resource::Message, 3, 7)].as_slice());
        let huge = resources(&quota(Some(u64::MAX), Some(u64::MAX), u64::MAX, u64::MAX)).unwrap();
        assert!(huge.as_ref().iter().all(|r| r.usage <= MAX && r.limit <= MAX), "{huge:?}");
    }

    #[test]
    fn fits_up_to_the_limit() {
        let q = quota(Some(1000), Some(3), 600, 2);
        assert!(fits(Some(&q), 400, 1));
        assert!(!fits(Some(&q), 401, 1));
        assert!(!fits(Some(&q), 1, 2));
        assert!(fits(None, u64::MAX, u64::MAX));
        // Over the limit already (lowered by the operator): nothing more fits,
        // but adding nothing is no refusal.
        let over = quota(Some(100), None, 600, 2);
        assert!(!fits(Some(&over), 0, 1));
        assert!(fits(Some(&over), 0, 0));
    }
}
