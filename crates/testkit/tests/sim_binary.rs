//! Black-box tests of the `facteur-sim` binary: start it on 127.0.0.1:0,
//! read what it prints, talk SMTP to it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

/// The running binary, killed when the test ends however it ends.
struct Sim {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Sim {
    fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_facteur-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start facteur-sim");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Sim { child, lines }
    }

    /// The next line it prints, within 5 s.
    async fn line(&mut self) -> Option<String> {
        timeout(Duration::from_secs(5), self.lines.recv()).await.ok().flatten()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn counts_accepted_messages_each_second() {
    let mut sim = Sim::start(&["--listen", "127.0.0.1:0", "--mode", "accept", "--duration", "10"]);
    let first = sim.line().await.expect("a first line");
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.strip_suffix(" mode=accept"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));

    let mut c = common::connect(addr).await;
    c.hello().await;
    c.expect("MAIL FROM:<alice@example.org>", 250).await;
    c.expect("RCPT TO:<bob@example.net>", 250).await;
    c.expect("DATA", 354).await;
    c.send("hello\r\n.\r\n").await;
    assert_eq!(c.reply().await.0, 250);

    // Lines come once a second; within a few the message is counted.
    let mut counted = false;
    for _ in 0..5 {
        let Some(line) = sim.line().await else { break };
        assert!(line.contains(" accepted="), "unexpected line: {line}");
        if line.ends_with(" total=1") {
            counted = true;
            break;
        }
    }
    assert!(counted, "the accepted message was not counted");
}

#[tokio::test]
async fn stops_by_itself_after_the_duration() {
    let mut sim = Sim::start(&["--listen", "127.0.0.1:0", "--mode", "refuse", "--duration", "1"]);
    assert!(sim.line().await.is_some_and(|l| l.starts_with("listening on ")));
    let mut last = String::new();
    while let Some(line) = sim.line().await {
        last = line;
    }
    assert_eq!(last, "stopped total=0");
    let status = sim.child.wait().expect("wait");
    assert!(status.success());
}

#[test]
fn bad_arguments_exit_with_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_facteur-sim")).args(["--mode", "sometimes"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown mode"));
}

#[tokio::test]
async fn logs_each_accepted_message_with_its_bench_tag() {
    let dir = std::env::temp_dir().join(format!("facteur-sim-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("arrivals.log");
    let log_arg = log.to_str().expect("utf-8 path");
    let mut sim = Sim::start(&["--listen", "127.0.0.1:0", "--duration", "2", "--log", log_arg]);
    let first = sim.line().await.expect("a first line");
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.strip_suffix(" mode=accept"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));

    let mut c = common::connect(addr).await;
    c.hello().await;
    for body in ["X-Bench: bulk 7 1700000000000\r\nSubject: a\r\n\r\nhi\r\n.\r\n", "Subject: b\r\n\r\nhi\r\n.\r\n"] {
        c.expect("MAIL FROM:<alice@example.org>", 250).await;
        c.expect("RCPT TO:<bob@example.net>", 250).await;
        c.expect("DATA", 354).await;
        c.send(body).await;
        assert_eq!(c.reply().await.0, 250);
    }
    let mut lines = Vec::new();
    while let Some(line) = sim.line().await {
        lines.push(line);
    }
    assert!(lines.iter().any(|l| l == "summary refused=0 peak_connections=1 connections=1"), "{lines:?}");
    let logged = std::fs::read_to_string(&log).expect("the log");
    let tags: Vec<&str> = logged.lines().map(|l| l.split_once('\t').expect("a tab").1).collect();
    assert_eq!(tags, ["bulk 7 1700000000000", "-"]);
    let _ = std::fs::remove_dir_all(&dir);
}
