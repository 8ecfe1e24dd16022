//! Traffic classes: given at acceptance, stored with the message, shown by
//! the queue commands, and explained by `facteur classify`.

mod common;

use std::process::Command;

use common::{Client, TestServer, test_config};
use facteur_store::Store;

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
        ("news@list.test", "List-Id: <news.list.test>\r\nSubject: weekly", "bulk"),
        ("receipts@shop.test", "Subject: your order", "transactional"),
        ("robot@app.test", "Auto-Submitted: auto-generated\r\nSubject: password reset", "transactional"),
        ("friend@people.test", "Subject: lunch?", "interpersonal"),
        ("", "Subject: a bounce", "system"),
    ];
    let mut ids = Vec::new();
    for (from, headers, _) in cases {
        let r = c.send_mail(from, &["someone@far.test"], &format!("{headers}\r\n\r\nbody")).await;
        ids.push(r.text().rsplit(' ').next().unwrap().to_string());
    }
    for ((_, _, class), id) in cases.iter().zip(&ids) {
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert_eq!(&m.class, class, "{id}");
    }
    let stats = s.store().queue_stats(i64::MAX, false).await.unwrap();
    let bulk = stats.iter().find(|x| x.class == "bulk").unwrap();
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
