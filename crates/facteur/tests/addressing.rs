//! Addresses over real SMTP: aliases to local users and elsewhere (with
//! SRS and the bounce path back), forward loops, `+detail`, role
//! addresses, the catch-all, and the fields final delivery adds.

mod common;

use std::time::Duration;

use common::{Client, TestServer, test_config};
use facteur::config::{Config, RouteConfig};
use facteur_store::prelude::*;
use facteur_testkit::{Behavior, Downstream};

/// Delivery on, every other domain routed to `sim`; loopback a stranger.
fn config(sim: std::net::SocketAddr) -> Config {
    let mut c = test_config();
    c.delivery.enabled = true;
    c.delivery.retry_jitter = 0.0;
    c.route = vec![RouteConfig { domain: "*".into(), via: sim.to_string(), ..Default::default() }];
    c
}

async fn mail(s: &TestServer, from: &str, to: &[&str], body: &str) -> common::Reply {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.send_mail(from, to, body).await
}

async fn rcpt(s: &TestServer, to: &str) -> common::Reply {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<carol@sender.test>", 250).await;
    c.cmd(&format!("RCPT TO:<{to}>")).await
}

fn field_values(msg: &str, name: &str) -> Vec<String> {
    let header = msg.split("\r\n\r\n").next().unwrap_or("");
    header
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[tokio::test]
async fn final_delivery_adds_return_path_and_delivered_to_but_relayed_mail_has_neither() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut cfg = config(sim.addr());
    cfg.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let s = TestServer::start_with(cfg).await;
    let r = mail(&s, "carol@sender.test", &["alice@example.test", "dave@far.test"], "Subject: both\r\n\r\nhi").await;
    assert_eq!(r.code, 250, "{}", r.text());
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].starts_with("Return-Path: <carol@sender.test>\r\nDelivered-To: alice@example.test\r\nReceived: "));
    assert!(sim.wait_for(1, Duration::from_secs(10)).await, "the relayed copy never left");
    let out = &sim.received()[0];
    assert_eq!(out.rcpts, ["dave@far.test"]);
    assert_eq!(out.mail_from, "carol@sender.test");
    let text = String::from_utf8_lossy(&out.data);
    assert!(field_values(&text, "Return-Path").is_empty() && field_values(&text, "Delivered-To").is_empty(), "{text}");
    // The reply's id names the relayed copy (queue show finds it).
    assert!(s.store().queue_show(r.queued_id()).await.unwrap().is_some());
}

#[tokio::test]
async fn an_alias_delivers_to_users_and_forwards_with_srs_and_the_bounce_comes_back() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let s = TestServer::start_with(config(sim.addr())).await;
    let store = s.store();
    // Added while the server runs: effective at once.
    for t in ["alice@example.test", "Carol@Elsewhere.test"] {
        store.add_alias("team@example.test", t).await.unwrap();
    }
    let r = mail(&s, "dave@sender.test", &["Team@Example.test"], "Subject: to the team\r\n\r\nhi team").await;
    assert_eq!(r.code, 250, "{}", r.text());
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(field_values(&inbox[0], "Delivered-To"), ["alice@example.test", "team@example.test"]);
    assert_eq!(field_values(&inbox[0], "Return-Path"), ["<dave@sender.test>"]);
    assert!(sim.wait_for(1, Duration::from_secs(10)).await, "the forward never left");
    let fwd = &sim.received()[0];
    assert_eq!(fwd.rcpts, ["carol@elsewhere.test"]);
    assert!(
        fwd.mail_from.starts_with("srs0=") && fwd.mail_from.ends_with("=sender.test=dave@example.test"),
        "{}",
        fwd.mail_from
    );
    let text = String::from_utf8_lossy(&fwd.data);
    assert_eq!(field_values(&text, "Delivered-To"), ["team@example.test"]);
    assert!(field_values(&text, "Return-Path").is_empty());
    assert_eq!(field_values(&text, "Received").len(), 1, "our Received: travels with it");
    assert!(fwd.rcpt_params[0].contains("ORCPT=rfc822;team@example.test"), "{}", fwd.rcpt_params[0]);

    // The far end bounces to the SRS address: a stranger may send it, and it
    // goes back to the original sender.
    let r = mail(&s, "", &[&fwd.mail_from], "Subject: Undelivered\r\n\r\nbounce").await;
    assert_eq!(r.code, 250, "{}", r.text());
    assert!(sim.wait_for(2, Duration::from_secs(10)).await, "the bounce was not sent on");
    let back = &sim.received()[1];
    assert_eq!(back.rcpts, ["dave@sender.test"]);
    assert_eq!(back.mail_from, "", "a bounce stays from <>");

    // A forged or damaged SRS address is an unknown user.
    let forged = fwd.mail_from.replace("=dave@", "=eve@");
    let r = rcpt(&s, &forged).await;
    assert_eq!((r.code, r.text().contains("5.1.1")), (550, true), "{}", r.text());
}

#[tokio::test]
async fn an_alias_of_several_users_stores_one_body_for_all() {
    let s = TestServer::start().await;
    for t in ["alice@example.test", "bob@example.test"] {
        s.store().add_alias("staff@example.test", t).await.unwrap();
    }
    let r = mail(&s, "dave@sender.test", &["staff@example.test"], "Subject: all\r\n\r\nhi all").await;
    assert_eq!(r.code, 250, "{}", r.text());
    for user in ["alice@example.test", "bob@example.test"] {
        let inbox = s.inbox(user).await;
        assert_eq!(inbox.len(), 1, "{user}");
        assert!(inbox[0].starts_with("Return-Path: <dave@sender.test>\r\nReceived: "), "{}", inbox[0]);
    }
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    let bodies: i64 = conn.query_row("SELECT COUNT(*) FROM message_bodies", [], |r| r.get(0)).unwrap();
    assert_eq!(bodies, 1);
}

#[tokio::test]
async fn a_forward_that_comes_back_is_a_loop() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let s = TestServer::start_with(config(sim.addr())).await;
    s.store().add_alias("team@example.test", "carol@elsewhere.test").await.unwrap();
    let body = "Delivered-To: team@example.test\r\nSubject: again\r\n\r\nround and round";
    let r = mail(&s, "dave@sender.test", &["team@example.test"], body).await;
    assert_eq!(r.code, 554, "{}", r.text());
    assert!(r.text().contains("5.4.6") && r.text().contains("loop"), "{}", r.text());
    // Delivery to a user is final: the same field does not stop it.
    let body = "Delivered-To: alice@example.test\r\nSubject: again\r\n\r\nfine";
    assert_eq!(mail(&s, "dave@sender.test", &["alice@example.test"], body).await.code, 250);
}

#[tokio::test]
async fn alias_cycles_and_chains_end_at_their_limits() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let s = TestServer::start_with(config(sim.addr())).await;
    let store = s.store();
    store.add_alias("a@example.test", "b@example.test").await.unwrap();
    store.add_alias("b@example.test", "a@example.test").await.unwrap();
    let r = rcpt(&s, "a@example.test").await;
    assert_eq!(r.code, 550, "a cycle with no one at its end: {}", r.text());
    // a -> a, bob: a is a user? no; bob gets it, the cycle is cut.
    store.add_alias("b@example.test", "bob@example.test").await.unwrap();
    assert_eq!(rcpt(&s, "a@example.test").await.code, 250);
    // A chain exactly MAX_DEPTH long reaches its user; one more does not.
    let depth = facteur_spool::addressing::MAX_DEPTH;
    for i in 0..=depth {
        let next = if i == depth { "alice@example.test".to_string() } else { format!("c{}@example.test", i + 1) };
        store.add_alias(&format!("c{i}@example.test"), &next).await.unwrap();
    }
    assert_eq!(rcpt(&s, "c0@example.test").await.code, 550, "past the limit");
    assert_eq!(rcpt(&s, "c1@example.test").await.code, 250, "at the limit");
}

#[tokio::test]
async fn plus_addressing_reaches_the_user_and_optionally_the_mailbox() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut cfg = config(sim.addr());
    let s = TestServer::start_with(cfg.clone()).await;
    assert_eq!(mail(&s, "dave@sender.test", &["alice+lists@example.test"], "Subject: l\r\n\r\nx").await.code, 250);
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(field_values(&inbox[0], "Delivered-To"), ["alice@example.test"]);
    assert_eq!(rcpt(&s, "nobody+lists@example.test").await.code, 550);
    drop(s);

    cfg.addressing.detail_mailbox = true;
    let s = TestServer::start_with(cfg).await;
    let store = s.store();
    store.create_mailbox("alice@example.test", "Lists", None).await.unwrap();
    assert_eq!(mail(&s, "dave@sender.test", &["alice+lists@example.test"], "Subject: l\r\n\r\nx").await.code, 250);
    assert_eq!(mail(&s, "dave@sender.test", &["alice+none@example.test"], "Subject: n\r\n\r\nx").await.code, 250);
    let boxes = store.list_mailboxes("alice@example.test").await.unwrap();
    let count = |name: &str| boxes.iter().find(|b| b.name == name).unwrap().messages;
    assert_eq!((count("Lists"), count("INBOX")), (1, 1), "a detail with no mailbox goes to the INBOX");
}

#[tokio::test]
async fn role_addresses_exist_in_every_domain_and_a_catch_all_only_when_added() {
    let sim = Downstream::start(Behavior::accept_all()).await;
    let mut cfg = config(sim.addr());
    let s = TestServer::start_with(cfg.clone()).await;
    let store = s.store();
    store.add_domain("second.test").await.unwrap();
    for to in ["postmaster@example.test", "abuse@second.test", "postmaster"] {
        let r = mail(&s, "dave@sender.test", &[to], "Subject: role\r\n\r\nx").await;
        assert_eq!(r.code, 250, "{to}: {}", r.text());
    }
    // The first user created gets them.
    assert_eq!(s.inbox("alice@example.test").await.len(), 3);
    assert_eq!(rcpt(&s, "random@example.test").await.code, 550, "no catch-all by default");
    store.add_alias("@example.test", "bob@example.test").await.unwrap();
    assert_eq!(mail(&s, "dave@sender.test", &["random@example.test"], "Subject: c\r\n\r\nx").await.code, 250);
    assert_eq!(mail(&s, "dave@sender.test", &["alice@example.test"], "Subject: a\r\n\r\nx").await.code, 250);
    assert_eq!(s.inbox("bob@example.test").await.len(), 1);
    assert_eq!(s.inbox("alice@example.test").await.len(), 4, "a user is found before the catch-all");
    assert_eq!(rcpt(&s, "random@second.test").await.code, 550, "a catch-all is per domain");
    drop(s);

    cfg.addressing.role_recipient = "bob@example.test".into();
    let s = TestServer::start_with(cfg).await;
    assert_eq!(mail(&s, "dave@sender.test", &["abuse@example.test"], "Subject: role\r\n\r\nx").await.code, 250);
    assert_eq!(s.inbox("bob@example.test").await.len(), 1);
    // An alias of that name wins over the role.
    s.store().add_alias("abuse@example.test", "alice@example.test").await.unwrap();
    assert_eq!(mail(&s, "dave@sender.test", &["abuse@example.test"], "Subject: role\r\n\r\nx").await.code, 250);
    assert_eq!(s.inbox("alice@example.test").await.len(), 1);
}

#[test]
fn the_alias_commands_add_list_resolve_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_facteur"))
            .arg("--data")
            .arg(dir.path().join("d"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(run(&["init"]).0, Some(0));
    assert_eq!(run(&["domain", "add", "example.test"]).0, Some(0));
    let (code, _, err) = run(&["alias", "add", "team@other.test", "x@y.test"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("other.test"), "{err}");
    let (code, _, err) = run(&["alias", "add", "team@example.test", "not an address"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not an address"), "{err}");
    assert_eq!(run(&["alias", "add", "team@example.test", "a@far.test", "b@far.test"]).0, Some(0));
    let (_, list, _) = run(&["alias", "list"]);
    assert!(list.contains("team@example.test") && list.contains("a@far.test") && list.contains("b@far.test"), "{list}");
    let (_, resolved, _) = run(&["alias", "resolve", "team@example.test"]);
    assert!(resolved.contains("forward to a@far.test"), "{resolved}");
    let (_, json, _) = run(&["alias", "resolve", "--json", "nobody@example.test"]);
    assert_eq!(json.trim(), "[]");
    assert_eq!(run(&["alias", "remove", "team@example.test", "a@far.test"]).0, Some(0));
    let (code, _, err) = run(&["alias", "remove", "team@example.test", "a@far.test"]);
    assert_eq!(code, Some(1), "{err}");
    let (code, _, err) = run(&["domain", "remove", "example.test"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("alias"), "{err}");
    assert_eq!(run(&["alias", "remove", "team@example.test"]).0, Some(0));
    assert_eq!(run(&["domain", "remove", "example.test"]).0, Some(0));
}
