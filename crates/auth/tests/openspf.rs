//! The OpenSPF RFC 7208 test suite (release 2014.04, `test/rfc7208-tests.yml`
//! in pyspf's source package) against our check_host().
//!
//! `.ci/run` fetches pyspf (pinned) and turns the YAML, one document per
//! scenario group, into a JSON array: `$HOME/.cache/facteur-openspf/
//! rfc7208-tests.json`, or the file named by `FACTEUR_OPENSPF`. Each
//! scenario's zone becomes a [`Table`]; every case runs, and every mismatch
//! is printed before the test fails.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use facteur_auth::dns::{Records, Table};
use facteur_auth::spf::{self, Check, Identity};
use mail_auth::SpfResult;
use serde_json::{Map, Value};

fn suite_path() -> PathBuf {
    match std::env::var_os("FACTEUR_OPENSPF") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set (or set FACTEUR_OPENSPF)");
            PathBuf::from(home).join(".cache/facteur-openspf/rfc7208-tests.json")
        }
    }
}

/// Zone names are matched without case and without the trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A TXT (or SPF) record: one string, or several joined without a separator
/// (RFC 7208 §3.3); `[]` is a record with no string at all.
fn txt(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.as_str().map(str::as_bytes).ok_or_else(|| format!("TXT piece {p}")))
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.concat()),
        _ => Err(format!("TXT value {v}")),
    }
}

fn text(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| format!("expected a string, got {v}"))
}

/// One scenario's zonedata as a [`Table`].
///
/// - Type SPF: RFC 7208 §3.1 and §4.4 look up TXT only. The suite still
///   writes most records as SPF and has the driver serve them as TXT as well,
///   except at a name that has TXT entries of its own (`TXT: NONE` is such an
///   entry, standing for no TXT record). That is what its "Record lookup" and
///   "Selecting records" scenarios expect, as pyspf's own driver does.
/// - `TIMEOUT`: the queries for a type the name has no records of fail
///   temporarily; the records it has are answered (see [`Records::timeout`]).
/// - CNAME: the alias gets a copy of its target's records (chains followed);
///   a loop answers as resolvers do, with a server failure.
fn zone(zonedata: &Map<String, Value>) -> Result<Table, String> {
    let mut table = Table::default();
    let mut aliases = HashMap::new();
    for (name, entries) in zonedata {
        let entries = entries.as_array().ok_or_else(|| format!("{name}: entries"))?;
        let has_txt = entries.iter().any(|e| e.get("TXT").is_some());
        let records = table.entry(name);
        for entry in entries {
            if entry.as_str() == Some("TIMEOUT") {
                records.timeout = true;
                continue;
            }
            let entry = entry.as_object().ok_or_else(|| format!("{name}: entry {entry}"))?;
            for (rtype, v) in entry {
                let bad = |e: &dyn std::fmt::Display| format!("{name}: {rtype} {v}: {e}");
                match rtype.as_str() {
                    "TXT" if v.as_str() == Some("NONE") => {}
                    "TXT" => records.txt.push(txt(v)?),
                    "SPF" if has_txt => {}
                    "SPF" => records.txt.push(txt(v)?),
                    "A" => records.a.push(text(v)?.parse().map_err(|e| bad(&e))?),
                    "AAAA" => records.aaaa.push(text(v)?.parse().map_err(|e| bad(&e))?),
                    "MX" => match v.as_array().map(Vec::as_slice) {
                        Some([pref, host]) => {
                            let pref = pref.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| bad(&"pref"))?;
                            records.mx.push((pref, text(host)?.to_string()));
                        }
                        _ => return Err(bad(&"not [preference, exchange]")),
                    },
                    "PTR" => records.ptr.push(text(v)?.to_string()),
                    "CNAME" => {
                        aliases.insert(key(name), key(text(v)?));
                    }
                    _ => return Err(bad(&"unknown record type")),
                }
            }
        }
    }
    for alias in aliases.keys() {
        let mut seen = HashSet::from([alias.as_str()]);
        let mut target = &aliases[alias];
        let resolved = loop {
            if !seen.insert(target.as_str()) {
                break Some(Records { timeout: true, ..Records::default() });
            }
            match aliases.get(target) {
                Some(next) => target = next,
                None => break table.0.get(target).cloned(),
            }
        };
        match resolved {
            Some(records) => table.0.insert(alias.clone(), records),
            // A CNAME to a name that does not exist: NXDOMAIN.
            None => table.0.remove(alias),
        };
    }
    Ok(table)
}

/// Runs one case; `Err` describes a mismatch.
async fn run_case(table: &Table, case: &Value) -> Result<(), String> {
    let field = |f: &str| case.get(f).ok_or_else(|| format!("no {f}")).and_then(text);
    let ip: IpAddr = field("host")?.parse().map_err(|e| format!("host: {e}"))?;
    let helo = field("helo")?;
    let mailfrom = field("mailfrom")?;
    // The result may be one result or a list of acceptable ones.
    let expected: Vec<&str> = match case.get("result") {
        Some(Value::Array(list)) => list.iter().map(text).collect::<Result<_, _>>()?,
        Some(one) => vec![text(one)?],
        None => return Err("no result".into()),
    };
    // An empty MAIL FROM: the HELO identity is checked (RFC 7208 §2.4).
    let identity = if mailfrom.is_empty() { Identity::Helo(helo) } else { Identity::MailFrom(mailfrom) };
    let input = Check { ip, helo, receiver: "receiver.example.net" };
    let verdict = spf::check(table, &input, identity).await;
    let got = facteur_auth::verify::spf_name(verdict.result);
    let mut wrong = Vec::new();
    if !expected.contains(&got) {
        wrong.push(format!("result: expected {}, got {got}", expected.join(" or ")));
    }
    // "DEFAULT" is the checker's default explanation: no exp= text of ours.
    if let (SpfResult::Fail, Some(exp)) = (verdict.result, case.get("explanation")) {
        let want = Some(text(exp)?).filter(|e| *e != "DEFAULT");
        if verdict.explanation.as_deref() != want {
            wrong.push(format!("explanation: expected {want:?}, got {:?}", verdict.explanation));
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(format!("{} (problem: {:?})", wrong.join("; "), verdict.problem)) }
}

#[tokio::test]
#[ignore = "needs the OpenSPF suite as JSON, prepared by .ci/run (or FACTEUR_OPENSPF); run with --include-ignored"]
async fn openspf_rfc7208_suite() {
    let path = suite_path();
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the OpenSPF suite at {}: {e}\n\
             .ci/run prepares it: pyspf 2.0.14's sdist (pip download pyspf==2.0.14 --no-deps \
             --no-binary :all:), its test/rfc7208-tests.yml turned into one JSON array of the YAML \
             documents, in $HOME/.cache/facteur-openspf/rfc7208-tests.json; or set FACTEUR_OPENSPF \
             to such a file",
            path.display()
        )
    });
    let scenarios: Vec<Value> = serde_json::from_str(&json).expect("the suite is not JSON");
    let (mut cases, mut mismatches) = (0, Vec::new());
    for scenario in &scenarios {
        let title = scenario.get("description").and_then(Value::as_str).unwrap_or("?");
        let zonedata = scenario.get("zonedata").and_then(Value::as_object).expect("zonedata");
        let table = zone(zonedata).unwrap_or_else(|e| panic!("scenario {title:?}: bad zonedata: {e}"));
        let tests = scenario.get("tests").and_then(Value::as_object).expect("tests");
        for (name, case) in tests {
            cases += 1;
            if let Err(why) = run_case(&table, case).await {
                mismatches.push(format!("{title} / {name}: {why}"));
            }
        }
    }
    for m in &mismatches {
        eprintln!("MISMATCH {m}");
    }
    let passed = cases - mismatches.len();
    eprintln!("OpenSPF RFC 7208 suite: {} scenarios, {cases} cases, {passed} passed", scenarios.len());
    assert!(cases > 0, "the suite at {} has no test case", path.display());
    assert!(mismatches.is_empty(), "{} of {cases} OpenSPF cases do not pass (listed above)", mismatches.len());
}
