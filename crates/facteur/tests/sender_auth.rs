//! Sender authentication over real TCP: strangers' mail on the MX port is
//! checked (SPF, DKIM, ARC, DMARC) against a stub DNS server on loopback,
//! gets one Authentication-Results field, and the verdict decides: INBOX,
//! Junk, or 550 5.7.1 at the end of DATA.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Client, TestServer, test_config};
use facteur_testkit::dns::StubDns;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

/// bank.example: SPF for 127.0.0.1 only when asked, DKIM key "s1", DMARC
/// as given. The client connects from 127.0.0.1.
struct World {
    dns: StubDns,
    key: Vec<u8>,
}

impl World {
    async fn new(spf: &str, dmarc: &str) -> World {
        let dns = StubDns::start().await.unwrap();
        let key = Ed25519Key::generate_pkcs8().unwrap();
        let public = Ed25519Key::from_pkcs8_der(&key).unwrap().public_key();
        let p = base64::engine::general_purpose::STANDARD.encode(public);
        dns.txt("bank.example", spf);
        dns.txt("s1._domainkey.bank.example", &format!("v=DKIM1; k=ed25519; p={p}"));
        if !dmarc.is_empty() {
            dns.txt("_dmarc.bank.example", dmarc);
        }
        World { dns, key }
    }

    fn sign(&self, message: &str) -> String {
        let key = Ed25519Key::from_pkcs8_der(&self.key).unwrap();
        let signature = DkimSigner::from_key(key)
            .domain("bank.example")
            .selector("s1")
            .headers(["From", "To", "Subject", "Date"])
            .sign(message.as_bytes())
            .unwrap();
        format!("{}{message}", signature.to_header())
    }

    async fn server(&self, tune: impl FnOnce(&mut facteur::config::Config)) -> TestServer {
        let mut config = test_config();
        config.delivery.dns_servers = vec![self.dns.addr];
        config.sender_auth.verify = true;
        config.sender_auth.budget_secs = 3;
        tune(&mut config);
        TestServer::start_with(config).await
    }
}

const MESSAGE: &str = "From: Bank <alerts@bank.example>\r\nTo: alice@example.test\r\nSubject: Your statement\r\n\
Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <s1@bank.example>\r\n\r\nHello Alice.\r\n";

async fn send(server: &TestServer, from: &str, body: &str) -> common::Reply {
    let mut c = Client::connect(server.smtp).await;
    c.ok("EHLO mail.bank.example", 250).await;
    c.send_mail(from, &["alice@example.test"], body.trim_end_matches("\r\n")).await
}

async fn mailbox(server: &TestServer, user: &str, name: &str) -> Vec<String> {
    let store = server.store();
    use facteur_store::prelude::*;
    let mb = store.list_mailboxes(user).await.unwrap().into_iter().find(|m| m.name == name).unwrap();
    let mut out = Vec::new();
    for uid in 1..mb.uidnext {
        if let Some(m) = store.fetch_message(mb.id, uid).await.unwrap() {
            out.push(String::from_utf8_lossy(&m).into_owned());
        }
    }
    out
}

#[tokio::test]
async fn aligned_mail_passes_and_forged_results_in_our_name_are_removed() {
    let world = World::new("v=spf1 ip4:127.0.0.1 -all", "v=DMARC1; p=reject").await;
    let server = world.server(|_| {}).await;
    let forged = "Authentication-Results: mx.example.test; dkim=pass header.d=paypal.example\r\n\
Authentication-Results: relay.example.net; spf=pass\r\n";
    let body = format!("{forged}{}", world.sign(MESSAGE));
    let reply = send(&server, "bounces@bank.example", &body).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let inbox = server.inbox("alice@example.test").await;
    assert_eq!(inbox.len(), 1);
    let r = common::our_results(&inbox[0]);
    assert!(r.contains("dkim=pass header.d=bank.example header.s=s1"), "{r}");
    assert!(r.contains("spf=pass"), "{r}");
    assert!(r.contains("smtp.mailfrom=bounces@bank.example"), "{r}");
    assert!(r.contains("dmarc=pass header.from=bank.example"), "{r}");
    assert_eq!(inbox[0].matches("Authentication-Results: mx.example.test").count(), 1, "{}", inbox[0]);
    assert!(!inbox[0].contains("paypal.example"), "the forged field stays: {}", inbox[0]);
    assert!(inbox[0].contains("Authentication-Results: relay.example.net; spf=pass"), "another server's is kept");
    // Ours comes right under our Received field.
    let received = inbox[0].find("Received: ").unwrap();
    assert!(received < inbox[0].find("Authentication-Results: mx.example.test").unwrap());
}

#[tokio::test]
async fn a_dmarc_failure_under_p_reject_is_refused_at_the_end_of_data() {
    let world = World::new("v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=reject").await;
    let server = world.server(|_| {}).await;
    // Not signed, and SPF fails: nothing vouches for From: bank.example.
    let reply = send(&server, "alerts@bank.example", MESSAGE).await;
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(reply.text().contains("5.7.1"), "{reply:?}");
    assert!(reply.text().contains("DMARC policy of bank.example (p=reject)"), "{reply:?}");
    assert!(server.inbox("alice@example.test").await.is_empty());
    assert!(mailbox(&server, "alice@example.test", "Junk").await.is_empty());
    // A signature from the domain makes the same message welcome.
    let reply = send(&server, "alerts@bank.example", &world.sign(MESSAGE)).await;
    assert_eq!(reply.code, 250, "{reply:?}");
}

#[tokio::test]
async fn a_dmarc_failure_under_p_quarantine_goes_to_junk() {
    let world = World::new("v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=quarantine").await;
    let server = world.server(|_| {}).await;
    let reply = send(&server, "alerts@bank.example", MESSAGE).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(server.inbox("alice@example.test").await.is_empty());
    let junk = mailbox(&server, "alice@example.test", "Junk").await;
    assert_eq!(junk.len(), 1);
    let r = common::our_results(&junk[0]);
    assert!(r.contains("dmarc=fail header.from=bank.example policy.dmarc=quarantine"), "{r}");
    assert!(r.contains("spf=fail"), "{r}");
}

#[tokio::test]
async fn an_spf_fail_alone_is_delivered_unless_configured_and_per_domain_settings_win() {
    let world = World::new("v=spf1 ip4:192.0.2.1 -all", "").await;
    let server = world.server(|_| {}).await;
    assert_eq!(send(&server, "alerts@bank.example", MESSAGE).await.code, 250);
    let inbox = server.inbox("alice@example.test").await;
    assert!(common::our_results(&inbox[0]).contains("spf=fail"), "{}", inbox[0]);
    drop(server);

    let strict = world.server(|c| c.sender_auth.spf_fail = facteur_auth::Action::Reject).await;
    let reply = send(&strict, "alerts@bank.example", MESSAGE).await;
    assert_eq!(reply.code, 550, "{reply:?}");
    assert!(reply.text().contains("5.7.23") && reply.text().contains("SPF of bank.example fails"), "{reply:?}");
    drop(strict);

    let lenient = world
        .server(|c| {
            c.sender_auth.spf_fail = facteur_auth::Action::Reject;
            c.sender_auth.domains.insert(
                "example.test".into(),
                facteur_auth::policy::DomainPolicy { spf_fail: Some(facteur_auth::Action::Junk), ..Default::default() },
            );
        })
        .await;
    assert_eq!(send(&lenient, "alerts@bank.example", MESSAGE).await.code, 250);
    assert_eq!(mailbox(&lenient, "alice@example.test", "Junk").await.len(), 1);
}

#[tokio::test]
async fn a_dns_server_that_never_answers_costs_the_budget_and_delivers_with_temperror() {
    let world = World::new("v=spf1 -all", "v=DMARC1; p=reject").await;
    world.dns.silent("quiet.example").silent("_dmarc.quiet.example").silent("mail.quiet.example");
    let server = world.server(|c| c.sender_auth.budget_secs = 2).await;
    let started = Instant::now();
    let mut c = Client::connect(server.smtp).await;
    c.ok("EHLO mail.quiet.example", 250).await;
    let body = "From: q@quiet.example\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello";
    let reply = c.send_mail("q@quiet.example", &["alice@example.test"], body).await;
    let took = started.elapsed();
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(took < Duration::from_secs(6), "the budget bounds the wait: {took:?}");
    let inbox = server.inbox("alice@example.test").await;
    assert!(common::our_results(&inbox[0]).contains("temperror"), "{}", inbox[0]);
}

#[tokio::test]
async fn submission_and_trusted_clients_are_not_checked() {
    let world = World::new("v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=reject").await;
    let server = world.server(|c| c.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let before = world.dns.queries();
    // From a trusted network: relayed in as it is, no lookups.
    assert_eq!(send(&server, "alerts@bank.example", MESSAGE).await.code, 250);
    let inbox = server.inbox("alice@example.test").await;
    assert!(!inbox[0].contains("Authentication-Results"), "{}", inbox[0]);
    assert_eq!(world.dns.queries(), before);
}

#[tokio::test]
async fn verification_can_be_turned_off() {
    let world = World::new("v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=reject").await;
    let server = world.server(|c| c.sender_auth.verify = false).await;
    assert_eq!(send(&server, "alerts@bank.example", MESSAGE).await.code, 250);
    assert!(!server.inbox("alice@example.test").await[0].contains("Authentication-Results: mx.example.test"));
    assert_eq!(world.dns.queries(), 0);
}

/// `message` signed by dkimpy (Debian's python3-dkim, an independent
/// implementation) with a new RSA key, `algorithm` rsa-sha256 or
/// rsa-sha1; with the key's TXT record.
fn dkimpy_sign(message: &str, algorithm: &str) -> (String, String) {
    common::require("openssl");
    let script = r#"
import base64, subprocess, sys, dkim
key = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True).stdout
der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=key, check=True, capture_output=True).stdout
msg = sys.stdin.buffer.read()
sig = dkim.sign(msg, b"py", b"bank.example", key, include_headers=[b"from", b"to", b"subject"],
                signature_algorithm=sys.argv[1].encode())
sys.stdout.buffer.write(b"v=DKIM1; k=rsa; p=" + base64.b64encode(der) + b"\n" + sig + msg)
"#;
    let out = common::python(script, &[algorithm], message.as_bytes());
    let (record, signed) = out.split_once('\n').unwrap();
    (signed.to_string(), record.to_string())
}

#[tokio::test]
async fn dkimpy_signatures_verify_and_rsa_sha1_is_not_accepted() {
    let world = World::new("v=spf1 ip4:192.0.2.1 -all", "v=DMARC1; p=reject").await;
    let server = world.server(|_| {}).await;
    let (signed, record) = dkimpy_sign(MESSAGE, "rsa-sha256");
    world.dns.txt("py._domainkey.bank.example", &record);
    // SPF fails; DMARC passes through dkimpy's aligned signature.
    let reply = send(&server, "alerts@bank.example", &signed).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    let r = common::our_results(&server.inbox("alice@example.test").await[0]);
    assert!(r.contains("dkim=pass header.i=@bank.example header.s=py"), "{r}");
    assert!(r.contains("dmarc=pass"), "{r}");
    // RFC 8301: an rsa-sha1 signature counts for nothing, so the same
    // message fails DMARC and p=reject refuses it.
    let (signed, record) = dkimpy_sign(MESSAGE, "rsa-sha1");
    world.dns.txt("py._domainkey.bank.example", &record);
    let reply = send(&server, "alerts@bank.example", &signed).await;
    assert_eq!(reply.code, 550, "{reply:?}");
}

#[tokio::test]
async fn an_rsa_sha1_signature_is_reported_as_refused_by_policy() {
    let world = World::new("v=spf1 ip4:127.0.0.1 -all", "").await;
    let server = world.server(|_| {}).await;
    let (signed, record) = dkimpy_sign(MESSAGE, "rsa-sha1");
    world.dns.txt("py._domainkey.bank.example", &record);
    assert_eq!(send(&server, "alerts@bank.example", &signed).await.code, 250);
    let r = common::our_results(&server.inbox("alice@example.test").await[0]);
    assert!(r.contains("dkim=policy reason=\"rsa-sha1 (RFC 8301)\" header.d=bank.example header.s=py"), "{r}");
}
