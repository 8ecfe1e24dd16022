//! Incidents: one open per component however many nodes report it, a
//! timeline appended to, operators' changes, and what is listed.

use facteur_store::{IncidentChange, StoreError, prelude::*};

use crate::fixture::Fixture;

fn report(node: &str, component: &str, region: &str, at: i64) -> IncidentChange {
    IncidentChange::Report {
        component: component.into(),
        node: node.into(),
        regions: vec![region.into()],
        severity: "degraded".into(),
        title: format!("{component} is degraded"),
        text: format!("{node} sees it in {region}"),
        at,
    }
}

fn clear(node: &str, component: &str, at: i64) -> IncidentChange {
    IncidentChange::Clear { component: component.into(), node: node.into(), text: "back to normal".into(), at }
}

pub async fn nodes_share_one_incident_per_component<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    let id = a.incident_change(report("a", "mailbox-access", "eu", 100)).await.unwrap().unwrap();
    assert_eq!(b.incident_change(report("b", "mailbox-access", "us", 110)).await.unwrap(), Some(id));
    let other = b.incident_change(report("b", "storage", "us", 120)).await.unwrap().unwrap();
    assert_ne!(other, id);
    let open = a.incidents(0).await.unwrap();
    assert_eq!(open.iter().map(|i| i.id).collect::<Vec<_>>(), [other, id], "newest first");
    let access = &open[1];
    assert_eq!((access.regions(), access.resolved_at, access.updates.len()), (vec!["eu".into(), "us".into()], None, 2));
    assert_eq!(access.updates[0].kind, "opened");
    assert_eq!(access.updates[1].author, "facteur on b");
    // a clears: still open for b; b clears: resolved.
    a.incident_change(clear("a", "mailbox-access", 200)).await.unwrap();
    assert_eq!(a.incident(id).await.unwrap().unwrap().resolved_at, None);
    assert_eq!(
        a.incident_change(clear("a", "mailbox-access", 201)).await.unwrap(),
        None,
        "a has nothing left to clear"
    );
    b.incident_change(clear("b", "mailbox-access", 210)).await.unwrap();
    let done = a.incident(id).await.unwrap().unwrap();
    assert_eq!((done.resolved_at, done.updates.last().unwrap().kind.as_str()), (Some(210), "resolved"));
    // Resolved ones are listed from `since` on; open ones always.
    assert_eq!(a.incidents(211).await.unwrap().iter().map(|i| i.id).collect::<Vec<_>>(), [other]);
    assert_eq!(a.incidents(210).await.unwrap().len(), 2);
    // Trouble again is a new incident.
    let again = a.incident_change(report("a", "mailbox-access", "eu", 300)).await.unwrap().unwrap();
    assert!(again != id && again != other);
}

pub async fn operators_update_rename_and_resolve<S: Store>(f: Fixture<S>) {
    let s = f.store;
    let id = s.incident_change(report("a", "storage", "eu", 100)).await.unwrap().unwrap();
    let op = |c| s.incident_change(c);
    op(IncidentChange::Note { id, text: "Disk replaced, watching.".into(), at: 110, author: "ops".into() })
        .await
        .unwrap();
    op(IncidentChange::Rename { id, title: "Disk failure in eu".into(), at: 120, author: "ops".into() }).await.unwrap();
    op(IncidentChange::Resolve { id, text: "Fixed.".into(), at: 130, author: "ops".into() }).await.unwrap();
    let i = s.incident(id).await.unwrap().unwrap();
    assert_eq!((i.title.as_str(), i.resolved_at), ("Disk failure in eu", Some(130)));
    let kinds: Vec<&str> = i.updates.iter().map(|u| u.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "update", "renamed", "resolved"]);
    let again = op(IncidentChange::Resolve { id, text: String::new(), at: 140, author: "ops".into() }).await;
    assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
    let missing = op(IncidentChange::Note { id: id + 100, text: "x".into(), at: 1, author: "ops".into() }).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    assert_eq!(s.incident(id + 100).await.unwrap(), None);
    // The watch of a node whose incident an operator resolved opens a new
    // one if it still sees trouble.
    let next = s.incident_change(report("a", "storage", "eu", 150)).await.unwrap().unwrap();
    assert_ne!(next, id);
}

pub async fn two_nodes_opening_at_once_make_one_incident<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    for round in 0..10i64 {
        let component = format!("destination:d{round}.example");
        let (x, y) = tokio::join!(
            a.incident_change(report("a", &component, "eu", 100 + round)),
            b.incident_change(report("b", &component, "us", 100 + round)),
        );
        assert_eq!(x.unwrap(), y.unwrap(), "round {round}");
    }
    let all = a.incidents(0).await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|i| i.affected.len() == 2 && i.updates.len() == 2), "{all:?}");
}
