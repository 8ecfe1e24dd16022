//! Password guessing, throttled across SMTP, IMAP and POP3 together: one
//! [`AuthThrottle`] sees every failed login of the process, by client
//! address and by account, and its verdict comes *before* the password is
//! checked, so a reconnecting guesser gets no fresh, undelayed guess.
//!
//! - Per address: a few failures are free, then each attempt waits an
//!   exponentially growing delay, and at `ban_after` failures the address
//!   is banned for `ban_for` (every attempt fails unchecked).
//! - Per account (guessing from many addresses): past a few failures the
//!   account takes one guess per growing interval; attempts in between
//!   fail unchecked. An address that logged in to the account before is
//!   not held back by this, so its owner still gets in.
//!
//! Time is passed in (`Instant`), so tests run hours of it at once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `[auth]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Failures from one address answered without delay.
    pub free_failures: u32,
    /// The first delay; it doubles with each further failure...
    pub base_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
    /// Failures from one address that get it banned (0: never).
    pub ban_after: u32,
    /// How long a ban lasts, and how long failures are remembered.
    pub ban_for: Duration,
    /// Failures on one account (from addresses that never logged in to it)
    /// before it takes one guess per interval.
    pub account_free_failures: u32,
    /// The longest interval between two guesses on one account.
    pub account_max_delay: Duration,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            free_failures: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            ban_after: 10,
            ban_for: Duration::from_secs(900),
            account_free_failures: 10,
            account_max_delay: Duration::from_secs(300),
        }
    }
}

/// What to do with a login attempt, before the password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Check the password after this delay.
    Check(Duration),
    /// Fail it without checking; `ban` says the address is banned (the
    /// protocol then closes the connection).
    Refuse { ban: bool },
}

/// The result of [`AuthThrottle::attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// The password was right.
    Ok(T),
    /// It was wrong (or the user does not exist).
    Failed,
    /// It was not checked: the account is being guessed at.
    Throttled,
    /// It was not checked: this address is banned; close the connection.
    Banned,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// Attempts let through and not answered yet: parallel sessions count
    /// as if they had failed already, so twenty guesses at once do not all
    /// slip past a limit of ten.
    pending: u32,
    last: Instant,
    /// Address: banned until. Account: no guess before.
    until: Option<Instant>,
}

impl Record {
    fn fresh(now: Instant) -> Record {
        Record { failures: 0, pending: 0, last: now, until: None }
    }

    /// Failures (and attempts in flight) seen within `memory`.
    fn seen(&mut self, now: Instant, memory: Duration) -> u32 {
        if now.saturating_duration_since(self.last) >= memory && self.pending == 0 {
            *self = Record::fresh(now);
        }
        self.failures + self.pending
    }
}

/// Tables stop growing here; the stalest entries go first, bans last.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
struct Tables {
    ips: HashMap<IpAddr, Record>,
    accounts: HashMap<String, Record>,
    /// (account, address) pairs that logged in, and when.
    known: HashMap<(String, IpAddr), Instant>,
}

pub struct AuthThrottle {
    policy: Mutex<AuthPolicy>,
    tables: Mutex<Tables>,
}

/// What [`AuthThrottle::attempt`] reserved, to give back at the answer:
/// an attempt in flight on the address and on the account (not for an
/// address known to the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reserved {
    in_flight: bool,
}

fn doubling(base: Duration, max: Duration, steps: u32) -> Duration {
    base.saturating_mul(1u32 << steps.min(20)).min(max)
}

/// The key a client address is counted under: IPv4 as it is (an IPv4
/// address mapped into IPv6 too), IPv6 by its /64, the block one host is
/// given, so a host cannot take a fresh address per guess.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The account a login names, as storage looks it up (trimmed, lower
/// case): `" Alice@X"` is not a fresh account to guess at.
fn account_key(account: &str) -> String {
    account.trim().to_lowercase()
}

/// Keep a table bounded: drop what is older than `keep`, and if it is
/// still full, a tenth of it, the stalest first and bans last.
fn prune<K: Eq + Hash + Clone>(map: &mut HashMap<K, Record>, now: Instant, keep: Duration) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, r| now.saturating_duration_since(r.last) < keep || r.pending > 0);
    if map.len() >= MAX_TRACKED {
        let mut ages: Vec<(bool, Instant, K)> =
            map.iter().map(|(k, r)| (r.until.is_some_and(|u| now < u), r.last, k.clone())).collect();
        ages.sort_by_key(|(banned, t, _)| (*banned, *t));
        for (_, _, k) in ages.into_iter().take(MAX_TRACKED / 10) {
            map.remove(&k);
        }
    }
}

impl AuthThrottle {
    pub fn new(policy: AuthPolicy) -> Self {
        AuthThrottle { policy: Mutex::new(policy), tables: Mutex::default() }
    }

    /// A new policy (configuration reload); what was counted stays.
    pub fn reconfigure(&self, policy: AuthPolicy) {
        if let Ok(mut p) = self.policy.lock() {
            *p = policy;
        }
    }

    fn policy(&self) -> AuthPolicy {
        self.policy.lock().map(|p| *p).unwrap_or_default()
    }

    /// The verdict for an attempt from `ip` on `account` at `now`, without
    /// reserving anything (what [`AuthThrottle::attempt`] would say).
    #[cfg(test)]
    fn before(&self, ip: IpAddr, account: &str, now: Instant) -> Before {
        self.judge(ip, account, now, false).0
    }

    /// The verdict; with `reserve`, an attempt let through counts as in
    /// flight (on the address and on the account, unless this address is
    /// known to the account) until [`AuthThrottle::answered`].
    fn judge(&self, ip: IpAddr, account: &str, now: Instant, reserve: bool) -> (Before, Reserved) {
        let p = self.policy();
        let none = Reserved { in_flight: false };
        let Ok(mut t) = self.tables.lock() else { return (Before::Check(p.max_delay), none) };
        let (ip, account) = (client_key(ip), account_key(account));
        let known = t.known.contains_key(&(account.clone(), ip));
        let r = t.ips.entry(ip).or_insert(Record::fresh(now));
        // An address that has logged in to this account before is not
        // guessing at it: its other attempts in flight (a client opening
        // several sessions at once) do not count against it, only failures.
        let seen = if known { r.seen(now, p.ban_for).min(r.failures) } else { r.seen(now, p.ban_for) };
        if r.until.is_some_and(|u| now < u) {
            return (Before::Refuse { ban: true }, none);
        }
        if p.ban_after > 0 && seen >= p.ban_after {
            // The attempts in flight will ban it: this one is not checked.
            return (Before::Refuse { ban: false }, none);
        }
        let delay = match seen.checked_sub(p.free_failures) {
            Some(steps) => doubling(p.base_delay, p.max_delay, steps),
            None => Duration::ZERO,
        };
        if !known {
            let a = t.accounts.entry(account).or_insert(Record::fresh(now));
            let seen = a.seen(now, p.ban_for);
            if let Some(steps) = seen.checked_sub(p.account_free_failures) {
                // One guess per interval: this one takes the interval.
                if a.until.is_some_and(|u| now < u) {
                    return (Before::Refuse { ban: false }, none);
                }
                if reserve {
                    a.until = Some(now + doubling(p.base_delay, p.account_max_delay, steps));
                }
            }
            if reserve {
                a.pending += 1;
            }
        }
        if reserve
            && !known
            && let Some(r) = t.ips.get_mut(&ip)
        {
            r.pending += 1;
        }
        (Before::Check(delay), Reserved { in_flight: reserve && !known })
    }

    /// The answer to an attempt [`AuthThrottle::judge`] let through:
    /// `Some(true)` a login (of `user`, the canonical account), `Some(false)`
    /// a wrong password or unknown user, `None` no answer (storage failed).
    fn answered(
        &self,
        ip: IpAddr,
        account: &str,
        user: Option<&str>,
        outcome: Option<bool>,
        r: Reserved,
        now: Instant,
    ) {
        let p = self.policy();
        let Ok(mut t) = self.tables.lock() else { return };
        let (key, account) = (client_key(ip), account_key(account));
        prune(&mut t.ips, now, p.ban_for);
        prune(&mut t.accounts, now, p.ban_for);
        let mut banned = None;
        if let Some(rec) = t.ips.get_mut(&key) {
            if r.in_flight {
                rec.pending = rec.pending.saturating_sub(1);
            }
            if outcome == Some(false) {
                rec.failures += 1;
                rec.last = now;
                if p.ban_after > 0 && rec.failures >= p.ban_after && rec.until.is_none_or(|u| u <= now) {
                    rec.until = Some(now + p.ban_for);
                    banned = Some(rec.failures);
                }
            }
        }
        if let Some(a) = t.accounts.get_mut(&account) {
            if r.in_flight {
                a.pending = a.pending.saturating_sub(1);
            }
            if outcome == Some(false) && r.in_flight {
                a.failures += 1;
                a.last = now;
                if let Some(steps) = a.failures.checked_sub(p.account_free_failures) {
                    let next = now + doubling(p.base_delay, p.account_max_delay, steps);
                    a.until = Some(a.until.map_or(next, |u| u.max(next)));
                }
            }
        }
        if outcome == Some(true) {
            // Known to the account from now on; the address's failures stay
            // (one good login between guesses does not wipe them).
            if t.known.len() >= MAX_TRACKED {
                let cutoff = now.checked_sub(Duration::from_secs(30 * 86_400)).unwrap_or(now);
                t.known.retain(|_, at| *at > cutoff);
            }
            for name in [Some(account.as_str()), user].into_iter().flatten() {
                t.known.insert((account_key(name), key), now);
            }
        }
        drop(t);
        if let Some(failures) = banned {
            let why = format!("address banned for {} s after {failures} failed logins", p.ban_for.as_secs());
            crate::reject::event("auth", SocketAddr::new(ip, 0), "ban", "none", &why, "");
        }
    }

    /// A wrong password (or an unknown user) from `ip` on `account`.
    #[cfg(test)]
    fn failed(&self, ip: IpAddr, account: &str, now: Instant) {
        let (_, r) = self.judge(ip, account, now, true);
        self.answered(ip, account, None, Some(false), r, now);
    }

    /// A login from `ip` on `account`: the address is known to the
    /// account from now on.
    #[cfg(test)]
    fn succeeded(&self, ip: IpAddr, account: &str, now: Instant) {
        let (_, r) = self.judge(ip, account, now, true);
        self.answered(ip, account, None, Some(true), r, now);
    }

    /// One login attempt from `client` on `listener`: the verdict, the
    /// delay, `check` (which looks the password up and returns the
    /// canonical account on success), and the accounting, in that order.
    /// Every refusal is a rejection event in the log.
    pub async fn attempt<T, E, F>(
        &self,
        listener: &str,
        client: SocketAddr,
        account: &str,
        check: F,
    ) -> Result<Attempt<T>, E>
    where
        T: AsRef<str>,
        F: Future<Output = Result<Option<T>, E>>,
    {
        let ip = client.ip();
        let reject = |why: &str| {
            crate::reject::event(listener, client, "auth", "none", &format!("{why} (account {account:?})"), "")
        };
        let reserved = match self.judge(ip, account, Instant::now(), true) {
            (Before::Refuse { ban: true }, _) => {
                reject("address banned for failed logins");
                return Ok(Attempt::Banned);
            }
            (Before::Refuse { ban: false }, _) => {
                reject("not checked: the account is being guessed at");
                return Ok(Attempt::Throttled);
            }
            (Before::Check(delay), r) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                r
            }
        };
        let checked = match check.await {
            Ok(c) => c,
            Err(e) => {
                self.answered(ip, account, None, None, reserved, Instant::now());
                return Err(e);
            }
        };
        Ok(match checked {
            Some(user) => {
                self.answered(ip, account, Some(user.as_ref()), Some(true), reserved, Instant::now());
                Attempt::Ok(user)
            }
            None => {
                self.answered(ip, account, None, Some(false), reserved, Instant::now());
                reject("wrong password or unknown user");
                Attempt::Failed
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        [198, 51, 100, n].into()
    }

    #[test]
    fn delays_grow_then_the_address_is_banned_before_any_check() {
        let t = AuthThrottle::new(AuthPolicy::default());
        let now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..9 {
            match t.before(ip(1), "alice@x", now) {
                Before::Check(d) => delays.push(d.as_secs()),
                other => panic!("{other:?}"),
            }
            t.failed(ip(1), "alice@x", now);
        }
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 30]);
        // The 10th failure bans; the 11th attempt (right password or not) is
        // refused unchecked, on any account.
        t.failed(ip(1), "bob@x", now);
        assert_eq!(t.before(ip(1), "alice@x", now), Before::Refuse { ban: true });
        assert_eq!(t.before(ip(1), "carol@x", now + Duration::from_secs(899)), Before::Refuse { ban: true });
        assert_eq!(t.before(ip(1), "alice@x", now + Duration::from_secs(900)), Before::Check(Duration::ZERO));
        assert_eq!(t.before(ip(2), "carol@x", now), Before::Check(Duration::ZERO), "other addresses are not banned");
    }

    #[test]
    fn an_account_guessed_from_many_addresses_takes_one_guess_per_interval() {
        let t = AuthThrottle::new(AuthPolicy::default());
        let now = Instant::now();
        // The owner logged in from .200 before the attack.
        t.succeeded(ip(200), "alice@x", now);
        for i in 0..10 {
            assert!(matches!(t.before(ip(i), "alice@x", now), Before::Check(_)));
            t.failed(ip(i), "Alice@X", now);
        }
        // 10 failures from 10 addresses: the next guess waits 1 s, unchecked before.
        assert_eq!(t.before(ip(50), "alice@x", now), Before::Refuse { ban: false });
        assert!(matches!(t.before(ip(50), "alice@x", now + Duration::from_secs(1)), Before::Check(_)));
        t.failed(ip(50), "alice@x", now + Duration::from_secs(1));
        assert_eq!(t.before(ip(51), "alice@x", now + Duration::from_secs(2)), Before::Refuse { ban: false });
        // The owner's address is not held back.
        assert_eq!(t.before(ip(200), "alice@x", now + Duration::from_secs(2)), Before::Check(Duration::ZERO));
        // Other accounts are not affected.
        assert_eq!(t.before(ip(60), "bob@x", now), Before::Check(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_guesses_do_not_slip_past_the_limit() {
        // Twenty sessions guess at once: the ones in flight count, so at
        // most ban_after passwords are ever checked from one address.
        let t =
            std::sync::Arc::new(AuthThrottle::new(AuthPolicy { account_free_failures: 1000, ..AuthPolicy::default() }));
        let checked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for n in 0..20 {
            let (t, checked) = (t.clone(), checked.clone());
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..5 {
                    let check = async {
                        checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        Ok::<Option<String>, ()>(None)
                    };
                    answers.push(t.attempt("test", SocketAddr::new(ip(9), n), "alice@x", check).await.unwrap());
                }
                answers
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(checked.load(std::sync::atomic::Ordering::Relaxed), 10, "ban_after guesses at most");
        assert_eq!(t.before(ip(9), "alice@x", Instant::now()), Before::Refuse { ban: true });
    }

    /// A client opening many sessions at once (8 in bench/imap.sh) from an
    /// address that logged in to the account before is not slowed down:
    /// its logins in flight are not guesses. An unknown address's are.
    #[test]
    fn parallel_logins_of_a_known_address_are_not_delayed() {
        let t = AuthThrottle::new(AuthPolicy::default());
        let now = Instant::now();
        t.succeeded(ip(1), "alice@x", now);
        let verdicts: Vec<Before> = (0..8).map(|_| t.judge(ip(1), "alice@x", now, true).0).collect();
        assert!(verdicts.iter().all(|v| *v == Before::Check(Duration::ZERO)), "{verdicts:?}");
        let verdicts: Vec<Before> = (0..6).map(|_| t.judge(ip(2), "alice@x", now, true).0).collect();
        assert_eq!(verdicts[3..], [1, 2, 4].map(|s| Before::Check(Duration::from_secs(s))), "{verdicts:?}");
        // A known address's failures still count.
        for _ in 0..4 {
            t.failed(ip(1), "alice@x", now);
        }
        assert_eq!(t.before(ip(1), "alice@x", now), Before::Check(Duration::from_secs(2)));
    }

    #[test]
    fn a_login_does_not_wipe_the_address_failures() {
        // Someone with one working account cannot alternate guesses and a
        // good login to keep its slate clean.
        let t = AuthThrottle::new(AuthPolicy::default());
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(ip(1), "victim@x", now);
        }
        assert_eq!(t.before(ip(1), "victim@x", now), Before::Check(Duration::from_secs(4)));
        t.succeeded(ip(1), "mine@x", now);
        assert_eq!(t.before(ip(1), "victim@x", now), Before::Check(Duration::from_secs(4)));
        for _ in 0..5 {
            t.failed(ip(1), "victim@x", now);
        }
        assert_eq!(t.before(ip(1), "victim@x", now), Before::Refuse { ban: true });
    }

    #[test]
    fn an_account_is_one_however_it_is_typed_and_ipv6_counts_by_64() {
        let t = AuthThrottle::new(AuthPolicy { ban_after: 0, ..AuthPolicy::default() });
        let now = Instant::now();
        for (n, spelling) in ["alice@x", " Alice@X", "ALICE@x\t", "alice@X "].iter().cycle().take(10).enumerate() {
            t.failed(IpAddr::from([203, 0, 113, n as u8]), spelling, now);
        }
        assert_eq!(t.before(ip(77), "alice@x", now), Before::Refuse { ban: false }, "one account");
        // 10 addresses of one /64: one client.
        let t = AuthThrottle::new(AuthPolicy::default());
        for n in 0..10u16 {
            let v6: IpAddr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, n, n, n, n).into();
            t.failed(v6, &format!("user{n}@x"), now);
        }
        let other: IpAddr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 99, 0, 0, 1).into();
        assert_eq!(t.before(other, "z@x", now), Before::Refuse { ban: true });
        let next_64: IpAddr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1).into();
        assert_eq!(t.before(next_64, "z@x", now), Before::Check(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_checks_after_the_verdict_only() {
        let t = AuthThrottle::new(AuthPolicy { ban_after: 2, ..AuthPolicy::default() });
        let checked = std::sync::atomic::AtomicU32::new(0);
        let check = |good: bool| {
            let checked = &checked;
            async move {
                checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, ()>(good.then(|| "alice@x".to_string()))
            }
        };
        assert_eq!(t.attempt("test", SocketAddr::new(ip(1), 1), "alice@x", check(false)).await, Ok(Attempt::Failed));
        assert_eq!(t.attempt("test", SocketAddr::new(ip(1), 1), "alice@x", check(false)).await, Ok(Attempt::Failed));
        // Banned: the right password is not even looked at.
        assert_eq!(t.attempt("test", SocketAddr::new(ip(1), 1), "alice@x", check(true)).await, Ok(Attempt::Banned));
        assert_eq!(checked.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(
            t.attempt("test", SocketAddr::new(ip(2), 1), "alice@x", check(true)).await,
            Ok(Attempt::Ok("alice@x".to_string()))
        );
    }
}
