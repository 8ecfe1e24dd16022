//! The checks of the fuzz targets in `crates/auth/fuzz`, as plain functions
//! over bytes: the targets are thin wrappers around them, and the tests
//! below run them on stable over a few thousand pseudo-random inputs, so
//! CI runs the same checks without cargo-fuzz. Not an API: each function
//! panics when its check fails.
#![doc(hidden)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::{SpfResult, common::verify::DomainKey, dmarc::Dmarc};

use crate::dns::{Answer, Dns, Table};
use crate::spf::{self, Check, Identity, SpfVerdict};
use crate::verify::{self, Found, Inbound};

/// A table that counts the queries asked of it.
struct Counting {
    table: Table,
    queries: AtomicU32,
}

impl Counting {
    fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }
}

impl Dns for Counting {
    async fn txt(&self, name: &str) -> Answer<Vec<u8>> {
        self.count();
        self.table.txt(name).await
    }
    async fn a(&self, name: &str) -> Answer<std::net::Ipv4Addr> {
        self.count();
        self.table.a(name).await
    }
    async fn aaaa(&self, name: &str) -> Answer<std::net::Ipv6Addr> {
        self.count();
        self.table.aaaa(name).await
    }
    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.count();
        self.table.mx(name).await
    }
    async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        self.count();
        self.table.ptr(ip).await
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(f)
}

/// An SPF record from the network (the input, published at the domain
/// checked and at a name it may include, so it can recurse into itself):
/// evaluation never panics, and whatever the record says, the queries it
/// causes stay within RFC 7208 §4.6.4's bounds.
pub fn spf_record(raw: &[u8]) {
    let mut table = Table::default();
    for name in ["fuzz.example", "i.fuzz.example", "mx.fuzz.example"] {
        table.entry(name).txt.push(raw.to_vec());
    }
    table.entry("fuzz.example").mx.push((10, "mx.fuzz.example".into()));
    table.entry("mx.fuzz.example").a.push("192.0.2.1".parse().expect("an address"));
    let dns = Counting { table, queries: AtomicU32::new(0) };
    let ip = if raw.first().is_some_and(|b| b % 2 == 0) { "192.0.2.1" } else { "2001:db8::1" };
    let check = Check { ip: ip.parse().expect("an address"), helo: "helo.fuzz.example", receiver: "mx.test" };
    let verdict = block_on(spf::check(&dns, &check, Identity::MailFrom("user@fuzz.example")));
    // The record's own lookup, 10 DNS terms each with at most 10 names
    // looked up (an MX's or PTR's addresses), %{p}'s PTR and its 10
    // names, and the explanation.
    let bound = 1 + spf::MAX_DNS_TERMS * 11 + 11 + 1;
    let asked = dns.queries.load(Ordering::Relaxed);
    assert!(asked <= bound, "{asked} queries for {:?}", String::from_utf8_lossy(raw));
    if verdict.explanation.is_some() {
        assert_eq!(verdict.result, SpfResult::Fail, "an explanation only comes with a fail");
    }
}

/// Splits an input into a few strings (at 0xff).
fn fields(raw: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = raw.split(|&b| b == 0xff).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    out.resize(n, String::new());
    out
}

/// The Authentication-Results field we write, with the HELO name, the
/// envelope sender and the From domain taken from the input (all three
/// come from the client): it is always one header field: it starts with
/// our name, each line break is a fold (CRLF then a tab), and it ends with
/// the only CRLF not followed by white space.
pub fn auth_results(raw: &[u8]) {
    let f = fields(raw, 4);
    let input = Inbound { ip: "192.0.2.7".parse().expect("an address"), helo: &f[0], mail_from: &f[1], message: b"" };
    let verdict = |domain: &str, i: usize| SpfVerdict {
        result: [SpfResult::Pass, SpfResult::Fail, SpfResult::TempError, SpfResult::None][i % 4],
        domain: domain.to_string(),
        explanation: Some(f[3].clone()),
        problem: None,
    };
    let (helo, spf) = (verdict(&f[0], raw.len()), verdict(&f[2], raw.len() / 3));
    let dmarc =
        [verify::Dmarc::Pass, verify::Dmarc::Fail(verify::Requested::Reject), verify::Dmarc::None][raw.len() % 3];
    let found = Found { dkim: &[], arc: None, helo: &helo, spf: &spf, dmarc, from_domain: &f[2], extra: &[] };
    let field = verify::results_field("mx.test", &input, &found);
    assert!(field.starts_with("Authentication-Results: mx.test;"), "{field:?}");
    let body = field.strip_suffix("\r\n").unwrap_or_else(|| panic!("no final CRLF: {field:?}"));
    for (i, line) in body.split("\r\n").enumerate() {
        assert!(!line.contains(['\r', '\n']), "a bare CR or LF: {field:?}");
        assert!(i == 0 || line.starts_with(['\t', ' ']), "a line that would start a new field: {field:?}");
    }
}

/// Removing forged Authentication-Results fields: never panics, takes
/// away whole fields of the header section only (the rest is kept byte
/// for byte), leaves none in our name, and a second pass changes nothing.
pub fn strip_forged(raw: &[u8]) {
    let (out, removed) = crate::headers::strip_forged(raw, "mx.test");
    assert!(out.len() <= raw.len());
    if removed == 0 {
        assert_eq!(&out[..], raw);
    }
    let (again, more) = crate::headers::strip_forged(&out, "mx.test");
    assert_eq!(more, 0, "a forged field survived: {:?}", String::from_utf8_lossy(raw));
    assert_eq!(&again[..], &out[..]);
    // What follows the header section is untouched.
    let body = |m: &[u8]| m.windows(4).position(|w| w == b"\r\n\r\n").map(|i| m[i + 4..].to_vec());
    if let Some(b) = body(raw) {
        assert!(out.ends_with(&b), "the body changed: {:?}", String::from_utf8_lossy(raw));
    }
}

/// The DNS records facteur hands to mail-auth (a DKIM key, a DMARC
/// policy) and the From field it signs by: parsing never panics.
pub fn records(raw: &[u8]) {
    let _ = DomainKey::parse(raw);
    let _ = Dmarc::parse(raw);
    let mut message = b"From: ".to_vec();
    message.extend_from_slice(raw);
    message.extend_from_slice(b"\r\n\r\nbody\r\n");
    if let Some(d) = crate::sign::from_domain(&message) {
        assert!(!d.contains('@'), "{d:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds, then `count` variations: pieces of the grammar glued with a
    /// random octet here and there, or a seed with octets changed.
    fn inputs(seed: u64, count: usize, seeds: &[&[u8]], pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut all: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
        for _ in 0..count {
            let mut s = if rng.bool() {
                seeds[rng.usize(..seeds.len())].to_vec()
            } else {
                (0..rng.usize(1..12)).flat_map(|_| pieces[rng.usize(..pieces.len())].to_vec()).collect()
            };
            for _ in 0..rng.usize(..4) {
                let at = rng.usize(..s.len() + 1);
                if rng.bool() && at < s.len() {
                    s[at] = rng.u8(..);
                } else {
                    let piece = pieces[rng.usize(..pieces.len())];
                    s.splice(at..at, piece.iter().copied());
                }
            }
            all.push(s);
        }
        all
    }

    const SPF_PIECES: &[&[u8]] = &[
        b"v=spf1",
        b" ",
        b" -all",
        b" ~all",
        b" include:i.fuzz.example",
        b" include:fuzz.example",
        b" redirect=fuzz.example",
        b" a",
        b" a:mx.fuzz.example/24",
        b" mx",
        b" mx/0//0",
        b" ptr",
        b" ptr:%{p}",
        b" exists:%{i}.%{l1r-}.fuzz.example",
        b" ip4:192.0.2.0/24",
        b" ip6:2001:db8::/32",
        b" exp=%{d}",
        b"%{ir}.%{v}._spf.%{d2}",
        b"%%%_%-",
        b":",
        b"/",
        b"=",
    ];

    #[test]
    fn spf_checks_hold() {
        let seeds: &[&[u8]] = &[
            b"v=spf1 include:fuzz.example -all",
            b"v=spf1 mx a ptr exists:%{d} include:i.fuzz.example redirect=fuzz.example",
            b"v=spf1 a:%{p}.fuzz.example mx:%{h} ptr:%{o} -all exp=%{d}",
            b"v=spf1 redirect=i.fuzz.example",
        ];
        for raw in inputs(0x5bf1_2024, 1500, seeds, SPF_PIECES) {
            spf_record(&raw);
        }
    }

    #[test]
    fn auth_results_stay_one_field() {
        let pieces: &[&[u8]] = &[
            b"mail.example.org",
            b"\r\nX-Injected: 1",
            b"\n",
            b"\r",
            b";",
            b"\"",
            b"(",
            b")",
            b"\\",
            b"\xff",
            b" ",
            b"\t",
            b"user@",
            b"\xc3\xa9",
            b"\0",
        ];
        let seeds: &[&[u8]] = &[b"helo.example\xffa@b.example\xffb.example\xffwhy", b"\r\n\xff\r\n\xff\r\n\xff\r\n"];
        for raw in inputs(0xa11_2e5, 3000, seeds, pieces) {
            auth_results(&raw);
        }
    }

    #[test]
    fn strip_forged_checks_hold() {
        let pieces: &[&[u8]] = &[
            b"Authentication-Results: mx.test; spf=pass\r\n",
            b"authentication-results:MX.TEST;dkim=pass\r\n",
            b"Authentication-Results: (c) mx.test ; x\r\n",
            b"Authentication-Results: other.test; spf=fail\r\n",
            b"\tcontinued\r\n",
            b" folded mx.test\r\n",
            b"Subject: hi\r\n",
            b"\r\n",
            b"body Authentication-Results: mx.test\r\n",
            b"\n",
            b"\r",
        ];
        let seeds: &[&[u8]] = &[
            b"Authentication-Results: mx.test; a\r\n\tb\r\nSubject: x\r\n\r\nAuthentication-Results: mx.test; body\r\n",
        ];
        for raw in inputs(0x57_12bf, 3000, seeds, pieces) {
            strip_forged(&raw);
        }
    }

    #[test]
    fn record_parsers_hold() {
        let pieces: &[&[u8]] = &[
            b"v=DKIM1;",
            b" k=rsa;",
            b" k=ed25519;",
            b" p=",
            b"MIIBIjANBgkq",
            b" t=s:y;",
            b"v=DMARC1;",
            b" p=reject;",
            b" sp=none;",
            b" rua=mailto:a@b.example",
            b" pct=50;",
            b"=",
            b";",
            b"<a@b.example>",
            b"\"Name\" ",
            b"(comment)",
            b"@",
            b",",
        ];
        let seeds: &[&[u8]] = &[b"v=DKIM1; k=rsa; p=MIIB", b"v=DMARC1; p=reject", b"Alice <alice@example.org>"];
        for raw in inputs(0xd1c_0de, 3000, seeds, pieces) {
            records(&raw);
        }
    }
}
