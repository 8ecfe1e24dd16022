//! POP3 interop with real clients: Python's poplib (implicit TLS and STLS)
//! and fetchmail (Debian package). A missing tool fails its test and names
//! the package to install.

mod common;

use std::process::Command;

use base64::Engine as _;
use common::{Client, PASSWORD, TestServer, require};
use facteur_store::prelude::*;

const ALICE: &str = "alice@example.test";

/// Run a command; its exit status and stdout + stderr.
fn output(cmd: &mut Command) -> (Option<i32>, String) {
    let o = cmd.output().unwrap();
    (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// Three messages to alice over SMTP; the second has body lines starting
/// with "." (stuffed for SMTP, so stored as ".leading dot").
async fn deliver(s: &TestServer) {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for i in 1..=3 {
        let body = if i == 2 { "first line\r\n..leading dot\r\n..\r\nlast line" } else { "hello" };
        let data = format!("From: <sender@remote.test>\r\nTo: <{ALICE}>\r\nSubject: message {i}\r\n\r\n{body}");
        let r = c.send_mail("sender@remote.test", &[ALICE], &data).await;
        assert_eq!(r.code, 250, "{r:?}");
    }
}

/// alice's INBOX: its id, UIDVALIDITY and (uid, size) per message.
async fn inbox(s: &TestServer) -> (i64, u32, Vec<(u32, u64)>) {
    let store = s.store();
    let mb = store.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let msgs = store.mailbox_messages(mb.id).await.unwrap();
    (mb.id, mb.uidvalidity, msgs.into_iter().map(|m| (m.uid, m.size)).collect())
}

const PY: &str = r#"
import base64, json, poplib, ssl, sys
host, pop3s, pop3, user, pw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
out = {}
# STLS on the plain port first: look, change nothing.
p = poplib.POP3(host, pop3)
caps = p.capa()
assert "STLS" in caps and "USER" not in caps, caps
p.stls(context=ctx)
caps = p.capa()
assert "USER" in caps and "STLS" not in caps and caps["SASL"] == ["PLAIN"], caps
p.user(user); p.pass_(pw)
out["stls_stat"] = list(p.stat())
p.quit()
# Implicit TLS: the whole transaction.
p = poplib.POP3_SSL(host, pop3s, context=ctx)
out["greeting"] = p.getwelcome().decode()
p.user(user); p.pass_(pw)
out["stat"] = list(p.stat())
resp, lines, _ = p.list()
out["list"] = [l.decode() for l in lines]
resp, lines, _ = p.uidl()
out["uidl"] = [l.decode() for l in lines]
resp, lines, octets = p.retr(2)
out["retr_resp"] = resp.decode()
out["retr"] = base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode()
resp, lines, _ = p.top(3, 0)
out["top"] = [l.decode() for l in lines]
out["dele"] = p.dele(1).decode()
try:
    p.retr(1)
    raise SystemExit("a deleted message was retrieved")
except poplib.error_proto as e:
    out["retr_deleted"] = e.args[0].decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_retrieves_and_deletes() {
    require("python3");
    let s = TestServer::start().await;
    deliver(&s).await;
    let (mb, uidvalidity, msgs) = inbox(&s).await;
    let (pop3s, pop3) = (s.pop3s.port().to_string(), s.pop3.port().to_string());
    let (code, out) = tokio::task::spawn_blocking(move || {
        output(Command::new("python3").args(["-c", PY, "127.0.0.1", &pop3s, &pop3, ALICE, PASSWORD]))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let octets: u64 = msgs.iter().map(|m| m.1).sum();
    assert_eq!(v["stls_stat"], serde_json::json!([3, octets]));
    assert_eq!(v["greeting"], "+OK mx.example.test facteur POP3 server ready");
    assert_eq!(v["stat"], serde_json::json!([3, octets]));
    let list: Vec<String> = msgs.iter().enumerate().map(|(i, m)| format!("{} {}", i + 1, m.1)).collect();
    assert_eq!(v["list"], serde_json::json!(list));
    let uidl: Vec<String> = msgs.iter().enumerate().map(|(i, m)| format!("{} {uidvalidity}.{}", i + 1, m.0)).collect();
    assert_eq!(v["uidl"], serde_json::json!(uidl));
    assert_eq!(v["retr_resp"], format!("+OK {} octets", msgs[1].1));
    // poplib undoes the byte-stuffing: what it got is what is stored.
    let retr = base64::engine::general_purpose::STANDARD.decode(v["retr"].as_str().unwrap()).unwrap();
    let stored = s.store().fetch_message(mb, msgs[1].0).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&retr), String::from_utf8_lossy(&stored));
    assert!(String::from_utf8_lossy(&retr).contains("\r\n.leading dot\r\n.\r\nlast line\r\n"));
    let top = v["top"].as_array().unwrap();
    assert!(top.iter().any(|l| l == "Subject: message 3"), "{top:?}");
    assert_eq!(top.last().unwrap(), "");
    assert_eq!(v["dele"], "+OK message 1 deleted");
    assert_eq!(v["retr_deleted"], "-ERR message 1 already deleted");
    assert_eq!(v["quit"], "+OK mx.example.test facteur POP3 signing off (2 messages left)");
    let (_, _, after) = inbox(&s).await;
    assert_eq!(after, msgs[1..]);
}

/// Run fetchmail with this rcfile (mode 0600, as fetchmail demands) and a
/// private HOME; its exit code and verbose output (the POP3 dialogue).
async fn fetchmail(home: &std::path::Path, rc: String) -> (Option<i32>, String) {
    use std::os::unix::fs::PermissionsExt;
    let path = home.join(".fetchmailrc");
    std::fs::write(&path, rc).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || {
        output(
            Command::new("fetchmail")
                .env("HOME", &home)
                .env("FETCHMAILHOME", &home)
                .arg("--fetchmailrc")
                .arg(&path)
                .args(["--verbose", "--nodetach"]),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_retrieves_and_empties_the_inbox() {
    require("fetchmail");
    let s = TestServer::start().await;
    deliver(&s).await;
    let home = tempfile::tempdir().unwrap();
    let mbox = home.path().join("fetched.mbox");
    // Implicit TLS on the pop3s port (the certificate is self-signed), USER/PASS,
    // every message, deleted after delivery to the MDA.
    let rc = format!(
        "set no syslog\n\
         poll 127.0.0.1 service {port} protocol POP3 auth password\n  \
         user \"{ALICE}\" there with password \"{PASSWORD}\"\n  \
         ssl no sslcertck fetchall no keep\n  \
         mda \"cat >> {mbox}\"\n",
        port = s.pop3s.port(),
        mbox = mbox.display(),
    );
    let (code, out) = fetchmail(home.path(), rc).await;
    // 0: mail was retrieved.
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("3 messages for alice@example.test"), "{out}");
    for cmd in ["POP3> RETR 3", "POP3> DELE 3", "POP3> QUIT", "signing off (0 messages left)"] {
        assert!(out.contains(cmd), "{cmd}: {out}");
    }
    let got = std::fs::read_to_string(&mbox).unwrap_or_else(|e| panic!("{e}: {out}"));
    for i in 1..=3 {
        assert_eq!(got.matches(&format!("Subject: message {i}")).count(), 1, "{got}");
    }
    // fetchmail undid the byte-stuffing.
    let lines: Vec<&str> = got.lines().map(|l| l.trim_end_matches('\r')).collect();
    let at = lines.iter().position(|l| *l == "first line").unwrap_or_else(|| panic!("{got}"));
    assert_eq!(lines[at..at + 4], ["first line", ".leading dot", ".", "last line"], "{got}");
    assert!(inbox(&s).await.2.is_empty(), "fetchmail deleted what it fetched:\n{out}");

    // Again on the plain port, where fetchmail finds STLS in CAPA and must use it.
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("sender@remote.test", &[ALICE], "Subject: message 4\r\n\r\nfour").await;
    assert_eq!(r.code, 250, "{r:?}");
    let rc = format!(
        "set no syslog\n\
         poll 127.0.0.1 service {port} protocol POP3\n  \
         user \"{ALICE}\" there with password \"{PASSWORD}\"\n  \
         sslproto \"tls1.2+\" no sslcertck fetchall no keep\n  \
         mda \"cat >> {mbox}\"\n",
        port = s.pop3.port(),
        mbox = mbox.display(),
    );
    let (code, out) = fetchmail(home.path(), rc).await;
    assert_eq!(code, Some(0), "{out}");
    for step in ["POP3> CAPA", "POP3> STLS", "POP3> USER", "1 message for alice@example.test", "POP3> DELE 1"] {
        assert!(out.contains(step), "{step}: {out}");
    }
    assert!(std::fs::read_to_string(&mbox).unwrap().contains("Subject: message 4"));
    assert!(inbox(&s).await.2.is_empty(), "{out}");
}
