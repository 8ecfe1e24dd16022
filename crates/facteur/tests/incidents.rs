//! Incidents from the operator's side, on a real server: the admin API and
//! the CLI (update, rename, resolve, errors), alerts (the webhook retried
//! until it takes one, signed; the email queued through facteur's own
//! queue into a local mailbox), the status page's three forms over HTTP,
//! and fault switches refused unless the process allows them. (The watch
//! opening and resolving incidents by itself, per fault, in a browser:
//! tests/status_page.rs.)

mod common;

use std::time::Duration;

use common::{TestServer, test_config};
use facteur_store::{IncidentChange, prelude::*};
use facteur_watch::alert::{AlertConfig, Alerter, Payload};
use facteur_watch::keeper::Announcement;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "incident-test-token";

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: status.example\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    (out[9..12].parse().unwrap(), out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

fn report(component: &str, at: i64) -> IncidentChange {
    IncidentChange::Report {
        component: component.into(),
        node: "n1".into(),
        regions: vec!["eu".into()],
        severity: "degraded".into(),
        title: "Storage is degraded".into(),
        text: "Storage is degraded in eu: 90 % of events good.".into(),
        at,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_change_incidents_through_the_admin_api_and_the_status_page_shows_them() {
    let mut config = test_config();
    config.admin.token = TOKEN.into();
    config.watch.evaluate_secs = 1;
    let server = TestServer::start_with(config).await;
    let id = server.store().incident_change(report("storage", now() - 60)).await.unwrap().unwrap();

    let (code, body) = request(server.http, "GET", "/admin/incidents", "").await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["affected"]["n1"][0], "eu", "operators see the nodes");

    for (body, want) in [
        (format!(r#"{{"action":"update","id":{id},"text":"A disk is being replaced."}}"#), 200),
        (format!(r#"{{"action":"rename","id":{id},"title":"Disk failure in eu"}}"#), 200),
        (format!(r#"{{"action":"rename","id":{id},"title":"  "}}"#), 400),
        (r#"{"action":"update","id":999999,"text":"x"}"#.to_string(), 400),
        (r#"{"action":"reopen","id":1}"#.to_string(), 400),
    ] {
        let (code, text) = request(server.http, "POST", "/admin/incident", &body).await;
        assert_eq!(code, want, "{body}: {text}");
    }
    let i = server.store().incident(id).await.unwrap().unwrap();
    assert_eq!(i.title, "Disk failure in eu");
    assert!(i.updates.iter().any(|u| u.text == "A disk is being replaced." && u.author == "http:admin"), "{i:?}");

    // The page reads the board the watch refreshes every evaluate_secs.
    let mut page = String::new();
    for _ in 0..50 {
        page = common::http_get(server.status, "/status").await.1;
        if page.contains("Disk failure in eu") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(page.contains("Disk failure in eu") && page.contains("A disk is being replaced."), "{page}");
    assert!(page.contains("Degraded") && !page.contains("n1"), "no node names in public: {page}");
    let (code, json) = common::http_get(server.status, "/status.json").await;
    assert_eq!(code, 200);
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((j["status"].as_str(), j["incidents"][0]["state"].as_str()), (Some("degraded"), Some("open")));
    let (code, atom) = common::http_get(server.status, "/status.atom").await;
    assert_eq!(code, 200);
    assert!(
        atom.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">") && atom.contains("Disk failure in eu"),
        "{atom}"
    );
    assert!(atom.contains(&format!("http://localhost/status#incident-{id}")), "{atom}");
    // The admin API is not on the public listener.
    assert_eq!(common::http_get(server.status, "/admin/incidents").await.0, 404);
    assert_eq!(common::http_get(server.status, "/metrics").await.0, 404);

    let (code, _) =
        request(server.http, "POST", "/admin/incident", &format!(r#"{{"action":"resolve","id":{id}}}"#)).await;
    assert_eq!(code, 200);
    let (code, text) =
        request(server.http, "POST", "/admin/incident", &format!(r#"{{"action":"resolve","id":{id}}}"#)).await;
    assert!(code == 400 && text.contains("already resolved"), "{text}");

    // Fault switches exist only when the process was started to allow them.
    let (code, text) = request(server.http, "POST", "/admin/fault", r#"{"fault":"storage","on":true}"#).await;
    assert!(code == 400 && text.contains("FACTEUR_ALLOW_FAULTS"), "{text}");
}

#[test]
fn the_cli_lists_shows_and_changes_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_facteur")).arg("--data").arg(&data).args(args).output().unwrap()
    };
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert!(cli(&["init"]).status.success());
    let o = cli(&["incident", "list"]);
    assert!(o.status.success() && text(&o).contains("no incidents"), "{}", text(&o));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = rt.block_on(async {
        let store = facteur_store::sqlite::SqliteStore::open(&data.join("facteur.db")).unwrap();
        store.incident_change(report("storage", now())).await.unwrap().unwrap()
    });
    let o = cli(&["incident", "update", &id.to_string(), "Looking into it."]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["incident", "rename", &id.to_string(), "Slow disk"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["incident", "list"]);
    assert!(text(&o).contains("Slow disk") && text(&o).contains("degraded"), "{}", text(&o));
    let o = cli(&["incident", "show", &id.to_string()]);
    let shown = text(&o);
    assert!(shown.contains("Looking into it.") && shown.contains("Affected:  eu on n1"), "{shown}");
    assert!(shown.contains("(cli:"), "who did it: {shown}");
    let o = cli(&["incident", "resolve", &id.to_string(), "Disk replaced."]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["incident", "show", &id.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["updates"].as_array().unwrap().last().unwrap()["text"], "Disk replaced.");
    // Mistakes: a clear error naming the value, exit status not 0.
    let o = cli(&["incident", "resolve", &id.to_string()]);
    assert!(!o.status.success() && text(&o).contains("already resolved"), "{}", text(&o));
    let o = cli(&["incident", "update", "4242", "x"]);
    assert!(!o.status.success() && text(&o).contains("incident 4242"), "{}", text(&o));
    let o = cli(&["incident", "show", "4242"]);
    assert!(!o.status.success() && text(&o).contains("no incident 4242"), "{}", text(&o));
    let o = cli(&["incident", "show", "abc"]);
    assert!(!o.status.success() && text(&o).contains("abc"), "{}", text(&o));
}

fn announcement(kind: &'static str) -> Announcement {
    Announcement {
        kind,
        component: "storage".into(),
        title: "Storage is failing".into(),
        severity: (kind != "resolved").then_some(facteur_watch::incident::Severity::Major),
        regions: vec!["eu".into()],
        text: format!("Storage {kind}."),
        at: now(),
        node: "n1".into(),
        incident: None,
    }
}

/// An HTTP receiver answering `codes` in turn (then 204): each request's
/// signature header and body.
async fn receiver(codes: Vec<u16>) -> (u16, tokio::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut codes = codes.into_iter();
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length octets.
            let (head, body) = loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    while buf.len() < i + 4 + len {
                        let n = s.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break (head, buf[i + 4..i + 4 + len].to_vec());
                }
            };
            let code = codes.next().unwrap_or(204);
            s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let sig = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("X-Facteur-Signature: ").or_else(|| l.strip_prefix("x-facteur-signature: "))
                })
                .unwrap_or("")
                .to_string();
            let _ = tx.send((sig, body)).await;
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_webhook_after_retries_in_order_and_the_mailbox_through_the_queue() {
    let server = TestServer::start().await;
    let (port, mut hooks) = receiver(vec![503, 500]).await;
    let config = AlertConfig {
        webhook_url: format!("http://127.0.0.1:{port}/hook"),
        webhook_secret: "a-secret-of-sixteen+".into(),
        email: "alice@example.test".into(),
        ..AlertConfig::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let alerter = Alerter {
        store: server.store(),
        config,
        hostname: "mx.example.test".into(),
        clock: std::sync::Arc::new(facteur_types::SystemClock),
    };
    tokio::spawn(alerter.run(rx));
    tx.send(announcement("opened")).await.unwrap();
    tx.send(announcement("resolved")).await.unwrap();
    // Two refusals (2 s, then 4 s later), then the open, then the resolve.
    let mut got = Vec::new();
    while got.len() < 4 {
        let r = tokio::time::timeout(Duration::from_secs(20), hooks.recv()).await.expect("webhook tries").unwrap();
        got.push(r);
    }
    let events: Vec<String> =
        got.iter().map(|(_, body)| serde_json::from_slice::<Payload>(body).unwrap().event).collect();
    assert_eq!(events, ["incident.opened", "incident.opened", "incident.opened", "incident.resolved"]);
    for (sig, body) in &got {
        let t: i64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
        assert_eq!(sig, &facteur_watch::alert::sign("a-secret-of-sixteen+", t, body));
    }
    // The emails: class system, from the null sender, in alice's INBOX.
    let mut inbox = Vec::new();
    for _ in 0..100 {
        inbox = server.inbox("alice@example.test").await;
        if inbox.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert!(inbox[0].contains("Subject: [facteur] Incident: Storage is failing"), "{}", inbox[0]);
    assert!(inbox[1].contains("Subject: [facteur] Resolved: Storage is failing"), "{}", inbox[1]);
    assert!(
        inbox[0].contains("Auto-Submitted: auto-generated") && inbox[0].contains("Storage opened."),
        "{}",
        inbox[0]
    );
}
