//! Operators and incidents, shared by the CLI (`facteur incident ...`) and
//! the HTTP admin API (`POST /admin/incident`): add an update, rename,
//! resolve. The watch opens and resolves incidents by itself; these are
//! for what only people know ("the disk was replaced"). Every change is
//! kept in the incident's timeline with who made it.

use anyhow::Context;
use facteur_store::{Incident, IncidentChange, Incidents};
use facteur_watch::keeper::Announcement;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Action {
    Update {
        id: i64,
        text: String,
    },
    Rename {
        id: i64,
        title: String,
    },
    Resolve {
        id: i64,
        #[serde(default)]
        text: String,
    },
}

/// Apply `action`; the incident's id, and what to alert.
pub async fn apply<S: Incidents>(
    store: &S,
    action: Action,
    now: i64,
    actor: &str,
) -> anyhow::Result<(i64, Option<Announcement>)> {
    let author = actor.to_string();
    let change = match action.clone() {
        Action::Update { id, text } => IncidentChange::Note { id, text, at: now, author },
        Action::Rename { id, title } => IncidentChange::Rename { id, title, at: now, author },
        Action::Resolve { id, text } => IncidentChange::Resolve { id, text, at: now, author },
    };
    let id = store.incident_change(change).await?.context("nothing changed")?;
    let incident = store.incident(id).await?.context("the incident vanished")?;
    let last = incident.updates.last().cloned();
    let announcement = last.map(|u| Announcement {
        kind: if u.kind == "resolved" { "resolved" } else { "update" },
        component: incident.component.clone(),
        title: incident.title.clone(),
        severity: None,
        regions: incident.regions(),
        text: u.text,
        at: now,
        node: actor.to_string(),
        incident: Some(id),
    });
    Ok((id, announcement))
}

/// One line per incident, newest first (`incident list`).
pub fn lines(list: &[Incident]) -> String {
    let mut out = format!("{:>5}  {:<8}  {:<20}  {:<28}  {}\n", "ID", "STATE", "OPENED", "COMPONENT", "TITLE");
    for i in list {
        let state = if i.resolved_at.is_some() { "resolved".to_string() } else { i.severity.clone() };
        out.push_str(&format!(
            "{:>5}  {:<8}  {:<20}  {:<28}  {}\n",
            i.id,
            state,
            utc(i.opened_at),
            i.component,
            i.title
        ));
    }
    out
}

/// An incident with its timeline (`incident show`).
pub fn details(i: &Incident) -> String {
    let mut out = format!("Incident {}: {}\n", i.id, i.title);
    out.push_str(&format!("Component: {}\nSeverity:  {}\n", i.component, i.severity));
    out.push_str(&format!("Opened:    {}\n", utc(i.opened_at)));
    out.push_str(&format!("Resolved:  {}\n", i.resolved_at.map(utc).unwrap_or_else(|| "no (open)".into())));
    for (node, regions) in &i.affected {
        out.push_str(&format!("Affected:  {} on {node}\n", regions.join(", ")));
    }
    out.push_str("Timeline:\n");
    for u in &i.updates {
        out.push_str(&format!("  {}  {:<8}  {}  ({})\n", utc(u.at), u.kind, u.text, u.author));
    }
    out
}

use facteur_watch::status::human_time as utc;
