//! The spool and the operator's side of the queue: leases, outcomes with
//! their notices in the same transaction, parking, and the operator's
//! controls with an audit trail.

use facteur_store::{
    AttemptRecord, ClaimFilter, NewMessage, NewRecipient, NewState, Park, RecipientUpdate, Route, StoredEnvelope,
    Sweep, prelude::*,
};

use crate::fixture::Fixture;

pub fn remote_msg(at: i64, rcpts: &[&str]) -> NewMessage {
    NewMessage {
        hold: false,
        // Not `MessageId::new`, which keeps ids increasing across the whole
        // process: these tests need ids of their reception time.
        id: MessageId::first_at(at as u64 * 1000),
        received_at: at,
        class: Class::Bulk,
        envelope: StoredEnvelope { mail_from: "sender@example.test".into(), ..Default::default() },
        recipients: rcpts
            .iter()
            .map(|a| NewRecipient { address: a.to_string(), notify: None, orcpt: None, route: Route::Remote })
            .collect(),
        data: b"Subject: out\r\n\r\nx\r\n".to_vec(),
    }
}

async fn setup<S: Store>(s: S) -> S {
    s.add_domain("example.test").await.unwrap();
    s.add_user("sender@example.test", "h").await.unwrap();
    s
}

fn update(id: MessageId, idx: u32, state: NewState, at: i64, outcome: Outcome) -> RecipientUpdate {
    RecipientUpdate {
        message_id: id,
        idx,
        state,
        attempt: Some(AttemptRecord {
            recipient: String::new(),
            at,
            host: Some("mx.remote.test".into()),
            outcome,
            reply: format!("reply for {outcome}"),
        }),
        last_error: Some(format!("reply for {outcome}")),
        delay_notified: false,
    }
}

/// A message stored held (an account over its sending limit) is never
/// claimed, and is queued when an operator releases it.
pub async fn a_held_message_waits_unclaimed_until_released<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let held = NewMessage { hold: true, ..remote_msg(1000, &["a@one.test"]) };
    let id = held.id;
    s.store_message(held).await.unwrap();
    let shown = s.queue_show(id).await.unwrap().unwrap();
    assert_eq!(shown.recipients[0].state, RecipientStatus::Held);
    assert!(s.claim_due(1_000_000, 1_000_100, 100, ClaimFilter::default()).await.unwrap().is_empty());
    assert_eq!(s.queue_release(id, 2000, "operator").await.unwrap(), 1);
    let jobs = s.claim_due(2000, 2100, 100, ClaimFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
}

pub async fn claim_groups_by_domain_and_leases<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let m = remote_msg(1000, &["a@one.test", "b@two.test", "c@one.test"]);
    let id = m.id;
    s.store_message(m).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(1000));
    // Not due yet.
    assert!(s.claim_due(999, 2000, 100, ClaimFilter::default()).await.unwrap().is_empty());
    let jobs = s.claim_due(1000, 1900, 100, ClaimFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let one = jobs.iter().find(|j| j.domain == "one.test").unwrap();
    assert_eq!(one.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["a@one.test", "c@one.test"]);
    assert_eq!(one.message_id, id);
    assert_eq!(one.class, Class::Bulk, "the class travels with the job");
    // Leased: not claimed again, and not due before the lease ends.
    assert!(s.claim_due(1500, 2500, 100, ClaimFilter::default()).await.unwrap().is_empty());
    assert_eq!(s.next_due().await.unwrap(), Some(1900));
    // A crash: leases released at restart, everything claimable again.
    assert_eq!(s.release_leases().await.unwrap(), 3);
    assert_eq!(s.claim_due(1500, 2500, 100, ClaimFilter::default()).await.unwrap().len(), 2);
}

pub async fn outcomes_and_notices_commit_together<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let m = remote_msg(1000, &["a@one.test", "b@one.test", "c@one.test"]);
    let id = m.id;
    s.store_message(m).await.unwrap();
    s.claim_due(1000, 2000, 100, ClaimFilter::default()).await.unwrap();
    // A DSN to the (local) sender, stored in the same transaction.
    let mut dsn = remote_msg(1100, &[]);
    dsn.envelope.mail_from = String::new();
    dsn.recipients = vec![NewRecipient {
        address: "sender@example.test".into(),
        notify: None,
        orcpt: None,
        route: Route::inbox("sender@example.test"),
    }];
    s.complete(
        vec![
            update(id, 0, NewState::Delivered, 1100, Outcome::Delivered),
            update(id, 1, NewState::Deferred { next_attempt: 1400 }, 1100, Outcome::Deferred),
            update(id, 2, NewState::Bounced, 1100, Outcome::Bounced),
        ],
        vec![dsn],
    )
    .await
    .unwrap();
    let q = s.queue_show(id).await.unwrap().unwrap();
    let states: Vec<_> = q.recipients.iter().map(|r| (r.state, r.attempts, r.next_attempt)).collect();
    assert_eq!(
        states,
        [
            (RecipientStatus::Delivered, 1, Some(1000)),
            (RecipientStatus::Queued, 1, Some(1400)),
            (RecipientStatus::Bounced, 1, Some(1000))
        ]
    );
    assert_eq!(q.attempts.len(), 3);
    assert_eq!(q.attempts[1].recipient, "b@one.test");
    assert_eq!(q.recipients[1].last_error.as_deref(), Some("reply for deferred"));
    // The DSN landed in the sender's INBOX.
    let inbox = s.mailbox("sender@example.test", "INBOX").await.unwrap().unwrap();
    assert_eq!(inbox.messages, 1);
    assert_eq!(s.next_due().await.unwrap(), Some(1400));
    // Only the deferred one is still in the queue list.
    assert_eq!(s.queue_list().await.unwrap().len(), 1);
}

pub async fn operator_controls_are_audited<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let m = remote_msg(1000, &["a@one.test"]);
    let id = m.id;
    s.store_message(m).await.unwrap();
    s.claim_due(1000, 1100, 10, ClaimFilter::default()).await.unwrap();
    s.complete(vec![update(id, 0, NewState::Deferred { next_attempt: 5000 }, 1000, Outcome::Deferred)], vec![])
        .await
        .unwrap();
    assert_eq!(s.queue_hold(id, 1200, "root").await.unwrap(), 1);
    assert!(
        s.claim_due(9000, 9100, 10, ClaimFilter::default()).await.unwrap().is_empty(),
        "held mail is not delivered"
    );
    assert_eq!(s.queue_release(id, 1300, "root").await.unwrap(), 1);
    assert_eq!(s.next_due().await.unwrap(), Some(1300));
    s.complete(vec![update(id, 0, NewState::Deferred { next_attempt: 5000 }, 1300, Outcome::Deferred)], vec![])
        .await
        .unwrap();
    assert_eq!(s.queue_retry(Some(id), 1400, "root").await.unwrap(), 1);
    assert_eq!(s.queue_retry(None, 1400, "root").await.unwrap(), 1);
    assert_eq!(s.next_due().await.unwrap(), Some(1400));
    assert_eq!(s.queue_delete(id, 1500, "root", vec![]).await.unwrap(), 1);
    assert!(s.queue_delete(id, 1500, "root", vec![]).await.is_err(), "nothing left to delete");
    assert!(s.queue_hold("01M80F6CFEFN4V19DBJ1R9WBYW".parse().unwrap(), 1, "root").await.is_err());
    let q = s.queue_show(id).await.unwrap().unwrap();
    assert_eq!(q.recipients[0].state, RecipientStatus::Deleted);
    let log = s.audit_log(Some(id)).await.unwrap();
    assert_eq!(log.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["hold", "release", "retry", "delete"]);
    assert!(log.iter().all(|a| a.actor == "root"));
    assert_eq!(s.audit_log(None).await.unwrap().len(), 5, "the retry of every message is logged too");
    assert!(s.queue_list().await.unwrap().is_empty());
}

pub async fn delivered_is_the_truth_even_after_an_operator_delete<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let m = remote_msg(1000, &["a@one.test", "b@one.test"]);
    let id = m.id;
    s.store_message(m).await.unwrap();
    s.claim_due(1000, 2000, 10, ClaimFilter::default()).await.unwrap();
    s.queue_delete(id, 1001, "root", vec![]).await.unwrap();
    s.complete(
        vec![
            update(id, 0, NewState::Delivered, 1002, Outcome::Delivered),
            update(id, 1, NewState::Deferred { next_attempt: 3000 }, 1002, Outcome::Deferred),
        ],
        vec![],
    )
    .await
    .unwrap();
    let q = s.queue_show(id).await.unwrap().unwrap();
    assert_eq!(q.recipients[0].state, RecipientStatus::Delivered);
    assert_eq!(q.recipients[1].state, RecipientStatus::Deleted);
}

pub async fn claims_filter_by_class_and_skip_paused_pairs<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    let mut a = remote_msg(1000, &["a@one.test", "b@two.test"]);
    a.class = Class::Interpersonal;
    s.store_message(a).await.unwrap();
    s.store_message(remote_msg(1001, &["c@one.test"])).await.unwrap(); // bulk
    let only = |class| ClaimFilter { class: Some(class), skip: vec![] };
    let jobs = s.claim_due(2000, 2001, 10, only(Class::Bulk)).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.recipients[0].address.as_str()).collect::<Vec<_>>(), ["c@one.test"]);
    s.release_leases().await.unwrap();
    // Pause one.test entirely, and bulk everywhere: only b@two.test is left.
    let skip = ClaimFilter { class: None, skip: vec![(Some("one.test".into()), None), (None, Some(Class::Bulk))] };
    let jobs = s.claim_due(2000, 2001, 10, skip).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].recipients[0].address, "b@two.test");
    // A pause of bulk at one.test only leaves interpersonal at one.test claimable.
    s.release_leases().await.unwrap();
    let pair = ClaimFilter { class: None, skip: vec![(Some("one.test".into()), Some(Class::Bulk))] };
    let mut got: Vec<String> = s
        .claim_due(2000, 2001, 10, pair)
        .await
        .unwrap()
        .iter()
        .flat_map(|j| j.recipients.iter().map(|r| r.address.clone()))
        .collect();
    got.sort();
    assert_eq!(got, ["a@one.test", "b@two.test"]);
}

pub async fn parking_a_destination_postpones_only_what_may_wait<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    // Old enough to reach its delay warning (received 1000, warning after 400 s) while parked.
    let old = remote_msg(1000, &["a@dead.test"]);
    // Young: parked, except the recipient at another destination and the leased one.
    let young = remote_msg(1500, &["b@dead.test", "c@alive.test"]);
    let leased = remote_msg(1501, &["d@dead.test"]);
    // Expires (lifetime 1000 s) before the park ends.
    let dying = remote_msg(700, &["e@dead.test"]);
    let ids: Vec<MessageId> = [&old, &young, &leased, &dying].iter().map(|m| m.id).collect();
    for m in [old, young, leased, dying] {
        s.store_message(m).await.unwrap();
    }
    // Lease only `leased` (claim everything at 1501, then release the others).
    let jobs = s.claim_due(1600, 1900, 100, ClaimFilter::default()).await.unwrap();
    let free: Vec<RecipientUpdate> = jobs
        .iter()
        .filter(|j| j.message_id != ids[2])
        .flat_map(|j| j.recipients.iter().map(|r| (j.message_id, r.idx)))
        .map(|(id, idx)| RecipientUpdate {
            message_id: id,
            idx,
            state: NewState::Deferred { next_attempt: 1600 },
            attempt: None,
            last_error: None,
            delay_notified: false,
        })
        .collect();
    s.complete(free, Vec::new()).await.unwrap();
    let until = 1700;
    let park = Park {
        domain: "dead.test".into(),
        now: 1600,
        until,
        error: "4.4.1 connection refused".into(),
        warn_received_before: until - 400,
        expire_received_before: until - 1000,
    };
    assert_eq!(s.park_destination(park.clone()).await.unwrap(), 1, "only b@dead.test may wait");
    let due: Vec<String> = s
        .claim_due(1650, 1660, 100, ClaimFilter::default())
        .await
        .unwrap()
        .iter()
        .flat_map(|j| j.recipients.iter().map(|r| r.address.clone()))
        .collect();
    for a in ["a@dead.test", "c@alive.test", "e@dead.test"] {
        assert!(due.contains(&a.to_string()), "{a} stays due: {due:?}");
    }
    assert!(!due.contains(&"b@dead.test".to_string()), "b@dead.test is parked: {due:?}");
    assert!(!due.contains(&"d@dead.test".to_string()), "d@dead.test is leased: {due:?}");
    let shown = s.queue_show(ids[1]).await.unwrap().unwrap();
    let b = shown.recipients.iter().find(|r| r.address == "b@dead.test").unwrap();
    assert_eq!(b.next_attempt, Some(until));
    assert_eq!(b.last_error.as_deref(), Some("4.4.1 connection refused"));
    // Parking again later moves nothing that is already parked as late.
    assert_eq!(s.park_destination(Park { now: 1660, ..park }).await.unwrap(), 0);
    // The destination comes back: its mail is due at once.
    assert!(s.queue_retry_where(Some("dead.test"), None, 1661, "engine").await.unwrap() >= 1);
    let due = s.claim_due(1661, 1700, 100, ClaimFilter::default()).await.unwrap();
    assert!(due.iter().any(|j| j.recipients.iter().any(|r| r.address == "b@dead.test")));
}

pub async fn one_body_many_mailboxes_and_the_queue<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    s.add_user("alice@example.test", "h").await.unwrap();
    let mut m = remote_msg(1000, &["x@remote.test"]);
    m.class = Class::Interpersonal;
    m.envelope.ret = Some(facteur_store::Ret::Hdrs);
    m.recipients[0].notify = Some(Notify { success: true, ..Notify::default() });
    let local = |u: &str| NewRecipient {
        address: u.to_string(),
        notify: None,
        orcpt: Some(format!("rfc822;{u}")),
        route: Route::inbox(u.to_string()),
    };
    m.recipients.insert(0, local("alice@example.test"));
    m.recipients.insert(1, local("sender@example.test"));
    // The same user twice gets one copy.
    m.recipients.push(local("alice@example.test"));
    let id = m.id;
    let placed = s.store_message(m).await.unwrap();
    assert_eq!(placed.len(), 2);
    assert!(placed.iter().all(|p| p.uid == 1));
    let q = s.queue_list().await.unwrap();
    assert_eq!(q.len(), 1);
    let q = &q[0];
    assert_eq!((q.id, q.class, q.envelope.ret), (id, Class::Interpersonal, Some(facteur_store::Ret::Hdrs)));
    assert_eq!(
        q.recipients.iter().map(|r| r.state).collect::<Vec<_>>(),
        [RecipientStatus::Delivered, RecipientStatus::Delivered, RecipientStatus::Queued, RecipientStatus::Delivered]
    );
    assert_eq!(q.recipients[2].notify.map(|n| n.to_string()).as_deref(), Some("SUCCESS"));
    assert_eq!(q.recipients[0].orcpt.as_deref(), Some("rfc822;alice@example.test"));
    let body = s.fetch_message(placed[0].mailbox_id, 1).await.unwrap().unwrap();
    assert_eq!(body, b"Subject: out\r\n\r\nx\r\n");
    assert_eq!(s.message_body(id).await.unwrap().unwrap(), body);
    let stats = s.queue_stats(2000, true).await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].class, stats[0].domain.as_str(), stats[0].queued, stats[0].ready),
        (Class::Interpersonal, "remote.test", 1, 1)
    );
    assert_eq!(stats[0].ready_since, Some(1000));
}

/// (destination, class, queued, ready, held, ready since) of each row.
type Depth = (String, Class, u64, u64, u64, Option<i64>);

async fn depth<S: Store>(s: &S, now: i64, by_domain: bool) -> Vec<Depth> {
    let stats = s.queue_stats(now, by_domain).await.unwrap();
    stats.into_iter().map(|x| (x.domain, x.class, x.queued, x.ready, x.held, x.ready_since)).collect()
}

fn row(domain: &str, class: Class, queued: u64, ready: u64, held: u64, since: Option<i64>) -> Depth {
    (domain.to_string(), class, queued, ready, held, since)
}

pub async fn queue_depth_follows_every_move<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    // Due at 1000 (minute 16) and at 1030 (minute 17, 1020..1079).
    let a = remote_msg(1000, &["a@one.test", "b@one.test", "c@two.test"]);
    let mut b = remote_msg(1030, &["d@one.test"]);
    b.class = Class::Interpersonal;
    let (ida, idb) = (a.id, b.id);
    s.store_message(a).await.unwrap();
    s.store_message(b).await.unwrap();
    use Class::{Bulk, Interpersonal};
    // 1025: a minute gone by counts whole; 1030 is not due yet.
    assert_eq!(
        depth(&s, 1025, true).await,
        [
            row("one.test", Bulk, 2, 2, 0, Some(1000)),
            row("one.test", Interpersonal, 1, 0, 0, None),
            row("two.test", Bulk, 1, 1, 0, Some(1000))
        ]
    );
    // 1030, 1079: within the current minute, exact to the second.
    assert_eq!(
        depth(&s, 1029, false).await,
        [row("", Bulk, 3, 3, 0, Some(1000)), row("", Interpersonal, 1, 0, 0, None)]
    );
    assert_eq!(
        depth(&s, 1030, false).await,
        [row("", Bulk, 3, 3, 0, Some(1000)), row("", Interpersonal, 1, 1, 0, Some(1030))]
    );
    // Outcomes: deferred to 5000, delivered, bounced.
    s.claim_due(1100, 1200, 10, ClaimFilter::default()).await.unwrap();
    s.complete(
        vec![
            update(ida, 0, NewState::Deferred { next_attempt: 5000 }, 1100, Outcome::Deferred),
            update(ida, 1, NewState::Delivered, 1100, Outcome::Delivered),
            update(ida, 2, NewState::Bounced, 1100, Outcome::Bounced),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        depth(&s, 1100, true).await,
        [row("one.test", Bulk, 1, 0, 0, None), row("one.test", Interpersonal, 1, 1, 0, Some(1030))]
    );
    assert_eq!(
        depth(&s, 5000, false).await,
        [row("", Bulk, 1, 1, 0, Some(5000)), row("", Interpersonal, 1, 1, 0, Some(1030))]
    );
    // Held, released, deleted by the operator.
    s.queue_hold(idb, 1200, "root").await.unwrap();
    assert_eq!(depth(&s, 1200, false).await, [row("", Bulk, 1, 0, 0, None), row("", Interpersonal, 0, 0, 1, None)]);
    s.queue_release(idb, 1300, "root").await.unwrap();
    assert_eq!(
        depth(&s, 1300, false).await,
        [row("", Bulk, 1, 0, 0, None), row("", Interpersonal, 1, 1, 0, Some(1300))]
    );
    s.queue_delete(ida, 1400, "root", vec![]).await.unwrap();
    assert_eq!(depth(&s, 1400, true).await, [row("one.test", Interpersonal, 1, 1, 0, Some(1300))]);
    // A destination retried at once, then parked.
    s.queue_retry_where(Some("one.test"), None, 1500, "engine").await.unwrap();
    assert_eq!(depth(&s, 1500, false).await, [row("", Interpersonal, 1, 1, 0, Some(1500))]);
    let report = s.check(false).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Counters lost behind the store's back: found, and rebuilt by a repair.
    f.faults.forget_queue_counts();
    assert!(depth(&s, 1500, false).await.is_empty());
    let report = s.check(false).await.unwrap();
    assert_eq!(report.findings.iter().map(|f| f.invariant.as_str()).collect::<Vec<_>>(), ["queue-counts-match"]);
    s.check(true).await.unwrap();
    assert_eq!(depth(&s, 1500, false).await, [row("", Interpersonal, 1, 1, 0, Some(1500))]);
    assert!(s.check(false).await.unwrap().findings.is_empty());
}

fn local(user: &str) -> NewRecipient {
    NewRecipient { address: user.to_string(), notify: None, orcpt: None, route: Route::inbox(user.to_string()) }
}

/// Expunge UID `uid` of `owner`'s INBOX.
async fn expunge_one<S: Store>(s: &S, owner: &str, uid: u32) {
    let inbox = s.mailbox(owner, "INBOX").await.unwrap().unwrap();
    s.store_flags(inbox.id, vec![uid], facteur_store::FlagOp::Add, vec!["\\Deleted".into()], None).await.unwrap();
    assert_eq!(s.expunge(inbox.id, Some(vec![uid])).await.unwrap(), [uid]);
}

pub async fn bodies_go_when_unneeded_and_records_after_their_time<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    s.add_user("alice@example.test", "h").await.unwrap();
    s.add_user("bob@example.test", "h").await.unwrap();
    let healthy = || async { assert!(s.check(false).await.unwrap().findings.is_empty()) };
    // Relayed: the body stays while a recipient waits, and goes with the last outcome.
    let relayed = remote_msg(1000, &["a@one.test", "b@one.test"]);
    let r = relayed.id;
    s.store_message(relayed).await.unwrap();
    s.claim_due(1000, 2000, 10, ClaimFilter::default()).await.unwrap();
    s.complete(
        vec![
            update(r, 0, NewState::Delivered, 1000, Outcome::Delivered),
            update(r, 1, NewState::Deferred { next_attempt: 1100 }, 1000, Outcome::Deferred),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert!(s.message_body(r).await.unwrap().is_some(), "b@one.test still waits");
    s.claim_due(1100, 2000, 10, ClaimFilter::default()).await.unwrap();
    s.complete(vec![update(r, 1, NewState::Bounced, 1100, Outcome::Bounced)], vec![]).await.unwrap();
    assert!(s.message_body(r).await.unwrap().is_none(), "finished and in no mailbox: the body is gone");
    assert_eq!(s.queue_show(r).await.unwrap().unwrap().recipients.len(), 2, "the record stays for queue show");
    healthy().await;

    // Local and relayed: the mailbox keeps the body after the relay ends.
    let mut both = remote_msg(1001, &["c@two.test"]);
    both.recipients.push(local("alice@example.test"));
    let b = both.id;
    s.store_message(both).await.unwrap();
    s.claim_due(1200, 2000, 10, ClaimFilter::default()).await.unwrap();
    s.complete(vec![update(b, 0, NewState::Delivered, 1200, Outcome::Delivered)], vec![]).await.unwrap();
    assert!(s.message_body(b).await.unwrap().is_some(), "alice's INBOX holds it");
    expunge_one(&s, "alice@example.test", 1).await;
    assert!(s.message_body(b).await.unwrap().is_none(), "expunged from the last mailbox: the body is gone");
    healthy().await;

    // Two mailboxes: the body goes with the last one (a user removed).
    let mut shared = remote_msg(1002, &[]);
    shared.recipients = vec![local("alice@example.test"), local("bob@example.test")];
    let sh = shared.id;
    s.store_message(shared).await.unwrap();
    expunge_one(&s, "alice@example.test", 2).await;
    assert!(s.message_body(sh).await.unwrap().is_some(), "bob's INBOX holds it");
    s.remove_user("bob@example.test").await.unwrap();
    assert!(s.message_body(sh).await.unwrap().is_none());
    healthy().await;

    // Kept in a mailbox after its records go; a waiting recipient keeps everything.
    let mut kept = remote_msg(1003, &[]);
    kept.recipients = vec![local("alice@example.test")];
    s.store_message(kept).await.unwrap();
    let waiting = remote_msg(1004, &["w@slow.test"]);
    let w = waiting.id;
    s.store_message(waiting).await.unwrap();

    // Housekeeping: records finished before 1150 go (local deliveries end
    // at reception); of those messages, the one alice's INBOX holds stays.
    let done = s.housekeeping(9000, 1150, Sweep::default()).await.unwrap();
    assert_eq!((done.records_removed, done.messages_removed, done.more), (3, 2, false));
    for id in [r, sh] {
        assert!(s.queue_show(id).await.unwrap().is_none());
    }
    assert!(s.queue_show(b).await.unwrap().is_some(), "finished at 1200, kept");
    // Later: the rest of what is finished goes; alice's message stays readable.
    let done = s.housekeeping(9000, 5000, Sweep::default()).await.unwrap();
    assert_eq!((done.records_removed, done.messages_removed), (1, 1));
    assert!(s.queue_show(b).await.unwrap().is_none());
    let inbox = s.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    let body = s.fetch_message(inbox.id, 3).await.unwrap().expect("alice's message stays");
    assert!(body.starts_with(b"Subject: out"));
    assert_eq!(s.queue_show(w).await.unwrap().unwrap().recipients[0].state, RecipientStatus::Queued);
    assert!(s.message_body(w).await.unwrap().is_some());
    assert_eq!(s.housekeeping(9000, 5000, Sweep::default()).await.unwrap(), facteur_store::Housekeeping::default());
    healthy().await;

    // Left behind (as two nodes expunging a message's last copies at once
    // can): the messages walk removes what nothing holds, and only that.
    let lists = s.create_mailbox("alice@example.test", "Lists", None).await.unwrap();
    s.append_message(lists.id, b"Subject: appended\r\n\r\nx".to_vec(), vec![], 7000).await.unwrap();
    f.faults.forget_mailbox_entries(lists.id);
    let done = s.housekeeping(9000, 5000, Sweep::default()).await.unwrap();
    assert_eq!((done.records_removed, done.messages_removed, done.more), (0, 1, false));
    assert!(s.fetch_message(inbox.id, 3).await.unwrap().is_some(), "alice's INBOX keeps its message");
    healthy().await;
}

pub async fn several_messages_commit_together_into_named_mailboxes<S: Store>(f: Fixture<S>) {
    let s = setup(f.store).await;
    s.add_user("alice@example.test", "h").await.unwrap();
    s.create_mailbox("alice@example.test", "Lists", None).await.unwrap();
    let to = |mailbox: Option<&str>| NewRecipient {
        address: "alice@example.test".into(),
        notify: None,
        orcpt: None,
        route: Route::Local { user: "alice@example.test".into(), mailbox: mailbox.map(str::to_string) },
    };
    let mut a = remote_msg(1000, &["x@remote.test"]);
    let mut b = remote_msg(1000, &[]);
    b.id = MessageId::first_at(1_000_001);
    b.recipients = vec![to(Some("lists"))];
    let mut c = remote_msg(1000, &[]);
    c.id = MessageId::first_at(1_000_002);
    c.recipients = vec![to(Some("No Such Box"))];
    let placed = s.store_messages(vec![a.clone(), b.clone(), c.clone()]).await.unwrap();
    assert_eq!(placed.len(), 2);
    let boxes = s.list_mailboxes("alice@example.test").await.unwrap();
    let count = |name: &str| boxes.iter().find(|m| m.name == name).unwrap().messages;
    assert_eq!((count("Lists"), count("INBOX")), (1, 1), "the named mailbox in any case, else the INBOX");
    assert_eq!(s.queue_list().await.unwrap().len(), 1);
    // All or nothing: a batch whose last message cannot be stored (its id
    // is taken) leaves none of the others.
    a.id = MessageId::first_at(2_000_000);
    b.id = MessageId::first_at(2_000_001);
    assert!(s.store_messages(vec![a, b, c]).await.is_err());
    assert_eq!(s.queue_list().await.unwrap().len(), 1);
    let boxes = s.list_mailboxes("alice@example.test").await.unwrap();
    assert_eq!(boxes.iter().map(|m| m.messages).sum::<u64>(), 2);
}
