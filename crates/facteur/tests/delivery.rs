//! Outbound delivery over real TCP to the downstream simulator: per-recipient
//! outcomes, DSNs parsed field by field, days of retries on a manual clock,
//! and the failure matrix (defer, refuse, hang, drop mid-data).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, TestServer, test_config};
use facteur::config::{Config, RouteConfig};
use facteur::serve::StartOptions;
use facteur_queue::TlsPolicy;
use facteur_store::{ManualClock, prelude::*};
use facteur_testkit::{Behavior, Downstream, RefusingPort};
use mail_parser::{MessageParser, MimeHeaders};

const T0: i64 = 1_800_000_000;

/// Delivery on, every domain routed to `sim`, no jitter, short timeouts.
fn relay_config(sim: std::net::SocketAddr) -> Config {
    let mut c = test_config();
    c.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c.delivery.enabled = true;
    c.delivery.retry_jitter = 0.0;
    c.delivery.command_timeout_secs = 2;
    c.delivery.connect_timeout_secs = 2;
    c.route = vec![RouteConfig { domain: "*".into(), via: sim.to_string(), ..Default::default() }];
    c
}

/// A server on a manual clock whose engine the test drives.
async fn manual(sim: std::net::SocketAddr) -> (TestServer, ManualClock) {
    start_manual(relay_config(sim)).await
}

/// [`manual`] with a configuration of the test's own.
async fn start_manual(config: Config) -> (TestServer, ManualClock) {
    let clock = ManualClock::new(T0);
    let s = TestServer::start_opts(config, StartOptions { clock: Arc::new(clock.clone()), delivery_loop: false }).await;
    (s, clock)
}

/// Submit one message from alice to `to`, run one delivery round, and
/// return what the queue then says of it.
async fn one_attempt(s: &TestServer, to: &str) -> facteur_store::QueuedMessage {
    let id = submit(s, "alice@example.test", &[to], "", "").await;
    s.engine().run_once().await;
    s.store().queue_show(id).await.unwrap().unwrap()
}

async fn submit(s: &TestServer, from: &str, to: &[&str], extra_mail: &str, extra_rcpt: &str) -> MessageId {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok(&format!("MAIL FROM:<{from}>{extra_mail}"), 250).await;
    for t in to {
        c.ok(&format!("RCPT TO:<{t}>{extra_rcpt}"), 250).await;
    }
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: outbound\r\nFrom: <alice@example.test>\r\n\r\nHello out there.\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    c.ok("QUIT", 221).await;
    r.text().rsplit(' ').next().unwrap().parse().expect("a message id")
}

/// The delivery-status part of a DSN as (per-message fields, per-recipient field groups).
fn dsn_fields(raw: &str) -> (String, Vec<Vec<(String, String)>>) {
    let msg = MessageParser::default().parse(raw.as_bytes()).expect("DSN parses");
    let ct = msg.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let status = msg
        .parts
        .iter()
        .find(|p| p.content_type().is_some_and(|c| c.ctype() == "message" && c.subtype() == Some("delivery-status")))
        .expect("a message/delivery-status part");
    let text = String::from_utf8_lossy(status.contents()).replace("\r\n", "\n");
    let mut groups: Vec<Vec<(String, String)>> = text
        .split("\n\n")
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            g.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect()
        })
        .collect();
    let first = groups.remove(0);
    let reporting = first.iter().find(|(k, _)| k == "reporting-mta").map(|(_, v)| v.clone()).unwrap_or_default();
    (reporting, groups)
}

fn field<'a>(group: &'a [(String, String)], name: &str) -> &'a str {
    group.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[tokio::test]
async fn relays_with_dsn_parameters_and_records_the_attempt() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let s = TestServer::start_with(relay_config(sim.addr())).await;
    let id = submit(
        &s,
        "alice@example.test",
        &["bob@remote.test", "carol@remote.test"],
        " RET=HDRS ENVID=env-1",
        " NOTIFY=FAILURE ORCPT=rfc822;orig@remote.test",
    )
    .await;
    assert!(sim.wait_for(1, Duration::from_secs(10)).await, "nothing reached the simulator");
    let got = &sim.received()[0];
    assert_eq!(got.mail_from, "alice@example.test");
    assert_eq!(got.rcpts, ["bob@remote.test", "carol@remote.test"], "one transaction for both recipients");
    assert!(got.mail_params.contains("RET=HDRS") && got.mail_params.contains("ENVID=env-1"), "{}", got.mail_params);
    assert!(
        got.rcpt_params[0].contains("NOTIFY=FAILURE") && got.rcpt_params[0].contains("ORCPT=rfc822;orig@remote.test")
    );
    let data = String::from_utf8_lossy(&got.data);
    assert!(data.starts_with("Received: from client.test") && data.contains(&id.to_string()), "{data}");
    assert!(data.ends_with("Hello out there.\r\n"));
    // The record catches up with the remote 250 right after it.
    let mut m = s.store().queue_show(id).await.unwrap().unwrap();
    for _ in 0..100 {
        if m.recipients.iter().all(|r| r.state == RecipientStatus::Delivered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = s.store().queue_show(id).await.unwrap().unwrap();
    }
    assert!(m.recipients.iter().all(|r| r.state == RecipientStatus::Delivered), "{m:?}");
    assert_eq!(m.attempts.len(), 2);
    assert!(m.attempts[0].reply.starts_with("250"), "{:?}", m.attempts[0]);
    assert!(s.store().queue_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn per_recipient_results_and_a_failure_dsn() {
    let sim = Downstream::start(Behavior::accept_only(&["ok@remote.test"])).await;
    let (s, _clock) = manual(sim.addr()).await;
    let id = submit(&s, "alice@example.test", &["ok@remote.test", "gone@remote.test"], " ENVID=xyz", "").await;
    assert_eq!(s.engine().run_once().await, 1);
    assert_eq!(sim.received().len(), 1);
    assert_eq!(sim.received()[0].rcpts, ["ok@remote.test"]);
    let m = s.store().queue_show(id).await.unwrap().unwrap();
    assert_eq!(m.recipients.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["delivered", "bounced"]);
    // The bounce went to Alice, from <>.
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 1, "exactly one DSN");
    let dsn = &inbox[0];
    let parsed = MessageParser::default().parse(dsn.as_bytes()).unwrap();
    assert_eq!(parsed.subject(), Some("Undelivered Mail Returned to Sender"));
    assert!(dsn.contains("Auto-Submitted: auto-replied"));
    let (reporting, groups) = dsn_fields(dsn);
    assert_eq!(reporting.replace(' ', ""), "dns;mx.example.test");
    assert_eq!(groups.len(), 1, "only the failed recipient: {groups:?}");
    let g = &groups[0];
    assert_eq!(field(g, "final-recipient").replace(' ', ""), "rfc822;gone@remote.test");
    assert_eq!(field(g, "action"), "failed");
    assert_eq!(field(g, "status"), "5.1.1");
    assert!(field(g, "diagnostic-code").contains("550"), "{g:?}");
    assert!(dsn.contains("xyz"), "ENVID echoed");
    // The DSN itself has the null sender and will never be bounced.
    let q = s.store().queue_list().await.unwrap();
    assert!(q.is_empty(), "{q:?}");
}

#[tokio::test]
async fn five_days_down_delay_notice_then_bounce() {
    let sim = Downstream::start(Behavior::defer_all(451)).await;
    let (s, clock) = manual(sim.addr()).await;
    let id = submit(&s, "alice@example.test", &["far@remote.test"], "", "").await;
    let engine = s.engine();
    let mut times = Vec::new();
    for _ in 0..200 {
        engine.run_once().await;
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        times.push(facteur_store::Clock::now(&clock));
        if m.recipients[0].state != RecipientStatus::Queued {
            break;
        }
        let next = m.recipients[0].next_attempt.unwrap();
        assert!(next > facteur_store::Clock::now(&clock), "next attempt in the future");
        clock.set(next);
    }
    let m = s.store().queue_show(id).await.unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RecipientStatus::Bounced);
    // The retry schedule: 5 min, doubling, capped at 4 h, last try at 5 days.
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(&gaps[..7], [300, 600, 1200, 2400, 4800, 9600, 14400]);
    assert!(gaps.iter().all(|&g| g <= 14400));
    assert_eq!(*times.last().unwrap() - T0, 5 * 86_400, "bounced at the end of the queue lifetime");
    assert_eq!(m.attempts.len(), times.len());
    assert!(m.attempts.iter().all(|a| a.reply.starts_with("451")));
    // One delay notice (after 4 h), then one bounce.
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 2, "a delay notice and a bounce");
    let (_, delayed) = dsn_fields(&inbox[0]);
    assert_eq!(field(&delayed[0], "action"), "delayed");
    assert_eq!(field(&delayed[0], "status"), "4.3.0");
    assert!(!field(&delayed[0], "will-retry-until").is_empty());
    assert!(inbox[0].contains("Delayed Mail"));
    let delay_date = MessageParser::default().parse(inbox[0].as_bytes()).unwrap().date().unwrap().to_timestamp();
    assert!(delay_date - T0 >= 4 * 3600 && delay_date - T0 < 4 * 3600 + 14400, "delay notice at {}", delay_date - T0);
    let (_, failed) = dsn_fields(&inbox[1]);
    assert_eq!(field(&failed[0], "action"), "failed");
    assert_eq!(field(&failed[0], "status"), "4.4.7");
    assert!(field(&failed[0], "diagnostic-code").contains("451"));
    assert_eq!(sim.received().len(), 0);
}

#[tokio::test]
async fn hang_and_drop_mid_data_defer_then_deliver_once() {
    for behavior in [Behavior::hang(), Behavior::drop_mid_data(), Behavior::defer_all(421)] {
        let sim = Downstream::start(behavior).await;
        let (s, clock) = manual(sim.addr()).await;
        let id = submit(&s, "alice@example.test", &["x@remote.test"], "", "").await;
        s.engine().run_once().await;
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert_eq!((m.recipients[0].state.as_str(), m.recipients[0].attempts), ("queued", 1), "{m:?}");
        assert!(sim.received().is_empty());
        // The destination recovers.
        sim.set_behavior(Behavior::accept_all());
        clock.advance(300);
        s.engine().run_once().await;
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "{m:?}");
        assert_eq!(sim.received().len(), 1);
        assert!(s.inbox("alice@example.test").await.is_empty(), "no notice for a short delay");
    }
}

#[tokio::test]
async fn null_sender_never_gets_a_notice() {
    let sim = Downstream::start(Behavior::refuse_all()).await;
    let (s, _clock) = manual(sim.addr()).await;
    let id = submit(&s, "", &["x@remote.test"], "", "").await;
    s.engine().run_once().await;
    let m = s.store().queue_show(id).await.unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RecipientStatus::Bounced);
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let messages: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).unwrap();
    assert_eq!(messages, 1, "no DSN was created");
}

#[tokio::test]
async fn smtputf8_message_to_a_server_without_it_fails_permanently() {
    let sim = Downstream::start(Behavior { smtputf8: false, ..Behavior::accept_all() }).await;
    let (s, _clock) = manual(sim.addr()).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<alice@example.test> SMTPUTF8", 250).await;
    c.ok("RCPT TO:<jörg@remote.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw("Subject: grüße\r\n\r\nx\r\n.\r\n".as_bytes()).await;
    let id = c.reply().await.queued_id();
    s.engine().run_once().await;
    let m = s.store().queue_show(id).await.unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RecipientStatus::Bounced);
    assert!(m.recipients[0].last_error.as_deref().unwrap().contains("5.6.7"), "{m:?}");
    assert_eq!(sim.connections(), 1);
    assert!(sim.received().is_empty());
    let (_, g) = dsn_fields(&s.inbox("alice@example.test").await[0]);
    assert_eq!(field(&g[0], "status"), "5.6.7");
}

#[tokio::test]
async fn unreachable_destination_defers_everything_waiting_for_it() {
    // A port nobody listens on: connection refused.
    let dead = RefusingPort::new();
    let (s, _clock) = manual(dead.addr()).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit(&s, "alice@example.test", &["x@remote.test"], "", "").await);
    }
    assert_eq!(s.engine().run_once().await, 5);
    for id in ids {
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert_eq!((m.recipients[0].state.as_str(), m.recipients[0].attempts), ("queued", 1));
        assert!(m.recipients[0].last_error.as_deref().unwrap().contains("cannot connect"), "{m:?}");
    }
}

/// Five messages deferred while their destination was unreachable.
async fn five_deferred(port: std::net::SocketAddr) -> (TestServer, ManualClock) {
    let (s, clock) = manual(port).await;
    for _ in 0..5 {
        submit(&s, "alice@example.test", &["x@remote.test"], "", "").await;
    }
    assert_eq!(s.engine().run_once().await, 5);
    let list = s.store().queue_list().await.unwrap();
    assert!(list.iter().all(|m| m.recipients[0].next_attempt == Some(T0 + 300)), "deferred for the first interval");
    (s, clock)
}

/// An unreachable destination is probed every `unreachable_probe_secs` (30)
/// with one connection; when it answers, its whole backlog is due at once
/// instead of each message waiting out its own backoff.
#[tokio::test]
async fn a_destination_that_answers_a_probe_gets_its_backlog_at_once() {
    let refusing = RefusingPort::new();
    let port = refusing.addr();
    let (s, clock) = five_deferred(port).await;
    let d = s.engine().destinations().remove(0);
    assert_eq!((d.unreachable_failures, d.next_probe), (1, Some(T0 + 30)), "{d:?}");
    drop(refusing);
    let sim = Downstream::bind(port, Behavior::accept_all()).await.unwrap();
    clock.advance(29);
    assert_eq!(s.engine().run_once().await, 0);
    assert_eq!(sim.connections(), 0, "probed before its time");
    clock.advance(1);
    assert_eq!(s.engine().run_once().await, 5, "the probe did not make the backlog due");
    assert_eq!(sim.received().len(), 5);
    let d = s.engine().destinations().remove(0);
    assert_eq!((d.unreachable_failures, d.next_probe, d.parked_until), (0, None, None), "{d:?}");
    let audit = s.store().audit_log(None).await.unwrap();
    assert!(
        audit.iter().any(|a| a.actor == "facteur (destination reachable again)" && a.detail.contains("remote.test")),
        "{audit:?}"
    );
}

/// The same when new mail for it goes through before the probe is due.
#[tokio::test]
async fn a_destination_that_takes_new_mail_gets_its_backlog_at_once() {
    let refusing = RefusingPort::new();
    let port = refusing.addr();
    let (s, clock) = five_deferred(port).await;
    drop(refusing);
    let sim = Downstream::bind(port, Behavior::accept_all()).await.unwrap();
    clock.advance(10);
    submit(&s, "alice@example.test", &["y@remote.test"], "", "").await;
    assert_eq!(s.engine().run_once().await, 1);
    assert_eq!(sim.received().len(), 1);
    assert_eq!(s.engine().run_once().await, 5, "the backlog was not made due");
    assert_eq!(sim.received().len(), 6);
}

/// Mail for an unreachable destination that was not claimed yet is parked
/// with one statement until the destination's next try, not tried message
/// by message against the dead host.
#[tokio::test]
async fn an_unreachable_destination_parks_its_queue() {
    let dead = RefusingPort::new();
    let mut config = relay_config(dead.addr());
    config.delivery.max_concurrent = 4;
    let (s, _clock) = start_manual(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for n in 0..100 {
        assert_eq!(c.send_mail("a@people.test", &["x@far.test"], &format!("Subject: {n}\r\n\r\nb")).await.code, 250);
    }
    // The delivery loop claims at most 64 at a time (4 x max_concurrent, at least 64).
    let (stop, rx) = tokio::sync::watch::channel(false);
    let engine = s.engine();
    let task = tokio::spawn(engine.run(rx));
    let mut list = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        list = s.store().queue_list().await.unwrap();
        if list.iter().all(|m| m.recipients[0].next_attempt.is_some_and(|t| t > T0)) {
            break;
        }
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(list.len(), 100);
    let next: std::collections::BTreeSet<_> = list.iter().map(|m| m.recipients[0].next_attempt).collect();
    assert_eq!(next.into_iter().collect::<Vec<_>>(), [Some(T0 + 300)], "nothing is due before the next try");
    assert!(list.iter().all(|m| m.recipients[0].last_error.as_deref().unwrap_or("").contains("cannot connect")));
    let tried = list.iter().filter(|m| m.recipients[0].attempts == 1).count();
    let parked = list.iter().filter(|m| m.recipients[0].attempts == 0).count();
    assert_eq!(tried + parked, 100);
    assert!(parked >= 30, "only {parked} parked: the rest were tried one by one ({tried})");
}

#[tokio::test]
async fn connection_reuse_and_chunking() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut config = relay_config(sim.addr());
    config.delivery.shaping.initial_concurrency = 2;
    config.delivery.shaping.max_concurrency = 2;
    let (s, _clock) = start_manual(config).await;
    for _ in 0..10 {
        submit(&s, "alice@example.test", &["x@remote.test"], "", "").await;
    }
    s.engine().run_once().await;
    assert_eq!(sim.received().len(), 10);
    assert!(sim.connections() <= 2, "{} connections for 10 messages", sim.connections());
    assert!(sim.received().iter().all(|m| m.chunked), "CHUNKING used when offered");
    let plain = Downstream::start(Behavior { chunking: false, pipelining: false, ..Behavior::accept_all() }).await;
    let (s, _clock) = manual(plain.addr()).await;
    submit(&s, "alice@example.test", &["x@remote.test"], "", "").await;
    s.engine().run_once().await;
    assert_eq!(plain.received().len(), 1);
    assert!(!plain.received()[0].chunked);
    assert!(String::from_utf8_lossy(&plain.received()[0].data).ends_with("Hello out there.\r\n"));
}

#[tokio::test]
async fn starttls_opportunistic_and_required() {
    let sim = Downstream::start(Behavior { tls: true, ..Behavior::accept_all() }).await;
    let (s, _clock) = manual(sim.addr()).await;
    submit(&s, "alice@example.test", &["x@remote.test"], "", "").await;
    s.engine().run_once().await;
    assert!(sim.received()[0].tls, "STARTTLS used when offered");
    // A route that requires TLS to a server without it: deferred, never sent in clear.
    let clear = Downstream::start(Behavior::accept_all()).await;
    let mut config = relay_config(clear.addr());
    config.route[0].tls = TlsPolicy::Require;
    let (s, _clock) = start_manual(config).await;
    let m = one_attempt(&s, "x@remote.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued);
    assert!(m.recipients[0].last_error.as_deref().unwrap().contains("requires TLS"), "{m:?}");
    assert!(clear.received().is_empty());
}

/// A relay route with STARTTLS and AUTH, against facteur's own submission
/// port (TLS required, then AUTH required): wrong credentials defer, right
/// ones deliver.
#[tokio::test]
async fn relay_route_with_starttls_and_auth() {
    let mut up_config = test_config();
    // Another name: a peer greeting with ours would be a loop.
    up_config.server.hostname = "up.example.test".into();
    let upstream = TestServer::start_with(up_config).await;
    let up = upstream.store();
    up.add_domain("up.test").await.unwrap();
    up.add_user("dave@up.test", &facteur_store::password::hash("dave-pass")).await.unwrap();
    // The relay account sends for the whole of example.test (RFC 6409 §6.1).
    up.grant_sender("bob@example.test", "@example.test").await.unwrap();
    for (password, expect) in [("wrong", RecipientStatus::Queued), (common::PASSWORD, RecipientStatus::Delivered)] {
        let mut config = relay_config(upstream.submission);
        config.route[0].domain = "up.test".into();
        config.route[0].tls = TlsPolicy::Require;
        // Credentials go over verified TLS only: the upstream's self-signed
        // certificate is this route's authority.
        config.route[0].tls_ca_file = Some(upstream.dir.path().join("tls/cert.pem"));
        config.route[0].auth =
            Some(facteur_queue::RouteAuth { user: "bob@example.test".into(), password: password.into() });
        let (s, _clock) = start_manual(config).await;
        let m = one_attempt(&s, "dave@up.test").await;
        assert_eq!(m.recipients[0].state, expect, "{m:?}");
        if expect == RecipientStatus::Queued {
            assert!(m.recipients[0].last_error.as_deref().unwrap().contains("refused our credentials"), "{m:?}");
        }
    }
    let inbox = upstream.inbox("dave@up.test").await;
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].contains("with ESMTPSA"), "TLS and AUTH on the upstream: {}", inbox[0]);
}

/// When a destination takes one message at a time, people's mail goes
/// before the newsletter, and bulk still gets its share.
#[tokio::test]
async fn classes_share_a_slow_destination_by_weight() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut config = relay_config(sim.addr());
    config.delivery.shaping.initial_concurrency = 1;
    config.delivery.shaping.max_concurrency = 1;
    let (s, _clock) = start_manual(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for n in 0..30 {
        let r = c
            .send_mail(
                "news@list.test",
                &["x@far.test"],
                &format!("List-Id: <l.list.test>\r\nSubject: bulk {n}\r\n\r\nb"),
            )
            .await;
        assert_eq!(r.code, 250);
    }
    for n in 0..5 {
        let r = c.send_mail("friend@people.test", &["x@far.test"], &format!("Subject: person {n}\r\n\r\nhi")).await;
        assert_eq!(r.code, 250);
    }
    s.engine().run_once().await;
    let order: Vec<String> = sim
        .received()
        .iter()
        .map(|m| {
            let d = String::from_utf8_lossy(&m.data).into_owned();
            d.split("Subject: ").nth(1).unwrap().split("\r\n").next().unwrap().to_string()
        })
        .collect();
    assert_eq!(order.len(), 35);
    let last_person = order.iter().rposition(|s| s.starts_with("person")).unwrap();
    assert!(last_person < 10, "interpersonal mail waited behind bulk: {order:?}");
    assert!(order[..10].iter().any(|s| s.starts_with("bulk")), "bulk kept a share: {order:?}");
    let persons: Vec<&String> = order.iter().filter(|s| s.starts_with("person")).collect();
    assert_eq!(persons, ["person 0", "person 1", "person 2", "person 3", "person 4"], "FIFO within a class");
    let dest = s.engine().destinations();
    assert_eq!(dest[0].domain, "far.test");
    assert_eq!(dest[0].shaper.as_ref().unwrap().concurrency_limit, 1);
}

/// A paused class stays queued; resuming it lets it flow.
#[tokio::test]
async fn pausing_a_class_holds_it_at_once() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let (s, clock) = manual(sim.addr()).await;
    s.store().set_control(&"pause:class:bulk".parse().unwrap(), Some("1"), T0, "test").await.unwrap();
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.send_mail("news@list.test", &["x@far.test"], "Precedence: bulk\r\nSubject: promo\r\n\r\nb").await;
    c.send_mail("friend@people.test", &["x@far.test"], "Subject: hello\r\n\r\nhi").await;
    s.engine().run_once().await;
    assert_eq!(sim.received().len(), 1);
    assert!(String::from_utf8_lossy(&sim.received()[0].data).contains("Subject: hello"));
    s.store().set_control(&"pause:class:bulk".parse().unwrap(), None, T0, "test").await.unwrap();
    // Controls are reloaded at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    clock.advance(1);
    s.engine().run_once().await;
    assert_eq!(sim.received().len(), 2);
    let log = s.store().audit_log(None).await.unwrap();
    assert!(log.iter().any(|a| a.action == "control" && a.detail.contains("pause:class:bulk")), "{log:?}");
}

/// A backlog after a restart drains through slow start: the destination sees
/// a few connections growing with success, not the maximum at once.
#[tokio::test]
async fn a_backlog_starts_slow() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let (s, _clock) = manual(sim.addr()).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for n in 0..60 {
        assert_eq!(c.send_mail("a@people.test", &["x@far.test"], &format!("Subject: {n}\r\n\r\nb")).await.code, 250);
    }
    s.engine().run_once().await;
    assert_eq!(sim.received().len(), 60);
    let connections = sim.connections();
    assert!(connections <= 15, "{connections} connections: the backlog did not start slow (max is 20)");
    let limit = s.engine().destinations()[0].shaper.as_ref().unwrap().concurrency_limit;
    assert!(limit > 2, "the limit grew with success: {limit}");
    eprintln!("60 messages over {connections} connections; limit now {limit}");
}

/// A destination that answers 421 slows facteur down: the shaper records
/// the push-back, finds a rate and lowers its concurrency; the mail is tried
/// again in memory at that pace a few times, then deferred, not bounced.
#[tokio::test]
async fn push_back_is_fed_to_the_shaper() {
    let sim = Downstream::start(Behavior {
        mail: facteur_testkit::Step::Reply(421, "4.7.0 rate limit exceeded, slow down".into()),
        ..Behavior::accept_all()
    })
    .await;
    // The real clock: the shaper's token bucket must refill while we wait.
    let s = TestServer::start_opts(
        relay_config(sim.addr()),
        StartOptions { clock: Arc::new(facteur_store::SystemClock), delivery_loop: false },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(submit(&s, "alice@example.test", &["x@far.test"], "", "").await);
    }
    s.engine().run_once().await;
    for &id in &ids {
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
        assert!(m.recipients[0].last_error.as_deref().unwrap().starts_with("421"), "{m:?}");
        assert_eq!(m.recipients[0].attempts, 1, "push-backs are retried in memory, then one deferral: {m:?}");
    }
    // Each message was offered 1 + 3 times (a 421 closes the connection).
    assert_eq!(sim.connections(), 3 * 4, "every push-back is tried again at the shaper's pace");
    let d = &s.engine().destinations()[0];
    let sh = d.shaper.as_ref().unwrap();
    assert!(sh.throttles >= 1, "{sh:?}");
    assert!(sh.rate_limit.is_some(), "a rate was set at the push-back: {sh:?}");
    assert!(sh.concurrency_limit <= 2, "{sh:?}");
    assert!(s.inbox("alice@example.test").await.is_empty(), "no notice for a deferral");
}

/// RFC 5321 §6.3: a message that has made more than `max_hops` hops is
/// looping; it is refused at the end of DATA, not accepted and passed on.
#[tokio::test]
async fn a_message_past_the_hop_limit_is_refused() {
    let mut config = test_config();
    config.smtp.max_hops = 100;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let hops = |n: usize| "Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n".repeat(n);
    let r = c.send_mail("a@remote.test", &["alice@example.test"], &format!("{}Subject: 100\r\n\r\nx", hops(100))).await;
    assert_eq!(r.code, 250, "at the limit: {r:?}");
    let r = c
        .send_mail(
            "a@remote.test",
            &["alice@example.test"],
            &format!("{}Delivered-To: x@y\r\nSubject: 101\r\n\r\nx", hops(100)),
        )
        .await;
    assert_eq!(r.code, 554, "past the limit: {r:?}");
    assert!(r.text().starts_with("5.4.6") && r.text().contains("loop"), "{r:?}");
    assert_eq!(s.inbox("alice@example.test").await.len(), 1);
}

/// A route to facteur's own SMTP listener is a configuration error at start.
#[tokio::test]
async fn a_route_to_our_own_listener_is_refused_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = relay_config(([127, 0, 0, 1], port).into());
    config.listen.smtp = vec![([127, 0, 0, 1], port).into()];
    let dir = tempfile::tempdir().unwrap();
    common::provision(dir.path(), &config).await;
    let e = match facteur::serve::start(config, dir.path()).await {
        Ok(_) => panic!("started with a route to itself"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("route for \"*\": via") && e.contains("loop"), "{e}");
}

/// A route that reaches facteur through an address it does not know as its
/// own (here another instance with the same name, as behind NAT): the
/// greeting gives it away, the message bounces with 5.4.6 instead of going
/// round (once 4,753 times in 30 s).
#[tokio::test]
async fn a_peer_that_greets_with_our_own_name_is_a_loop() {
    let twin = TestServer::start().await;
    let mut config = relay_config(twin.smtp);
    config.route[0].domain = "far.test".into();
    let (s, _clock) = start_manual(config).await;
    let m = one_attempt(&s, "x@far.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Bounced, "{m:?}");
    assert!(m.attempts[0].reply.contains("5.4.6") && m.attempts[0].reply.contains("loops back to myself"), "{m:?}");
    let bounce = s.inbox("alice@example.test").await;
    assert_eq!(bounce.len(), 1, "the sender is told");
    assert!(bounce[0].contains("Status: 5.4.6"), "{}", bounce[0]);
}

/// Relay credentials never travel in clear (they did after a STARTTLS that
/// was not offered), and only to a server whose certificate checks out.
#[tokio::test]
async fn relay_credentials_only_over_verified_tls() {
    let auth = Some(facteur_queue::RouteAuth { user: "me".into(), password: "hunter2".into() });
    // No STARTTLS offered (or stripped on the way): deferred, no AUTH sent.
    let clear = Downstream::start(Behavior::accept_all()).await;
    let mut config = relay_config(clear.addr());
    config.route[0].auth = auth.clone();
    let (s, _clock) = start_manual(config).await;
    let m = one_attempt(&s, "x@remote.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued);
    let err = m.recipients[0].last_error.clone().unwrap();
    assert!(err.contains("4.7.10") && err.contains("never send credentials without TLS"), "{err}");
    assert!(!clear.transcript().iter().any(|l| l.starts_with("AUTH")), "{:?}", clear.transcript());
    // STARTTLS with a certificate nobody vouches for: deferred, no AUTH.
    let tls = Downstream::start(Behavior { tls: true, ..Behavior::accept_all() }).await;
    let mut config = relay_config(tls.addr());
    config.route[0].auth = auth;
    let (s, _clock) = start_manual(config).await;
    let m = one_attempt(&s, "x@remote.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued);
    let err = m.recipients[0].last_error.clone().unwrap();
    assert!(err.contains("TLS handshake") && err.contains("certificate"), "{err}");
    let t = tls.transcript();
    assert!(t.iter().any(|l| l.starts_with("STARTTLS")) && !t.iter().any(|l| l.starts_with("AUTH")), "{t:?}");
    assert!(!format!("{m:?}").contains("hunter2"), "the password is in no record");
}

/// `tls = "require"` verifies the certificate (name and chain): against the
/// system's authorities a self-signed one fails; with the route's CA file
/// it passes; `tls_insecure_skip_verify` is the named way around it.
#[tokio::test]
async fn required_tls_verifies_the_certificate() {
    let sim = Downstream::start(Behavior { tls: true, ..Behavior::accept_all() }).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("sim-ca.pem");
    std::fs::write(&ca, sim.certificate_pem()).unwrap();
    for (ca_file, insecure, expect) in [
        (None, false, RecipientStatus::Queued),
        (Some(ca.clone()), false, RecipientStatus::Delivered),
        (None, true, RecipientStatus::Delivered),
    ] {
        let mut config = relay_config(sim.addr());
        config.route[0].tls = TlsPolicy::Require;
        config.route[0].tls_ca_file = ca_file.clone();
        config.route[0].tls_insecure_skip_verify = insecure;
        let (s, _clock) = start_manual(config).await;
        if insecure {
            let notes = &s.running.as_ref().unwrap().notes;
            assert!(notes.iter().any(|n| n.contains("not verified")), "the operator is told: {notes:?}");
        }
        let m = one_attempt(&s, "x@remote.test").await;
        assert_eq!(m.recipients[0].state, expect, "ca {ca_file:?} insecure {insecure}: {m:?}");
    }
    // A CA file that is not one is a configuration error, named.
    std::fs::write(dir.path().join("junk.pem"), "not pem").unwrap();
    let mut config = relay_config(sim.addr());
    config.route[0].tls_ca_file = Some(dir.path().join("junk.pem"));
    let text = format!("{:?}", facteur::config::Config::parse(&toml_of(&config), std::path::Path::new("t.toml")));
    assert!(text.contains("tls_ca_file") && text.contains("junk.pem"), "{text}");
}

/// The routes of `config` as a TOML file, for the configuration checks.
fn toml_of(config: &Config) -> String {
    let r = &config.route[0];
    format!(
        "[[route]]\ndomain = {:?}\nvia = {:?}\ntls_ca_file = {:?}\n",
        r.domain,
        r.via,
        r.tls_ca_file.as_ref().unwrap().display().to_string()
    )
}

/// RFC 5321 §4.5.3.2: the time allowed is per reply, whole. A downstream
/// that sends one octet of its greeting every 200 ms (never silent for
/// long) held a delivery 152 s under a 10 s timeout; it is cut at the
/// command timeout (2 s here) and the message deferred.
#[tokio::test]
async fn a_downstream_trickling_its_reply_is_cut_at_the_command_deadline() {
    let sim = Downstream::start(Behavior { trickle: Some(Duration::from_millis(200)), ..Behavior::accept_all() }).await;
    let (s, _clock) = manual(sim.addr()).await;
    let id = submit(&s, "alice@example.test", &["x@remote.test"], "", "").await;
    let t = std::time::Instant::now();
    s.engine().run_once().await;
    let took = t.elapsed();
    let m = s.store().queue_show(id).await.unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    assert!(m.recipients[0].last_error.as_deref().unwrap().contains("timeout"), "{m:?}");
    assert!(took < Duration::from_secs(5), "held {took:?} under a 2 s command timeout");
}
