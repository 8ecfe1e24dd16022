//! Traffic classes: given at acceptance, stored with the message, shown by
//! the queue commands, and explained by `facteur classify`.

mod common;

use std::process::Command;

use common::{Client, TestServer, test_config};
use facteur_store::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_facteur");

#[tokio::test]
async fn every_message_gets_a_class_at_acceptance() {
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.classify.transactional_senders = vec!["shop.test".into()];
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let cases = [
        ("news@list.test", "List-Id: <news.list.test>\r\nSubject: weekly", Class::Bulk),
        ("receipts@shop.test", "Subject: your order", Class::Transactional),
        ("robot@app.test", "Auto-Submitted: auto-generated\r\nSubject: password reset", Class::Transactional),
        ("friend@people.test", "Subject: lunch?", Class::Interpersonal),
        ("", "Subject: a bounce", Class::System),
    ];
    let mut ids = Vec::new();
    for (from, headers, _) in cases {
        let r = c.send_mail(from, &["someone@far.test"], &format!("{headers}\r\n\r\nbody")).await;
        ids.push(r.queued_id());
    }
    for ((_, _, class), &id) in cases.iter().zip(&ids) {
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert_eq!(m.class, *class, "{id}");
    }
    let stats = s.store().queue_stats(i64::MAX, false).await.unwrap();
    let bulk = stats.iter().find(|x| x.class == Class::Bulk).unwrap();
    assert_eq!((bulk.queued, bulk.ready), (1, 1));
}

#[test]
fn classify_command_explains_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    let run = |args: &[&str]| {
        let o = Command::new(BIN).arg("--data").arg(dir.path()).arg("classify").arg(&file).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["class"].as_str().unwrap().to_string(), v["rule"].as_str().unwrap().to_string())
    };
    std::fs::write(&file, "From: a@b.test\r\nList-Unsubscribe: <mailto:u@b.test>\r\nSubject: x\r\n\r\nhi\r\n").unwrap();
    let (class, rule) = run(&["--from", "a@b.test", "--json"]);
    assert_eq!(class, "bulk");
    assert!(rule.starts_with("builtin:") && rule.contains("List-Unsubscribe"), "{rule}");
    // The body is never read: a List-Id line there changes nothing.
    std::fs::write(&file, "Subject: x\r\n\r\nList-Id: <not.a.header>\r\n").unwrap();
    assert_eq!(run(&["--from", "a@b.test", "--json"]).0, "interpersonal");
    assert_eq!(run(&["--json"]).0, "system", "null sender");
    // Text output names class and rule; an operator rule wins over built-ins.
    std::fs::write(
        dir.path().join("facteur.toml"),
        "[[classify.rules]]\nname = \"vip\"\nclass = \"transactional\"\nsender_domain = [\"b.test\"]\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .arg("--data")
        .arg(dir.path())
        .args(["classify"])
        .arg(&file)
        .args(["--from", "a@b.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("class: transactional") && text.contains("config:vip"), "{text}");
    let o = Command::new(BIN).arg("--data").arg(dir.path()).args(["classify", "/nonexistent.eml"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/nonexistent.eml"));
}

/// Back-pressure by class: past the first watermark bulk is told to come
/// back later while people's mail still gets in; below it (with hysteresis)
/// the door opens again.
#[tokio::test]
async fn the_door_closes_for_bulk_first() {
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.admission.queue_depth = [2, 1000, 2000];
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let bulk = "Precedence: bulk\r\nSubject: promo\r\n\r\nbuy";
    for _ in 0..3 {
        assert_eq!(c.send_mail("news@list.test", &["x@far.test"], bulk).await.code, 250);
    }
    // The load is measured every second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = c.send_mail("news@list.test", &["x@far.test"], bulk).await;
    assert_eq!(r.code, 451, "{r:?}");
    assert!(r.text().starts_with("4.7.1") && r.text().contains("bulk"), "{r:?}");
    let r = c.send_mail("friend@people.test", &["x@far.test"], "Subject: hi\r\n\r\nhello").await;
    assert_eq!(r.code, 250, "interpersonal still flows: {r:?}");
    // The queue drains (an operator deletes the bulk): the door opens again.
    let store = s.store();
    for m in store.queue_list().await.unwrap().iter().filter(|m| m.class == Class::Bulk) {
        store.queue_delete(m.id, 0, "test", vec![]).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(c.send_mail("news@list.test", &["x@far.test"], bulk).await.code, 250);
}

/// Free-disk guard: while free space is under the reserve, every message is
/// refused with 452 4.3.1 at MAIL (the reserve edge itself is unit-tested in
/// facteur-queue's admission tests); nothing is stored.
#[tokio::test]
async fn free_disk_reserve_refuses_with_452() {
    let mut config = test_config();
    config.admission.reserve_bytes = u64::MAX / 2;
    let s = TestServer::start_with(config).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for mail in ["MAIL FROM:<a@remote.test> SIZE=100", "MAIL FROM:<a@remote.test>"] {
        let r = c.ok(mail, 452).await;
        assert!(r.text().starts_with("4.3.1") && r.text().contains("storage"), "{r:?}");
    }
    c.ok("NOOP", 250).await;
    assert!(s.inbox("alice@example.test").await.is_empty());
}
