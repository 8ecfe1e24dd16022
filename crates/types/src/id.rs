//! Message identity: time-ordered, unique across nodes, no central counter.
//!
//! A [`MessageId`] is a UUIDv7 (RFC 9562 §5.7): 48 bits of Unix milliseconds
//! then 74 random bits. Two nodes never need to agree on anything to mint
//! ids, and nothing in storage can be "reset" to make an id repeat — the
//! Zendesk Sell outage (a deleted sequence) cannot happen to message identity.
//! The text form is 26 characters of Crockford base32, so ids sort by time as
//! strings too.

use std::fmt;
use std::str::FromStr;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u128);

impl MessageId {
    /// A new id for a message received at `unix_ms`. Ids made by one
    /// process are strictly increasing, also within one millisecond (a
    /// counter seeded at random each millisecond, RFC 9562 §6.2 method 1),
    /// so the queue's oldest-first order is the order of arrival.
    pub fn new(unix_ms: u64) -> Self {
        static CONTEXT: std::sync::Mutex<uuid::ContextV7> = std::sync::Mutex::new(uuid::ContextV7::new());
        let (secs, nanos) = (unix_ms / 1000, ((unix_ms % 1000) * 1_000_000) as u32);
        let ts = match CONTEXT.lock() {
            Ok(ctx) => uuid::Timestamp::from_unix(&*ctx, secs, nanos),
            Err(_) => uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos),
        };
        MessageId(uuid::Uuid::new_v7(ts).as_u128())
    }

    /// The smallest id of a message received at `unix_ms`: every id made
    /// earlier is below it, every id made at or after it is not.
    pub fn first_at(unix_ms: u64) -> Self {
        MessageId(((unix_ms as u128) & ((1 << 48) - 1)) << 80)
    }

    /// Milliseconds since the Unix epoch encoded in the id.
    pub fn unix_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        for (i, c) in out.iter_mut().enumerate() {
            // 26 × 5 = 130 bits: the first character carries the top 3 bits.
            let shift = 125 - 5 * i as u32;
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id: {0:?} (expected 26 characters of Crockford base32)")]
pub struct BadMessageId(pub String);

crate::serde_as_text!(MessageId);

impl FromStr for MessageId {
    type Err = BadMessageId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 26 {
            return Err(BadMessageId(s.to_string()));
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let b = b.to_ascii_uppercase();
            let d = ALPHABET.iter().position(|&a| a == b).ok_or_else(|| BadMessageId(s.to_string()))? as u128;
            if i == 0 && d > 7 {
                return Err(BadMessageId(s.to_string()));
            }
            v = (v << 5) | d;
        }
        Ok(MessageId(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_order() {
        let a = MessageId::new(1_700_000_000_000);
        let b = MessageId::new(1_700_000_000_001);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<MessageId>().unwrap(), a);
        assert_eq!(a.unix_ms(), 1_700_000_000_000);
        assert_eq!(a.to_string().len(), 26);
        assert!("not-an-id".parse::<MessageId>().is_err());
        assert!("Z0000000000000000000000000".parse::<MessageId>().is_err());
    }

    #[test]
    fn first_at_bounds_the_ids_of_a_millisecond() {
        // (Not through `new`, whose ids increase across the whole process.)
        let first = MessageId::first_at(1_600_000_000_001);
        let last_before = MessageId(first.0 - 1);
        assert_eq!((last_before.unix_ms(), first.unix_ms()), (1_600_000_000_000, 1_600_000_000_001));
        assert!(last_before.to_string() < first.to_string());
    }

    #[test]
    fn unique_and_increasing_within_a_millisecond() {
        let mut last = MessageId::new(1_700_000_000_000);
        for _ in 0..10_000 {
            let next = MessageId::new(1_700_000_000_000);
            assert!(next > last, "{next} after {last}");
            assert!(next.to_string() > last.to_string());
            last = next;
        }
    }
}
