//! Nodes sharing storage: who is there, and leases that belong to the node
//! that took them.

use facteur_store::{ClaimFilter, NewMessage, NewRecipient, NodeState, Route, StoredEnvelope, prelude::*};

use crate::fixture::Fixture;

pub async fn nodes_join_beat_and_leave<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    assert_eq!((a.node(), b.node()), ("a", "b"));
    a.join("eu-west", "facteur 1", 100).await.unwrap();
    b.join("eu-north", "facteur 1", 101).await.unwrap();
    b.heartbeat(130).await.unwrap();
    a.heartbeat(140).await.unwrap();
    let nodes = a.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| (n.name.as_str(), n.region.as_str())).collect::<Vec<_>>(),
        [("a", "eu-west"), ("b", "eu-north")]
    );
    assert_eq!((nodes[1].started_at, nodes[1].heartbeat_at, nodes[1].stopped_at), (101, 130, None));
    // Seen at 150 with "down after 15 s": a is up, b missed its beats.
    assert_eq!(nodes[0].state(150, 15), NodeState::Up);
    assert_eq!(nodes[1].state(150, 15), NodeState::Down);
    a.leave(160).await.unwrap();
    let nodes = b.nodes().await.unwrap();
    assert_eq!((nodes[0].stopped_at, nodes[0].state(1000, 15)), (Some(160), NodeState::Stopped));
    // Starting again clears the stop.
    a.join("eu-west", "facteur 2", 200).await.unwrap();
    let nodes = b.nodes().await.unwrap();
    assert_eq!((nodes[0].started_at, nodes[0].stopped_at, nodes[0].version.as_str()), (200, None, "facteur 2"));
}

pub async fn a_node_releases_only_its_own_leases<S: Store>(f: Fixture<S>) {
    let (a, b) = (f.store, (f.another)());
    for n in 0..4u64 {
        a.store_message(NewMessage {
            id: MessageId::new(1_700_000_000_000 + n),
            received_at: 1000,
            class: Class::Interpersonal,
            envelope: StoredEnvelope::default(),
            recipients: vec![NewRecipient {
                address: format!("r{n}@far.test"),
                notify: None,
                orcpt: None,
                route: Route::Remote,
            }],
            data: b"Subject: x\r\n\r\n".to_vec(),
        })
        .await
        .unwrap();
    }
    let mine = |jobs: Vec<facteur_store::DeliveryJob>| jobs.iter().map(|j| j.recipients.len()).sum::<usize>();
    assert_eq!(mine(a.claim_due(1000, 2000, 2, ClaimFilter::default()).await.unwrap()), 2);
    assert_eq!(mine(b.claim_due(1000, 2000, 10, ClaimFilter::default()).await.unwrap()), 2);
    // b restarts: its two leases go, a's two stay a's.
    assert_eq!(b.release_leases().await.unwrap(), 2);
    assert_eq!(mine(b.claim_due(1500, 2500, 10, ClaimFilter::default()).await.unwrap()), 2);
    // Renewed, a's leases last; b's renewal touches b's only.
    assert_eq!(a.renew_leases(2500).await.unwrap(), 2);
    assert_eq!(b.renew_leases(3000).await.unwrap(), 2);
    assert_eq!(mine(b.claim_due(2400, 2500, 10, ClaimFilter::default()).await.unwrap()), 0);
    // a died (no more renewals): once its leases run out, b takes its recipients over.
    assert_eq!(mine(b.claim_due(2500, 3500, 10, ClaimFilter::default()).await.unwrap()), 2);
}
