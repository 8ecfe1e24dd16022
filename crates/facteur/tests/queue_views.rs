//! The queue as operators coming from Postfix look at it, through the real
//! binary beside a running server: `queue list` with filters, bulk `hold`,
//! `release` and `delete` on a filter (postsuper), `queue show --content`
//! (postcat), `queue stats` with qshape's age buckets, `mailq`.

mod common;

use std::process::Command;

use common::{Client, TestServer, test_config};
use facteur_store::prelude::*;

fn facteur(s: &TestServer, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_facteur"))
        .arg("--data")
        .arg(s.dir.path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn queue(s: &TestServer, from: &str, to: &[&str]) -> MessageId {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c.send_mail(from, to, "Subject: q\r\n\r\nqueued").await;
    assert_eq!(r.code, 250, "{}", r.text());
    r.queued_id()
}

#[tokio::test]
async fn list_filters_bulk_actions_content_and_shape() {
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let s = TestServer::start_with(config).await;
    let a = queue(&s, "app@example.test", &["x@far.test", "y@near.test"]).await;
    let b = queue(&s, "other@example.test", &["z@far.test"]).await;

    let (code, out, err) = facteur(&s, &["queue", "list", "--destination", "far.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&a.to_string()) && out.contains(&b.to_string()) && out.contains("2 message(s)"), "{out}");
    assert!(out.contains("x@far.test") && !out.contains("y@near.test"), "only the recipients named: {out}");
    let (_, out, _) = facteur(&s, &["queue", "list", "--sender", "app@example.test"]);
    assert!(out.contains(&a.to_string()) && !out.contains(&b.to_string()), "{out}");
    let (_, out, _) = facteur(&s, &["queue", "list", "--older-than", "1h"]);
    assert_eq!(out.trim(), "no queued message matches");
    let (code, _, err) = facteur(&s, &["queue", "list", "--older-than", "1w"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("1w"), "{err}");

    // postsuper -h on a filter: whole messages.
    let (code, out, err) = facteur(&s, &["queue", "hold", "--destination", "near.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 recipient(s) of 1 message(s) held"), "{out}");
    let (_, out, _) = facteur(&s, &["queue", "list", "--state", "held"]);
    assert!(out.contains("HELD") && out.contains("y@near.test") && !out.contains(&b.to_string()), "{out}");
    let (_, out, _) = facteur(&s, &["mailq"]);
    assert!(out.contains(&format!("{a}!")), "held is marked: {out}");
    let (_, out, _) = facteur(&s, &["queue", "release", "--sender", "@example.test"]);
    assert!(out.contains("2 recipient(s) of 2 message(s) released"), "{out}");

    // postcat.
    let (code, out, _) = facteur(&s, &["queue", "show", &a.to_string(), "--content"]);
    assert_eq!(code, 0);
    let body = s.store().message_body(a).await.unwrap().unwrap();
    assert_eq!(out.as_bytes(), body.as_slice());
    assert!(out.starts_with("Received: ") && out.ends_with("queued\r\n"), "{out}");

    // qshape.
    let (_, out, _) = facteur(&s, &["queue", "stats"]);
    let total = out.lines().find(|l| l.trim_start().starts_with("TOTAL")).expect("a TOTAL row");
    assert_eq!(total.split_whitespace().collect::<Vec<_>>()[..3], ["TOTAL", "2", "2"], "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("far.test") && l.split_whitespace().nth(1) == Some("2")),
        "{out}"
    );
    let (_, json, _) = facteur(&s, &["queue", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ages"][0]["destination"], "TOTAL");
    assert_eq!(v["ages"][0]["messages"][0], 2);

    // postsuper -d on a filter: asks first, then deletes only what it names.
    let (code, _, err) = facteur(&s, &["queue", "delete", "--sender", "other@example.test"]);
    assert_eq!(code, 1);
    assert!(err.contains("1 pending recipient(s) of 1 message(s)") && err.contains("--yes"), "{err}");
    let (code, out, err) = facteur(&s, &["queue", "delete", "--sender", "other@example.test", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 recipient(s) of 1 message(s) deleted"), "{out}");
    let left: Vec<MessageId> = s.store().queue_list().await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(left, [a]);
    let (code, _, err) = facteur(&s, &["queue", "delete"]);
    assert_eq!(code, 2, "a bulk delete names what it deletes: {err}");
    let (code, _, err) = facteur(&s, &["queue", "hold", &a.to_string(), "--sender", "x@y.test"]);
    assert_eq!(code, 1);
    assert!(err.contains("not both"), "{err}");
}
