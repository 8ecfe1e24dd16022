//! `/metrics`, scraped over HTTP and read by the Prometheus project's own
//! parser (Debian's python3-prometheus-client), after traffic whose every
//! count the test knows: one server per process (the recorder is the
//! process's), so the figures are exact.

mod common;

use std::sync::Arc;

use common::scrape::scrape_until;
use common::{Client, TestServer, test_config};
use facteur::config::RouteConfig;
use facteur::serve::StartOptions;
use facteur_store::ManualClock;
use facteur_testkit::{Behavior, Downstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T0: i64 = 1_800_000_000;

/// The shape of a Prometheus rules file (Debian's python3-yaml).
const RULES: &str = r#"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
rules = [r for g in doc["groups"] for r in g["rules"]]
assert rules and all(g["name"] for g in doc["groups"])
for r in rules:
    assert r["alert"] and r["expr"].strip(), r
    assert r["labels"]["severity"] in ("page", "ticket"), r
    assert r["annotations"]["summary"], r
print(len(rules))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened_and_name_no_user() {
    let sim = Downstream::start(Behavior::accept_only(&["bob@remote.test"])).await;
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.delivery.enabled = true;
    config.route = vec![RouteConfig { domain: "*".into(), via: sim.addr().to_string(), ..Default::default() }];
    let clock = ManualClock::new(T0);
    let s = TestServer::start_opts(config, StartOptions { clock: Arc::new(clock.clone()), delivery_loop: false }).await;

    // Session 1: one message to two remote recipients (one will be
    // refused downstream), one refused local recipient.
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<alice@example.test>", 250).await;
    c.ok("RCPT TO:<bob@remote.test>", 250).await;
    c.ok("RCPT TO:<eve@remote.test>", 250).await;
    let refused = c.cmd("RCPT TO:<nobody@example.test>").await;
    assert_eq!(refused.code, 550, "{refused:?}");
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: one\r\n\r\nhello\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    // Its outcomes: delivered to bob, bounced for eve (a failure notice
    // to alice, a local user).
    assert_eq!(s.engine().run_once().await, 1);
    // Session 2: a message that stays queued for remote.test.
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<alice@example.test>", 250).await;
    c.ok("RCPT TO:<carol@remote.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: two\r\n\r\nhello\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 250);
    // Two IMAP commands before login.
    let mut imap = tokio::net::TcpStream::connect(s.imap).await.unwrap();
    imap.write_all(b"a CAPABILITY\r\nb LOGOUT\r\n").await.unwrap();
    let mut seen = String::new();
    imap.read_to_string(&mut seen).await.unwrap();
    assert!(seen.contains("b OK"), "{seen}");
    // Due for two minutes now.
    clock.advance(120);

    let m = scrape_until(&s, |m| {
        m.sum("facteur_destination_oldest_ready_age_seconds", &[("destination", "remote.test")]) == 120.0
            && m.sum("facteur_queue_oldest_ready_age_seconds", &[]) == 120.0
    })
    .await;
    let all = |name: &str| m.sum(name, &[]);
    assert_eq!(all("facteur_smtp_messages_accepted_total"), 2.0);
    assert_eq!(all("facteur_smtp_recipients_accepted_total"), 3.0);
    assert_eq!(m.sum("facteur_rejections_total", &[("listener", "smtp"), ("what", "RCPT"), ("code", "5.1.1")]), 1.0);
    assert_eq!(m.sum("facteur_sessions_total", &[("listener", "smtp")]), 2.0);
    assert_eq!(m.sum("facteur_sessions_total", &[("listener", "imap")]), 1.0);
    let timed = |protocol: &str, command: &str| {
        m.sum("facteur_command_duration_seconds_count", &[("protocol", protocol), ("command", command)])
    };
    assert_eq!([timed("smtp", "MAIL"), timed("smtp", "RCPT"), timed("smtp", "DATA")], [2.0, 4.0, 2.0]);
    assert_eq!([timed("imap", "CAPABILITY"), timed("imap", "LOGOUT")], [1.0, 1.0]);
    assert_eq!(m.sum("facteur_delivery_attempts_total", &[("outcome", "delivered"), ("status", "2.0")]), 1.0);
    assert_eq!(m.sum("facteur_delivery_attempts_total", &[("outcome", "bounced"), ("status", "5.1")]), 1.0);
    assert_eq!(all("facteur_delivery_attempts_total"), 2.0);
    assert_eq!(m.sum("facteur_dsn_generated_total", &[("kind", "failed")]), 1.0);
    assert_eq!(all("facteur_local_deliveries_total"), 1.0, "the failure notice, placed in alice's INBOX");
    // Every write waited for a commit that was timed.
    let commits = m.sum("facteur_storage_commit_seconds_count", &[("backend", "sqlite")]);
    assert!(commits >= 3.0, "{commits}");
    assert_eq!(commits, m.sum("facteur_storage_commits_total", &[("backend", "sqlite")]));
    assert_eq!(m.sum("facteur_storage_commit_seconds_bucket", &[("backend", "sqlite"), ("le", "+Inf")]), commits);
    // State: the queued message, its class and destination, and its age.
    assert_eq!(m.sum("facteur_queue_recipients", &[("state", "queued")]), 1.0);
    assert_eq!(m.sum("facteur_queue_recipients", &[("state", "ready")]), 1.0);
    assert_eq!(
        m.sum("facteur_destination_queue_recipients", &[("destination", "remote.test"), ("state", "queued")]),
        1.0
    );
    for class in ["system", "interpersonal", "transactional", "bulk"] {
        assert!(m.has("facteur_queue_recipients", &[("class", class), ("state", "held")]), "{class}");
        assert_eq!(m.sum("facteur_admission_open", &[("class", class)]), 1.0, "{class}");
    }
    for protocol in ["smtp", "imap", "pop3"] {
        assert!(m.has("facteur_connections_open", &[("protocol", protocol)]), "{protocol}");
    }
    assert!(m.has("facteur_destination_concurrency_limit", &[("destination", "remote.test")]));
    // The dashboard and the alert rules in docs/ read series that exist.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/monitoring");
    let dashboard = std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(!parsed["panels"].as_array().unwrap().is_empty());
    let alerts = std::fs::read_to_string(docs.join("alerts.yml")).unwrap();
    for (file, text) in [("grafana-dashboard.json", &dashboard), ("alerts.yml", &alerts)] {
        let mut rest = text.as_str();
        let mut names = 0;
        while let Some(at) = rest.find("facteur_") {
            let name: String =
                rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            assert!(m.samples.iter().any(|s| s.0 == name), "{file} reads {name}, which /metrics does not have");
            names += 1;
            rest = &rest[at + name.len()..];
        }
        assert!(names > 5, "{file}: {names}");
    }
    // The rules file is YAML of Prometheus's shape: groups of rules, each
    // with a name, an expression, a severity and a summary.
    let check = std::process::Command::new("/usr/bin/python3")
        .args(["-c", RULES, docs.join("alerts.yml").to_str().unwrap()])
        .output()
        .expect("/usr/bin/python3 (python3-yaml)");
    assert!(check.status.success(), "alerts.yml: {}", String::from_utf8_lossy(&check.stderr));
    // Conventions: every family explained; no label names a user or a
    // client (no address, no IP).
    for (name, help) in &m.help {
        assert!(!help.is_empty(), "{name} has no HELP");
    }
    for (name, labels, _) in &m.samples {
        for v in labels.values() {
            assert!(!v.contains('@') && !v.starts_with("127."), "{name} labelled with {v:?}");
        }
    }
}
