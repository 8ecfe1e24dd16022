//! DKIM signing of what our users send: keys made by `facteur dkim`, one
//! ed25519 and one rsa-sha256 signature per message, checked by dkimpy (an
//! independent verifier, Debian's python3-dkim) and by our own verifier
//! against a stub DNS server holding the records `facteur dkim list` prints.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Client, PASSWORD, TestServer, test_config};
use facteur_testkit::dns::StubDns;

const BIN: &str = env!("CARGO_BIN_EXE_facteur");

fn facteur(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("--data").arg(data).args(args).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The keys' DNS records, as `facteur dkim list --json` gives them.
fn records(data: &Path) -> Vec<(String, String)> {
    let o = facteur(data, &["dkim", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| (k["dns_name"].as_str().unwrap().to_string(), k["dns_txt"].as_str().unwrap().to_string()))
        .collect()
}

/// Submit a message as alice to bob (local) and return what bob got.
async fn submit(server: &TestServer, body: &str) -> String {
    let c = Client::connect(server.submission).await;
    let mut c = c.starttls().await;
    c.ehlo().await;
    assert_eq!(c.auth_plain("alice@example.test", PASSWORD).await.code, 235);
    let r = c.send_mail("alice@example.test", &["bob@example.test"], body).await;
    assert_eq!(r.code, 250, "{r:?}");
    server.inbox("bob@example.test").await.pop().unwrap()
}

/// dkimpy's verdict on each signature of `message`, with `zone` as DNS.
fn dkimpy_verify(message: &str, zone: &[(String, String)]) -> String {
    let script = r#"
import json, sys, dkim
zone = json.loads(sys.argv[1])
msg = sys.stdin.buffer.read()
def dns(name, timeout=5):
    return zone.get(name.decode().rstrip(".") + ".", "").encode()
d = dkim.DKIM(msg)
out = []
sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
for i in range(len(sigs)):
    try:
        out.append(d.verify(idx=i, dnsfunc=dns))
    except dkim.ValidationError:
        out.append(False)
print(" ".join("pass" if ok else "fail" for ok in out))
"#;
    let zone: serde_json::Map<String, serde_json::Value> =
        zone.iter().map(|(n, t)| (n.clone(), serde_json::Value::String(t.clone()))).collect();
    common::python(script, &[&serde_json::Value::Object(zone).to_string()], message.as_bytes()).trim().to_string()
}

#[tokio::test]
async fn submitted_mail_is_signed_twice_and_dkimpy_and_our_verifier_agree() {
    let server = TestServer::start().await;
    let data = server.dir.path().to_path_buf();
    // (The CLI would ask the server holding the folder to reload: this
    // process. tests/process.rs runs it against a server of its own.)
    let keys = facteur_auth::sign::generate(&data.join("dkim"), "example.test", "s1", 2048).unwrap();
    assert!(keys.iter().all(|k| k.active));
    let zone_lines: Vec<String> = keys.iter().map(|k| k.zone_line()).collect();
    assert!(
        zone_lines[0].starts_with("s1-ed25519._domainkey.example.test. IN TXT \"v=DKIM1; k=ed25519; p="),
        "{zone_lines:?}"
    );
    assert!(
        zone_lines[1].starts_with("s1-rsa._domainkey.example.test. IN TXT (\n    \"v=DKIM1; k=rsa; p="),
        "{zone_lines:?}"
    );
    // Private keys are the server's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("dkim/example.test/s1-rsa.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The in-process server reads keys at start or reload.
    server.running.as_ref().unwrap().reload(test_config()).await.unwrap();

    let body = "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: signed\r\n\r\nHello Bob.\r\n.dot line\r\n";
    let got = submit(&server, body).await;
    assert_eq!(got.matches("DKIM-Signature:").count(), 2, "{got}");
    assert!(got.contains("a=ed25519-sha256") && got.contains("a=rsa-sha256"), "{got}");
    assert!(got.contains("s=s1-ed25519") && got.contains("s=s1-rsa") && got.contains("d=example.test"), "{got}");
    assert!(!got.contains(" l="), "never a body length: {got}");
    // From is signed twice: a second From added later breaks the signature.
    let unfolded = got.replace("\r\n ", " ").replace("\r\n\t", " ");
    let h = unfolded.split("h=").nth(1).unwrap().split(';').next().unwrap().to_ascii_lowercase();
    assert_eq!(h.split(':').filter(|f| f.trim() == "from").count(), 2, "{h}");

    let zone = records(&data);
    assert_eq!(zone.len(), 2);
    // Our Received field is above the signatures and not signed.
    assert_eq!(dkimpy_verify(&got, &zone), "pass pass", "{got}");
    let tampered = got.replace("Hello Bob.", "Hello Eve.");
    assert_eq!(dkimpy_verify(&tampered, &zone), "fail fail");

    // Our own verifier agrees, through DNS.
    let dns = StubDns::start().await.unwrap();
    for (name, txt) in &zone {
        dns.txt(name, txt);
    }
    let resolver = facteur_auth::dns::resolver(&[dns.addr], Some(std::time::Duration::from_secs(2)), 100).unwrap();
    let verifier = facteur_auth::Verifier::new(resolver, "mx.other.test", std::time::Duration::from_secs(5), 5);
    let input = facteur_auth::Inbound {
        ip: "192.0.2.1".parse().unwrap(),
        helo: "x.test",
        mail_from: "",
        message: got.as_bytes(),
    };
    let verdict = verifier.verify(&input).await;
    assert_eq!(verdict.dkim_pass, ["example.test", "example.test"], "{}", verdict.header);
}

#[tokio::test]
async fn only_our_own_domains_mail_from_us_is_signed() {
    let mut server = TestServer::start().await;
    let data = server.dir.path().to_path_buf();
    facteur_auth::sign::generate(&data.join("dkim"), "example.test", "s1", 2048).unwrap();
    server.running.as_ref().unwrap().reload(test_config()).await.unwrap();
    // A stranger on the MX port writing as one of ours: not signed by us.
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("x@elsewhere.test", &["bob@example.test"], "From: alice@example.test\r\n\r\nforged").await;
    assert_eq!(r.code, 250);
    assert!(!server.inbox("bob@example.test").await[0].contains("DKIM-Signature"));
    // A trusted relay's mail From a domain without keys: nothing to sign with.
    let mut config = test_config();
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    server.running.as_ref().unwrap().reload(config).await.unwrap();
    let mut c = Client::connect(server.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("app@other.test", &["bob@example.test"], "From: app@other.test\r\n\r\nno keys").await;
    assert_eq!(r.code, 250);
    assert!(!server.inbox("bob@example.test").await[1].contains("DKIM-Signature"));
    // The same relay writing as one of ours: signed.
    let r = c.send_mail("app@example.test", &["bob@example.test"], "From: app@example.test\r\n\r\nours").await;
    assert_eq!(r.code, 250);
    assert!(server.inbox("bob@example.test").await[2].contains("DKIM-Signature"));
    server.stop().await;
}

#[test]
fn the_cli_rotates_selectors_and_refuses_what_would_break_signing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(facteur(d, &["init"]).status.success());
    let o = facteur(d, &["dkim", "list"]);
    assert!(text(&o).contains("no DKIM keys"), "{}", text(&o));
    let o = facteur(d, &["dkim", "generate", "example.org", "--selector", "old"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not one of this server's domains"), "{}", text(&o));
    // A second selector does not sign until activated.
    let o = facteur(d, &["dkim", "generate", "example.org", "--selector", "new", "--rsa-bits", "2048"]);
    assert!(o.status.success() && text(&o).contains("facteur dkim activate example.org new"), "{}", text(&o));
    let o = facteur(d, &["dkim", "generate", "example.org", "--selector", "new"]);
    assert!(!o.status.success() && text(&o).contains("already has selector new"), "{}", text(&o));
    let o = facteur(d, &["dkim", "list"]);
    let t = text(&o);
    assert!(t.contains("old-rsa") && t.contains("new-ed25519"), "{t}");
    assert_eq!(t.lines().filter(|l| l.ends_with(" yes")).count(), 2, "{t}");
    assert!(t.lines().any(|l| l.contains("old-rsa") && l.ends_with(" yes")), "{t}");
    let o = facteur(d, &["dkim", "remove", "example.org", "old"]);
    assert!(!o.status.success() && text(&o).contains("active selector"), "{}", text(&o));
    assert!(facteur(d, &["dkim", "activate", "example.org", "new"]).status.success());
    let o = facteur(d, &["dkim", "remove", "example.org", "old"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&facteur(d, &["dkim", "list"]));
    assert!(!t.contains("old-") && t.lines().filter(|l| l.ends_with(" yes")).count() == 2, "{t}");
    // Bad input gets a clear error naming it.
    for (args, want) in [
        (&["dkim", "generate", "../etc", "--selector", "x"][..], "\"../etc\" is not a domain name"),
        (&["dkim", "generate", "example.org", "--selector", "a b"][..], "\"a b\" is not a selector"),
        (&["dkim", "generate", "example.org", "--selector", "x", "--rsa-bits", "512"][..], "--rsa-bits 512"),
        (&["dkim", "activate", "example.org", "nope"][..], "has no selector nope"),
    ] {
        let o = facteur(d, args);
        assert!(!o.status.success() && text(&o).contains(want), "{args:?}: {}", text(&o));
    }
}
