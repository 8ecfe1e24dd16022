//! Service objectives and the incident state machine, sans I/O.
//!
//! Each component of the service (mail acceptance, delivery of a class,
//! mailbox access, storage) has an objective: a share of good events (a
//! message accepted, delivered in time; a login that worked; a commit
//! that held) over a sliding window. The caller feeds good and bad events
//! as they are counted, per component and region, with the time; the
//! [`Watch`] says when to open an incident, when the picture changed
//! (worse, better, another region), and when to resolve it. Time is
//! whatever the caller says it is, so hours run in a test in microseconds.
//!
//! The rules, chosen to be calm:
//! - A window with fewer than `min_events` events judges nothing: one
//!   failure out of one is not an outage.
//! - A breach opens an incident only once it has held for `hold_secs`;
//!   a dip that recovers within it opens none (no flapping at the
//!   threshold).
//! - An open incident resolves only after `quiet_secs` without a breach;
//!   a breach during the quiet starts the quiet again.
//! - While open, a region joining or leaving the breach, or the share of
//!   good events crossing into or out of "major" (below `major_below`),
//!   is an update.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// What an objective is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// SMTP acceptances against storage failures at the door.
    Acceptance,
    /// Mail of one class delivered or handed on within the objective's
    /// latency, against mail that took longer or bounced for our fault.
    Delivery(String),
    /// Logins (the probe's and users') that worked, against those that
    /// failed for the server's fault.
    MailboxAccess,
    /// Commits that held, against failed ones.
    Storage,
    /// Attempts to one destination (a recipient domain) that got an answer
    /// for good, against those that found it unreachable or deferred mail
    /// past the latency objective.
    Destination(String),
}

/// The stand-in for "any": `Delivery(ANY)` and `Destination(ANY)` hold the
/// objective of every class and destination without one of their own.
pub const ANY: &str = "*";

impl Component {
    /// For people: what is affected.
    pub fn describe(&self) -> String {
        match self {
            Component::Acceptance => "Receiving mail".into(),
            Component::Delivery(class) => format!("Delivery of {class} mail"),
            Component::MailboxAccess => "Mailbox access".into(),
            Component::Storage => "Storage".into(),
            Component::Destination(d) => format!("Delivery to {d}"),
        }
    }

    /// The one text form, as stored and in the API: `acceptance`,
    /// `delivery:CLASS`, `mailbox-access`, `storage`, `destination:DOMAIN`.
    pub fn key(&self) -> String {
        match self {
            Component::Acceptance => "acceptance".into(),
            Component::Delivery(class) => format!("delivery:{class}"),
            Component::MailboxAccess => "mailbox-access".into(),
            Component::Storage => "storage".into(),
            Component::Destination(d) => format!("destination:{d}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Component> {
        Some(match key {
            "acceptance" => Component::Acceptance,
            "mailbox-access" => Component::MailboxAccess,
            "storage" => Component::Storage,
            _ => match key.split_once(':')? {
                ("delivery", c) if !c.is_empty() => Component::Delivery(c.into()),
                ("destination", d) if !d.is_empty() => Component::Destination(d.into()),
                _ => return None,
            },
        })
    }

    /// The objective that applies: its own, else the "any" one of its kind.
    fn general(&self) -> Option<Component> {
        match self {
            Component::Delivery(c) if c != ANY => Some(Component::Delivery(ANY.into())),
            Component::Destination(d) if d != ANY => Some(Component::Destination(ANY.into())),
            _ => None,
        }
    }
}

/// One objective, as configured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// Share of good events wanted, e.g. 0.99.
    pub target: f64,
    /// The window the share is taken over, in seconds.
    pub window_secs: u64,
}

/// How calm the watch is (see the module's rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Calm {
    pub min_events: u64,
    /// A window with fewer failed events than this is not a breach: one
    /// failure in a quiet hour is not an outage.
    pub min_failures: u64,
    pub hold_secs: i64,
    pub quiet_secs: i64,
    /// Below this share of good events, the incident is a major outage.
    pub major_below: f64,
}

impl Default for Calm {
    fn default() -> Self {
        Calm { min_events: 5, min_failures: 3, hold_secs: 60, quiet_secs: 600, major_below: 0.5 }
    }
}

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Below the objective.
    Degraded,
    /// Below `major_below`.
    Major,
}

/// What the watch decided at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Open { component: Component, severity: Severity, regions: BTreeSet<String>, text: String },
    Update { component: Component, severity: Severity, regions: BTreeSet<String>, text: String },
    Resolve { component: Component, text: String },
}

/// Good and bad events in one second-aligned bucket.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    good: u64,
    bad: u64,
}

/// The state of one component.
#[derive(Debug, Default)]
struct Track {
    /// (region, bucket start) -> counts; buckets of `BUCKET` seconds.
    buckets: BTreeMap<(String, i64), Count>,
    /// Since when the objective has been breached (unbroken).
    breached_since: Option<i64>,
    /// Since when it has held again while an incident is open.
    quiet_since: Option<i64>,
    open: Option<Open>,
}

#[derive(Debug, Clone)]
struct Open {
    opened_at: i64,
    severity: Severity,
    regions: BTreeSet<String>,
    worst_share: f64,
}

const BUCKET: i64 = 10;

/// Objectives and their incidents.
#[derive(Debug)]
pub struct Watch {
    objectives: BTreeMap<Component, Objective>,
    calm: Calm,
    tracks: BTreeMap<Component, Track>,
}

impl Watch {
    pub fn new(objectives: impl IntoIterator<Item = (Component, Objective)>, calm: Calm) -> Self {
        Watch { objectives: objectives.into_iter().collect(), calm, tracks: BTreeMap::new() }
    }

    /// Count `good` and `bad` events of `component` in `region` at `at`
    /// (unix seconds). Components without an objective are ignored.
    pub fn observe(&mut self, at: i64, component: &Component, region: &str, good: u64, bad: u64) {
        if self.objective(component).is_none() || good + bad == 0 {
            return;
        }
        let track = self.tracks.entry(component.clone()).or_default();
        let c = track.buckets.entry((region.to_string(), at - at.rem_euclid(BUCKET))).or_default();
        c.good += good;
        c.bad += bad;
    }

    /// The objective `component` is judged by, if any.
    pub fn objective(&self, component: &Component) -> Option<&Objective> {
        self.objectives.get(component).or_else(|| self.objectives.get(&component.general()?))
    }

    /// Is an incident open for `component`?
    pub fn is_open(&self, component: &Component) -> bool {
        self.tracks.get(component).is_some_and(|t| t.open.is_some())
    }

    /// The share of good events per region over the window ending at
    /// `now`, for the regions with enough events to judge.
    fn shares(&self, track: &Track, window: i64, now: i64) -> BTreeMap<String, f64> {
        let mut sums: BTreeMap<&str, Count> = BTreeMap::new();
        for ((region, start), c) in &track.buckets {
            if *start > now - window && *start <= now {
                let s = sums.entry(region.as_str()).or_default();
                s.good += c.good;
                s.bad += c.bad;
            }
        }
        sums.into_iter()
            .filter(|(_, c)| c.good + c.bad >= self.calm.min_events && c.bad >= self.calm.min_failures)
            .map(|(r, c)| (r.to_string(), c.good as f64 / (c.good + c.bad) as f64))
            .collect()
    }

    /// Judge every objective at `now`; what changed.
    pub fn evaluate(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let components: Vec<Component> = self.tracks.keys().cloned().collect();
        for component in components {
            let Some(objective) = self.objective(&component) else { continue };
            let (target, window) = (objective.target, objective.window_secs as i64);
            let mut track = self.tracks.remove(&component).unwrap_or_default();
            // Forget what no window will read again.
            track.buckets.retain(|(_, start), _| *start > now - window);
            let shares = self.shares(&track, window, now);
            let breached: BTreeMap<String, f64> = shares.into_iter().filter(|(_, s)| *s < target).collect();
            let worst = breached.values().cloned().fold(1.0_f64, f64::min);
            let severity = if worst < self.calm.major_below { Severity::Major } else { Severity::Degraded };
            let regions: BTreeSet<String> = breached.keys().cloned().collect();
            if breached.is_empty() {
                track.breached_since = None;
                if let Some(open) = &track.open {
                    let quiet = *track.quiet_since.get_or_insert(now);
                    if now - quiet >= self.calm.quiet_secs {
                        out.push(Transition::Resolve {
                            text: format!(
                                "{} is back to normal. It fell below its objective of {} for {} (at worst {} of events good, in {}).",
                                component.describe(),
                                percent(target),
                                duration(quiet - open.opened_at),
                                percent(open.worst_share),
                                list(&open.regions),
                            ),
                            component: component.clone(),
                        });
                        track.open = None;
                        track.quiet_since = None;
                    }
                }
            } else {
                track.quiet_since = None;
                let since = *track.breached_since.get_or_insert(now);
                match &mut track.open {
                    None if now - since >= self.calm.hold_secs => {
                        let text = format!(
                            "{} is {} in {}: {} of events good over the last {} (objective {}).",
                            component.describe(),
                            if severity == Severity::Major { "failing" } else { "degraded" },
                            list(&regions),
                            percent(worst),
                            duration(window),
                            percent(target),
                        );
                        out.push(Transition::Open {
                            component: component.clone(),
                            severity,
                            regions: regions.clone(),
                            text,
                        });
                        track.open = Some(Open { opened_at: since, severity, regions, worst_share: worst });
                    }
                    None => {}
                    Some(open) => {
                        open.worst_share = open.worst_share.min(worst);
                        let mut changes = Vec::new();
                        let joined: Vec<&String> = regions.difference(&open.regions).collect();
                        let left: Vec<&String> = open.regions.difference(&regions).collect();
                        if !joined.is_empty() {
                            changes.push(format!("now also in {}", list_of(&joined)));
                        }
                        if !left.is_empty() {
                            changes.push(format!("recovered in {}", list_of(&left)));
                        }
                        if severity != open.severity {
                            changes.push(match severity {
                                Severity::Major => "worse: most events fail".to_string(),
                                Severity::Degraded => "better: most events succeed again".to_string(),
                            });
                        }
                        if !changes.is_empty() {
                            out.push(Transition::Update {
                                component: component.clone(),
                                severity,
                                regions: regions.clone(),
                                text: format!(
                                    "{}: {}; {} of events good (objective {}).",
                                    component.describe(),
                                    changes.join(", "),
                                    percent(worst),
                                    percent(target)
                                ),
                            });
                            open.severity = severity;
                            open.regions = regions;
                        }
                    }
                }
            }
            // A component with nothing to judge and nothing open is forgotten
            // (destinations come and go).
            if !(track.buckets.is_empty() && track.open.is_none() && track.breached_since.is_none()) {
                self.tracks.insert(component, track);
            }
        }
        out
    }
}

fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p == p.trunc() { format!("{p:.0} %") } else { format!("{p:.1} %") }
}

fn duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} seconds"),
        s if s < 7200 => format!("{} minutes", s / 60),
        s => format!("{:.1} hours", s as f64 / 3600.0),
    }
}

fn list(regions: &BTreeSet<String>) -> String {
    list_of(&regions.iter().collect::<Vec<_>>())
}

fn list_of(regions: &[&String]) -> String {
    match regions {
        [] => "no region".into(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn watch() -> Watch {
        Watch::new(
            [(Component::MailboxAccess, Objective { target: 0.995, window_secs: 600 })],
            Calm { min_events: 5, min_failures: 1, hold_secs: 60, quiet_secs: 600, major_below: 0.5 },
        )
    }

    /// Feed `good`/`bad` logins each 10 s from `from` to `to` in `region`,
    /// evaluating each time; every transition with its time.
    fn run(w: &mut Watch, from: i64, to: i64, region: &str, good: u64, bad: u64) -> Vec<(i64, Transition)> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            w.observe(t, &Component::MailboxAccess, region, good, bad);
            out.extend(w.evaluate(t).into_iter().map(|x| (t, x)));
            t += 10;
        }
        out
    }

    #[test]
    fn a_breach_opens_an_incident_only_after_the_hold() {
        let mut w = watch();
        assert!(run(&mut w, T0, T0 + 600, "eu", 10, 0).is_empty());
        let got = run(&mut w, T0 + 600, T0 + 700, "eu", 0, 10);
        assert_eq!(got.len(), 1, "{got:?}");
        let (at, Transition::Open { severity, regions, text, .. }) = &got[0] else { panic!("{got:?}") };
        // Breached from the first failing minute's evaluation, open 60 s on.
        assert_eq!(*at, T0 + 660);
        assert_eq!(*severity, Severity::Degraded);
        assert_eq!(regions.iter().collect::<Vec<_>>(), ["eu"]);
        assert!(text.starts_with("Mailbox access is degraded in eu:"), "{text}");
        assert!(text.contains("objective 99.5 %"), "{text}");
    }

    #[test]
    fn too_few_events_judge_nothing() {
        let mut w = watch();
        // One failure in a quiet window, held for an hour.
        w.observe(T0, &Component::MailboxAccess, "eu", 0, 1);
        for t in (T0..T0 + 3600).step_by(10) {
            assert!(w.evaluate(t).is_empty());
        }
    }

    #[test]
    fn a_dip_shorter_than_the_hold_never_opens() {
        let mut w = watch();
        // Half the logins fail for 60 s, then they work: judged from the
        // third bucket (enough events), the window's share is below the
        // objective from T0+20 to T0+60, 40 s.
        let mut seen = run(&mut w, T0, T0 + 60, "eu", 1, 1);
        seen.extend(run(&mut w, T0 + 60, T0 + 3600, "eu", 1000, 0));
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[test]
    fn it_resolves_after_the_quiet_and_a_relapse_restarts_the_quiet() {
        let mut w = watch();
        run(&mut w, T0, T0 + 600, "eu", 10, 0);
        let opened = run(&mut w, T0 + 600, T0 + 900, "eu", 0, 10);
        assert!(matches!(opened.as_slice(), [(_, Transition::Open { .. }), ..]), "{opened:?}");
        // Recovered (the good events soon outweigh the failures in the
        // window) for 400 s, less than the quiet; a relapse of 100 s; then
        // good for good.
        let mut got = run(&mut w, T0 + 900, T0 + 1300, "eu", 10_000, 0);
        got.extend(run(&mut w, T0 + 1300, T0 + 1400, "eu", 0, 10_000));
        got.extend(run(&mut w, T0 + 1400, T0 + 4000, "eu", 10_000, 0));
        assert!(!got.iter().any(|(_, t)| matches!(t, Transition::Open { .. })), "one incident: {got:?}");
        let resolved: Vec<_> = got.iter().filter(|(_, t)| matches!(t, Transition::Resolve { .. })).collect();
        assert_eq!(resolved.len(), 1, "{got:?}");
        let (at, Transition::Resolve { text, .. }) = resolved[0] else { unreachable!() };
        // The relapse's failures weigh in the window until T0+2000; the
        // quiet runs 600 s from then.
        assert!(*at >= T0 + 2000 + 600 - 10, "resolved at +{}", at - T0);
        assert!(text.starts_with("Mailbox access is back to normal."), "{text}");
    }

    #[test]
    fn spreading_to_another_region_and_getting_worse_are_updates() {
        let mut w = watch();
        run(&mut w, T0, T0 + 600, "eu", 10, 0);
        run(&mut w, T0, T0 + 600, "jp", 10, 0);
        let mut got = Vec::new();
        for t in (T0 + 600..T0 + 1200).step_by(10) {
            // eu fails a little from the start; jp fails hard after 200 s.
            w.observe(t, &Component::MailboxAccess, "eu", 9, 1);
            let jp_bad = if t >= T0 + 800 { 10 } else { 0 };
            w.observe(t, &Component::MailboxAccess, "jp", 10 - jp_bad, jp_bad);
            got.extend(w.evaluate(t));
        }
        let texts: Vec<String> = got
            .iter()
            .map(|t| match t {
                Transition::Open { text, .. } | Transition::Update { text, .. } | Transition::Resolve { text, .. } => {
                    text.clone()
                }
            })
            .collect();
        assert!(matches!(got.first(), Some(Transition::Open { .. })), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("now also in jp")), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("worse: most events fail")), "{texts:?}");
        let Some(Transition::Update { regions, severity, .. }) = got.last() else { panic!("{texts:?}") };
        assert_eq!((regions.len(), *severity), (2, Severity::Major));
    }

    #[test]
    fn a_region_that_recovers_is_said_while_the_other_still_fails() {
        let mut w = watch();
        let mut got = Vec::new();
        for t in (T0..T0 + 1800).step_by(10) {
            let eu_bad = if t < T0 + 300 { 5 } else { 0 };
            w.observe(t, &Component::MailboxAccess, "eu", 10 - eu_bad, eu_bad);
            w.observe(t, &Component::MailboxAccess, "us", 5, 5);
            got.extend(w.evaluate(t));
        }
        assert!(
            got.iter().any(|t| matches!(t, Transition::Update { text, .. } if text.contains("recovered in eu"))),
            "{got:?}"
        );
        assert!(!got.iter().any(|t| matches!(t, Transition::Resolve { .. })), "{got:?}");
    }

    #[test]
    fn destinations_share_the_any_objective_and_are_forgotten_when_idle() {
        let mut w = Watch::new(
            [(Component::Destination(ANY.into()), Objective { target: 0.9, window_secs: 60 })],
            Calm { min_events: 5, min_failures: 3, hold_secs: 20, quiet_secs: 60, major_below: 0.5 },
        );
        let down = Component::Destination("down.example".into());
        let fine = Component::Destination("fine.example".into());
        let mut got = Vec::new();
        for t in (T0..T0 + 60).step_by(10) {
            w.observe(t, &down, "eu", 0, 2);
            w.observe(t, &fine, "eu", 5, 0);
            got.extend(w.evaluate(t));
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(matches!(&got[0], Transition::Open { component, .. } if *component == down));
        assert!(w.is_open(&down) && !w.is_open(&fine));
        // Two failures among many are below min_failures: no breach.
        let mut w2 = Watch::new(
            [(Component::Destination(ANY.into()), Objective { target: 0.99, window_secs: 600 })],
            Calm::default(),
        );
        w2.observe(T0, &fine, "eu", 10, 2);
        for t in (T0..=T0 + 610).step_by(10) {
            assert!(w2.evaluate(t).is_empty());
        }
        // Nothing observed for a window, nothing open: forgotten.
        assert!(w2.tracks.is_empty(), "{:?}", w2.tracks.keys().collect::<Vec<_>>());
        // Keys round-trip.
        for c in [
            Component::Acceptance,
            Component::Delivery("bulk".into()),
            down,
            Component::MailboxAccess,
            Component::Storage,
        ] {
            assert_eq!(Component::from_key(&c.key()), Some(c));
        }
        assert_eq!(Component::from_key("delivery:"), None);
    }
}
