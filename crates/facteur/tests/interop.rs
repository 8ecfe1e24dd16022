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

    /// Stop the instance, change its main.cf (`postconf -e` of each of
    /// `main`) and master.cf (`postconf -M` of each of `master`), start it
    /// again on `port`, and go through one whole session (greeting, QUIT).
    ///
    /// Not `postfix reload`: it does not wait, and the smtpd that answered
    /// the start's probe (idle) may still take the next client with the old
    /// settings. And one session first, alone: OpenDKIM sets its resolver
    /// up on its first milter connections without a lock, and libunbound's
    /// configuration parser is not thread-safe, so two sessions at once can
    /// both be refused (451 4.7.1 at CONNECT).
    fn restart_with(&self, port: u16, main: &[String], master: &[&str]) {
        use std::io::{BufRead, Write};
        use std::time::{Duration, Instant};
        run(Command::new(PEER_SCRIPT).arg("stop").arg(self.dir.path()));
        let etc = self.dir.path().join("etc");
        run(Command::new("postconf").arg("-c").arg(&etc).arg("-e").args(main));
        for service in master {
            run(Command::new("postconf").arg("-c").arg(&etc).arg("-M").arg(service));
        }
        run(Command::new("postfix").arg("-c").arg(&etc).arg("start"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut session = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) => assert!(Instant::now() < deadline, "Postfix did not listen on {port} again: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        session.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut replies = std::io::BufReader::new(session.try_clone().unwrap());
        let mut line = String::new();
        replies.read_line(&mut line).unwrap();
        assert!(line.starts_with("220 "), "Postfix's greeting: {line:?}");
        session.write_all(b"QUIT\r\n").unwrap();
        line.clear();
        replies.read_line(&mut line).unwrap();
        assert!(line.starts_with("221 "), "Postfix's reply to QUIT: {line:?}");
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

/// OpenDKIM as a milter (`Mode v`, or what [`OpenDkim::start_with`] is
/// given), its DNS through libunbound forwarded to `dns` (`.test` is one of
/// unbound's default local zones: opened up); killed on drop.
struct OpenDkim {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl OpenDkim {
    fn start(dns: std::net::SocketAddr) -> OpenDkim {
        Self::start_with(dns, "Mode v\nAuthservID postfix.pf.test\n")
    }

    /// With `settings` (lines of opendkim.conf: the mode and what it needs).
    fn start_with(dns: std::net::SocketAddr, settings: &str) -> OpenDkim {
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
                "{settings}Socket inet:{port}@127.0.0.1\nResolverConfiguration {}\nBackground no\nSyslog no\n\
                 PidFile {}\n",
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
    peer.restart_with(
        port,
        &[format!("smtpd_milters=inet:127.0.0.1:{}", opendkim.port), "milter_default_action=tempfail".into()],
        &[],
    );

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

/// A new 2048-bit RSA key in `dir/NAME.pem` (mode 0600) and its DKIM TXT
/// record.
fn rsa_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    use base64::Engine;
    require("openssl");
    let path = dir.join(format!("{name}.pem"));
    run(Command::new("openssl").arg("genrsa").arg("-out").arg(&path).arg("2048"));
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut public = Command::new("openssl");
    let der = public.arg("rsa").arg("-in").arg(&path).args(["-pubout", "-outform", "DER"]).output().unwrap();
    assert!(der.status.success(), "openssl rsa -pubout: {}", String::from_utf8_lossy(&der.stderr));
    (path, format!("v=DKIM1; k=rsa; p={}", base64::engine::general_purpose::STANDARD.encode(&der.stdout)))
}

/// The other way: Postfix with OpenDKIM as its milter (`Mode s`) signs
/// sender.test's mail (rsa-sha256, OpenDKIM's default simple/simple) and
/// relays it to facteur's MX port, where sender authentication checks it
/// against the stub DNS: the published key passes, and a signature whose
/// published key is another one fails, which under `p=reject` (with no SPF
/// to vouch for the null sender) is refused with 550 5.7.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a Postfix master and OpenDKIM, which needs root: bash .ci/run does"]
async fn postfix_with_opendkim_signs_mail_facteur_verifies() {
    use std::time::Duration;

    require("postfix");
    require("postconf");
    require_root();
    let dns = facteur_testkit::dns::StubDns::start().await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (signing, published) = rsa_key(keys.path(), "s1");
    let (_, another) = rsa_key(keys.path(), "another");
    dns.txt("s1._domainkey.sender.test", &published);
    // s2 signs with the same key as s1, but DNS has another key for it.
    dns.txt("s2._domainkey.sender.test", &another);
    dns.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject");
    let key_table = keys.path().join("KeyTable");
    std::fs::write(&key_table, format!("s1 sender.test:s1:{k}\ns2 sender.test:s2:{k}\n", k = signing.display()))
        .unwrap();
    let signing_table = keys.path().join("SigningTable");
    std::fs::write(&signing_table, "liar@sender.test s2\nsender.test s1\n").unwrap();
    let opendkim = OpenDkim::start_with(
        dns.addr,
        &format!(
            // RequireSafeKeys checks every folder up to the key: /tmp is
            // writable by all, so every key in a temporary folder is "unsafe".
            "Mode s\nKeyTable {}\nSigningTable {}\nSignatureAlgorithm rsa-sha256\nRequireSafeKeys no\n",
            key_table.display(),
            signing_table.display()
        ),
    );

    let mut config = common::test_config();
    config.delivery.dns_servers = vec![dns.addr];
    config.sender_auth.verify = true;
    config.sender_auth.budget_secs = 5;
    let mut s = TestServer::start_with(config).await;

    // Postfix signs what its loopback clients send (OpenDKIM's default
    // InternalHosts) and relays everything not @sender.test to facteur's
    // MX port by address: no DNS.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let peer = PostfixPeer::start(port, "sender.test");
    peer.restart_with(
        port,
        &[
            format!("smtpd_milters=inet:127.0.0.1:{}", opendkim.port),
            "milter_default_action=tempfail".into(),
            format!("default_transport=smtp:[127.0.0.1]:{}", s.smtp.port()),
            "smtp_tls_security_level=none".into(),
        ],
        &["smtp/unix=smtp unix - - n - - smtp"],
    );

    let sent = [
        ("news@sender.test", "news@sender.test", "signed with the published key"),
        ("liar@sender.test", "liar@sender.test", "signed with another key"),
        ("", "liar@sender.test", "another key and the null sender"),
    ];
    let mut c = common::Client::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
    c.ehlo().await;
    for (n, (mail_from, from, subject)) in sent.iter().enumerate() {
        let body = format!(
            "From: <{from}>\r\nTo: <alice@example.test>\r\nSubject: {subject}\r\n\
             Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m{n}@sender.test>\r\n\r\nHello from Postfix.\r\n"
        );
        let r = c.send_mail(mail_from, &["alice@example.test"], body.trim_end_matches("\r\n")).await;
        assert_eq!(r.code, 250, "Postfix took {subject:?}: {r:?}");
    }
    c.ok("QUIT", 221).await;

    // Two delivered, one refused (in Postfix's log: facteur's reply).
    let maillog = peer.dir.path().join("log/maillog");
    let log = || std::fs::read_to_string(&maillog).unwrap_or_default();
    let mut inbox = Vec::new();
    for _ in 0..600 {
        inbox = s.inbox("alice@example.test").await;
        if inbox.len() == sent.len() || inbox.len() == 2 && log().contains("said: 550") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = log();
    assert_eq!(inbox.len(), 2, "facteur's INBOX after 60 s: {inbox:#?}\nPostfix's log:\n{log}");
    let find = |subject: &str| {
        inbox
            .iter()
            .find(|m| m.contains(&format!("Subject: {subject}\r\n")))
            .unwrap_or_else(|| panic!("{subject}: {inbox:#?}"))
    };

    let good = find(sent[0].2);
    let r = common::our_results(good);
    assert!(r.contains("dkim=pass header.d=sender.test header.s=s1"), "{r}");
    assert!(r.contains("spf=pass") && r.contains("smtp.mailfrom=news@sender.test"), "{r}");
    assert!(r.contains("dmarc=pass header.from=sender.test"), "{r}");
    assert_eq!(good.matches("Authentication-Results: ").count(), 1, "{good}");
    // What OpenDKIM signed with: rsa-sha256, d=sender.test, s=s1.
    let signature = good.replace("\r\n\t", " ");
    let signature = signature.lines().find(|l| l.starts_with("DKIM-Signature: ")).unwrap_or_else(|| panic!("{good}"));
    for tag in ["a=rsa-sha256;", "d=sender.test;", "s=s1;"] {
        assert!(signature.contains(tag), "{tag} in {signature}");
    }

    // SPF still vouches for liar@sender.test (DMARC passes), but the
    // signature does not verify against the key DNS has for s2.
    let r = common::our_results(find(sent[1].2));
    assert!(r.contains("dkim=fail") && r.contains("header.d=sender.test header.s=s2"), "{r}");
    assert!(!r.contains("dkim=pass"), "{r}");
    assert!(r.contains("dmarc=pass header.from=sender.test"), "{r}");

    // With the null sender nothing else vouches for From: sender.test:
    // facteur refuses it at the end of DATA, and Postfix logs why.
    let refused = log.lines().find(|l| l.contains("said: 550")).unwrap_or_else(|| panic!("{log}"));
    assert!(refused.contains("550 5.7.1") && refused.contains("DMARC policy of sender.test (p=reject)"), "{refused}");
    let queue_id = refused.split(": ").nth(1).unwrap_or_else(|| panic!("{refused}"));
    assert!(log.contains(&format!("{queue_id}: from=<>,")), "{queue_id} is the null sender's: {log}");
    assert!(inbox.iter().all(|m| !m.contains(sent[2].2)), "{inbox:#?}");
    s.stop().await;
}
