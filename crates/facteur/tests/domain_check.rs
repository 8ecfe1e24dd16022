//! `facteur domain check` through the real binary, its resolver pointed at
//! a stub DNS server on loopback: a domain set up right passes; a bare one
//! gets every record it needs, in zone-file form, and exit 1.

use std::path::Path;
use std::process::Command;

use facteur_testkit::dns::StubDns;
use facteur_testkit::https::{Answer, HttpsServer};

const BIN: &str = env!("CARGO_BIN_EXE_facteur");

fn facteur(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("--data").arg(data).args(args).env_remove("FACTEUR_CONFIG").output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A data folder whose configuration names mx.example.test, asks `dns`,
/// and fetches MTA-STS policies from `https` (trusting its certificate).
fn data_folder(dns: &StubDns, https: &HttpsServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(facteur(d, &["init"]).status.success());
    let ca = d.join("ca.pem");
    std::fs::write(&ca, https.certificate_pem()).unwrap();
    let toml = d.join("facteur.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text = text
        .replacen("hostname = \"", "hostname = \"mx.example.test\" # was \"", 1)
        .replace("dns_servers = []", &format!("dns_servers = [\"{}\"]", dns.addr))
        .replace(
            "mta_sts = true",
            &format!("mta_sts = true\nmta_sts_port = {}\ntls_ca_file = \"{}\"", https.addr().port(), ca.display()),
        );
    std::fs::write(&toml, text).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_set_up_right_passes_and_a_bare_one_is_told_what_to_publish() {
    let dns = StubDns::start().await.unwrap();
    let https = HttpsServer::start(&["mta-sts.example.test"]).await.unwrap();
    https.set(
        "mta-sts.example.test",
        Answer::text("version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 604800\n"),
    );
    let dir = data_folder(&dns, &https);
    let d = dir.path();
    // example.test: all there. (The CLI blocks; the stub answers on its own task.)
    let keys = facteur_auth::sign::generate(&d.join("dkim"), "example.test", "s1", 2048).unwrap();
    dns.mx("example.test", 10, "mx.example.test")
        .a("mx.example.test", "192.0.2.25")
        .ptr("192.0.2.25".parse().unwrap(), "mx.example.test")
        .txt("example.test", "v=spf1 mx -all")
        .txt("_dmarc.example.test", "v=DMARC1; p=reject; rua=mailto:dmarc@example.test")
        .txt("_mta-sts.example.test", "v=STSv1; id=2026")
        .a("mta-sts.example.test", "127.0.0.1")
        .txt("_smtp._tls.example.test", "v=TLSRPTv1; rua=mailto:tls@example.test");
    for k in &keys {
        dns.txt(k.name().trim_end_matches('.'), &k.record);
    }
    let o = tokio::task::spawn_blocking({
        let d = d.to_path_buf();
        move || facteur(&d, &["domain", "check", "example.test"])
    })
    .await
    .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for check in ["MX", "A/AAAA", "PTR", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT"] {
        assert!(out.lines().any(|l| l.starts_with("ok") && l.contains(check)), "{check}: {out}");
    }
    assert_eq!(out.lines().filter(|l| l.starts_with("ok") && l.contains("DKIM")).count(), 2, "{out}");
    assert!(out.contains("policy enforce, mx mx.example.test, max_age 604800"), "{out}");
    assert_eq!(https.requests(), 1, "the policy was fetched");

    // A policy that leaves this server out, or is not served, must be fixed.
    let check = |answer: Answer| {
        https.set("mta-sts.example.test", answer);
        let d = d.to_path_buf();
        tokio::task::spawn_blocking(move || facteur(&d, &["domain", "check", "example.test"]))
    };
    let o =
        check(Answer::text("version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 604800\n")).await.unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FIX    MTA-STS") && out.contains("add \"mx: mx.example.test\""), "{out}");
    let o = check(Answer { status: "404 Not Found".into(), ..Answer::text("") }).await.unwrap();
    let out = text(&o);
    assert!(out.contains("FIX    MTA-STS") && out.contains("policy not served") && out.contains("404"), "{out}");
    let o = check(Answer::text("version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400\n")).await.unwrap();
    let out = text(&o);
    assert!(o.status.success() && out.contains("advice MTA-STS") && out.contains("mode: enforce"), "{out}");

    // bare.test: nothing published, and a DKIM record with another key.
    facteur_auth::sign::generate(&d.join("dkim"), "bare.test", "s1", 2048).unwrap();
    dns.txt("s1-ed25519._domainkey.bare.test", "v=DKIM1; k=ed25519; p=c29tZXRoaW5nIGVsc2U=");
    dns.txt("_dmarc.bare.test", "v=DMARC1; p=none");
    let o = tokio::task::spawn_blocking({
        let d = d.to_path_buf();
        move || facteur(&d, &["domain", "check", "bare.test", "--json"])
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |check: &str| -> Vec<serde_json::Value> {
        rows.as_array().unwrap().iter().filter(|r| r["check"] == check).cloned().collect()
    };
    assert_eq!(find("MX")[0]["status"], "fix");
    assert_eq!(find("MX")[0]["change"][0], "bare.test. IN MX 10 mx.example.test.");
    assert_eq!(find("SPF")[0]["change"][0], "bare.test. IN TXT \"v=spf1 mx -all\"");
    let dkim = find("DKIM");
    assert!(dkim.iter().all(|r| r["status"] == "fix"), "{dkim:?}");
    assert!(dkim.iter().any(|r| r["found"].as_str().unwrap().contains("another key")), "{dkim:?}");
    assert!(dkim.iter().any(|r| r["change"][0].as_str().unwrap().starts_with("s1-rsa._domainkey.bare.test. IN TXT (")));
    assert_eq!(find("DMARC")[0]["status"], "advice", "p=none works but should tighten");
    assert_eq!(find("MTA-STS")[0]["status"], "advice");
    assert!(
        find("TLS-RPT")[0]["change"][0].as_str().unwrap().starts_with("_smtp._tls.bare.test. IN TXT \"v=TLSRPTv1;")
    );
    // A name that is not a domain is a clear error.
    let o = facteur(d, &["domain", "check", "not a domain"]);
    assert!(!o.status.success() && text(&o).contains("\"not a domain\" is not a domain name"), "{}", text(&o));
}
