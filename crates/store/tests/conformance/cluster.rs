//! Nodes sharing storage: who is there, and leases that belong to the node
//! that took them.

use facteur_store::{
    ClaimFilter, NewMessage, NewRecipient, NewState, NodeState, RecipientUpdate, Route, StoredEnvelope, prelude::*,
};

use crate::fixture::Fixture;

/// Message `n`, received at 1000, for one remote recipient.
fn relayed(n: u64, address: &str) -> NewMessage {
    NewMessage {
        hold: false,
        id: MessageId::new(1_700_000_000_000 + n),
        received_at: 1000,
        class: Class::Interpersonal,
        envelope: StoredEnvelope::default(),
        recipients: vec![NewRecipient { address: address.into(), notify: None, orcpt: None, route: Route::Remote }],
        data: b"Subject: x\r\n\r\n".to_vec(),
    }
}

pub async fn nodes_join_beat_and_leave<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    assert_eq!((a.node(), b.node()), ("a", "b"));
    a.join("eu-west", "facteur 1", true, 100).await.unwrap();
    b.join("eu-north", "facteur 1", false, 101).await.unwrap();
    b.heartbeat(130).await.unwrap();
    a.heartbeat(140).await.unwrap();
    let nodes = a.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| (n.name.as_str(), n.region.as_str())).collect::<Vec<_>>(),
        [("a", "eu-west"), ("b", "eu-north")]
    );
    assert_eq!((nodes[1].started_at, nodes[1].heartbeat_at, nodes[1].stopped_at), (101, 130, None));
    assert_eq!((nodes[0].delivers, nodes[1].delivers), (true, false), "only a delivers");
    // Seen at 150 with "down after 15 s": a is up, b missed its beats.
    assert_eq!(nodes[0].state(150, 15), NodeState::Up);
    assert_eq!(nodes[1].state(150, 15), NodeState::Down);
    a.leave(160).await.unwrap();
    let nodes = b.nodes().await.unwrap();
    assert_eq!((nodes[0].stopped_at, nodes[0].state(1000, 15)), (Some(160), NodeState::Stopped));
    // Starting again clears the stop.
    a.join("eu-west", "facteur 2", true, 200).await.unwrap();
    let nodes = b.nodes().await.unwrap();
    assert_eq!((nodes[0].started_at, nodes[0].stopped_at, nodes[0].version.as_str()), (200, None, "facteur 2"));
}

pub async fn a_node_releases_only_its_own_leases<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    for n in 0..4u64 {
        a.store_message(relayed(n, &format!("r{n}@far.test"))).await.unwrap();
    }
    let leased = |jobs: Vec<facteur_store::DeliveryJob>| {
        jobs.into_iter().flat_map(|j| j.recipients.into_iter().map(move |r| (j.message_id, r.idx))).collect::<Vec<_>>()
    };
    let of_a = leased(a.claim_due(1000, 2000, 2, ClaimFilter::default()).await.unwrap());
    let of_b = leased(b.claim_due(1000, 2000, 10, ClaimFilter::default()).await.unwrap());
    assert_eq!((of_a.len(), of_b.len()), (2, 2));
    // b restarts: its two leases go, a's two stay a's.
    assert_eq!(b.release_leases().await.unwrap(), 2);
    let of_b = leased(b.claim_due(1500, 2500, 10, ClaimFilter::default()).await.unwrap());
    assert_eq!(of_b.len(), 2);
    // a renews what it still holds: one of its two (the other's outcome
    // could not be recorded, say); renewing another's lease does nothing.
    assert_eq!(a.renew_leases(vec![of_a[0], of_b[0]], 3000).await.unwrap(), [of_a[0]]);
    let mut renewed = b.renew_leases(of_b.clone(), 5000).await.unwrap();
    renewed.sort();
    assert_eq!(renewed, {
        let mut all = of_b.clone();
        all.sort();
        all
    });
    // The one a let go of runs out and b takes it; the renewed one stays a's.
    let taken = leased(b.claim_due(2000, 3500, 10, ClaimFilter::default()).await.unwrap());
    assert_eq!(taken, [of_a[1]]);
    // a, late, asks for it again before delivering it: no longer its own.
    assert!(a.renew_leases(vec![of_a[1]], 4000).await.unwrap().is_empty(), "b's now");
    // a, presumed dead, records its outcome for it late: the recipient is
    // done, and b's lease is not a's to end (b still holds it).
    let late = RecipientUpdate {
        message_id: of_a[1].0,
        idx: of_a[1].1,
        state: NewState::Deferred { next_attempt: 2100 },
        attempt: None,
        last_error: None,
        delay_notified: false,
    };
    a.complete(vec![late], vec![]).await.unwrap();
    assert!(b.claim_due(2200, 3600, 10, ClaimFilter::default()).await.unwrap().is_empty(), "still b's lease");
    // Renewal asks who holds a lease, not when it ends: one that ran out
    // and that no other node took is still a's (a node whose renewals
    // stalled confirms so before it delivers).
    assert_eq!(a.renew_leases(vec![of_a[0]], 3000).await.unwrap(), [of_a[0]], "nobody took it");
    // a died (no more renewals): once its leases run out, b takes the rest over.
    assert_eq!(leased(b.claim_due(3000, 4000, 10, ClaimFilter::default()).await.unwrap()), [of_a[0]]);
}

pub async fn leases_of_a_stopped_node_are_reported_and_released<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    a.join("r", "v", true, 100).await.unwrap();
    b.join("r", "v", true, 100).await.unwrap();
    a.store_message(relayed(0, "x@far.test")).await.unwrap();
    // The clock of the check is the fixture's (T0); leases run past it.
    let t0 = crate::fixture::T0;
    assert_eq!(a.claim_due(t0, t0 + 900, 10, ClaimFilter::default()).await.unwrap().len(), 1);
    assert!(a.check(false).await.unwrap().healthy(), "a running node's lease is fine");
    a.leave(t0).await.unwrap();
    let report = b.check(false).await.unwrap();
    assert!(report.findings.iter().any(|x| x.invariant == "lease-owner-running"), "{report:?}");
    b.check(true).await.unwrap();
    assert!(b.check(false).await.unwrap().healthy());
    assert_eq!(b.claim_due(t0, t0 + 900, 10, ClaimFilter::default()).await.unwrap().len(), 1, "released: b takes it");
}
