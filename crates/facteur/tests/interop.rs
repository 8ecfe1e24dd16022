//! Interop with real clients: swaks (Debian package) and Python's smtplib.
//! A missing tool fails its test and names the package to install
//! (`bash .ci/run --deps-only` installs them all).

mod common;

use std::process::Command;

use common::{PASSWORD, TestServer, require, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_plain_and_authenticated() {
    require("swaks");
    let s = TestServer::start().await;
    let smtp = s.smtp;
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("swaks").args([
            "--server",
            &smtp.ip().to_string(),
            "--port",
            &smtp.port().to_string(),
            "--from",
            "sender@remote.test",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
        ]))
    })
    .await
    .unwrap();
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let sub = s.submission;
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("swaks").args([
            "--server",
            &sub.ip().to_string(),
            "--port",
            &sub.port().to_string(),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob@example.test",
            "--auth-password",
            PASSWORD,
            "--from",
            "bob@example.test",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: swaks submission",
        ]))
    })
    .await
    .unwrap();
    assert!(out.contains("235 2.7.0"), "{out}");
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 2);
    assert!(inbox[0].contains("Subject: via swaks") && inbox[0].contains("hello from swaks"));
    assert!(inbox[1].contains("Subject: swaks submission") && inbox[1].contains("with ESMTPSA"));
}

const PY: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
host, mx, sub, pw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m = EmailMessage()
m["From"] = "py@remote.test"; m["To"] = "alice@example.test"; m["Subject"] = "via smtplib"
m.set_content("caf\u00e9 \u2014 8bit body\n.leading dot\n")
with smtplib.SMTP(host, mx) as s:
    s.ehlo()
    assert s.has_extn("smtputf8") and s.has_extn("pipelining")
    refused = s.send_message(m, to_addrs=["alice@example.test", "bob@example.test"])
    assert refused == {}, refused
    try:
        s.sendmail("py@remote.test", ["nobody@example.test"], "Subject: x\r\n\r\nx\r\n")
        raise SystemExit("unknown user accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code = e.recipients["nobody@example.test"][0]
        assert code == 550, code
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, sub) as s:
    s.starttls(context=ctx)
    s.login("alice@example.test", pw)
    s.sendmail("alice@example.test", ["bob@example.test"], "Subject: smtplib submission\r\n\r\nhi\r\n")
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_delivers() {
    require("python3");
    let s = TestServer::start().await;
    let (mx, sub) = (s.smtp.port().to_string(), s.submission.port().to_string());
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args(["-c", PY, "127.0.0.1", &mx, &sub, PASSWORD]))
    })
    .await
    .unwrap();
    assert!(out.contains("ok"), "{out}");
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(alice.len(), 1);
    assert!(alice[0].contains("Subject: via smtplib"));
    let bob = s.inbox("bob@example.test").await;
    assert_eq!(bob.len(), 2);
    assert!(bob[1].contains("Subject: smtplib submission") && bob[1].contains("Message-ID: <"));
}

/// The configuration of [`relay_server`].
fn relay_config(route: facteur::config::RouteConfig) -> facteur::config::Config {
    let mut config = common::test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.delivery.enabled = true;
    config.delivery.connect_timeout_secs = 5;
    config.delivery.command_timeout_secs = 10;
    config.route = vec![route];
    config
}

/// A server that relays for loopback clients along `route`, on a manual
/// clock, whose delivery engine the test drives with `run_once`.
async fn relay_server(route: facteur::config::RouteConfig) -> TestServer {
    let config = relay_config(route);
    TestServer::start_opts(
        config,
        facteur::serve::StartOptions {
            clock: std::sync::Arc::new(facteur_store::ManualClock::new(1_800_000_000)),
            delivery_loop: false,
        },
    )
    .await
}

/// Outbound delivery to Postfix's smtp-sink: accepted, soft-rejected
/// (deferred) and hard-rejected (bounced) recipients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_postfix_smtp_sink() {
    use facteur::config::RouteConfig;
    use facteur_store::prelude::*;
    require("smtp-sink");
    for (flags, expect) in [
        (&[][..], RecipientStatus::Delivered),
        (&["-r", "RCPT"][..], RecipientStatus::Queued),
        (&["-f", "RCPT"][..], RecipientStatus::Bounced),
    ] {
        let dump = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dump.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut sink = Command::new("smtp-sink")
            .args(["-u", "nobody", "-d"])
            .arg(dump.path().join("msg."))
            .args(flags)
            .arg(format!("127.0.0.1:{port}"))
            .arg("16")
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let s = relay_server(RouteConfig {
            domain: "*".into(),
            via: format!("127.0.0.1:{port}"),
            tls: facteur_queue::TlsPolicy::None,
            ..Default::default()
        })
        .await;
        let mut c = common::Client::connect(s.smtp).await;
        c.ehlo().await;
        let r = c.send_mail("alice@example.test", &["someone@far.test"], "Subject: to the sink\r\n\r\nbody").await;
        let id = r.queued_id();
        s.engine().run_once().await;
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        let _ = sink.kill();
        let _ = sink.wait();
        assert_eq!(m.recipients[0].state, expect, "smtp-sink {flags:?}: {m:?}");
        let dumped: Vec<String> = std::fs::read_dir(dump.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        if expect == RecipientStatus::Delivered {
            assert_eq!(dumped.len(), 1);
            assert!(dumped[0].contains("Subject: to the sink") && dumped[0].contains(&id.to_string()), "{}", dumped[0]);
        } else {
            assert!(dumped.iter().all(|d| !d.contains("Subject: to the sink")));
            assert!(m.recipients[0].last_error.as_deref().unwrap().starts_with(if expect == RecipientStatus::Queued {
                "450"
            } else {
                "500"
            }));
        }
    }
}

/// Postfix's master runs as root, so a test that starts one must too.
fn require_root() {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(root, "starting a Postfix master needs root: run this test as root (bash .ci/run does)");
}

/// A private Postfix started by bench/postfix-peer.sh in a temporary folder:
/// one listener on 127.0.0.1, a catch-all Maildir for one domain, no DNS,
/// no outbound mail. Stopped on drop, after a panic too.
struct PostfixPeer {
    dir: tempfile::TempDir,
}

const PEER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/postfix-peer.sh");

impl PostfixPeer {
    fn start(port: u16, domain: &str) -> PostfixPeer {
        let peer = PostfixPeer { dir: tempfile::tempdir().unwrap() };
        run(Command::new(PEER_SCRIPT).arg("start").arg(peer.dir.path()).arg(port.to_string()).arg(domain));
        peer
    }

    /// The files delivered to the catch-all mailbox of `domain`.
    fn delivered(&self, domain: &str) -> Vec<String> {
        let new = self.dir.path().join("mail").join(domain).join("catchall/new");
        let Ok(entries) = std::fs::read_dir(new) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for PostfixPeer {
    fn drop(&mut self) {
        match Command::new(PEER_SCRIPT).arg("stop").arg(self.dir.path()).output() {
            Ok(o) if o.status.success() => {}
            other => eprintln!("postfix-peer.sh stop failed: {other:?}"),
        }
    }
}

/// Outbound delivery to a real Postfix that advertises DSN: three messages,
/// one with NOTIFY=SUCCESS, end up in its Maildir under both Received:
/// fields, and the success notice is left to Postfix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a Postfix master, which needs root: cargo test -- --include-ignored as root (bash .ci/run does)"]
async fn delivers_to_a_real_postfix() {
    use std::time::Duration;

    use facteur::config::RouteConfig;
    use facteur_store::prelude::*;
    require("postfix");
    require("postconf");
    require_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let peer = PostfixPeer::start(port, "pf.test");
    // Postfix offers no STARTTLS here: opportunistic TLS goes on in plaintext.
    let mut s = relay_server(RouteConfig {
        domain: "pf.test".into(),
        via: format!("127.0.0.1:{port}"),
        tls: facteur_queue::TlsPolicy::Opportunistic,
        ..Default::default()
    })
    .await;
    let mut c = common::Client::connect(s.smtp).await;
    c.ehlo().await;
    let mut ids = Vec::new();
    for (n, rcpt_params) in [(1, ""), (2, " NOTIFY=SUCCESS"), (3, "")] {
        c.ok("MAIL FROM:<alice@example.test>", 250).await;
        c.ok(&format!("RCPT TO:<someone@pf.test>{rcpt_params}"), 250).await;
        c.ok("DATA", 354).await;
        let data = format!("Subject: to postfix {n}\r\nFrom: <alice@example.test>\r\n\r\nbody {n}\r\n.\r\n");
        c.send_raw(data.as_bytes()).await;
        let r = c.reply().await;
        assert_eq!(r.code, 250, "{r:?}");
        ids.push(r.queued_id());
    }
    c.ok("QUIT", 221).await;

    tokio::time::timeout(Duration::from_secs(60), s.engine().run_once()).await.expect("delivery within 60 s");
    for &id in &ids {
        let m = s.store().queue_show(id).await.unwrap().unwrap();
        assert!(m.recipients.iter().all(|r| r.state == RecipientStatus::Delivered), "{m:?}");
    }

    let mut files = peer.delivered("pf.test");
    for _ in 0..200 {
        if files.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        files = peer.delivered("pf.test");
    }
    assert_eq!(files.len(), 3, "Postfix's Maildir after 20 s: {files:?}");
    for (n, id) in ids.iter().enumerate() {
        let subject = format!("Subject: to postfix {}", n + 1);
        let f = files.iter().find(|f| f.contains(&subject)).unwrap_or_else(|| panic!("no {subject}: {files:?}"));
        assert!(f.contains("Delivered-To: someone@pf.test\n"), "{f}");
        // Postfix's Received: field comes first, ours (naming our queue id) below it.
        let theirs = f.find("Received: from mx.example.test").unwrap_or_else(|| panic!("{f}"));
        let ours = f.find(&format!("by mx.example.test (facteur) with ESMTP id {id}")).unwrap_or_else(|| panic!("{f}"));
        assert_eq!(f.find("Received: "), Some(theirs), "{f}");
        assert!(f[theirs..ours].contains("by postfix.pf.test (Postfix)"), "{f}");
        assert!(f.ends_with(&format!("body {}\n", n + 1)), "{f}");
    }
    // Postfix took NOTIFY=SUCCESS, so the success notice is its to send.
    assert!(s.inbox("alice@example.test").await.is_empty(), "no notice from facteur");
    s.stop().await;
}

/// OpenDKIM as a milter (`Mode v`), its DNS through libunbound forwarded to
/// `dns` (`.test` is one of unbound's default local zones: opened up);
/// killed on drop.
struct OpenDkim {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl OpenDkim {
    fn start(dns: std::net::SocketAddr) -> OpenDkim {
        require("opendkim");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let unbound = dir.path().join("unbound.conf");
        std::fs::write(
            &unbound,
            format!(
                "server:\n  do-not-query-localhost: no\n  local-zone: \"test.\" nodefault\n\
                 forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n",
                dns.ip(),
                dns.port()
            ),
        )
        .unwrap();
        let conf = dir.path().join("opendkim.conf");
        std::fs::write(
            &conf,
            format!(
                "Mode v\nSocket inet:{port}@127.0.0.1\nResolverConfiguration {}\nBackground no\nSyslog no\n\
                 AuthservID postfix.pf.test\nPidFile {}\n",
                unbound.display(),
                dir.path().join("opendkim.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new("opendkim").arg("-f").arg("-x").arg(&conf).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "opendkim did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        OpenDkim { child, _dir: dir, port }
    }
}

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real peer checks facteur's DKIM signatures: Postfix with OpenDKIM as
/// its milter, fetching the keys `facteur dkim` made from the stub DNS,
/// finds both the ed25519 and the rsa-sha256 signature good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a Postfix master and OpenDKIM, which needs root: bash .ci/run does"]
async fn postfix_with_opendkim_verifies_facteurs_signatures() {
    use std::time::Duration;

    use facteur::config::RouteConfig;
    require("postfix");
    require("postconf");
    require_root();
    let dns = facteur_testkit::dns::StubDns::start().await.unwrap();
    let opendkim = OpenDkim::start(dns.addr);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let peer = PostfixPeer::start(port, "pf.test");
    let etc = peer.dir.path().join("etc");
    run(Command::new("postconf")
        .arg("-c")
        .arg(&etc)
        .arg("-e")
        .arg(format!("smtpd_milters=inet:127.0.0.1:{}", opendkim.port))
        .arg("milter_default_action=tempfail"));
    run(Command::new("postfix").arg("-c").arg(&etc).arg("reload"));

    let route = RouteConfig {
        domain: "pf.test".into(),
        via: format!("127.0.0.1:{port}"),
        tls: facteur_queue::TlsPolicy::Opportunistic,
        ..Default::default()
    };
    let config = relay_config(route);
    let mut s = TestServer::start_opts(
        config.clone(),
        facteur::serve::StartOptions {
            clock: std::sync::Arc::new(facteur_store::ManualClock::new(1_800_000_000)),
            delivery_loop: false,
        },
    )
    .await;
    let keys = facteur_auth::sign::generate(&s.dir.path().join("dkim"), "example.test", "s1", 2048).unwrap();
    for k in &keys {
        dns.txt(k.name().trim_end_matches('.'), &k.record);
    }
    s.running.as_ref().unwrap().reload(config).await.unwrap();

    let mut c = common::Client::connect(s.smtp).await;
    c.ehlo().await;
    // No Date or Message-ID: facteur adds them before it signs (else Postfix
    // would add them for a local client, after the signature).
    let body = "From: Alice <alice@example.test>\r\nTo: someone@pf.test\r\nSubject: signed for OpenDKIM\r\n\r\nHello.";
    let r = c.send_mail("alice@example.test", &["someone@pf.test"], body).await;
    assert_eq!(r.code, 250, "{r:?}");
    tokio::time::timeout(Duration::from_secs(60), s.engine().run_once()).await.expect("delivery within 60 s");
    let mut files = peer.delivered("pf.test");
    for _ in 0..200 {
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        files = peer.delivered("pf.test");
    }
    assert_eq!(files.len(), 1, "Postfix's Maildir: {files:?}");
    let f = files[0].replace("\n\t", " ");
    let results =
        f.lines().find(|l| l.starts_with("Authentication-Results: postfix.pf.test")).unwrap_or_else(|| panic!("{f}"));
    for a in ["ed25519-sha256", "rsa-sha256"] {
        assert!(
            results.split("dkim=").any(|m| m.starts_with("pass") && m.contains(&format!("header.a={a}"))),
            "OpenDKIM on {a}: {results}"
        );
    }
    s.stop().await;
}
