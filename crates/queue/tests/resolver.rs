//! The real resolver, pointed at loopback only: a server that does not
//! answer is a temporary failure (mail waits), never a permanent one.

use facteur_queue::resolver::{DnsError, DnsResolver, Resolver};

#[tokio::test]
async fn unreachable_dns_is_temporary() {
    // Port 9 (discard) on loopback: nothing answers DNS there.
    let timeout = Some(std::time::Duration::from_millis(200));
    let r = DnsResolver::with_timeout(&["127.0.0.1:9".parse().unwrap()], timeout).unwrap();
    let t = std::time::Instant::now();
    match r.mx("example.test").await {
        Err(DnsError::Temporary(_)) => {}
        other => panic!("expected a temporary failure, got {other:?}"),
    }
    assert!(matches!(r.ips("mx.example.test").await, Err(DnsError::Temporary(_))));
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}
