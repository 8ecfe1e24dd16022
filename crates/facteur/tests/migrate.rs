//! `facteur migrate` between real processes and a real PostgreSQL (a
//! schema of each test's own at 127.0.0.1:5432, database `test`): a data
//! folder filled over SMTP and IMAP moves onto PostgreSQL and serves the
//! same mailboxes, UIDs, UIDVALIDITYs, flags and queue; a migrate killed
//! twice resumes without a duplicate; the SQLite file is never written;
//! and what it refuses.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Lines, PASSWORD, PgSchema, http_get};
use facteur_store::prelude::*;
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_facteur");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A data folder with its ports, and configuration files beside it.
struct Setup {
    dir: tempfile::TempDir,
    smtp: u16,
    http: u16,
    imap: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        Setup { dir, smtp: free_port(), http: free_port(), imap: free_port() }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn db(&self) -> PathBuf {
        self.data().join("facteur.db")
    }

    /// NAME.toml beside the data folder: loopback listeners on this
    /// setup's ports, IMAP LOGIN in clear, then `extra`.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nhostname = \"mx.example.test\"\n\
                 [listen]\nsmtp = [\"127.0.0.1:{}\"]\nsubmission = []\nsubmissions = []\nhttp = [\"127.0.0.1:{}\"]\n\
                 imap = [\"127.0.0.1:{}\"]\nimaps = []\npop3 = []\npop3s = []\nstatus = []\n\
                 [smtp]\ntrusted_networks = [\"127.0.0.0/8\"]\ngreet_pause_ms = 0\nmax_connections_per_ip = 0\n\
                 max_messages_per_minute_per_ip = 0\n\
                 [imap]\nplaintext_auth = true\n{extra}",
                self.smtp, self.http, self.imap
            ),
        )
        .unwrap();
        path
    }

    /// Delivery off, SQLite.
    fn sqlite_config(&self) -> PathBuf {
        self.config("sqlite", "[delivery]\nenabled = false\n")
    }

    /// Delivery off, on `pg`'s schema.
    fn pg_config(&self, pg: &PgSchema) -> PathBuf {
        self.config(
            "pg",
            &format!(
                "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\npool_size = 4\n\
                 [delivery]\nenabled = false\n",
                pg.url, pg.schema
            ),
        )
    }

    fn cmd(&self, config: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data").arg(self.data()).arg("--config").arg(config).env_remove("FACTEUR_CONFIG");
        c
    }

    fn facteur(&self, config: &Path, args: &[&str]) -> Output {
        self.cmd(config).args(args).output().unwrap()
    }

    /// A command that must succeed; its standard output.
    fn ok(&self, config: &Path, args: &[&str]) -> String {
        let o = self.facteur(config, args);
        assert!(o.status.success(), "facteur {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, config: &Path, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(config, args)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    }

    /// `migrate --to pg --schema …` with more arguments.
    fn migrate(&self, config: &Path, pg: &PgSchema, more: &[&str]) -> Output {
        self.cmd(config)
            .args(["migrate", "--to", &pg.url, "--schema", &pg.schema])
            .args(more)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `init`, domain example.test, users alice and bob.
    fn provision(&self, config: &Path) {
        self.ok(config, &["init"]);
        self.ok(config, &["domain", "add", "example.test"]);
        for user in ["alice@example.test", "bob@example.test"] {
            use std::io::Write;
            let mut child = self
                .cmd(config)
                .args(["user", "add", user, "--password-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", text(&o));
        }
    }

    async fn serve(&self, config: &Path) -> Server {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = self.cmd(config).arg("serve").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let server = Server(child);
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], self.http));
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(http).await.is_err() || http_get(http, "/readyz").await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "facteur serve not ready: {}",
                std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    fn addr(&self, port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// A `facteur serve`, killed if the test fails half-way.
struct Server(Child);

impl Server {
    /// SIGTERM, and wait for a clean exit.
    async fn stop(mut self) {
        // SAFETY: a signal to a child we started.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                return;
            }
            assert!(Instant::now() < deadline, "facteur serve did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SHA-256 of the database file, and the length of its WAL (0: none).
fn fingerprint(db: &Path) -> (String, u64) {
    let bytes = std::fs::read(db).unwrap();
    let digest = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let wal = std::fs::metadata(db.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    (digest, wal)
}

async fn pg_client(pg: &PgSchema) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!("SET search_path = {}", pg.schema)).await.unwrap();
    c
}

async fn pg_count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

fn sqlite_count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn schema_exists(pg: &PgSchema) -> bool {
    let (c, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.query_opt("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", &[&pg.schema])
        .await
        .unwrap()
        .is_some()
}

/// What an IMAP client sees of `user`'s mailboxes: the list, the
/// subscriptions, and per mailbox what SELECT says (UIDVALIDITY, UIDNEXT,
/// HIGHESTMODSEQ, EXISTS) and every message's UID, flags, MODSEQ, size and
/// subject.
async fn imap_view(addr: std::net::SocketAddr, user: &str) -> Vec<String> {
    let mut c = Lines::connect(addr).await;
    assert!(c.line().await.starts_with("* OK"));
    c.send(format!("a LOGIN {user} {PASSWORD}\r\n").as_bytes()).await;
    assert!(c.until("a ").await.last().unwrap().starts_with("a OK"));
    c.send(b"b ENABLE CONDSTORE\r\n").await;
    c.until("b ").await;
    c.send(b"c LIST \"\" \"*\"\r\n").await;
    let list = c.until("c ").await;
    c.send(b"d LSUB \"\" \"*\"\r\n").await;
    let mut out = list.clone();
    out.extend(c.until("d ").await);
    for line in list.iter().filter(|l| l.starts_with("* LIST")) {
        let name = line.rsplit(' ').next().unwrap().trim_matches('"').to_string();
        // EXAMINE: reading claims no \Recent (RFC 3501 §6.3.2), so the view
        // taken before the move and the one after see the same.
        c.send(format!("e EXAMINE \"{name}\"\r\n").as_bytes()).await;
        out.push(format!("-- {name}"));
        out.extend(c.until("e ").await);
        c.send(b"zz9 UID FETCH 1:* (FLAGS MODSEQ RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n").await;
        out.extend(c.until("zz9 ").await);
    }
    c.send(b"f LOGOUT\r\n").await;
    out
}

/// What the CLI says of users, domains, mailboxes, grants and the queue.
fn cli_view(s: &Setup, config: &Path) -> serde_json::Value {
    let queue = s.json(config, &["queue", "list", "--json"]);
    let shown: Vec<serde_json::Value> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|m| s.json(config, &["queue", "show", m["id"].as_str().unwrap(), "--json"]))
        .collect();
    serde_json::json!({
        "domains": s.json(config, &["domain", "list", "--json"]),
        "users": s.json(config, &["user", "list", "--json"]),
        "grants": s.json(config, &["user", "sender", "list", "--json"]),
        "alice": s.json(config, &["mailbox", "list", "alice@example.test", "--json"]),
        "bob": s.json(config, &["mailbox", "list", "bob@example.test", "--json"]),
        "queue": queue,
        "shown": shown,
    })
}

async fn send(smtp: std::net::SocketAddr, from: &str, to: &[&str], subject: &str) -> MessageId {
    let mut c = Client::connect(smtp).await;
    c.ehlo().await;
    let r = c.send_mail(from, to, &format!("Subject: {subject}\r\n\r\nthe body of {subject}")).await;
    assert_eq!(r.code, 250, "{r:?}");
    r.queued_id()
}

/// Mail, mailboxes, flags, subscriptions, a queue with its history, grants,
/// controls and the audit trail, made over SMTP, IMAP and the CLI on
/// SQLite; migrated; then served from PostgreSQL: every client sees the
/// same, and the SQLite file was not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_moves_to_postgres_and_serves_the_same() {
    let pg = PgSchema::new();
    let s = Setup::new();
    let closed = free_port();
    let sqlite = s.config(
        "sqlite",
        &format!(
            "[delivery]\nenabled = true\ndns_servers = [\"127.0.0.1:9\"]\n\
             [[route]]\ndomain = \"far.test\"\nvia = \"127.0.0.1:{closed}\"\ntls = \"none\"\n"
        ),
    );
    s.provision(&sqlite);
    let server = s.serve(&sqlite).await;
    let smtp = s.addr(s.smtp);
    for n in 0..12 {
        send(smtp, "friend@remote.test", &["alice@example.test"], &format!("alice {n}")).await;
    }
    for n in 0..4 {
        send(smtp, "friend@remote.test", &["bob@example.test"], &format!("bob {n}")).await;
    }
    send(smtp, "friend@remote.test", &["alice@example.test", "bob@example.test"], "to both").await;
    // Queued for a destination nobody answers at: attempts, then waiting.
    let out = [
        send(smtp, "sender@origin.test", &["x@far.test", "y@far.test"], "out 1").await,
        send(smtp, "sender@origin.test", &["z@far.test", "bob@example.test"], "out 2").await,
        send(smtp, "sender@origin.test", &["w@far.test"], "out 3").await,
    ];

    let mut imap = Lines::connect(s.addr(s.imap)).await;
    assert!(imap.line().await.starts_with("* OK"));
    let msg = "From: alice@example.test\r\nSubject: draft\r\n\r\nunfinished\r\n";
    let script = format!(
        "a LOGIN alice@example.test {PASSWORD}\r\nb CREATE Projects\r\nc CREATE Work\r\nd SELECT INBOX\r\n\
         e UID COPY 1:4 Projects\r\nf STORE 1:3 +FLAGS (\\Seen)\r\ng STORE 2 +FLAGS (\\Flagged $Important)\r\n\
         h STORE 5,7,13 +FLAGS (\\Deleted)\r\ni EXPUNGE\r\nj APPEND Work (\\Draft) {{{}+}}\r\n{msg}\r\n\
         k UNSUBSCRIBE Archive\r\nl SUBSCRIBE Work\r\nn CREATE Temp\r\no DELETE Temp\r\nm LOGOUT\r\n",
        msg.len()
    );
    imap.send(script.as_bytes()).await;
    let said = imap.until("m ").await;
    for tag in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "n", "o"] {
        assert!(said.iter().any(|l| l.starts_with(&format!("{tag} OK"))), "{tag}: {said:?}");
    }
    let mut imap = Lines::connect(s.addr(s.imap)).await;
    imap.line().await;
    imap.send(
        format!(
            "a LOGIN bob@example.test {PASSWORD}\r\nb SELECT INBOX\r\nc STORE 1 +FLAGS (\\Answered)\r\nd LOGOUT\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(imap.until("d ").await.iter().any(|l| l.starts_with("c OK")));

    // Every remote recipient tried (connection refused), or parked with
    // its destination, and waiting.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = s.json(&sqlite, &["queue", "list", "--json"]);
        let tried = q.as_array().unwrap().iter().all(|m| {
            m["recipients"].as_array().unwrap().iter().all(|r| r["state"] != "queued" || !r["last_error"].is_null())
        });
        if q.as_array().unwrap().len() == 3 && tried {
            break;
        }
        assert!(Instant::now() < deadline, "no attempts recorded: {q}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.ok(&sqlite, &["queue", "hold", &out[2].to_string()]);
    s.ok(&sqlite, &["queue", "pause", "--class", "bulk"]);
    s.ok(&sqlite, &["queue", "rate", "--destination", "far.test", "5"]);
    s.ok(&sqlite, &["user", "sender", "add", "alice@example.test", "@example.test"]);
    let before_alice = imap_view(s.addr(s.imap), "alice@example.test").await;
    let before_bob = imap_view(s.addr(s.imap), "bob@example.test").await;
    server.stop().await;
    let before = cli_view(&s, &sqlite);
    assert!(before["shown"].as_array().unwrap().iter().any(|m| !m["attempts"].as_array().unwrap().is_empty()));
    assert!(before_alice.iter().any(|l| l.contains("\\Flagged") && l.contains("$Important")), "{before_alice:?}");

    let file = fingerprint(&s.db());
    let o = s.migrate(&sqlite, &pg, &[]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("every table verified"), "{said}");
    assert!(said.contains("migrate: copying messages: "), "a progress line per chunk without a terminal: {said}");
    assert!(said.contains("backend = \"postgres\"") && said.contains(&format!("schema = \"{}\"", pg.schema)), "{said}");
    assert!(said.contains("note: table nodes not copied"), "{said}");
    let rows = |table: &str| {
        let line = said.lines().find(|l| l.split_whitespace().next() == Some(table)).expect(table);
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    for table in ["sender_grants", "uidvalidity_floor", "controls", "audit", "attempts", "subscriptions"] {
        assert!(rows(table) > 0, "{table}: the test data should hold some: {said}");
    }
    assert_eq!(fingerprint(&s.db()), file, "migrate wrote into the SQLite database");
    let o = s.migrate(&sqlite, &pg, &[]);
    assert!(o.status.success() && text(&o).contains("already migrated and verified"), "{}", text(&o));
    assert_eq!(fingerprint(&s.db()), file);

    let pgc = s.pg_config(&pg);
    let server = s.serve(&pgc).await;
    assert_eq!(imap_view(s.addr(s.imap), "alice@example.test").await, before_alice);
    assert_eq!(imap_view(s.addr(s.imap), "bob@example.test").await, before_bob);
    assert_eq!(cli_view(&s, &pgc), before);
    let check = s.ok(&pgc, &["check"]);
    assert!(check.contains("all hold") && check.contains("PostgreSQL"), "{check}");
    // Only the node now running is known: nodes start anew.
    assert_eq!(s.json(&pgc, &["nodes", "--json"]).as_array().unwrap().len(), 1);

    // It goes on from where SQLite stopped: the next UID, new mailbox ids
    // and audit ids from sequences past the copied ones.
    let inbox = |v: &serde_json::Value| v.as_array().unwrap().iter().find(|b| b["name"] == "INBOX").unwrap().clone();
    let old = inbox(&before["alice"]);
    send(s.addr(s.smtp), "friend@remote.test", &["alice@example.test"], "after").await;
    let now = inbox(&s.json(&pgc, &["mailbox", "list", "alice@example.test", "--json"]));
    assert_eq!(now["uidnext"].as_u64().unwrap(), old["uidnext"].as_u64().unwrap() + 1);
    assert_eq!(now["uidvalidity"], old["uidvalidity"]);
    let mut imap = Lines::connect(s.addr(s.imap)).await;
    imap.line().await;
    imap.send(format!("a LOGIN alice@example.test {PASSWORD}\r\nb CREATE Later\r\nc LOGOUT\r\n").as_bytes()).await;
    assert!(imap.until("c ").await.iter().any(|l| l.starts_with("b OK")));
    s.ok(&pgc, &["queue", "release", &out[2].to_string()]);
    let shown = s.json(&pgc, &["queue", "show", &out[2].to_string(), "--json"]);
    assert_eq!(shown["audit"].as_array().unwrap().len(), 2, "{shown}");
    server.stop().await;
}

/// A store of `n` messages with bodies of `body` octets, built in this
/// process: every message in alice's INBOX, every third also queued for a
/// remote recipient; some of those tried once (history), some leased.
async fn fill(db: &Path, n: usize, body: usize) {
    use facteur_store::{
        AttemptRecord, ClaimFilter, NewMessage, NewRecipient, NewState, RecipientUpdate, Route, StoredEnvelope,
    };
    let store = facteur_store::sqlite::SqliteStore::create(db).unwrap();
    store.add_domain("example.test").await.unwrap();
    let hash = facteur_store::password::hash(PASSWORD);
    store.add_user("alice@example.test", &hash).await.unwrap();
    store.add_user("bob@example.test", &hash).await.unwrap();
    let t0 = 1_800_000_000_000u64;
    let text: String = (0..body).map(|i| if i % 76 == 75 { '\n' } else { fastrand::alphanumeric() }).collect();
    for batch in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut tasks = Vec::new();
        for &i in batch {
            let store = store.clone();
            let data = format!("Subject: message {i}\r\n\r\n{text}").into_bytes();
            let mut recipients = vec![NewRecipient {
                address: "alice@example.test".into(),
                notify: None,
                orcpt: None,
                route: Route::inbox("alice@example.test"),
            }];
            if i % 3 == 0 {
                recipients.push(NewRecipient {
                    address: format!("r{i}@far.test"),
                    notify: None,
                    orcpt: None,
                    route: Route::Remote,
                });
            }
            tasks.push(tokio::spawn(async move {
                store
                    .store_message(NewMessage {
                        hold: false,
                        id: MessageId::new(t0 + i as u64),
                        received_at: (t0 / 1000) as i64,
                        class: Class::Interpersonal,
                        envelope: StoredEnvelope { mail_from: "s@origin.test".into(), ..Default::default() },
                        recipients,
                        data,
                    })
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let now = (t0 / 1000) as i64 + 10;
    let jobs = store.claim_due(now, now + 900, n, ClaimFilter::default()).await.unwrap();
    let mut updates = Vec::new();
    // Half of what was claimed is tried and deferred; the rest stays leased.
    for job in jobs.iter().take(jobs.len() / 2) {
        for r in &job.recipients {
            updates.push(RecipientUpdate {
                message_id: job.message_id,
                idx: r.idx,
                state: NewState::Deferred { next_attempt: now + 600 },
                attempt: Some(AttemptRecord {
                    recipient: r.address.clone(),
                    at: now,
                    host: Some("127.0.0.1".into()),
                    outcome: Outcome::Deferred,
                    reply: "421 4.3.0 try again later".into(),
                }),
                last_error: Some("421 4.3.0 try again later".into()),
                delay_notified: false,
            });
        }
    }
    store.complete(updates, Vec::new()).await.unwrap();
    drop(store);
    // The store's connections close on their own threads; the last one
    // checkpoints and removes the WAL.
    let wal = db.with_extension("db-wal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() {
        assert!(Instant::now() < deadline, "the store did not close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run migrate and SIGKILL it at the first progress line `at` matches.
fn migrate_until(s: &Setup, config: &Path, pg: &PgSchema, at: impl Fn(&str) -> bool) -> Vec<String> {
    let mut child = s
        .cmd(config)
        .args(["migrate", "--to", &pg.url, "--schema", &pg.schema, "--chunk-rows", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let stop = at(&line);
        seen.push(line);
        if stop {
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            assert!(!status.success(), "{status:?}");
            return seen;
        }
    }
    panic!("migrate ended before it could be interrupted: {seen:?} {:?}", child.wait());
}

/// `migrate: copying TABLE: DONE/TOTAL rows` with DONE > 0.
fn copying(table: &str) -> impl Fn(&str) -> bool {
    let prefix = format!("migrate: copying {table}: ");
    move |line: &str| {
        line.strip_prefix(&prefix)
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|done| done.parse::<u64>().is_ok_and(|d| d > 0))
    }
}

const TABLES: &[&str] = &[
    "domains",
    "users",
    "mailboxes",
    "uid_counters",
    "subscriptions",
    "messages",
    "message_bodies",
    "mailbox_messages",
    "recipients",
    "attempts",
];

/// Killed in the middle of the bodies, and again in the middle of the
/// mailbox entries: the third run continues, verifies, and every table
/// holds each row once; the SQLite file was never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_migrate_resumes_without_duplicates() {
    const N: usize = 3000;
    let pg = PgSchema::new();
    let s = Setup::new();
    fill(&s.db(), N, 8 * 1024).await;
    let sqlite = s.sqlite_config();
    let file = fingerprint(&s.db());
    let leased = sqlite_count(&s.db(), "SELECT count(*) FROM recipients WHERE lease_until IS NOT NULL");
    assert!(leased > 0 && sqlite_count(&s.db(), "SELECT count(*) FROM attempts") > 0);

    let started = Instant::now();
    let seen = migrate_until(&s, &sqlite, &pg, copying("message_bodies"));
    let c = pg_client(&pg).await;
    let bodies = pg_count(&c, "SELECT count(*) FROM message_bodies").await;
    assert!(bodies > 0 && bodies < N as i64, "{bodies} bodies after the kill; {seen:?}");
    assert_eq!(pg_count(&c, "SELECT count(*) FROM migrate_runs WHERE finished_at IS NULL").await, 1);
    assert_eq!(fingerprint(&s.db()), file, "migrate wrote into the SQLite database");

    migrate_until(&s, &sqlite, &pg, copying("mailbox_messages"));
    let entries = pg_count(&c, "SELECT count(*) FROM mailbox_messages").await;
    assert!(entries > 0 && entries < N as i64, "{entries} mailbox entries after the kill");
    assert_eq!(pg_count(&c, "SELECT count(*) FROM message_bodies").await, N as i64, "bodies were done");

    let o = s.migrate(&sqlite, &pg, &["--chunk-rows", "100"]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("continuing an interrupted run") && said.contains("every table verified"), "{said}");
    eprintln!("{N} messages of 8 KiB, killed twice, in {:?}:\n{said}", started.elapsed());
    assert_eq!(fingerprint(&s.db()), file, "migrate wrote into the SQLite database");

    for t in TABLES {
        let sql = format!("SELECT count(*) FROM {t}");
        assert_eq!(pg_count(&c, &sql).await, sqlite_count(&s.db(), &sql), "{t}");
    }
    assert_eq!(
        pg_count(&c, "SELECT count(*) FROM (SELECT DISTINCT message_id, idx FROM attempts) a").await,
        sqlite_count(&s.db(), "SELECT count(*) FROM attempts"),
        "an attempt copied twice"
    );
    assert_eq!(
        pg_count(&c, "SELECT count(*) FROM recipients WHERE lease_until IS NOT NULL OR lease_owner IS NOT NULL").await,
        0
    );
    assert_eq!(pg_count(&c, "SELECT count(*) FROM migrate_runs WHERE finished_at IS NOT NULL").await, 1);
}

/// A server on the data folder: refused, and nothing is made in
/// PostgreSQL; once it stopped, the same command goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_in_use_is_refused() {
    let pg = PgSchema::new();
    let s = Setup::new();
    let sqlite = s.sqlite_config();
    s.provision(&sqlite);
    let server = s.serve(&sqlite).await;
    let o = s.migrate(&sqlite, &pg, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cannot migrate now") && text(&o).contains("in use"), "{}", text(&o));
    assert!(!schema_exists(&pg).await);
    server.stop().await;
    let o = s.migrate(&sqlite, &pg, &[]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A database at an older schema version (or a newer one) is refused
/// with the way out, and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_at_another_schema_version_is_refused() {
    let pg = PgSchema::new();
    let s = Setup::new();
    let sqlite = s.sqlite_config();
    s.provision(&sqlite);
    let latest = facteur_store::sqlite::latest_version();
    for (version, says) in [(latest - 1, "check"), (latest + 1, "newer")] {
        let c = rusqlite::Connection::open(s.db()).unwrap();
        c.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [version.to_string()]).unwrap();
        drop(c);
        let file = fingerprint(&s.db());
        let o = s.migrate(&sqlite, &pg, &[]);
        let said = text(&o);
        assert!(!o.status.success(), "{said}");
        assert!(said.contains(&format!("schema version {version}")) && said.contains(says), "{said}");
        assert!(!said.contains("panicked"), "{said}");
        assert_eq!(fingerprint(&s.db()), file);
        assert!(!schema_exists(&pg).await);
    }
}

/// A schema holding data that no unfinished migration of this database
/// put there is refused, by name: facteur's own data, or another
/// database's migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_holding_other_data_is_refused() {
    let pg = PgSchema::new();
    let (a, other) = (Setup::new(), Setup::new());
    let a_config = a.sqlite_config();
    a.provision(&a_config);
    let other_pg = other.pg_config(&pg);
    other.ok(&other_pg, &["init"]);
    other.ok(&other_pg, &["domain", "add", "other.test"]);
    let o = a.migrate(&a_config, &pg, &[]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains(&format!("schema {}", pg.schema)) && said.contains("already holds facteur data"), "{said}");
    assert!(said.contains("domains"), "{said}");

    // A's migration done in a schema of its own; B's refused there.
    let pg2 = PgSchema::new();
    let o = a.migrate(&a_config, &pg2, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let b = Setup::new();
    let b_config = b.sqlite_config();
    b.provision(&b_config);
    b.ok(&b_config, &["domain", "add", "b.test"]);
    let o = b.migrate(&b_config, &pg2, &[]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains(&format!("schema {}", pg2.schema)) && said.contains("another SQLite database"), "{said}");
}

/// A URL that is not one, a server that does not answer, a schema name
/// that could not be one: each a clear error, no panic, no password shown.
#[test]
fn bad_targets_are_clear_errors() {
    let s = Setup::new();
    let sqlite = s.sqlite_config();
    s.provision(&sqlite);
    let cases: [(&[&str], &str); 3] = [
        (&["--to", "nonsense"], "\"nonsense\" is not a PostgreSQL URL"),
        (
            &["--to", "postgres://facteur:s3cr3t@127.0.0.1:1/test"],
            "cannot connect to PostgreSQL at facteur@127.0.0.1:1/test",
        ),
        (&["--to", "postgres://postgres@127.0.0.1:5432/test", "--schema", "no-dashes"], "letters, digits and _ only"),
    ];
    for (args, says) in cases {
        let o = s.cmd(&sqlite).arg("migrate").args(args).output().unwrap();
        let said = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
        assert!(!said.contains("panicked") && !said.contains("s3cr3t"), "{args:?}: {said}");
    }
}

/// Not run by default: the copy speed for 100,000 messages of 4 KiB
/// (`cargo test -p facteur --test migrate -- --ignored --nocapture`;
/// `FACTEUR_BIN=…/release/facteur` measures that binary instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn copy_speed_of_100k_messages() {
    let pg = PgSchema::new();
    let s = Setup::new();
    let t = Instant::now();
    fill(&s.db(), 100_000, 4 * 1024).await;
    eprintln!("filled in {:?}", t.elapsed());
    let mut cmd = s.cmd(&s.sqlite_config());
    if let Some(bin) = std::env::var_os("FACTEUR_BIN") {
        cmd = Command::new(bin);
        cmd.arg("--data").arg(s.data()).arg("--config").arg(s.sqlite_config());
    }
    let o = cmd.args(["migrate", "--to", &pg.url, "--schema", &pg.schema]).output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("{said}");
}
