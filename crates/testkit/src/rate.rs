//! A token bucket for the simulator's `rate` limit. Time is an argument, so
//! the tests run in no time at all.

use std::time::Instant;

/// One token per message; `rate` tokens are added each second, and the bucket
/// holds at most one second's worth (so a burst is at most `rate` messages).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u32,
    /// Tokens, in billionths of a token, so refilling by the nanosecond is
    /// exact integer arithmetic.
    nano_tokens: u128,
    last: Instant,
}

const NANOS_PER_TOKEN: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket allowing `rate` messages per second.
    pub fn new(rate: u32, now: Instant) -> Self {
        TokenBucket { rate, nano_tokens: Self::capacity(rate), last: now }
    }

    /// Take one token if there is one at `now`. A `now` earlier than the
    /// previous call adds nothing.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        // `rate` tokens per second = `rate` nano-tokens per nanosecond.
        let refill = elapsed.saturating_mul(u128::from(self.rate));
        self.nano_tokens = self.nano_tokens.saturating_add(refill).min(Self::capacity(self.rate));
        if self.nano_tokens >= NANOS_PER_TOKEN {
            self.nano_tokens -= NANOS_PER_TOKEN;
            true
        } else {
            false
        }
    }

    fn capacity(rate: u32) -> u128 {
        u128::from(rate) * NANOS_PER_TOKEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn take_all(bucket: &mut TokenBucket, now: Instant) -> usize {
        (0..1000).take_while(|_| bucket.try_take(now)).count()
    }

    #[test]
    fn a_full_bucket_allows_one_second_of_messages_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(5, t0);
        assert_eq!(take_all(&mut bucket, t0), 5);
        assert!(!bucket.try_take(t0));
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(5, t0);
        take_all(&mut bucket, t0);
        // One token every 200 ms.
        assert!(!bucket.try_take(t0 + Duration::from_millis(199)));
        assert!(bucket.try_take(t0 + Duration::from_millis(200)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(200)));
        assert_eq!(take_all(&mut bucket, t0 + Duration::from_millis(600)), 2);
    }

    #[test]
    fn fractions_of_a_token_add_up() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, t0);
        take_all(&mut bucket, t0);
        // 1/3 s is not a whole number of nanoseconds: three steps of
        // 111_111_111 ns leave the bucket one nano-token short of a token;
        // one more nanosecond fills it.
        let step = Duration::from_nanos(111_111_111);
        assert!(!bucket.try_take(t0 + step));
        assert!(!bucket.try_take(t0 + step * 2));
        assert!(!bucket.try_take(t0 + step * 3));
        assert!(bucket.try_take(t0 + step * 3 + Duration::from_nanos(1)));
    }

    #[test]
    fn an_idle_bucket_holds_at_most_one_second() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, t0);
        take_all(&mut bucket, t0);
        assert_eq!(take_all(&mut bucket, t0 + Duration::from_secs(3600)), 10);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(2, t0);
        take_all(&mut bucket, t0);
        assert!(!bucket.try_take(t0 - Duration::from_secs(5)));
        // Nor does returning to the old `now` count the same time twice.
        assert!(!bucket.try_take(t0));
    }

    #[test]
    fn a_rate_of_zero_refuses_everything() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert!(!bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + Duration::from_secs(60)));
    }
}
