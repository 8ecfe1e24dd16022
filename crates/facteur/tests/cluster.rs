//! Several facteur nodes on one PostgreSQL database (a schema of the
//! test's own): IMAP IDLE on one node hears of mail accepted on another,
//! two nodes delivering into one mailbox at once keep UIDs strictly
//! increasing, and the node list shows who is there.

mod common;

use std::time::Duration;

use common::{Client, Lines, PASSWORD, PgSchema, TestServer, test_config};
use facteur_store::NodeState;
use facteur_store::prelude::*;

fn node_config(pg: &PgSchema, name: &str) -> facteur::config::Config {
    let mut c = test_config();
    pg.configure(&mut c);
    c.node.name = name.into();
    c.node.region = format!("region-{name}");
    c.imap.plaintext_auth = true;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_on_one_node_hears_of_mail_accepted_on_another() {
    let pg = PgSchema::new();
    let a = TestServer::start_with(node_config(&pg, "n1")).await;
    let b = TestServer::join(node_config(&pg, "n2")).await;

    let mut imap = Lines::connect(a.imap).await;
    assert!(imap.line().await.starts_with("* OK"));
    imap.send(format!("a LOGIN alice@example.test {PASSWORD}\r\n").as_bytes()).await;
    assert!(imap.until("a ").await.last().unwrap().starts_with("a OK"));
    imap.send(b"b SELECT INBOX\r\n").await;
    assert!(imap.until("b ").await.iter().any(|l| l == "* 0 EXISTS"));
    imap.send(b"c IDLE\r\n").await;
    assert!(imap.line().await.starts_with("+ "));

    let mut smtp = Client::connect(b.smtp).await;
    smtp.ehlo().await;
    let sent = tokio::time::Instant::now();
    let r = smtp.send_mail("someone@remote.test", &["alice@example.test"], "Subject: via n2\r\n\r\nhello").await;
    assert_eq!(r.code, 250, "{r:?}");
    // Within a second of the 250 on the other node.
    let line = imap.line_within(1).await.expect("connection open");
    assert_eq!(line, "* 1 EXISTS", "pushed {:?} after the 250", sent.elapsed());
    imap.send(b"DONE\r\n").await;
    assert!(imap.until("c ").await.last().unwrap().starts_with("c OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_delivering_into_one_mailbox_keep_uids_strictly_increasing() {
    let pg = PgSchema::new();
    let a = TestServer::start_with(node_config(&pg, "n1")).await;
    let b = TestServer::join(node_config(&pg, "n2")).await;
    let mut tasks = Vec::new();
    for session in 0..10 {
        let addr = if session % 2 == 0 { a.smtp } else { b.smtp };
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.ehlo().await;
            for n in 0..20 {
                let body = format!("Subject: {session}-{n}\r\n\r\nx");
                assert_eq!(c.send_mail("s@remote.test", &["alice@example.test"], &body).await.code, 250);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = a.store();
    let inbox = store.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    let uids: Vec<u32> = store.mailbox_messages(inbox.id).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(uids, (1..=200).collect::<Vec<_>>(), "every UID once, none skipped or reused");
    assert_eq!(inbox.uidnext, 201);
    assert!(store.check(false).await.unwrap().healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_list_shows_who_runs_and_who_stopped() {
    let pg = PgSchema::new();
    let a = TestServer::start_with(node_config(&pg, "n1")).await;
    let mut b = TestServer::join(node_config(&pg, "n2")).await;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let nodes = a.store().nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| (n.name.as_str(), n.region.as_str(), n.state(now(), 15))).collect::<Vec<_>>(),
        [("n1", "region-n1", NodeState::Up), ("n2", "region-n2", NodeState::Up)]
    );
    b.stop().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let nodes = a.store().nodes().await.unwrap();
    assert_eq!(nodes[1].state(now(), 15), NodeState::Stopped);
    assert_eq!(nodes[0].state(now(), 15), NodeState::Up);
}

/// A live node whose lease renewals stalled (an overloaded machine, a slow
/// database) does not deliver what another node took over meanwhile: it
/// confirms a lease that is running short before the message goes to the
/// next hop, and lets go of one that is now another node's, unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_does_not_deliver_what_another_took_over() {
    const T0: i64 = 1_800_000_000;
    const LEASE: i64 = 60;
    let pg = PgSchema::new();
    // Replies one octet every 20 ms: the first message takes seconds, the
    // second waits in n1's memory meanwhile (one connection at a time).
    let sim = facteur_testkit::Downstream::start(facteur_testkit::Behavior {
        trickle: Some(Duration::from_millis(20)),
        ..facteur_testkit::Behavior::accept_all()
    })
    .await;
    let mut config = node_config(&pg, "n1");
    config.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    config.delivery.enabled = true;
    config.delivery.lease_secs = LEASE as u64;
    config.delivery.command_timeout_secs = 30;
    config.delivery.shaping.max_concurrency = 1;
    config.route =
        vec![facteur::config::RouteConfig { domain: "*".into(), via: sim.addr().to_string(), ..Default::default() }];
    // n1's engine runs on a manual clock, driven by the test: no renewal
    // runs, as if the node had stalled.
    let clock = facteur_store::ManualClock::new(T0);
    let options = facteur::serve::StartOptions { clock: std::sync::Arc::new(clock.clone()), delivery_loop: false };
    let a = TestServer::start_opts(config, options).await;
    let b = TestServer::join(node_config(&pg, "n2")).await;
    let mut c = Client::connect(a.smtp).await;
    c.ehlo().await;
    for to in ["first@far.test", "second@far.test"] {
        assert_eq!(c.send_mail("s@example.test", &[to], "Subject: x\r\n\r\nx").await.code, 250);
    }
    let engine = a.engine();
    let run = tokio::spawn(async move { engine.run_once().await });
    // The first message is under way (its lease was checked): n1 then
    // stalls past both leases, and n2 takes what n1 has not recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.connections() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "n1 never started delivering");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.advance(LEASE + 1);
    let now = T0 + LEASE + 1;
    let taken = b.store().claim_due(now, now + LEASE, 10, facteur_store::ClaimFilter::default()).await.unwrap();
    assert_eq!(taken.len(), 2, "both of n1's leases ran out");
    assert!(sim.received().is_empty(), "n2 claimed before n1 finished the first message: make the sim slower");
    assert_eq!(tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap(), 2);
    // The one under way when the lease ran out arrives (at-least-once: n2
    // may send it again); the one waiting in n1's memory is left to n2.
    let sent: Vec<Vec<String>> = sim.received().into_iter().map(|m| m.rcpts).collect();
    assert_eq!(sent, [["first@far.test"]], "n1 sent what n2 had taken over");
    let second = taken.iter().find(|j| j.recipients[0].address == "second@far.test").unwrap();
    let left = b.store().queue_show(second.message_id).await.unwrap().unwrap();
    let r = &left.recipients[0];
    assert_eq!((r.state, r.attempts), (facteur_store::RecipientStatus::Queued, 0), "{left:?}");
}

/// A `facteur serve` process, killed if the test fails half-way.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Write node `name`'s configuration in `dir`: relaying everything to
/// `sim`, leases of 3 s (a dead node's mail is taken over that soon).
fn process_config(dir: &std::path::Path, pg: &PgSchema, name: &str, sim: std::net::SocketAddr) -> (u16, u16) {
    let (smtp, http) = (free_port(), free_port());
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "[server]\nhostname = \"{name}.example.test\"\n\
             [listen]\nsmtp = [\"127.0.0.1:{smtp}\"]\nsubmission = []\nsubmissions = []\nhttp = [\"127.0.0.1:{http}\"]\n\
             imap = []\nimaps = []\npop3 = []\npop3s = []\nstatus = []\n\
             [smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\ngreet_pause_ms = 0\nmax_connections_per_ip = 0\n\
             max_messages_per_minute_per_ip = 0\n\
             [storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\npool_size = 8\n\
             [node]\nname = \"{name}\"\n\
             [delivery]\nenabled = true\ndns_servers = [\"127.0.0.1:9\"]\nlease_secs = 3\n\
             [[route]]\ndomain = \"*\"\nvia = \"{sim}\"\ntls = \"none\"\n",
            url = pg.url,
            schema = pg.schema,
        ),
    )
    .unwrap();
    (smtp, http)
}

fn facteur_cmd(dir: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_facteur"));
    c.arg("--data").arg(dir.join("data")).arg("--config").arg(dir.join("node.toml")).env_remove("FACTEUR_CONFIG");
    c
}

async fn start_node(dir: &std::path::Path, http: u16) -> Node {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let node = Node(facteur_cmd(dir).arg("serve").stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ready = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    while tokio::net::TcpStream::connect(ready).await.is_err() || common::http_get(ready, "/readyz").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node not ready: {}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node
}

/// Send messages `range` (one recipient each, rN@far.test) over `sessions`
/// connections to `smtp`; every one must be acknowledged.
async fn submit(smtp: u16, range: std::ops::Range<usize>, sessions: usize) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], smtp));
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let mine: Vec<usize> = range.clone().filter(|n| n % sessions == s).collect();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.ehlo().await;
            for n in mine {
                let r = c
                    .send_mail("sender@origin.test", &[&format!("r{n}@far.test")], &format!("Subject: {n}\r\n\r\nx"))
                    .await;
                assert_eq!(r.code, 250, "message {n}: {r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// 10,000 messages accepted by two nodes; one is SIGKILLed while they
/// drain: every acknowledged message arrives, the survivor takes over the
/// dead node's leases once they run out, and a message arrives twice only
/// if the dead node held it at the moment it died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_drain_loses_nothing_and_its_leases_are_taken_over() {
    kill_one_node_mid_drain(2).await
}

/// The same with three nodes: the two survivors share the dead node's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_nodes_killed_mid_drain_loses_nothing() {
    kill_one_node_mid_drain(3).await
}

/// Messages `range` split among the nodes listening on `smtps`, at once.
async fn share(range: std::ops::Range<usize>, smtps: &[u16]) {
    let step = range.len().div_ceil(smtps.len());
    let mut all = tokio::task::JoinSet::new();
    for (i, smtp) in smtps.iter().enumerate() {
        let from = range.start + i * step;
        all.spawn(submit(*smtp, from..(from + step).min(range.end), 5));
    }
    while let Some(done) = all.join_next().await {
        done.unwrap();
    }
}

async fn kill_one_node_mid_drain(count: usize) {
    const TOTAL: usize = 10_000;
    let pg = PgSchema::new();
    // Slow while the first half is accepted (replies trickle out), so the
    // node killed then is in the middle of deliveries; fast afterwards.
    let slow = facteur_testkit::Behavior {
        trickle: Some(Duration::from_millis(1)),
        ..facteur_testkit::Behavior::accept_all()
    };
    let sim = facteur_testkit::Downstream::start(slow).await;
    let dirs: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<(u16, u16)> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| process_config(d.path(), &pg, &format!("n{}", i + 1), sim.addr()))
        .collect();
    let o = facteur_cmd(dirs[0].path()).arg("init").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut nodes = Vec::new();
    for (d, (_, http)) in dirs.iter().zip(&ports) {
        nodes.push(start_node(d.path(), *http).await);
    }

    // Half, shared among the nodes; all deliver meanwhile.
    let half = TOTAL / 2;
    let smtps: Vec<u16> = ports.iter().map(|p| p.0).collect();
    share(0..half, &smtps).await;
    nodes[0].0.kill().unwrap();
    nodes[0].0.wait().unwrap();
    // What the dead node held at the moment it died.
    let (db, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    db.batch_execute(&format!("SET search_path = {}", pg.schema)).await.unwrap();
    let held: std::collections::HashSet<String> = db
        .query("SELECT address FROM recipients WHERE lease_owner = 'n1' AND state = 'queued'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!held.is_empty(), "the node was killed with nothing in flight: the test proves nothing");
    sim.set_behavior(facteur_testkit::Behavior::accept_all());
    // The rest to the survivors.
    share(half..TOTAL, &smtps[1..]).await;
    // Every message once at least (a duplicate counts once).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for m in sim.received() {
            for r in m.rcpts {
                *seen.entry(r).or_default() += 1;
            }
        }
        if seen.len() >= TOTAL || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for n in 0..TOTAL {
        assert!(seen.contains_key(&format!("r{n}@far.test")), "r{n}@far.test was acknowledged and never arrived");
    }
    let twice: Vec<&String> = seen.iter().filter(|(_, c)| **c > 1).map(|(r, _)| r).collect();
    assert!(
        twice.iter().all(|r| held.contains(*r)),
        "delivered twice without being in flight on the dead node: {twice:?}"
    );
    // Nothing is left leased by the dead node, and the queue is empty.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 =
            db.query_one("SELECT COUNT(*) FROM recipients WHERE state <> 'delivered'", &[]).await.unwrap().get(0);
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} recipient(s) never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("n1 held {} recipient(s) when killed; {} arrived twice", held.len(), twice.len());
}

/// Two nodes under one name would release and renew each other's leases:
/// the second waits to see whether the name's heartbeat is a dead run's,
/// and refuses to start when it keeps beating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_under_a_running_nodes_name_is_refused() {
    let pg = PgSchema::new();
    let mut config = node_config(&pg, "twin");
    config.node.heartbeat_secs = 1;
    config.node.down_after_secs = 3;
    let _a = TestServer::start_with(config.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let started = tokio::time::Instant::now();
    let e = facteur::serve::start(config, dir.path()).await.err().expect("a twin started");
    assert!(format!("{e:#}").contains("another node is running under the name \"twin\""), "{e:#}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused once the heartbeat moved: {:?}", started.elapsed());
}
