//! The watch at work on a node: every few seconds, the events counted
//! since the last look ([`facteur_types::signal`]) go into the [`Watch`],
//! what it decides becomes incidents in storage (shared by every node), and
//! the [`Board`] the status page reads is brought up to date.
//!
//! Failure behaviour: storage may be what is failing. A change that cannot
//! be written waits, in order, and is tried again at every look; meanwhile
//! the board shows it from memory, so the status page of a node whose
//! storage fails still says so. Alerts go out from here too, storage or
//! not (see [`crate::alert`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use facteur_store::{Cluster, Incident, IncidentChange, IncidentUpdate, Incidents, NodeState};
use facteur_types::SharedClock;
use facteur_types::signal::{self, Signal};
use serde::Deserialize;

use crate::incident::{ANY, Calm, Component, Objective, Severity, Transition, Watch};

/// `[watch]`: the objectives and how calm the watch is.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Judge the objectives and open incidents on this node (the status
    /// page is served either way, with what storage holds).
    pub enabled: bool,
    /// Seconds between two looks.
    pub evaluate_secs: u64,
    /// A window judges nothing with fewer events than this...
    pub min_events: u64,
    /// ...or fewer failed ones than this.
    pub min_failures: u64,
    /// A breach opens an incident once it has held this long...
    pub hold_secs: i64,
    /// ...and the incident resolves after this long without one.
    pub quiet_secs: i64,
    /// Below this share of good events, the incident is a major outage.
    pub major_below: f64,
    /// Days of resolved incidents the status page shows.
    pub history_days: u64,
    pub objectives: Objectives,
}

impl WatchConfig {
    pub fn calm(&self) -> Calm {
        Calm {
            min_events: self.min_events,
            min_failures: self.min_failures,
            hold_secs: self.hold_secs,
            quiet_secs: self.quiet_secs,
            major_below: self.major_below,
        }
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        let calm = Calm::default();
        WatchConfig {
            enabled: true,
            evaluate_secs: 10,
            min_events: calm.min_events,
            min_failures: calm.min_failures,
            hold_secs: calm.hold_secs,
            quiet_secs: calm.quiet_secs,
            major_below: calm.major_below,
            history_days: 90,
            objectives: Objectives::default(),
        }
    }
}

/// `[watch.objectives]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Objectives {
    /// Messages offered accepted, not refused for our fault.
    pub acceptance: Objective,
    /// Mail of every class delivered or handed on within `latency_secs`...
    pub delivery: Objective,
    pub latency_secs: u64,
    /// ...and per class, where one differs (e.g. `bulk`).
    pub class: BTreeMap<String, Objective>,
    /// Attempts to each destination that reached it.
    pub destination: Objective,
    /// Mailbox logins not failing for our fault.
    pub mailbox_access: Objective,
    /// Storage commits that held.
    pub storage: Objective,
}

impl Default for Objectives {
    fn default() -> Self {
        let o = |target, window_secs| Objective { target, window_secs };
        Objectives {
            acceptance: o(0.99, 600),
            delivery: o(0.99, 600),
            latency_secs: 300,
            class: BTreeMap::new(),
            destination: o(0.9, 600),
            mailbox_access: o(0.995, 600),
            storage: o(0.999, 600),
        }
    }
}

impl Objectives {
    fn each(&self) -> Vec<(Component, Objective)> {
        let mut all = vec![
            (Component::Acceptance, self.acceptance.clone()),
            (Component::Delivery(ANY.into()), self.delivery.clone()),
            (Component::Destination(ANY.into()), self.destination.clone()),
            (Component::MailboxAccess, self.mailbox_access.clone()),
            (Component::Storage, self.storage.clone()),
        ];
        all.extend(self.class.iter().map(|(c, o)| (Component::Delivery(c.clone()), o.clone())));
        all
    }

    /// Every objective is a share in (0, 1] over a window of a second or more.
    pub fn check(&self) -> Result<(), String> {
        for (c, o) in self.each() {
            if !(o.target > 0.0 && o.target <= 1.0) || o.window_secs == 0 {
                return Err(format!(
                    "watch.objectives for {}: target must be in (0, 1] and window_secs at least 1 (got {} and {})",
                    c.key(),
                    o.target,
                    o.window_secs
                ));
            }
        }
        Ok(())
    }
}

/// What the status page shows, as of the last look.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Open incidents and those resolved within the history, newest first
    /// (a change not yet stored included).
    pub incidents: Vec<Incident>,
    /// Regions with a node up.
    pub regions: BTreeSet<String>,
    /// When this was taken (unix seconds).
    pub at: i64,
    /// Storage could not be read at the last look: incidents are as of an
    /// earlier one.
    pub stale: bool,
}

/// The status page's view, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct Board {
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Board {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn set(&self, s: Snapshot) {
        if let Ok(mut w) = self.snapshot.write() {
            *w = Arc::new(s);
        }
    }
}

/// An incident change as alerts and the board see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// `opened`, `update` or `resolved`.
    pub kind: &'static str,
    pub component: String,
    pub title: String,
    pub severity: Option<Severity>,
    pub regions: Vec<String>,
    pub text: String,
    pub at: i64,
    pub node: String,
    /// The stored incident's id, when known.
    pub incident: Option<i64>,
}

/// Where announcements go (alerts).
pub type Announce = tokio::sync::mpsc::Sender<Announcement>;

/// Everything the keeper works with.
pub struct Keeper<S> {
    pub store: S,
    pub clock: SharedClock,
    pub region: String,
    pub config: WatchConfig,
    pub board: Arc<Board>,
    /// Alerts, when configured.
    pub announce: Option<Announce>,
    /// Nodes without a heartbeat for this long are not counted up.
    pub down_after_secs: i64,
}

/// The title of an incident about `component`.
fn title(component: &Component, severity: Severity) -> String {
    let bad = severity == Severity::Major;
    match component {
        Component::Acceptance => if bad { "Mail is not being received" } else { "Receiving mail is degraded" }.into(),
        Component::Delivery(c) => format!("Delivery of {c} mail is delayed"),
        Component::Destination(d) => format!("Mail to {d} is delayed"),
        Component::MailboxAccess => {
            if bad { "Mailboxes cannot be reached" } else { "Mailbox access is degraded" }.into()
        }
        Component::Storage => if bad { "Storage is failing" } else { "Storage is degraded" }.into(),
    }
}

/// Why a destination fails, in words, from its last failed reply.
fn destination_trouble(reply: &str) -> &'static str {
    let r = reply.to_ascii_lowercase();
    if r.contains("refused") {
        "the destination is refusing connections"
    } else if r.contains("timed out") || r.contains("timeout") {
        "the destination is not answering"
    } else if r.contains("resolve") || r.contains("look up") {
        "the destination's DNS cannot be resolved"
    } else if r.contains("tls") || r.contains("certificate") {
        "a secure connection to the destination cannot be made"
    } else {
        "the destination is deferring mail"
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Degraded => "degraded",
        Severity::Major => "major",
    }
}

impl<S: Incidents + Cluster> Keeper<S> {
    /// Look every `evaluate_secs` until `shutdown`.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        signal::set_delivery_latency(self.config.objectives.latency_secs);
        let mut watch = Watch::new(self.config.objectives.each(), self.config.calm());
        let mut state = State::default();
        let every = Duration::from_secs(self.config.evaluate_secs.max(1));
        loop {
            self.look(&mut watch, &mut state).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// One look: judge (when enabled), then refresh the board.
    pub async fn look(&self, watch: &mut Watch, state: &mut State) {
        let now = self.clock.now();
        if self.config.enabled {
            self.judge(watch, state, now).await;
        }
        self.refresh(state, now).await;
    }

    /// Count, judge, store, announce.
    async fn judge(&self, watch: &mut Watch, state: &mut State, now: i64) {
        let taken = signal::take();
        let region = self.region.as_str();
        for (s, c) in [
            (Signal::Acceptance, Component::Acceptance),
            (Signal::MailboxAccess, Component::MailboxAccess),
            (Signal::Storage, Component::Storage),
        ] {
            let (good, bad) = taken.of(s);
            watch.observe(now, &c, region, good, bad);
        }
        for ((class, dest), t) in &taken.deliveries {
            if !class.is_empty() {
                let c = Component::Delivery(class.clone());
                watch.observe(now, &c, region, t.done_in_time, t.done_late + t.deferred_late);
            }
            if dest != signal::OTHER {
                let c = Component::Destination(dest.clone());
                watch.observe(now, &c, region, t.done_in_time + t.done_late, t.unreachable + t.deferred_late);
                if let Some(f) = &t.last_failure {
                    state.last_failure.insert(dest.clone(), f.clone());
                }
            }
        }
        for t in watch.evaluate(now) {
            if let Transition::Resolve { component: Component::Destination(d), .. } = &t {
                state.last_failure.remove(d);
            }
            let a = self.announcement(t, now, state);
            if let Some(tx) = &self.announce
                && tx.try_send(a.clone()).is_err()
            {
                tracing::warn!(component = %a.component, "alert queue full; this alert is dropped");
            }
            tracing::warn!(component = %a.component, kind = a.kind, text = %a.text, "incident");
            if state.pending.len() >= MAX_PENDING {
                tracing::error!("more than {MAX_PENDING} incident changes wait for storage; the oldest is dropped");
                state.pending.pop_front();
            }
            state.pending.push_back(a);
        }
        // Reasons of destinations that are fine again are forgotten.
        if state.last_failure.len() > MAX_REASONS {
            state.last_failure.retain(|d, _| watch.is_open(&Component::Destination(d.clone())));
        }
        self.store_pending(state).await;
    }

    fn announcement(&self, t: Transition, now: i64, state: &State) -> Announcement {
        let node = self.store.node().to_string();
        let (kind, component, severity, regions, mut text) = match t {
            Transition::Open { component, severity, regions, text } => {
                ("opened", component, Some(severity), regions, text)
            }
            Transition::Update { component, severity, regions, text } => {
                ("update", component, Some(severity), regions, text)
            }
            Transition::Resolve { component, text } => ("resolved", component, None, BTreeSet::new(), text),
        };
        if let (Component::Destination(d), Some(_)) = (&component, severity)
            && let Some(reply) = state.last_failure.get(d)
        {
            text = format!("{} {}.", text, crate::status::capital(destination_trouble(reply)));
        }
        let title = title(&component, severity.unwrap_or(Severity::Degraded));
        Announcement {
            kind,
            component: component.key(),
            title,
            severity,
            regions: regions.into_iter().collect(),
            text,
            at: now,
            node,
            incident: None,
        }
    }

    /// Write the changes waiting, oldest first; stop at the first failure.
    async fn store_pending(&self, state: &mut State) {
        while let Some(a) = state.pending.front() {
            let change = match a.kind {
                "resolved" => IncidentChange::Clear {
                    component: a.component.clone(),
                    node: a.node.clone(),
                    text: a.text.clone(),
                    at: a.at,
                },
                _ => IncidentChange::Report {
                    component: a.component.clone(),
                    node: a.node.clone(),
                    regions: a.regions.clone(),
                    severity: severity_name(a.severity.unwrap_or(Severity::Degraded)).into(),
                    title: a.title.clone(),
                    text: a.text.clone(),
                    at: a.at,
                },
            };
            match self.store.incident_change(change).await {
                Ok(_) => {
                    state.pending.pop_front();
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = state.pending.len(), "cannot store an incident change yet; kept and tried again");
                    return;
                }
            }
        }
    }

    async fn refresh(&self, state: &mut State, now: i64) {
        let since = now - self.config.history_days as i64 * 86_400;
        let stale = match self.store.incidents(since).await {
            Ok(list) => {
                state.stored = list;
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read incidents; the board keeps the last ones read");
                true
            }
        };
        let mut regions: BTreeSet<String> = BTreeSet::from([self.region.clone()]);
        match self.store.nodes().await {
            Ok(nodes) => {
                regions.extend(
                    nodes.into_iter().filter(|n| n.state(now, self.down_after_secs) == NodeState::Up).map(|n| n.region),
                );
                state.regions = regions.clone();
            }
            Err(_) => regions.extend(state.regions.iter().cloned()),
        }
        let mut incidents = state.stored.clone();
        overlay(&mut incidents, &state.pending);
        self.board.set(Snapshot { incidents, regions, at: now, stale });
    }
}

/// The changes not yet stored, shown as stored ones would be: on the
/// component's open incident, or as a new one (id 0).
fn overlay(incidents: &mut Vec<Incident>, pending: &VecDeque<Announcement>) {
    for a in pending {
        let update = IncidentUpdate {
            at: a.at,
            kind: a.kind.into(),
            text: a.text.clone(),
            author: format!("facteur on {}", a.node),
        };
        match incidents.iter_mut().find(|i| i.component == a.component && i.resolved_at.is_none()) {
            Some(i) => {
                if a.kind == "resolved" {
                    i.affected.remove(&a.node);
                    if i.affected.is_empty() {
                        i.resolved_at = Some(a.at);
                    }
                } else {
                    i.affected.insert(a.node.clone(), a.regions.clone());
                    i.severity = severity_name(a.severity.unwrap_or(Severity::Degraded)).into();
                }
                i.updates.push(update);
            }
            None if a.kind != "resolved" => incidents.insert(
                0,
                Incident {
                    id: 0,
                    component: a.component.clone(),
                    title: a.title.clone(),
                    severity: severity_name(a.severity.unwrap_or(Severity::Degraded)).into(),
                    affected: BTreeMap::from([(a.node.clone(), a.regions.clone())]),
                    opened_at: a.at,
                    resolved_at: None,
                    updates: vec![update],
                },
            ),
            None => {}
        }
    }
}

/// Most incident changes kept while storage cannot take them.
const MAX_PENDING: usize = 1000;
/// Most destinations whose last failed reply is remembered.
const MAX_REASONS: usize = 1000;

/// What the keeper carries from one look to the next.
#[derive(Debug, Default)]
pub struct State {
    pending: VecDeque<Announcement>,
    stored: Vec<Incident>,
    regions: BTreeSet<String>,
    last_failure: BTreeMap<String, String>,
}
