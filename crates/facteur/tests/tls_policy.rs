//! Outbound TLS policies of recipient domains: MTA-STS (RFC 8461) over
//! real sockets — the stub DNS on loopback answers the MX, TXT and address
//! lookups, a loopback HTTPS server serves the policies, and the SMTP
//! simulator (STARTTLS with a certificate for `*.sim.test`) is every MX.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::scrape::scrape;
use common::{Client, TestServer, test_config};
use facteur::config::Config;
use facteur::serve::StartOptions;
use facteur_store::{ManualClock, QueuedMessage, RecipientStatus, prelude::*};
use facteur_testkit::dns::StubDns;
use facteur_testkit::https::{Answer, HttpsServer};
use facteur_testkit::{Behavior, Downstream};

const T0: i64 = 1_800_000_000;

/// The stub DNS, the policy server, the MX simulator, and a CA file that
/// vouches for both servers' certificates.
struct Lab {
    dns: StubDns,
    https: HttpsServer,
    sim: Downstream,
    dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Lab {
    async fn start(domains: &[&str]) -> Lab {
        let dns = StubDns::start().await.unwrap();
        let names: Vec<String> = domains.iter().map(|d| format!("mta-sts.{d}")).collect();
        let https = HttpsServer::start(&names.iter().map(String::as_str).collect::<Vec<_>>()).await.unwrap();
        let sim = Downstream::start(Behavior { tls: true, ..Behavior::accept_all() }).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, format!("{}{}", sim.certificate_pem(), https.certificate_pem())).unwrap();
        dns.a("mx.sim.test", "127.0.0.1");
        for d in domains {
            dns.a(&format!("mta-sts.{d}"), "127.0.0.1");
        }
        Lab { dns, https, sim, dir, ca }
    }

    /// `domain`'s MX is `mx` (at 127.0.0.1); it announces policy `id`
    /// and serves `policy`.
    fn publish(&self, domain: &str, mx: &str, id: &str, policy: &str) {
        self.dns.mx(domain, 10, mx).a(mx, "127.0.0.1");
        self.dns.txt(&format!("_mta-sts.{domain}"), &format!("v=STSv1; id={id};"));
        self.https.set(&format!("mta-sts.{domain}"), Answer::text(policy));
    }

    fn config(&self) -> Config {
        let mut c = mx_config(self.dns.addr, self.sim.addr().port());
        c.delivery.mta_sts_port = self.https.addr().port();
        c.delivery.tls_ca_file = Some(self.ca.clone());
        c
    }

    async fn server(&self, config: Config) -> (TestServer, ManualClock) {
        start(config).await
    }
}

/// Delivery by MX through `dns`, every MX host on `mx_port`; no jitter,
/// short timeouts.
fn mx_config(dns: std::net::SocketAddr, mx_port: u16) -> Config {
    let mut c = test_config();
    c.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c.delivery.enabled = true;
    c.delivery.retry_jitter = 0.0;
    c.delivery.command_timeout_secs = 2;
    c.delivery.connect_timeout_secs = 2;
    c.delivery.dns_servers = vec![dns];
    c.delivery.mx_port = mx_port;
    c
}

/// A server on a manual clock whose engine the test drives.
async fn start(config: Config) -> (TestServer, ManualClock) {
    let clock = ManualClock::new(T0);
    let options = StartOptions { clock: Arc::new(clock.clone()), delivery_loop: false };
    (TestServer::start_opts(config, options).await, clock)
}

fn enforce(mx: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 86400\n")
}

/// Send one message to `to`, run one delivery round, and say what became of it.
async fn send(s: &TestServer, to: &str) -> QueuedMessage {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.ok("MAIL FROM:<alice@example.test>", 250).await;
    c.ok(&format!("RCPT TO:<{to}>"), 250).await;
    c.ok("DATA", 354).await;
    c.send_raw(b"Subject: sts\r\nFrom: <alice@example.test>\r\n\r\nHello.\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text().rsplit(' ').next().unwrap().parse().unwrap();
    s.engine().run_once().await;
    s.store().queue_show(id).await.unwrap().unwrap()
}

fn error(m: &QueuedMessage) -> String {
    m.recipients[0].last_error.clone().unwrap_or_default()
}

/// RFC 8461 §4–5 end to end: a policy in enforce mode delivers only to the
/// MX hosts it names and only over TLS verified for their names, defers
/// with a reason that names the policy otherwise; testing mode and a
/// domain without a usable policy deliver as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_enforce_delivers_over_verified_tls_only() {
    let domains = [
        "good.test",
        "badcert.test",
        "wrongmx.test",
        "testing.test",
        "gone.test",
        "redirect.test",
        "html.test",
        "huge.test",
        "none.test",
    ];
    let lab = Lab::start(&domains).await;
    lab.publish("good.test", "mx.sim.test", "1", &enforce("mx.sim.test"));
    // The MX host is named by the policy but its certificate is not for it.
    lab.publish("badcert.test", "mx.badcert.test", "1", &enforce("mx.badcert.test"));
    lab.publish("wrongmx.test", "mx.sim.test", "7", &enforce("*.wrongmx.test"));
    lab.publish(
        "testing.test",
        "mx.testing.test",
        "1",
        "version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n",
    );
    // Policies that cannot be had: deliver as without one (§5.1), even to
    // an MX they would not allow.
    lab.publish("gone.test", "mx.sim.test", "1", &enforce("nowhere.test"));
    lab.https.set("mta-sts.gone.test", Answer { status: "404 Not Found".into(), ..Answer::text("") });
    lab.publish("redirect.test", "mx.sim.test", "1", &enforce("nowhere.test"));
    lab.https.set(
        "mta-sts.redirect.test",
        Answer {
            status: "301 Moved".into(),
            headers: vec!["Location: https://elsewhere.test/".into()],
            ..Answer::text("")
        },
    );
    lab.publish("html.test", "mx.sim.test", "1", &enforce("nowhere.test"));
    lab.https.set(
        "mta-sts.html.test",
        Answer { content_type: "text/html".into(), ..Answer::text(&enforce("nowhere.test")) },
    );
    lab.publish("huge.test", "mx.sim.test", "1", &enforce("nowhere.test"));
    let huge = format!("{}{}", enforce("nowhere.test"), "x: y\n".repeat(14_000));
    lab.https.set("mta-sts.huge.test", Answer::text(&huge));
    lab.publish("none.test", "mx.sim.test", "1", "version: STSv1\nmode: none\nmax_age: 86400\n");
    let (s, _clock) = lab.server(lab.config()).await;

    let m = send(&s, "bob@good.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "{m:?}");
    assert!(lab.sim.transcript().iter().any(|l| l.starts_with("STARTTLS")));

    let m = send(&s, "bob@badcert.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    let e = error(&m);
    assert!(
        e.contains("4.7.5") && e.contains("MTA-STS policy of badcert.test (enforce, id 1) requires verified TLS"),
        "{e}"
    );
    assert!(e.contains("certificate"), "{e}");

    let m = send(&s, "bob@wrongmx.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    let e = error(&m);
    assert!(
        e.contains("4.7.5") && e.contains("allows mx *.wrongmx.test but the MX hosts of wrongmx.test are mx.sim.test"),
        "{e}"
    );

    for domain in ["testing.test", "gone.test", "redirect.test", "html.test", "huge.test", "none.test"] {
        let m = send(&s, &format!("bob@{domain}")).await;
        assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "{domain}: {m:?}");
    }
    // The verified policies are kept on disk for the next start.
    let kept = s.dir.path().join("mta-sts/good.test.json");
    assert!(std::fs::read_to_string(&kept).unwrap().contains("mode: enforce"), "{}", kept.display());
    assert!(!s.dir.path().join("mta-sts/gone.test.json").exists());
    let m = scrape(&s).await;
    for result in ["success", "failure"] {
        let n = m.sum("facteur_delivery_tls_policy_total", &[("policy", "mta-sts"), ("result", result)]);
        assert!(n >= 1.0, "{result}: {n}");
    }
    drop(lab.dir);
}

/// §5.1: a cached policy goes on applying when the TXT record disappears
/// and the policy server is gone (an attacker's downgrade), across a
/// restart, until its max_age runs out; a new id is fetched; the fetch is
/// not repeated for every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_policy_outlives_dns_and_https_until_it_expires() {
    let lab = Lab::start(&["cached.test"]).await;
    lab.dns.ttl(0);
    lab.publish("cached.test", "mx.sim.test", "1", &enforce("mx.sim.test"));
    let (mut s, clock) = lab.server(lab.config()).await;
    for _ in 0..3 {
        let m = send(&s, "bob@cached.test").await;
        assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "{m:?}");
    }
    assert_eq!(lab.https.requests(), 1, "one fetch for three messages");
    // The attacker: the TXT record and the policy host are gone, and
    // STARTTLS is stripped on the way to the MX.
    lab.dns.remove("_mta-sts.cached.test");
    lab.https.set("mta-sts.cached.test", Answer { status: "404 Not Found".into(), ..Answer::text("") });
    lab.sim.set_behavior(Behavior::accept_all());
    clock.advance(600);
    let m = send(&s, "bob@cached.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    let e = error(&m);
    assert!(
        e.contains("does not offer STARTTLS") && e.contains("MTA-STS policy of cached.test (enforce, id 1)"),
        "{e}"
    );
    // A restart remembers it.
    let clock = ManualClock::new(T0 + 700);
    s.restart_opts(lab.config(), StartOptions { clock: Arc::new(clock.clone()), delivery_loop: false }).await;
    let m = send(&s, "bob@cached.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "after a restart: {m:?}");
    // Past max_age it no longer applies: plaintext, as without a policy.
    clock.set(T0 + 86_400 + 1);
    let m = send(&s, "bob@cached.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "expired: {m:?}");
    assert_eq!(lab.https.requests(), 1, "the 404 was never asked for: no TXT record");
    drop(s);

    // A new id announced: the new policy replaces the cached one.
    let lab = Lab::start(&["newid.test"]).await;
    lab.dns.ttl(0);
    lab.publish("newid.test", "mx.sim.test", "1", &enforce("mx.sim.test"));
    let (s, clock) = lab.server(lab.config()).await;
    assert_eq!(send(&s, "bob@newid.test").await.recipients[0].state, RecipientStatus::Delivered);
    lab.dns.remove("_mta-sts.newid.test");
    lab.dns.txt("_mta-sts.newid.test", "v=STSv1; id=2;");
    lab.https.set("mta-sts.newid.test", Answer::text(&enforce("mx.newid.test")));
    clock.advance(600);
    let m = send(&s, "bob@newid.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    assert!(error(&m).contains("(enforce, id 2)"), "{}", error(&m));
}

/// SHA-256 of a PEM certificate's public key (TLSA selector 1, matching 1).
fn spki_sha256(pem: &str) -> Vec<u8> {
    use sha2::Digest;
    let der = pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    sha2::Sha256::digest(cert.tbs_certificate.subject_pki.raw).to_vec()
}

/// RFC 7672 end to end, against a DNSSEC-signed zone served on loopback
/// and facteur's own validation from the zone's trust anchor: a secure
/// TLSA record that matches the MX's key delivers (no CA vouches for the
/// self-signed certificate: DANE-EE does), one that does not match, or
/// that fails validation, keeps the mail with a reason naming DANE; no
/// TLSA (proven) and TLSA in an unsigned zone deliver as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_delivers_only_to_the_key_its_tlsa_records_name() {
    use facteur_testkit::dnssec::SignedDns;
    use std::net::Ipv4Addr;
    let sim = Downstream::start(Behavior { tls: true, ..Behavior::accept_all() }).await;
    let port = sim.addr().port();
    let key = spki_sha256(&sim.certificate_pem());
    let mut wrong = key.clone();
    wrong[0] ^= 0xff;
    let dns = SignedDns::start().await.unwrap();
    let lo = Ipv4Addr::LOCALHOST;
    let tlsa = |host: &str| format!("_{port}._tcp.{host}");
    dns.insecure_zone("insecure.test");
    for (domain, host) in [
        ("good.test", "mx1.sim.test"),
        ("wrong.test", "mx2.sim.test"),
        ("bogus.test", "mx3.sim.test"),
        ("none.test", "mx4.sim.test"),
        ("insecure.test", "mx.insecure.test"),
    ] {
        dns.mx(domain, 10, host).a(host, lo);
    }
    dns.tlsa(&tlsa("mx1.sim.test"), 3, 1, 1, key.clone())
        .tlsa(&tlsa("mx2.sim.test"), 3, 1, 1, wrong.clone())
        .tlsa(&tlsa("mx3.sim.test"), 3, 1, 1, key.clone())
        .corrupt(&tlsa("mx3.sim.test"), facteur_testkit::dnssec::RecordType::TLSA)
        .tlsa(&tlsa("mx.insecure.test"), 3, 1, 1, wrong);
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("root.key");
    std::fs::write(&anchor, dns.trust_anchor()).unwrap();

    let mut c = mx_config(dns.addr, port);
    c.delivery.dnssec_trust_anchor_file = Some(anchor);
    let (s, _clock) = start(c).await;

    let m = send(&s, "bob@good.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "{m:?}");

    let m = send(&s, "bob@wrong.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    let e = error(&m);
    assert!(e.contains("4.7.5") && e.contains("no TLSA record matches"), "{e}");
    assert!(e.contains(&format!("DANE TLSA at _{port}._tcp.mx2.sim.test requires verified TLS")), "{e}");

    let m = send(&s, "bob@bogus.test").await;
    assert_eq!(m.recipients[0].state, RecipientStatus::Queued, "{m:?}");
    let e = error(&m);
    assert!(e.contains("4.7.5") && e.contains("no usable MX host of bogus.test") && e.contains("bogus"), "{e}");

    for domain in ["none.test", "insecure.test"] {
        let m = send(&s, &format!("bob@{domain}")).await;
        assert_eq!(m.recipients[0].state, RecipientStatus::Delivered, "{domain}: {m:?}");
    }
    let m = scrape(&s).await;
    for result in ["success", "failure"] {
        let n = m.sum("facteur_delivery_tls_policy_total", &[("policy", "dane"), ("result", result)]);
        assert!(n >= 1.0, "{result}: {n}");
    }
}
