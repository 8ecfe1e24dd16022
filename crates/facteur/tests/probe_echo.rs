//! The echo probe, end to end: a message submitted as the node's echo
//! account goes out through a route to an echo service, which sends it
//! back through the MX listener; the run is counted `ok` and the answer
//! removed; when the far end stops answering, the run times out. (A test
//! binary of its own: the echoes are traffic, which tests/probe.rs checks
//! the probe does not make.)

mod common;

use common::TestServer;
use common::scrape::{Scrape, scrape_until};
use facteur_store::prelude::*;

/// An echo service at a route's far end: each message it takes is sent
/// back to its sender through `mx` (once known), quoted, while `answering`.
async fn echo_service(
    mx: std::sync::Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let (mx, answering) = (mx.clone(), answering.clone());
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 echo.partner.test ESMTP\r\n").await.unwrap();
                let (mut from, mut body, mut data) = (String::new(), String::new(), false);
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let l = std::mem::take(&mut line);
                    if data {
                        if l == ".\r\n" {
                            data = false;
                            w.write_all(b"250 2.0.0 ok\r\n").await.unwrap();
                            if answering.load(std::sync::atomic::Ordering::SeqCst)
                                && let Some(&mx) = mx.get()
                            {
                                let mut c = common::Client::connect(mx).await;
                                c.ehlo().await;
                                let reply = format!("Subject: echo\r\n\r\nYou sent:\r\n{body}");
                                c.send_mail("echo@partner.test", &[&from], &reply).await;
                            }
                            body.clear();
                        } else {
                            body.push_str(&l);
                        }
                        continue;
                    }
                    let upper = l.to_ascii_uppercase();
                    if upper.starts_with("MAIL FROM:<") {
                        from = l[11..].split('>').next().unwrap_or("").to_string();
                    }
                    let reply: &[u8] = match upper.get(..4) {
                        Some("EHLO") => b"250 echo.partner.test\r\n",
                        Some("DATA") => {
                            data = true;
                            b"354 go on\r\n"
                        }
                        Some("QUIT") => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn an_echo_probe_goes_out_through_a_route_and_comes_back() {
    let mx = std::sync::Arc::new(std::sync::OnceLock::new());
    let answering = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let echo = echo_service(mx.clone(), answering.clone()).await;
    let mut config = common::test_config();
    config.probe.enabled = true;
    config.probe.interval_secs = 1;
    config.probe.echo = vec!["echo@partner.test".into()];
    config.probe.echo_domain = "example.test".into();
    config.probe.echo_timeout_secs = 3;
    config.delivery.enabled = true;
    config.delivery.retry_jitter = 0.0;
    config.route = vec![facteur::config::RouteConfig {
        domain: "partner.test".into(),
        via: echo.to_string(),
        ..Default::default()
    }];
    let s = TestServer::start_with(config).await;
    mx.set(s.smtp).unwrap();
    let echo_runs = |m: &Scrape, result: &str| {
        m.sum("facteur_probe_runs_total", &[("probe", "echo:echo@partner.test"), ("result", result)])
    };
    let m = scrape_until(&s, |m| echo_runs(m, "ok") >= 2.0).await;
    assert!(echo_runs(&m, "ok") >= 2.0, "{:?}", m.samples.iter().filter(|x| x.0.contains("probe")).collect::<Vec<_>>());
    assert_eq!(m.sum("facteur_probe_up", &[("probe", "echo:echo@partner.test")]), 1.0);
    // Its account is in the echo domain; answers are removed once seen.
    let address = facteur_types::probe::address_in(s.store().node(), "example.test");
    let inbox = s.store().list_mailboxes(&address).await.unwrap().into_iter().find(|b| b.name == "INBOX").unwrap();
    assert!(inbox.messages <= 1, "{inbox:?}");
    // The far end stops answering: the run times out, and says so.
    answering.store(false, std::sync::atomic::Ordering::SeqCst);
    let m = scrape_until(&s, |m| echo_runs(m, "timeout") >= 1.0).await;
    assert!(echo_runs(&m, "timeout") >= 1.0);
    assert_eq!(m.sum("facteur_probe_up", &[("probe", "echo:echo@partner.test")]), 0.0);
}

#[test]
fn echo_settings_are_checked() {
    let mut c = common::test_config();
    c.probe.echo = vec!["not-an-address".into()];
    assert!(c.probe.check().unwrap_err().contains("not-an-address"));
    c.probe.echo = vec!["echo@partner.test".into()];
    assert!(c.probe.check().unwrap_err().contains("echo_domain"));
    c.probe.echo_domain = "example.test".into();
    assert!(c.probe.check().is_ok());
}
