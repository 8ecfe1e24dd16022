//! `/metrics` scraped over HTTP and read by the Prometheus project's own
//! parser (Debian's python3-prometheus-client, under /usr/bin/python3),
//! which refuses a malformed exposition.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestServer;

/// Every sample as (name, labels) -> value, and the HELP text per family,
/// as the Prometheus parser reads them (it refuses a malformed exposition).
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, help = [], {}
for family in text_string_to_metric_families(sys.stdin.read()):
    help[family.name] = family.documentation
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"samples": samples, "help": help}))
"#;

pub struct Scrape {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
    pub help: BTreeMap<String, String>,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.2).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a (String, BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(move |s| s.0 == name && labels.iter().all(|(k, v)| s.1.get(*k).map(String::as_str) == Some(*v)))
    }

    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }
}

pub async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_string(), body.to_string())
}

pub async fn scrape(s: &TestServer) -> Scrape {
    let (head, body) = get(s.http, "/metrics").await;
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    // Debian's interpreter, where python3-prometheus-client is installed.
    let python = "/usr/bin/python3";
    let mut child = std::process::Command::new(python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e} (install python3 and python3-prometheus-client; bash .ci/run does)"));
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics (python3-prometheus-client installed?): {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()));
            (s[0].as_str().unwrap().to_string(), labels.collect(), s[2].as_f64().unwrap())
        })
        .collect();
    let help =
        v["help"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
    Scrape { samples, help }
}

/// Scrape until `ready` holds (the gauges are refreshed every second for
/// classes, every 5 s for destinations), 15 s at most.
pub async fn scrape_until(s: &TestServer, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let m = scrape(s).await;
        if ready(&m) || tokio::time::Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
