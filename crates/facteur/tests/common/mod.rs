//! Test harness: a facteur started in-process on ephemeral loopback ports
//! with a temporary data folder, and a small line-oriented SMTP client
//! speaking over real TCP (and TLS).
#![allow(dead_code)]

pub mod scrape;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use facteur::config::Config;
use facteur::serve::{self, Running};
use facteur_store::any::AnyStore;
use facteur_store::sqlite::SqliteStore;
use facteur_store::{password, prelude::*};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const PASSWORD: &str = "s3cret-pass";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    pub http: SocketAddr,
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    pub status: SocketAddr,
}

pub fn loopback0() -> Vec<SocketAddr> {
    vec!["127.0.0.1:0".parse().unwrap()]
}

/// A config on ephemeral ports; loopback is NOT trusted unless the test says so.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.server.hostname = "mx.example.test".into();
    c.listen.smtp = loopback0();
    c.listen.submission = loopback0();
    c.listen.submissions = loopback0();
    c.listen.http = loopback0();
    c.listen.imap = loopback0();
    c.listen.imaps = loopback0();
    c.listen.pop3 = loopback0();
    c.listen.pop3s = loopback0();
    c.listen.status = loopback0();
    c.smtp.trusted_networks = vec![];
    c.smtp.auth_failure_delay_secs = 0;
    // Loopback is a stranger here: without this every MX connection would
    // wait for its greeting (tests of the pause set it).
    c.smtp.greet_pause_ms = 0;
    // Loopback is not trusted here, so the per-client limits would apply to
    // every test; the tests of those limits set them.
    c.smtp.max_connections_per_ip = 0;
    c.smtp.max_messages_per_minute_per_ip = 0;
    c.smtp.max_messages_per_minute_per_user = 0;
    // Delivery tests turn the engine on with routes to a simulator; here
    // queued mail stays queued, and no DNS is ever asked.
    c.delivery.enabled = false;
    c.delivery.dns_servers = vec!["127.0.0.1:9".parse().unwrap()];
    // Loopback is a stranger on the MX port, and there is no DNS to check
    // its mail against: tests/sender_auth.rs turns this on with a stub.
    c.sender_auth.verify = false;
    // The synthetic probe's mail and account would show in what tests
    // count; tests/probe.rs turns it on.
    c.probe.enabled = false;
    c
}

/// Domain example.test with users alice and bob.
pub async fn provision(data: &Path, config: &Config) {
    let store = serve::init_store(config, data).await.unwrap();
    store.add_domain("example.test").await.unwrap();
    for u in ["alice@example.test", "bob@example.test"] {
        store.add_user(u, &password::hash(PASSWORD)).await.unwrap();
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        Self::start_opts(config, serve::StartOptions::default()).await
    }

    pub async fn start_opts(config: Config, options: serve::StartOptions) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        provision(dir.path(), &config).await;
        Self::serve_in(dir, config, options).await
    }

    /// Another node on the shared storage `config` names (provisioned by
    /// the first), with a data folder of its own.
    pub async fn join(config: Config) -> TestServer {
        Self::serve_in(tempfile::tempdir().unwrap(), config, serve::StartOptions::default()).await
    }

    async fn serve_in(dir: tempfile::TempDir, config: Config, options: serve::StartOptions) -> TestServer {
        let running = serve::start_with(config, dir.path(), options).await.unwrap();
        TestServer {
            smtp: running.smtp[0],
            submission: running.submission[0],
            submissions: running.submissions[0],
            http: running.http[0],
            imap: running.imap[0],
            imaps: running.imaps[0],
            pop3: running.pop3[0],
            pop3s: running.pop3s[0],
            status: running.status[0],
            running: Some(running),
            dir,
        }
    }

    /// The server's storage (once it stopped, SQLite: a handle of its own
    /// on the same file).
    pub fn store(&self) -> AnyStore {
        match &self.running {
            Some(r) => r.store.clone(),
            None => SqliteStore::open(&self.dir.path().join("facteur.db")).unwrap().into(),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("facteur.db")
    }

    /// Messages in a user's INBOX, in UID order.
    pub async fn inbox(&self, user: &str) -> Vec<String> {
        let store = self.store();
        let mb = store.list_mailboxes(user).await.unwrap().into_iter().find(|m| m.name == "INBOX").unwrap();
        let mut out = Vec::new();
        for uid in 1..mb.uidnext {
            if let Some(m) = store.fetch_message(mb.id, uid).await.unwrap() {
                out.push(String::from_utf8_lossy(&m).into_owned());
            }
        }
        out
    }

    /// The delivery engine (the test config must enable delivery).
    pub fn engine(&self) -> std::sync::Arc<facteur_queue::Engine<AnyStore, facteur_queue::DnsResolver>> {
        self.running.as_ref().unwrap().engine.clone().expect("delivery.enabled")
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Stop, and start again on the same data folder.
    #[allow(dead_code)]
    pub async fn restart_opts(&mut self, config: Config, options: serve::StartOptions) {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        *self = Self::serve_in(dir, config, options).await;
    }
}

/// The server's self-signed certificate is accepted without verification
/// (the delivery engine's opportunistic-TLS client configuration): these
/// tests check our server, not the PKI.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(facteur_queue::client::client_tls_config())
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A minimal SMTP client over a real socket.
pub struct Client {
    io: BufReader<Box<dyn Stream>>,
}

/// A reply: code and the text of every line (without code and separator).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The id in a `250 ... queued as ID` reply.
    pub fn queued_id(&self) -> facteur_store::MessageId {
        self.text().rsplit(' ').next().unwrap().parse().expect("a message id ends the 250")
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Client { io: BufReader::new(Box::new(s)) };
        assert_eq!(c.reply().await.code, 220);
        c
    }

    /// Connect with implicit TLS (port 465 style).
    pub async fn connect_tls(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let tls = tls_connector().connect("localhost".try_into().unwrap(), s).await.unwrap();
        let mut c = Client { io: BufReader::new(Box::new(tls)) };
        assert_eq!(c.reply().await.code, 220);
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// Read one (possibly multi-line) reply; panics after 10 s of silence.
    pub async fn reply(&mut self) -> Reply {
        self.try_reply().await.expect("connection closed while waiting for a reply")
    }

    /// `None` when the server closed the connection.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut line))
                .await
                .expect("no reply within 10 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            let code: u16 = line[..3].parse().unwrap();
            lines.push(line[4..].trim_end().to_string());
            if line.as_bytes()[3] == b' ' {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Send one command line, return its reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Send a command and assert the reply code.
    pub async fn ok(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line).await;
        assert_eq!(r.code, code, "{line} -> {r:?}");
        r
    }

    pub async fn ehlo(&mut self) -> Reply {
        self.ok("EHLO client.test", 250).await
    }

    pub fn from_stream(s: Box<dyn Stream>) -> Client {
        Client { io: BufReader::new(s) }
    }

    /// The underlying stream; only valid when nothing is buffered unread.
    pub fn into_raw(self) -> Box<dyn Stream> {
        assert!(self.io.buffer().is_empty(), "unread bytes: {:?}", self.io.buffer());
        self.io.into_inner()
    }

    pub async fn starttls(self) -> Client {
        let mut c = self;
        c.ok("STARTTLS", 220).await;
        let raw = c.io.into_inner();
        let tls = tls_connector().connect("localhost".try_into().unwrap(), raw).await.unwrap();
        Client { io: BufReader::new(Box::new(tls)) }
    }

    pub async fn auth_plain(&mut self, user: &str, pass: &str) -> Reply {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.cmd(&format!("AUTH PLAIN {token}")).await
    }

    /// A whole transaction; returns the final reply to DATA.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        self.ok(&format!("MAIL FROM:<{from}>"), 250).await;
        for t in to {
            self.ok(&format!("RCPT TO:<{t}>"), 250).await;
        }
        self.ok("DATA", 354).await;
        self.send_raw(format!("{body}\r\n.\r\n").as_bytes()).await;
        self.reply().await
    }

    /// True once the server has closed the connection (EOF within 5 s).
    pub async fn closed(&mut self) -> bool {
        let mut buf = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.io.read_line(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// A GET over a raw socket; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// An interop tool the test needs: a missing one fails the test, naming the
/// Debian package to install (a green test run means the interop ran).
/// Run a Python script with Debian's interpreter (its dkimpy), `input` on
/// its standard input; its standard output, or a failure with its errors.
pub fn python(script: &str, args: &[&str], input: &[u8]) -> String {
    require("/usr/bin/python3");
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} || test -x /usr/sbin/{tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    let package = match tool {
        "mbsync" => "isync",
        "offlineimap" => "offlineimap3",
        "smtp-sink" | "smtp-source" | "postconf" => "postfix",
        other => other,
    };
    assert!(
        found,
        "{tool} is not installed: apt-get install {package} (bash .ci/run --deps-only installs every tool the tests use)"
    );
}

/// Run a command that must succeed; its stdout and stderr.
pub fn run(cmd: &mut std::process::Command) -> String {
    let o = cmd.output().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{cmd:?} failed:\n{out}");
    out
}

/// A raw line client for IMAP and POP3 over plain TCP: what a hostile
/// client would type, and what it reads back.
pub struct Lines {
    pub io: BufReader<TcpStream>,
}

impl Lines {
    pub async fn connect(addr: SocketAddr) -> Lines {
        Lines { io: BufReader::new(TcpStream::connect(addr).await.unwrap()) }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// One line without CRLF; `None` when the server closed the connection.
    /// Panics after `secs` seconds of silence.
    pub async fn line_within(&mut self, secs: u64) -> Option<String> {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(secs), self.io.read_line(&mut l))
            .await
            .expect("no line in time")
            .ok()?;
        (n > 0).then(|| l.trim_end_matches("\r\n").to_string())
    }

    pub async fn line(&mut self) -> String {
        self.line_within(10).await.expect("connection closed")
    }

    /// Lines until one starts with `prefix` (included).
    pub async fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(prefix);
            out.push(l);
            if done {
                return out;
            }
        }
    }

    /// True once the server has closed (EOF within 10 s), whatever it sent before.
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut l = String::new();
            match tokio::time::timeout_at(deadline, self.io.read_line(&mut l)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A PostgreSQL schema of the test's own in the test database (see
/// `facteur_store`'s conformance suite for the URL), dropped when the
/// guard goes, pass or fail.
pub struct PgSchema {
    pub url: String,
    pub schema: String,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        let url = std::env::var("FACTEUR_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        PgSchema { url, schema: format!("t_{:016x}", fastrand::u64(..)) }
    }

    /// `config` pointed at this schema.
    pub fn configure(&self, config: &mut Config) {
        config.storage.backend = facteur::config::Backend::Postgres;
        config.storage.url = self.url.clone();
        config.storage.schema = Some(self.schema.clone());
        config.storage.pool_size = 8;
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
                }
            })
        })
        .join();
    }
}

/// A PostgreSQL server of the test's own (Debian's server binaries, a
/// fresh cluster in a temporary folder, loopback only), for tests that stop
/// and restart the database without disturbing the shared one.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql/N/bin, Debian package postgresql): bash .ci/run installs them");
        let dir = tempfile::tempdir().unwrap();
        // The server runs as the postgres user when the tests run as root.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePg { dir, bin, port };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let out = cmd.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the server (again) and wait until it takes connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
    }

    /// Stop it, as an operator's restart does (fast: sessions cut).
    pub fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if unsafe { libc::geteuid() } == 0 {
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            std::process::Command::new(&exe).args(args).output()
        };
    }
}

/// The Authentication-Results field facteur (mx.example.test) wrote into a
/// stored message, unfolded.
pub fn our_results(message: &str) -> String {
    let start = message.find("Authentication-Results: mx.example.test").unwrap_or_else(|| panic!("{message}"));
    let rest = &message[start..];
    let mut end = 0;
    for line in rest.split_inclusive("\r\n") {
        if end > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        end += line.len();
    }
    rest[..end].replace("\r\n\t", " ").trim_end().to_string()
}
