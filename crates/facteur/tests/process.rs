//! The real `facteur` binary: CLI commands, crash durability (SIGKILL in the
//! middle of many concurrent sessions) and the repair of a broken UID counter
//! across a restart.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, http_get};

const BIN: &str = env!("CARGO_BIN_EXE_facteur");

fn facteur(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("--data").arg(data).args(args).env_remove("FACTEUR_CONFIG").output().unwrap()
}

fn facteur_stdin(data: &Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    smtp: SocketAddr,
    http: SocketAddr,
    imap: SocketAddr,
}

/// A test that fails half-way must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `facteur serve` on fresh ports (delivery off) and wait until /readyz answers.
async fn serve(data: &Path) -> Server {
    serve_with(
        data,
        "[smtp]\ntrusted_networks = []\ngreet_pause_ms = 0\nmax_connections_per_ip = 0\nmax_messages_per_minute_per_ip = 0\n\
         [delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n[sender_auth]\nverify = false\n",
    )
    .await
}

/// The server's log (standard error), kept in the data folder.
fn log_file(data: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(data.join("serve.log")).unwrap()
}

fn server_log(data: &Path) -> String {
    std::fs::read_to_string(data.join("serve.log")).unwrap_or_default()
}

/// Start `facteur serve` on fresh ports with `extra` configuration. A port
/// found free can be taken by another test before the server binds it:
/// the server then exits saying so, and is started again on other ports.
async fn serve_with(data: &Path, extra: &str) -> Server {
    for _ in 0..3 {
        if let Some(server) = try_serve_with(data, extra).await {
            return server;
        }
    }
    panic!("facteur lost its ports to other tests three times:\n{}", server_log(data));
}

/// `None` when the server exited because a port was taken meanwhile.
async fn try_serve_with(data: &Path, extra: &str) -> Option<Server> {
    let (smtp, http, imap) = (free_port(), free_port(), free_port());
    let config = data.join("test.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhostname = \"mx.example.test\"\n[listen]\nsmtp = [\"127.0.0.1:{smtp}\"]\nsubmission = []\nsubmissions = []\nhttp = [\"127.0.0.1:{http}\"]\nimap = [\"127.0.0.1:{imap}\"]\nimaps = []\npop3 = []\npop3s = []\nstatus = []\n{extra}"
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log_file(data))
        .spawn()
        .unwrap();
    let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Server { child, smtp: lo(smtp), http: lo(http), imap: lo(imap) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(server.http).await.is_ok() && http_get(server.http, "/readyz").await.0 == 200
        {
            return Some(server);
        }
        if server.child.try_wait().unwrap().is_some() {
            let log = server_log(data);
            assert!(log.contains("cannot listen for"), "facteur exited at start:\n{log}");
            return None;
        }
        assert!(Instant::now() < deadline, "facteur did not become ready within 30 s:\n{}", server_log(data));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn provision(data: &Path) {
    let o = facteur(data, &["init"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur(data, &["domain", "add", "example.test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur_stdin(data, &["user", "add", "alice@example.test", "--password-stdin"], "pw\n");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn cli_manages_domains_users_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = facteur(d, &["check"]);
    assert!(!o.status.success() && text(&o).contains("no database at"), "{}", text(&o));
    assert!(text(&o).contains(&format!("facteur --data {} init", d.display())), "{}", text(&o));
    let o = facteur(d, &["user", "add", "carol@nowhere.test"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("facteur --data") || text(&o).contains("domain add nowhere.test"), "{}", text(&o));
    provision(d);
    let o = facteur(d, &["user", "add", "bob@example.test"]);
    assert!(o.status.success());
    assert!(text(&o).contains("password: "), "a generated password is shown: {}", text(&o));
    let o = facteur(d, &["user", "list", "--json"]);
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert!(users.to_string().contains("alice@example.test"));
    assert!(!users.to_string().contains("argon2"), "hashes never printed");
    let o = facteur(d, &["domain", "list", "--json"]);
    let domains: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(domains[0]["name"], "example.test");
    assert_eq!(domains[0]["users"], 2);
    let o = facteur(d, &["domain", "remove", "example.test"]);
    assert!(!o.status.success() && text(&o).contains("still has 2 user(s)"), "{}", text(&o));
    // Send-as grants (RFC 6409 §6.1).
    let o = facteur(d, &["user", "sender", "add", "alice@example.test", "sales@example.test"]);
    assert!(o.status.success() && text(&o).contains("may now send as sales@example.test"), "{}", text(&o));
    let o = facteur(d, &["user", "sender", "add", "alice@example.test", "@shop.test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur(d, &["user", "sender", "add", "alice@example.test", "not an address"]);
    assert!(!o.status.success() && text(&o).contains("\"not an address\""), "{}", text(&o));
    let o = facteur(d, &["user", "sender", "add", "nobody@example.test", "x@example.test"]);
    assert!(!o.status.success() && text(&o).contains("nobody@example.test"), "{}", text(&o));
    let o = facteur(d, &["user", "sender", "list", "--json"]);
    let grants: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(grants.as_array().unwrap().len(), 2, "{grants}");
    let o = facteur(d, &["user", "sender", "remove", "alice@example.test", "@shop.test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur(d, &["user", "sender", "list", "alice@example.test"]);
    assert!(text(&o).contains("sales@example.test") && !text(&o).contains("@shop.test"), "{}", text(&o));
    let o = facteur_stdin(d, &["user", "passwd", "bob@example.test", "--password-stdin"], "new\n");
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur(d, &["user", "remove", "bob@example.test"]);
    assert!(o.status.success());
    let o = facteur(d, &["user", "remove", "bob@example.test"]);
    assert!(!o.status.success() && text(&o).contains("bob@example.test"), "{}", text(&o));
    let o = facteur(d, &["queue", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    let o = facteur(d, &["queue", "show", "nonsense"]);
    assert!(!o.status.success() && text(&o).contains("nonsense"), "{}", text(&o));
    let o = facteur(d, &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("all hold"));
    let o = facteur(d, &["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
    // A bad config file names the key.
    std::fs::write(d.join("bad.toml"), "[smtp]\nmax_recipients = \"many\"\n").unwrap();
    let o =
        Command::new(BIN).arg("--data").arg(d).arg("--config").arg(d.join("bad.toml")).arg("check").output().unwrap();
    assert!(!o.status.success() && text(&o).contains("max_recipients"), "{}", text(&o));
}

fn body_for(token: &str) -> String {
    format!("Subject: {token}\r\nX-Token: {token}\r\n\r\n{}\r\n", format!("payload {token} ").repeat(20))
}

/// Every message acknowledged with 250 survives a SIGKILL, intact, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let mut server = serve(dir.path()).await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for client in 0..12 {
        let acked = acked.clone();
        let addr = server.smtp;
        tasks.push(tokio::spawn(async move {
            let Ok(s) = tokio::net::TcpStream::connect(addr).await else { return };
            let mut c = Client::from_stream(Box::new(s));
            if c.try_reply().await.is_none() {
                return;
            }
            c.send_raw(b"EHLO c\r\n").await;
            if c.try_reply().await.is_none() {
                return;
            }
            for n in 0..400 {
                let token = format!("tok-{client}-{n}");
                c.send_raw(
                    format!(
                        "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{}.\r\n",
                        body_for(&token)
                    )
                    .as_bytes(),
                )
                .await;
                let mut last = None;
                for _ in 0..4 {
                    match c.try_reply().await {
                        Some(r) => last = Some(r),
                        None => return,
                    }
                }
                if last.is_some_and(|r| r.code == 250) {
                    acked.lock().unwrap().push(token);
                }
            }
        }));
    }
    // Kill while sessions are mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 600, "only {} acknowledged before the deadline", acked.len());

    // Restart: the store opens cleanly and every acknowledged message is there.
    let mut server = serve(dir.path()).await;
    let conn = rusqlite::Connection::open(dir.path().join("facteur.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT b.data FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id")
        .unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for data in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
        let data = String::from_utf8(data.unwrap()).unwrap();
        let token = data.split("X-Token: ").nth(1).unwrap().split("\r\n").next().unwrap().to_string();
        assert!(data.ends_with(&body_for(&token)), "message {token} is not intact");
        *stored.entry(token).or_default() += 1;
    }
    for t in &acked {
        assert_eq!(stored.get(t), Some(&1), "acknowledged {t} lost or duplicated");
    }
    assert!(stored.values().all(|&n| n == 1), "a message was stored twice");
    let o = facteur(dir.path(), &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// The Zendesk Sell failure: the UID counter vanishes in an "upgrade". facteur
/// reports it, repairs it from the data at start, and keeps storing mail with
/// UIDs above every existing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_uid_counter_is_repaired_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let deliver = |addr: SocketAddr, subject: &'static str| async move {
        let mut c = Client::connect(addr).await;
        c.ehlo().await;
        let r = c.send_mail("s@remote.test", &["alice@example.test"], &format!("Subject: {subject}\r\n\r\nx")).await;
        assert_eq!(r.code, 250, "{r:?}");
    };
    let mut server = serve(dir.path()).await;
    for s in ["one", "two", "three"] {
        deliver(server.smtp, s).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let db = dir.path().join("facteur.db");
    rusqlite::Connection::open(&db).unwrap().execute("DELETE FROM uid_counters", []).unwrap();
    let o = facteur(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("has no UID counter; highest stored UID is 3"), "{}", text(&o));

    let mut server = serve(dir.path()).await;
    deliver(server.smtp, "four").await;
    let o = facteur(dir.path(), &["check"]);
    assert!(o.status.success(), "{}", text(&o));
    // Corrupt it backwards while running: the next message still gets a fresh UID.
    rusqlite::Connection::open(&db).unwrap().execute("UPDATE uid_counters SET uidnext = 1", []).unwrap();
    deliver(server.smtp, "five").await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT mm.uid, b.data FROM mailbox_messages mm JOIN message_bodies b ON b.message_id = mm.message_id ORDER BY mm.uid",
        )
        .unwrap();
    let rows: Vec<(u32, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, String::from_utf8_lossy(&r.get::<_, Vec<u8>>(1)?).into_owned())))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let uids: Vec<u32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(uids, [1, 2, 3, 4, 5]);
    assert!(rows[3].1.contains("Subject: four") && rows[4].1.contains("Subject: five"));
    // The operator's view of the same mailbox.
    let o = facteur(dir.path(), &["mailbox", "list", "alice@example.test", "--json"]);
    let boxes: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let inbox = boxes.as_array().unwrap().iter().find(|b| b["name"] == "INBOX").expect("an INBOX");
    assert_eq!((inbox["messages"].as_u64(), inbox["uidnext"].as_u64()), (Some(5), Some(6)));
    let o = facteur(dir.path(), &["mailbox", "fetch", "alice@example.test", "5"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Subject: five"), "{}", text(&o));
    let o = facteur(dir.path(), &["mailbox", "fetch", "alice@example.test", "9"]);
    assert!(!o.status.success() && text(&o).contains("no message with UID 9"), "{}", text(&o));
}

/// Pre-flight: a database written by a newer facteur is refused with a
/// message that says so; nothing is migrated or written.
#[test]
fn newer_schema_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let db = dir.path().join("facteur.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", [])
        .unwrap();
    let o = Command::new(BIN).arg("--data").arg(dir.path()).arg("serve").stdin(Stdio::null()).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("schema version 99 is newer than this facteur knows"), "{}", text(&o));
    let o = facteur(dir.path(), &["check"]);
    assert!(!o.status.success() && text(&o).contains("schema version 99"), "{}", text(&o));
}

/// SIGKILL while thousands of messages are being relayed: after a restart
/// every message reaches the destination, at most twice for those in flight
/// at the kill, never zero times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_loses_nothing() {
    use facteur_testkit::{Behavior, Downstream};
    const MESSAGES: usize = 2000;
    let sim = Downstream::start(Behavior::accept_all()).await;
    let dir = tempfile::tempdir().unwrap();
    assert!(facteur(dir.path(), &["init"]).status.success());
    let config = |delivery: bool| {
        format!(
            "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\n[delivery]\nenabled = {delivery}\ndns_servers = [\"127.0.0.1:9\"]\n\
             [[route]]\ndomain = \"*\"\nvia = \"{}\"\ntls = \"none\"\n",
            sim.addr()
        )
    };
    // Accept a backlog with delivery off (every message acknowledged).
    let mut server = serve_with(dir.path(), &config(false)).await;
    let mut tasks = Vec::new();
    for client in 0..8 {
        let addr = server.smtp;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.ehlo().await;
            for n in 0..MESSAGES / 8 {
                let token = format!("tok-{client}-{n}");
                c.send_raw(
                    format!("MAIL FROM:<s@relay.test>\r\nRCPT TO:<r@far.test>\r\nDATA\r\n{}.\r\n", body_for(&token))
                        .as_bytes(),
                )
                .await;
                for code in [250, 250, 354, 250] {
                    assert_eq!(c.reply().await.code, code);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Deliver, and kill in the middle of it.
    let mut server = serve_with(dir.path(), &config(true)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.accepted() < MESSAGES / 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let at_kill = sim.accepted();
    assert!(at_kill < MESSAGES, "delivery finished before the kill; the test proves nothing");
    // Restart: the leases of the killed run are released, the rest goes out.
    let mut server = serve_with(dir.path(), &config(true)).await;
    let count = || {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for m in sim.received() {
            let data = String::from_utf8_lossy(&m.data).into_owned();
            let token = data.split("X-Token: ").nth(1).unwrap().split("\r\n").next().unwrap().to_string();
            assert!(data.ends_with(&body_for(&token)), "{token} arrived damaged");
            *seen.entry(token).or_default() += 1;
        }
        seen
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count().len() < MESSAGES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = count();
    let o = facteur(dir.path(), &["queue", "list", "--json"]);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(seen.len(), MESSAGES, "messages lost: {} of {MESSAGES} arrived", seen.len());
    assert!(seen.values().all(|&n| n <= 2), "a message arrived more than twice");
    // Only what was in flight at the kill may repeat (at most the node's concurrency).
    let twice = seen.values().filter(|&&n| n == 2).count();
    assert!(twice <= 200, "{twice} duplicates");
    eprintln!("killed after {at_kill} of {MESSAGES} deliveries; {twice} delivered twice");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]", "queue not empty");
}

/// `facteur dkim generate` while a server runs: the server reads the keys
/// again (a domain's first selector signs at once) and the next message
/// leaves signed, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_generate_reloads_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let server = serve_with(
        d,
        "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n",
    )
    .await;
    let content = |id: String| text(&facteur(d, &["queue", "show", &id, "--content"]));
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let body = "From: alice@example.test\r\nSubject: hi\r\n\r\nx";
    let r = c.send_mail("alice@example.test", &["far@remote.test"], body).await;
    assert!(!content(r.queued_id().to_string()).contains("DKIM-Signature"));
    let o = facteur(d, &["dkim", "generate", "example.test", "--selector", "s1", "--rsa-bits", "2048"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reloaded") && text(&o).contains("DKIM signing: example.test (s1)"), "{}", text(&o));
    // A new connection gets the reloaded configuration.
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("alice@example.test", &["far@remote.test"], body).await;
    let signed = content(r.queued_id().to_string());
    assert_eq!(signed.matches("DKIM-Signature:").count(), 2, "{signed}");
    drop(server);
}

/// The operator's queue controls through the CLI, with the audit trail and
/// a DSN for `delete --bounce`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_controls_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let mut server = serve_with(
        d,
        "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n[sender_auth]\nverify = false\n",
    )
    .await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("alice@example.test", &["far@remote.test"], "Subject: stuck\r\n\r\nx").await;
    let id = r.queued_id().to_string();
    let state = |d: &Path| {
        let o = facteur(d, &["queue", "show", &id, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["recipients"][0]["state"].as_str().unwrap().to_string()
    };
    let o = facteur(d, &["queue", "list"]);
    assert!(text(&o).contains(&id) && text(&o).contains("far@remote.test"), "{}", text(&o));
    assert!(facteur(d, &["queue", "hold", &id]).status.success());
    assert_eq!(state(d), "held");
    assert!(facteur(d, &["queue", "release", &id]).status.success());
    assert_eq!(state(d), "queued");
    let o = facteur(d, &["queue", "retry", "--all"]);
    assert!(o.status.success() && text(&o).contains("1 recipient(s)"), "{}", text(&o));
    let o = facteur(d, &["queue", "retry"]);
    assert!(!o.status.success(), "retry needs an id or --all");
    // No terminal, no --yes: refused.
    let o =
        Command::new(BIN).arg("--data").arg(d).args(["queue", "delete", &id]).stdin(Stdio::null()).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("--yes"), "{}", text(&o));
    assert_eq!(state(d), "queued");
    let o = facteur(d, &["queue", "delete", &id, "--bounce", "--yes"]);
    assert!(o.status.success() && text(&o).contains("1 sender(s) notified"), "{}", text(&o));
    assert_eq!(state(d), "deleted");
    let o = facteur(d, &["queue", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let actions: Vec<&str> = v["audit"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["hold", "release", "delete"]);
    assert!(v["audit"][2]["actor"].as_str().unwrap().starts_with("cli:"));
    // The bounce reached Alice's INBOX.
    let o = facteur(d, &["mailbox", "fetch", "alice@example.test", "1"]);
    let dsn = String::from_utf8_lossy(&o.stdout);
    assert!(dsn.contains("multipart/report") && dsn.contains("far@remote.test") && dsn.contains("5.0.0"), "{dsn}");
    assert!(facteur(d, &["queue", "list", "--json"]).stdout.starts_with(b"[]"));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Operator controls from the CLI and the HTTP admin API (token required),
/// and the live per-destination state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_controls_cli_and_http() {
    use facteur_testkit::{Behavior, Downstream};
    let sim = Downstream::start(Behavior::accept_all()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let extra = format!(
        "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\n[admin]\ntoken = \"s3cret-token\"\n\
         [delivery]\ndns_servers = [\"127.0.0.1:9\"]\n[[route]]\ndomain = \"*\"\nvia = \"{}\"\ntls = \"none\"\n",
        sim.addr()
    );
    let mut server = serve_with(d, &extra).await;
    let cfg = d.join("test.toml");
    let cli =
        |args: &[&str]| Command::new(BIN).arg("--data").arg(d).arg("--config").arg(&cfg).args(args).output().unwrap();
    // Pause bulk, then send a newsletter and a personal message.
    let o = cli(&["queue", "pause", "--class", "bulk"]);
    assert!(o.status.success() && text(&o).contains("pause:class:bulk"), "{}", text(&o));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    c.send_mail("news@list.test", &["x@far.test"], "List-Id: <l.list.test>\r\nSubject: promo\r\n\r\nb").await;
    c.send_mail("friend@people.test", &["x@far.test"], "Subject: hello\r\n\r\nhi").await;
    assert!(sim.wait_for(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.received().len(), 1, "bulk is paused");
    let o = cli(&["queue", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bulk = v["classes"].as_array().unwrap().iter().find(|x| x["class"] == "bulk").unwrap().clone();
    assert_eq!(bulk["queued"], 1);
    assert_eq!(v["controls"][0]["key"], "pause:class:bulk");
    // The live state of far.test, through the admin API.
    let o = cli(&["queue", "destinations", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["domain"], "far.test");
    assert!(v[0]["shaper"]["concurrency_limit"].as_u64().unwrap() >= 1);
    // HTTP: no token, no entry; with it, resume bulk.
    let http = server.http;
    let raw = |req: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let r = raw("GET /admin/controls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let body = r#"{"action":"resume","class":"bulk"}"#;
    let r = raw(format!(
        "POST /admin/control HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains("resumed"), "{r}");
    let bad = r#"{"action":"pause","class":"spam"}"#;
    let r = raw(format!(
        "POST /admin/control HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
        bad.len()
    ))
    .await;
    assert!(r.starts_with("HTTP/1.1 400") && r.contains("spam"), "{r}");
    assert!(sim.wait_for(2, Duration::from_secs(10)).await, "bulk flows once resumed");
    // Rates, and the audit trail names who did what.
    assert!(cli(&["queue", "rate", "--destination", "far.test", "5"]).status.success());
    assert!(cli(&["queue", "rate", "--clear"]).status.success());
    let o = cli(&["queue", "rate", "--destination", "far.test", "-3"]);
    assert!(!o.status.success());
    let conn = rusqlite::Connection::open(d.join("facteur.db")).unwrap();
    let actors: Vec<String> = conn
        .prepare("SELECT actor || ' ' || detail FROM audit WHERE action IN ('control', 'retry') ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(actors[0].starts_with("cli:") && actors[0].contains("pause:class:bulk = 1"), "{actors:?}");
    assert!(actors.iter().any(|a| a.starts_with("http:admin") && a.contains("pause:class:bulk cleared")), "{actors:?}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Resident memory of a process, in KiB (Linux /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Before login, an IMAP connection can make the server hold at most
/// `max_preauth_command` octets (8 KiB) of a command: chained LITERAL+
/// used to be buffered up to 64 MiB each (8 connections: 504 MB of RSS).
/// Here 200 connections each hold as much of a command as the limit allows
/// (6 KiB, never ended) and stay open: the server's RSS may grow by 32 MiB
/// at most. 200 more push past the limit: each is told BYE and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_unauthenticated_imap_connections_stay_small() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let mut server = serve_with(
        d,
        "[smtp]\ntrusted_networks = []\ngreet_pause_ms = 0\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n[sender_auth]\nverify = false\n\
         [imap]\nmax_connections_per_ip = 0\n",
    )
    .await;
    let pid = server.child.id();
    let before = rss_kib(pid);
    let literal = |n: usize| format!("{{3000+}}\r\n{} ", "A".repeat(3000)).repeat(n);
    async fn open(addr: SocketAddr) -> tokio::net::TcpStream {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 256];
        let _ = s.read(&mut greeting).await.unwrap();
        s
    }
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = open(server.imap).await;
        s.write_all(format!("a{i} LOGIN {}", literal(2)).as_bytes()).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let holding = rss_kib(pid);
    let mut pushed = Vec::new();
    for i in 0..200 {
        let mut s = open(server.imap).await;
        // Up to 30 literals of 3,000: the server closes long before.
        let _ = s.write_all(format!("b{i} LOGIN {}", literal(30)).as_bytes()).await;
        pushed.push(s);
    }
    let mut byes = 0;
    for s in &mut pushed {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out);
        if out.contains("* BYE") && out.contains("too large before login") {
            byes += 1;
        }
    }
    let after = rss_kib(pid);
    println!(
        "RSS: {before} KiB at rest, {holding} KiB with 200 connections holding 6 KiB each, {after} KiB after 200 more were cut"
    );
    assert_eq!(byes, 200, "each connection past the limit is told BYE");
    assert!(holding < before + 32 * 1024, "RSS grew from {before} KiB to {holding} KiB");
    assert!(after < before + 32 * 1024, "RSS grew from {before} KiB to {after} KiB");
    drop(held);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// SIGTERM: sessions are told (SMTP 421 even in the middle of DATA, IMAP
/// BYE), and the process is gone within the shutdown deadline (a stuck
/// session once kept it burning a core for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_sessions_and_exits_within_the_deadline() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let mut server = serve(d).await;
    let mut smtp = Client::connect(server.smtp).await;
    smtp.ehlo().await;
    smtp.ok("MAIL FROM:<a@remote.test>", 250).await;
    smtp.ok("RCPT TO:<alice@example.test>", 250).await;
    smtp.ok("DATA", 354).await;
    smtp.send_raw(b"Subject: half a message\r\n\r\nsome of it").await;
    let mut imap = tokio::io::BufReader::new(tokio::net::TcpStream::connect(server.imap).await.unwrap());
    let mut greeting = String::new();
    imap.read_line(&mut greeting).await.unwrap();
    imap.get_mut().write_all(b"a NOOP\r\n").await.unwrap();
    let mut ok = String::new();
    imap.read_line(&mut ok).await.unwrap();
    let t = Instant::now();
    // SAFETY: kill sends a signal to a child we started.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) }, 0);
    let r = smtp.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().starts_with("4.3.2"), "{r:?}");
    let mut bye = String::new();
    tokio::time::timeout(Duration::from_secs(10), imap.read_line(&mut bye)).await.unwrap().unwrap();
    assert!(bye.starts_with("* BYE"), "{bye}");
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(25), "still running after the shutdown deadline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(12), "took {:?}", t.elapsed());
}

/// A data folder that exists but lost its database (a mount that did not
/// come up, a zero-length file) is refused, not made into a new, empty
/// server; a folder that does not exist yet is a new installation.
#[test]
fn a_data_folder_without_its_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    std::fs::create_dir(&d).unwrap();
    // The folder still has its configuration and certificate, not its database.
    std::fs::write(d.join("facteur.toml"), "[server]\nhostname = \"mx.example.test\"\n").unwrap();
    std::fs::create_dir(d.join("tls")).unwrap();
    let o = facteur(&d, &["serve"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no database at") && text(&o).contains("storage is mounted"), "{}", text(&o));
    assert!(!d.join("facteur.db").exists(), "no new database was made");
    // A zero-length database file: the same.
    std::fs::write(d.join("facteur.db"), b"").unwrap();
    let o = facteur(&d, &["serve"]);
    assert!(!o.status.success() && text(&o).contains("is empty (0 octets)"), "{}", text(&o));
    let o = facteur(&d, &["domain", "add", "example.test"]);
    assert!(!o.status.success() && text(&o).contains("init"), "{}", text(&o));
    // The explicit way: init (an empty file counts as none), then it works.
    let o = facteur(&d, &["init"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur(&d, &["domain", "add", "example.test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = facteur(&d, &["init"]);
    assert!(!o.status.success() && text(&o).contains("already holds a facteur database"), "{}", text(&o));
}

/// A folder that does not exist: `serve` creates it and says so loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_new_folder_is_a_new_installation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("fresh");
    let (smtp, http) = (free_port(), free_port());
    let config = dir.path().join("ports.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nsmtp = [\"127.0.0.1:{smtp}\"]\nsubmission = []\nsubmissions = []\nhttp = [\"127.0.0.1:{http}\"]\n\
             imap = []\nimaps = []\npop3 = []\npop3s = []\nstatus = []\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n[sender_auth]\nverify = false\n"
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--data")
        .arg(&d)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http_addr: SocketAddr = ([127, 0, 0, 1], http).into();
    let t = Instant::now();
    while http_get_ok(http_addr).await.is_none() {
        assert!(t.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second server on the same folder is refused, naming the first.
    let o = Command::new(BIN).arg("--data").arg(&d).arg("--config").arg(&config).arg("serve").output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("pid {}", child.id())), "{}", text(&o));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NEW INSTALLATION: created data folder"), "{stdout}");
    assert!(d.join("facteur.db").exists());
}

async fn http_get_ok(addr: SocketAddr) -> Option<()> {
    tokio::net::TcpStream::connect(addr).await.ok()?;
    (http_get(addr, "/readyz").await.0 == 200).then_some(())
}

/// SIGHUP reloads the configuration and the certificate without dropping a
/// session (it used to kill the server: exit 129, no 421); a file that does
/// not parse leaves the running configuration in force, and the log says
/// what changed or why nothing did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_configuration_and_certificate_without_dropping_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let mut server = serve_with(
        d,
        "[smtp]\ntrusted_networks = []\ngreet_pause_ms = 0\nmax_message_size = 1000000\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n[sender_auth]\nverify = false\n",
    )
    .await;
    let hup = |pid: u32| {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    };
    let mut open = Client::connect(server.smtp).await;
    assert!(open.ehlo().await.text().contains("SIZE 1000000"));
    // A new size, and a new certificate in place of the generated one.
    let cfg = d.join("test.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("max_message_size = 1000000", "max_message_size = 2000000")).unwrap();
    let renewed = rcgen::generate_simple_self_signed(vec!["mx.example.test".to_string()]).unwrap();
    std::fs::write(d.join("tls/cert.pem"), renewed.cert.pem()).unwrap();
    std::fs::write(d.join("tls/key.pem"), renewed.key_pair.serialize_pem()).unwrap();
    hup(server.child.id());
    let t = Instant::now();
    loop {
        let mut c = Client::connect(server.smtp).await;
        if c.ehlo().await.text().contains("SIZE 2000000") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the new size never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.child.try_wait().unwrap().is_none(), "SIGHUP killed the server");
    // The session opened before goes on, with what it was told.
    let r = open.send_mail("a@remote.test", &["alice@example.test"], "Subject: still here\r\n\r\nx").await;
    assert_eq!(r.code, 250, "{r:?}");
    // New TLS handshakes present the new certificate.
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    c.ok("STARTTLS", 220).await;
    let tls = common::tls_connector().connect("mx.example.test".try_into().unwrap(), c.into_raw()).await.unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(presented, renewed.cert.der().to_vec(), "the renewed certificate");
    // A file that does not parse: refused, the running configuration stays.
    std::fs::write(&cfg, text.replace("max_message_size = 1000000", "max_message_size = \"lots\"")).unwrap();
    hup(server.child.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.child.try_wait().unwrap().is_none());
    let mut c = Client::connect(server.smtp).await;
    assert!(c.ehlo().await.text().contains("SIZE 2000000"), "still the last good configuration");
    let log = server_log(d);
    assert!(
        log.contains("configuration reloaded")
            && log.contains("[smtp], [classify], [addressing], [quota] and [sender_auth]: changed"),
        "{log}"
    );
    assert!(log.contains("configuration reload refused") && log.contains("max_message_size"), "{log}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Rejections leave a trace: each is one structured event (target
/// facteur::reject: listener, client, what, why, the reply), and a flood of
/// them is cut to a budget with the rest counted, so the disk does not fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_logged_and_a_flood_of_them_is_bounded() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let mut server = serve_with(
        d,
        "[smtp]\ntrusted_networks = []\ngreet_pause_ms = 0\nmax_connections_per_ip = 0\n\
         max_messages_per_minute_per_ip = 0\n[imap]\nplaintext_auth = true\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n[sender_auth]\nverify = false\n",
    )
    .await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<a@remote.test>", 250).await;
    c.ok("RCPT TO:<nosuch@example.test>", 550).await;
    c.ok("RCPT TO:<someone@elsewhere.test>", 554).await;
    c.ok(&format!("NOOP {}", "x".repeat(3000)), 500).await;
    c.ok("RCPT TO:<alice@example.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: smuggled\r\n\r\nbare\nline\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 554);
    let hops = "Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n".repeat(101);
    let r = c.send_mail("a@remote.test", &["alice@example.test"], &format!("{hops}Subject: loop\r\n\r\nx")).await;
    assert_eq!(r.code, 554);
    // A TLS handshake that fails.
    let mut t = Client::connect(server.smtp).await;
    t.ehlo().await;
    t.ok("STARTTLS", 220).await;
    let mut raw = t.into_raw();
    raw.write_all(b"this is not a TLS ClientHello\r\n").await.unwrap();
    drop(raw);
    // A failed IMAP login.
    let mut imap = tokio::net::TcpStream::connect(server.imap).await.unwrap();
    imap.write_all(b"a LOGIN alice@example.test wrong\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(imap);
    let log = server_log(d);
    let events: Vec<&str> = log.lines().filter(|l| l.contains("facteur::reject") && l.contains("rejected")).collect();
    for (what, needle) in [
        ("RCPT", "550 5.1.1"),
        ("RCPT", "Relay access denied"),
        ("line", "line too long"),
        ("DATA", "bare CR or LF"),
        ("DATA", "5.4.6"),
        ("tls", ""),
        ("auth", "wrong password or unknown user"),
    ] {
        assert!(
            events.iter().any(|l| l.contains(&format!("what=\"{what}\"")) && l.contains(needle)),
            "no {what} event with {needle:?} in:\n{}",
            events.join("\n")
        );
    }
    assert!(events.iter().all(|l| l.contains("client=127.0.0.1:") && l.contains("listener=")), "{events:?}");
    // A flood: 100 sessions of 19 refused recipients each, as fast as they go.
    let before = events.len();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = server.smtp;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.ehlo().await;
            c.ok("MAIL FROM:<a@remote.test>", 250).await;
            let mut batch = String::new();
            for n in 0..19 {
                batch.push_str(&format!("RCPT TO:<nosuch{n}@example.test>\r\n"));
            }
            c.send_raw(batch.as_bytes()).await;
            for _ in 0..19 {
                assert_eq!(c.reply().await.code, 550);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The count of what was suppressed goes out with the next event the
    // budget admits: one more rejection once a token has come back.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<a@remote.test>", 250).await;
    c.ok("RCPT TO:<nosuch@example.test>", 550).await;
    let log = server_log(d);
    let flood = log.lines().filter(|l| l.contains("facteur::reject") && l.contains("rejected")).count() - before;
    assert!(flood < 1500, "{flood} lines for 1,900 rejections: not bounded");
    assert!(log.contains("rejections not logged one by one"), "the suppressed ones are counted");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Output piped into a reader that stops early (`| head -1`) ends the
/// command quietly, never with a panic.
#[test]
fn a_closed_output_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    for n in 0..200 {
        let o = facteur(d, &["domain", "add", &format!("d{n}.test")]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(d)
        .args(["domain", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before reading anything.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// `facteur reload` asks the running server (SIGHUP) and prints what its
/// reload did; `facteur config check` and `facteur config show` read the
/// same file without a server.
#[tokio::test]
async fn reload_check_config_and_config_show_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let o = facteur(d, &["reload"]);
    assert!(!o.status.success() && text(&o).contains("no facteur server is running"), "{}", text(&o));
    let server = serve(d).await;
    let cfg = d.join("test.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{base}[quota]\nwarn_percent = 80\n")).unwrap();
    let o = facteur(d, &["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reloaded") && text(&o).contains("[quota] and [sender_auth]: changed"), "{}", text(&o));
    let o = facteur(d, &["reload"]);
    assert!(o.status.success() && !text(&o).contains("[quota]"), "the second time nothing changed: {}", text(&o));
    std::fs::write(&cfg, format!("{base}[quota]\nwarn_percent = \"lots\"\n")).unwrap();
    let o = facteur(d, &["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("reload refused") && text(&o).contains("warn_percent"), "{}", text(&o));
    drop(server);

    // The same file, read by the commands.
    std::fs::write(&cfg, format!("{base}[admin]\ntoken = \"change-me-to-a-long-random-string\"\n")).unwrap();
    let run =
        |args: &[&str]| Command::new(BIN).arg("--data").arg(d).arg("--config").arg(&cfg).args(args).output().unwrap();
    let o = run(&["config", "check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("valid") && text(&o).contains("warning: admin.token is the example"), "{}", text(&o));
    let o = run(&["config", "show", "-n"]);
    let shown = text(&o);
    assert!(shown.contains("[admin]") && shown.contains("token = \"<redacted>\""), "{shown}");
    assert!(!shown.contains("change-me") && !shown.contains("max_recipients"), "{shown}");
    let o = run(&["config", "show"]);
    assert!(text(&o).contains("max_recipients = "), "every default is shown");
    std::fs::write(&cfg, "[smtp]\nmax_recipients = 5\n").unwrap();
    let o = run(&["config", "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("RFC 5321"), "{}", text(&o));
}

/// `facteur backup` while the server takes mail, then `facteur restore`:
/// refused while a server runs, refused for a damaged copy, and otherwise
/// the database of the backup, with the one it replaced kept.
#[tokio::test]
async fn backup_while_serving_and_restore_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let server = serve(d).await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    assert_eq!(c.send_mail("bob@remote.test", &["alice@example.test"], "Subject: kept\r\n\r\nkept").await.code, 250);
    // Mail keeps coming while the copy is made.
    let smtp = server.smtp;
    let load = tokio::spawn(async move {
        let mut c = Client::connect(smtp).await;
        c.ehlo().await;
        for i in 0..100 {
            let r =
                c.send_mail("bob@remote.test", &["alice@example.test"], &format!("Subject: during {i}\r\n\r\nx")).await;
            assert_eq!(r.code, 250);
        }
    });
    let bk = d.join("backups/monday");
    let o = facteur(d, &["backup", bk.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("checked"), "{}", text(&o));
    load.await.unwrap();
    for f in ["facteur.db", "facteur.toml", "cert.pem", "key.pem", "backup.txt"] {
        assert!(bk.join(f).is_file(), "{f} is in the backup");
    }
    let o = facteur(d, &["backup", bk.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("not empty"), "{}", text(&o));
    let o = facteur(d, &["restore", bk.to_str().unwrap(), "--yes"]);
    assert!(!o.status.success() && text(&o).contains("in use by another facteur server"), "{}", text(&o));
    drop(server);

    // After the backup: a user the restore will take away.
    let o = facteur_stdin(d, &["user", "add", "late@example.test", "--password-stdin"], "pw\n");
    assert!(o.status.success(), "{}", text(&o));
    let junk = d.join("junk.db");
    std::fs::write(&junk, b"this is not a database").unwrap();
    let o = facteur(d, &["restore", junk.to_str().unwrap(), "--yes"]);
    assert!(!o.status.success() && text(&o).contains("junk.db"), "{}", text(&o));
    assert!(text(&facteur(d, &["user", "list"])).contains("late@example.test"), "nothing replaced");
    let o = facteur(d, &["restore", bk.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("--yes"), "asks first: {}", text(&o));
    let o = facteur(d, &["restore", bk.to_str().unwrap(), "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kept as"), "{}", text(&o));
    assert!(!text(&facteur(d, &["user", "list"])).contains("late@example.test"));
    assert!(facteur(d, &["check"]).status.success());
    let o = facteur(d, &["mailbox", "fetch", "alice@example.test", "1"]);
    assert!(text(&o).contains("Subject: kept"), "{}", text(&o));
    let kept: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("facteur.db.before-restore-") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

/// How many messages a user's INBOX holds, from `facteur mailbox list`.
fn inbox_count(data: &Path, user: &str) -> u64 {
    let o = facteur(data, &["mailbox", "list", user, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array().unwrap().iter().find(|m| m["name"] == "INBOX").unwrap()["messages"].as_u64().unwrap()
}

/// Storage faults, part 1: the disk fails an fsync (EIO, injected by
/// strace into the running server). The message in flight is never
/// acknowledged; the server stops loudly (exit 74) instead of carrying on
/// with a database it can no longer trust; after a restart every message
/// acknowledged before is there, and mail is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and strace (ptrace); run by .ci/run"]
async fn a_failed_fsync_is_never_acknowledged_and_stops_the_server() {
    common::require("strace");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    provision(d);
    let config =
        "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n";
    let mut server = serve_with(d, config).await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    for i in 0..5 {
        let r = c.send_mail("a@remote.test", &["alice@example.test"], &format!("Subject: before {i}\r\n\r\nx")).await;
        assert_eq!(r.code, 250, "{r:?}");
    }
    // Every fsync and fdatasync of every thread fails from now on.
    let pid = server.child.id().to_string();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync", "-e"])
        .arg("inject=fsync,fdatasync:error=EIO")
        .args(["-p", &pid])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.ok("MAIL FROM:<a@remote.test>", 250).await;
    c.ok("RCPT TO:<alice@example.test>", 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: during\r\n\r\nx\r\n.\r\n").await;
    // No reply at all is fine too: the server stopped first; the client retries.
    if let Some(r) = c.try_reply().await {
        assert_ne!(r.code, 250, "acknowledged over a failed fsync: {r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server carried on after a failed fsync:\n{}", server_log(d));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = strace.kill();
    let _ = strace.wait();
    assert_eq!(status.code(), Some(74), "{}", server_log(d));
    assert!(server_log(d).contains("storage I/O error"), "{}", server_log(d));
    // Restarted: what was acknowledged is there, and new mail is taken.
    drop(server);
    let at_least = inbox_count(d, "alice@example.test");
    assert!(at_least >= 5, "acknowledged messages lost: {at_least} of 5 in the INBOX");
    let server = serve_with(d, config).await;
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: after\r\n\r\nx").await;
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(inbox_count(d, "alice@example.test"), at_least + 1);
}

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount a tmpfs (needs root): {}", text(&o));
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Storage faults, part 2: the data folder's disk fills up (ENOSPC on a
/// small tmpfs, the free-space guards turned off so the database itself
/// meets it). Messages get `452 4.3.1`, never `250`; every acknowledged
/// one is stored; once room returns the server takes mail again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a tmpfs; run by .ci/run"]
async fn a_full_disk_answers_452_and_recovers_when_room_returns() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small"), "4m");
    let d = fs.0.join("data");
    provision(&d);
    let config = "[smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\n[delivery]\nenabled = false\ndns_servers = [\"127.0.0.1:9\"]\n\
                  [admission]\nfree_disk_bytes = [0, 0, 0]\nreserve_bytes = 0\n";
    let server = serve_with(&d, config).await;
    // Leave about 600 KiB free.
    let filler = fs.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        drop(f);
        let len = std::fs::metadata(&filler).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(len - 600 * 1024).unwrap();
    }
    let body = format!(
        "Subject: big\r\n\r\n{}",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(1200)
    );
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let mut acknowledged = 0;
    let full = loop {
        let r = c.send_mail("a@remote.test", &["alice@example.test"], &body).await;
        if r.code != 250 {
            break r;
        }
        acknowledged += 1;
        assert!(acknowledged < 100, "the disk never filled");
    };
    assert_eq!(full.code, 452, "{full:?}");
    assert!(full.text().starts_with("4.3.1"), "{full:?}");
    assert!(acknowledged > 0, "nothing fitted: the test's sizes are wrong");
    // Still full: still 452, and the server is up.
    let r = c.send_mail("a@remote.test", &["alice@example.test"], &body).await;
    assert_eq!(r.code, 452, "{r:?}");
    assert_eq!(inbox_count(&d, "alice@example.test"), acknowledged, "{}", server_log(&d));
    // Room again: mail is taken with no restart.
    std::fs::remove_file(&filler).unwrap();
    let r = c.send_mail("a@remote.test", &["alice@example.test"], &body).await;
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(inbox_count(&d, "alice@example.test"), acknowledged + 1);
    drop(server);
}
