//! Incidents as kept in storage: what each backend stores, and the one
//! place that decides what a change does to an incident.
//!
//! Purpose: every node's watch reports what it sees (a component breached
//! in its regions, or healthy again); operators add updates, rename and
//! resolve. Nodes share storage, so two nodes seeing the same trouble
//! speak in one incident: a report joins the component's open incident,
//! and the incident resolves itself when the last node that reported it
//! clears it (or an operator resolves it).
//!
//! Invariants: at most one open incident per component (a unique index on
//! both backends); updates are only appended; a resolved incident is never
//! reopened (trouble after it is a new incident). [`plan`] holds the rules;
//! a backend reads the incident concerned, asks [`plan`], and writes what
//! it says in the same transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// One incident with its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    /// The component's key (`acceptance`, `delivery:CLASS`,
    /// `mailbox-access`, `storage`, `destination:DOMAIN`).
    pub component: String,
    pub title: String,
    /// `degraded` or `major`.
    pub severity: String,
    /// Per reporting node, the regions where it sees the trouble.
    pub affected: BTreeMap<String, Vec<String>>,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    /// Oldest first.
    pub updates: Vec<IncidentUpdate>,
}

impl Incident {
    /// Every region affected, once each, in order.
    pub fn regions(&self) -> Vec<String> {
        let mut r: Vec<String> = self.affected.values().flatten().cloned().collect();
        r.sort();
        r.dedup();
        r
    }
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentUpdate {
    pub at: i64,
    /// `opened`, `update`, `renamed` or `resolved`.
    pub kind: String,
    pub text: String,
    /// `facteur on NODE` for the watch, the operator's name otherwise.
    pub author: String,
}

/// What happens to incidents.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentChange {
    /// `node`'s watch sees `component` failing its objective in `regions`.
    Report {
        component: String,
        node: String,
        regions: Vec<String>,
        severity: String,
        title: String,
        text: String,
        at: i64,
    },
    /// `node`'s watch sees `component` back to normal.
    Clear {
        component: String,
        node: String,
        text: String,
        at: i64,
    },
    /// An operator's update.
    Note {
        id: i64,
        text: String,
        at: i64,
        author: String,
    },
    Rename {
        id: i64,
        title: String,
        at: i64,
        author: String,
    },
    Resolve {
        id: i64,
        text: String,
        at: i64,
        author: String,
    },
}

impl IncidentChange {
    /// The open incident of this component, or the incident by id.
    pub fn target(&self) -> Target<'_> {
        match self {
            IncidentChange::Report { component, .. } | IncidentChange::Clear { component, .. } => {
                Target::OpenFor(component)
            }
            IncidentChange::Note { id, .. }
            | IncidentChange::Rename { id, .. }
            | IncidentChange::Resolve { id, .. } => Target::Id(*id),
        }
    }
}

/// Which incident a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    OpenFor(&'a str),
    Id(i64),
}

/// An incident's own row (its updates apart); `id` 0 for a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: i64,
    pub component: String,
    pub title: String,
    pub severity: String,
    /// `affected` as JSON.
    pub affected: String,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
}

/// What to write: the row (inserted when its id is 0) and the update to
/// append to its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub row: IncidentRow,
    pub update: IncidentUpdate,
}

fn affected_of(row: &IncidentRow) -> BTreeMap<String, Vec<String>> {
    serde_json::from_str(&row.affected).unwrap_or_default()
}

fn affected_json(a: &BTreeMap<String, Vec<String>>) -> String {
    serde_json::to_string(a).unwrap_or_else(|_| "{}".into())
}

/// What `change` does to `found` (the incident its [`Target`] names, if
/// any); `None`: nothing to write.
pub fn plan(found: Option<IncidentRow>, change: IncidentChange) -> Result<Option<Plan>> {
    let update = |at, kind: &str, text: String, author: String| IncidentUpdate { at, kind: kind.into(), text, author };
    let by_watch = |node: &str| format!("facteur on {node}");
    Ok(Some(match (found, change) {
        (None, IncidentChange::Report { component, node, regions, severity, title, text, at }) => Plan {
            row: IncidentRow {
                id: 0,
                component,
                title,
                severity,
                affected: affected_json(&BTreeMap::from([(node.clone(), regions)])),
                opened_at: at,
                resolved_at: None,
            },
            update: update(at, "opened", text, by_watch(&node)),
        },
        (Some(mut row), IncidentChange::Report { node, regions, severity, text, at, .. }) => {
            let mut affected = affected_of(&row);
            affected.insert(node.clone(), regions);
            row.affected = affected_json(&affected);
            row.severity = severity;
            Plan { row, update: update(at, "update", text, by_watch(&node)) }
        }
        (None, IncidentChange::Clear { .. }) => return Ok(None),
        (Some(mut row), IncidentChange::Clear { node, text, at, .. }) => {
            let mut affected = affected_of(&row);
            if affected.remove(&node).is_none() {
                return Ok(None);
            }
            row.affected = affected_json(&affected);
            let kind = if affected.is_empty() {
                row.resolved_at = Some(at);
                "resolved"
            } else {
                "update"
            };
            Plan { row, update: update(at, kind, text, by_watch(&node)) }
        }
        (
            None,
            IncidentChange::Note { id, .. } | IncidentChange::Rename { id, .. } | IncidentChange::Resolve { id, .. },
        ) => {
            return Err(StoreError::NotFound(format!("incident {id}")));
        }
        (Some(row), IncidentChange::Note { text, at, author, .. }) => {
            if text.trim().is_empty() {
                return Err(StoreError::Invalid("an update needs some text".into()));
            }
            Plan { row, update: update(at, "update", text, author) }
        }
        (Some(mut row), IncidentChange::Rename { title, at, author, .. }) => {
            if title.trim().is_empty() {
                return Err(StoreError::Invalid("an incident's title cannot be empty".into()));
            }
            let text = format!("Renamed from \u{201c}{}\u{201d} to \u{201c}{title}\u{201d}.", row.title);
            row.title = title;
            Plan { row, update: update(at, "renamed", text, author) }
        }
        (Some(mut row), IncidentChange::Resolve { id, text, at, author }) => {
            if row.resolved_at.is_some() {
                return Err(StoreError::Invalid(format!("incident {id} is already resolved")));
            }
            row.resolved_at = Some(at);
            let text = if text.trim().is_empty() { "Resolved by an operator.".to_string() } else { text };
            Plan { row, update: update(at, "resolved", text, author) }
        }
    }))
}

/// Build an [`Incident`] from its row and updates.
pub fn assemble(row: IncidentRow, updates: Vec<IncidentUpdate>) -> Incident {
    let affected = affected_of(&row);
    Incident {
        id: row.id,
        component: row.component,
        title: row.title,
        severity: row.severity,
        affected,
        opened_at: row.opened_at,
        resolved_at: row.resolved_at,
        updates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, regions: &[&str], at: i64) -> IncidentChange {
        IncidentChange::Report {
            component: "storage".into(),
            node: node.into(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            severity: "degraded".into(),
            title: "Storage is degraded".into(),
            text: format!("seen by {node}"),
            at,
        }
    }

    fn clear(node: &str, at: i64) -> IncidentChange {
        IncidentChange::Clear { component: "storage".into(), node: node.into(), text: "fine".into(), at }
    }

    #[test]
    fn two_nodes_share_an_incident_that_resolves_when_both_clear() {
        let first = plan(None, report("a", &["eu"], 10)).unwrap().unwrap();
        assert_eq!((first.row.id, first.update.kind.as_str()), (0, "opened"));
        let mut row = first.row;
        row.id = 7;
        let joined = plan(Some(row), report("b", &["us"], 20)).unwrap().unwrap();
        assert_eq!(joined.update.kind, "update");
        let inc = assemble(joined.row.clone(), vec![]);
        assert_eq!(inc.regions(), ["eu", "us"]);
        let one_left = plan(Some(joined.row), clear("a", 30)).unwrap().unwrap();
        assert_eq!((one_left.update.kind.as_str(), one_left.row.resolved_at), ("update", None));
        // A node that never reported it has nothing to clear.
        assert_eq!(plan(Some(one_left.row.clone()), clear("c", 35)).unwrap(), None);
        let done = plan(Some(one_left.row), clear("b", 40)).unwrap().unwrap();
        assert_eq!((done.update.kind.as_str(), done.row.resolved_at), ("resolved", Some(40)));
        assert_eq!(plan(None, clear("b", 50)).unwrap(), None);
    }

    #[test]
    fn operators_rename_note_and_resolve_once() {
        let mut row = plan(None, report("a", &["eu"], 10)).unwrap().unwrap().row;
        row.id = 3;
        let op = |c| plan(Some(row.clone()), c);
        let renamed = op(IncidentChange::Rename { id: 3, title: "Disk full".into(), at: 11, author: "ops".into() })
            .unwrap()
            .unwrap();
        assert_eq!(renamed.row.title, "Disk full");
        assert!(renamed.update.text.contains("Storage is degraded"), "{}", renamed.update.text);
        let err = op(IncidentChange::Note { id: 3, text: " ".into(), at: 12, author: "ops".into() }).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        let resolved =
            op(IncidentChange::Resolve { id: 3, text: String::new(), at: 13, author: "ops".into() }).unwrap().unwrap();
        assert_eq!(resolved.row.resolved_at, Some(13));
        let again = plan(
            Some(resolved.row),
            IncidentChange::Resolve { id: 3, text: String::new(), at: 14, author: "ops".into() },
        );
        assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
        let missing = plan(None, IncidentChange::Note { id: 9, text: "x".into(), at: 1, author: "ops".into() });
        assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    }
}
