//! The synthetic probe, end to end: a server with the probe on sends
//! itself mail over SMTP and reads it back over IMAPS every second; its
//! runs show in /metrics and not in the traffic counters, its mailbox is
//! emptied, and when the path breaks the probe says which step failed.

mod common;

use common::TestServer;
use common::scrape::{Scrape, scrape_until};
use facteur_store::prelude::*;

async fn probing() -> TestServer {
    let mut config = common::test_config();
    config.probe.enabled = true;
    config.probe.interval_secs = 1;
    config.probe.timeout_secs = 5;
    TestServer::start_with(config).await
}

fn runs(m: &Scrape, result: &str) -> f64 {
    m.sum("facteur_probe_runs_total", &[("probe", "local"), ("result", result)])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_probe_goes_round_and_says_where_it_breaks() {
    let s = probing().await;
    let m = scrape_until(&s, |m| runs(m, "ok") >= 2.0).await;
    assert!(runs(&m, "ok") >= 2.0, "{:?}", m.samples.iter().filter(|x| x.0.contains("probe")).collect::<Vec<_>>());
    assert_eq!(m.sum("facteur_probe_up", &[("probe", "local")]), 1.0);
    assert!(m.sum("facteur_probe_duration_seconds_count", &[]) >= 2.0);
    // Probe mail is not traffic, and nothing failed.
    assert_eq!(m.sum("facteur_smtp_messages_accepted_total", &[]), 0.0);
    assert_eq!(m.sum("facteur_local_deliveries_total", &[]), 0.0);
    assert_eq!(runs(&m, "smtp") + runs(&m, "imap") + runs(&m, "timeout"), 0.0);

    // Its own account, in the .invalid domain, its mailbox emptied by each
    // run (at most the message of a run under way).
    let address = facteur_types::probe::address(s.store().node());
    assert!(address.ends_with("@facteur.invalid"), "{address}");
    let inbox = s.store().list_mailboxes(&address).await.unwrap().into_iter().find(|b| b.name == "INBOX").unwrap();
    assert!(inbox.messages <= 1, "{inbox:?}");

    // Break the path: without its account, RCPT is refused.
    s.store().remove_user(&address).await.unwrap();
    let m = scrape_until(&s, |m| runs(m, "smtp") >= 1.0 && m.sum("facteur_probe_up", &[]) == 0.0).await;
    assert!(runs(&m, "smtp") >= 1.0, "the failing step is not named");
    assert_eq!(m.sum("facteur_probe_up", &[("probe", "local")]), 0.0);
}
