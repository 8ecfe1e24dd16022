//! The configuration file (`facteur.toml`): typed, every key documented in
//! the default file written on first start and in `examples/production.toml`,
//! unknown keys rejected with their path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub use facteur_queue::{DeliveryConfig, RouteConfig};
pub use facteur_smtp::SmtpConfig;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub listen: ListenSection,
    pub tls: TlsSection,
    pub smtp: SmtpConfig,
    pub storage: StorageSection,
    pub delivery: DeliveryConfig,
    /// Static routes, tried before the relay host and MX.
    pub route: Vec<RouteConfig>,
    /// How messages get their traffic class.
    pub classify: facteur_classify::ClassifyConfig,
    /// When the door closes, class by class.
    pub admission: facteur_spool::Watermarks,
    pub admin: AdminSection,
    /// IMAP sessions: limits and plaintext login.
    pub imap: facteur_imap::ImapConfig,
    /// POP3 sessions: limits and plaintext login.
    pub pop3: facteur_pop3::Pop3Config,
    /// Failed logins, throttled across SMTP, IMAP and POP3.
    pub auth: AuthSection,
    /// This node among several sharing one PostgreSQL database.
    pub node: NodeSection,
    /// The synthetic probe: SMTP to IMAP through this node, every minute.
    pub probe: facteur_watch::probe::ProbeConfig,
    /// Service objectives and automatic incidents.
    pub watch: facteur_watch::keeper::WatchConfig,
    /// Where incident alerts go.
    pub alerts: facteur_watch::alert::AlertConfig,
    /// Aliases, `user+detail` and role addresses.
    pub addressing: facteur_spool::addressing::AddressingConfig,
    /// Quotas new users get, and the warning.
    pub quota: facteur_smtp::QuotaConfig,
    /// SPF, DKIM, ARC and DMARC of strangers' mail, and what they do.
    pub sender_auth: facteur_auth::InboundConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// This node's name among those sharing storage, unique among them;
    /// empty: this machine's host name.
    pub name: String,
    /// Where it runs (for operators and the status of incidents).
    pub region: String,
    /// Seconds between heartbeats...
    pub heartbeat_secs: u64,
    /// ...and without one for this long, a node counts as down.
    pub down_after_secs: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection { name: String::new(), region: "default".into(), heartbeat_secs: 5, down_after_secs: 15 }
    }
}

impl Config {
    /// This node's name: `node.name`, else this machine's host name (not
    /// `server.hostname`, which every node of one MX usually shares).
    pub fn node_name(&self) -> String {
        if self.node.name.is_empty() { system_hostname() } else { self.node.name.clone() }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Failed logins from one address answered without delay...
    pub free_failures: u32,
    /// ...then each attempt waits 1 s, 2 s, 4 s... up to this.
    pub max_delay_secs: u64,
    /// Failed logins from one address that get it banned (0: never)...
    pub ban_after: u32,
    /// ...for this long (failures are remembered as long).
    pub ban_secs: u64,
    /// Failed logins on one account, from addresses that never logged in
    /// to it, before the account takes one guess per growing interval...
    pub account_free_failures: u32,
    /// ...of at most this.
    pub account_max_delay_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        let p = facteur_net::AuthPolicy::default();
        AuthSection {
            free_failures: p.free_failures,
            max_delay_secs: p.max_delay.as_secs(),
            ban_after: p.ban_after,
            ban_secs: p.ban_for.as_secs(),
            account_free_failures: p.account_free_failures,
            account_max_delay_secs: p.account_max_delay.as_secs(),
        }
    }
}

impl AuthSection {
    pub fn policy(&self) -> facteur_net::AuthPolicy {
        facteur_net::AuthPolicy {
            free_failures: self.free_failures,
            base_delay: std::time::Duration::from_secs(1),
            max_delay: std::time::Duration::from_secs(self.max_delay_secs.max(1)),
            ban_after: self.ban_after,
            ban_for: std::time::Duration::from_secs(self.ban_secs.max(1)),
            account_free_failures: self.account_free_failures.max(1),
            account_max_delay: std::time::Duration::from_secs(self.account_max_delay_secs.max(1)),
        }
    }
}

#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Bearer token for the HTTP admin API (`/admin/...`); empty: the API is off.
    pub token: String,
}

impl std::fmt::Debug for AdminSection {
    // The token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("AdminSection").field("token", &token).finish()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Our name in the SMTP greeting, EHLO reply and Received fields.
    pub hostname: String,
    /// Where facteur keeps its data; `--data` and FACTEUR_DATA take precedence.
    pub data_dir: Option<PathBuf>,
    /// "text" or "json" log lines on standard error.
    pub log_format: LogFormat,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { hostname: system_hostname(), data_dir: None, log_format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSection {
    /// MX: mail from the world (standard port 25).
    pub smtp: Vec<SocketAddr>,
    /// Submission with STARTTLS and AUTH (standard port 587).
    pub submission: Vec<SocketAddr>,
    /// Submission over implicit TLS (standard port 465).
    pub submissions: Vec<SocketAddr>,
    /// Health, readiness (and later metrics and controls).
    pub http: Vec<SocketAddr>,
    /// IMAP with STARTTLS (standard port 143).
    pub imap: Vec<SocketAddr>,
    /// IMAP over implicit TLS (standard port 993).
    pub imaps: Vec<SocketAddr>,
    /// POP3 with STLS (standard port 110).
    pub pop3: Vec<SocketAddr>,
    /// POP3 over implicit TLS (standard port 995).
    pub pop3s: Vec<SocketAddr>,
    /// The public status page (`/status`, `/status.json`, `/status.atom`).
    pub status: Vec<SocketAddr>,
}

impl Default for ListenSection {
    fn default() -> Self {
        let lo = |port| vec![SocketAddr::from(([127, 0, 0, 1], port))];
        ListenSection {
            smtp: lo(2525),
            submission: lo(2587),
            submissions: lo(2465),
            http: lo(8025),
            imap: lo(1143),
            imaps: lo(1993),
            pop3: lo(1110),
            pop3s: lo(1995),
            status: lo(8080),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; when unset, a self-signed one is made in DATA/tls/.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// "sqlite" (embedded, the default) or "postgres" (several nodes).
    pub backend: Backend,
    /// SQLite database file, relative to the data folder.
    pub path: PathBuf,
    /// PostgreSQL: `postgres://user@host:port/database`.
    pub url: String,
    /// PostgreSQL: the schema facteur's tables live in (default: the
    /// connection's, normally `public`).
    pub schema: Option<String>,
    /// PostgreSQL: connections this node keeps at most.
    pub pool_size: usize,
    /// PostgreSQL: a statement running longer is cancelled (0: no limit).
    pub statement_timeout_secs: u64,
    /// Seconds between background invariant checks (with repair).
    pub check_interval_secs: u64,
    /// Seconds between readiness write probes (a tiny commit)...
    pub probe_interval_secs: u64,
    /// ...each of which must commit within this, or the node is not ready.
    pub probe_timeout_secs: u64,
    /// Seconds a finished message's queue record (recipients, attempt
    /// history: what `queue show` prints) is kept after its last outcome.
    pub keep_finished_secs: u64,
    /// Seconds between housekeeping rounds (queue counters folded, records
    /// past `keep_finished_secs` removed).
    pub housekeeping_interval_secs: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: Backend::Sqlite,
            path: "facteur.db".into(),
            url: String::new(),
            schema: None,
            pool_size: 16,
            statement_timeout_secs: 30,
            check_interval_secs: 600,
            probe_interval_secs: 5,
            probe_timeout_secs: 5,
            keep_finished_secs: 30 * 86_400,
            housekeeping_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The host name: /proc's, else "localhost".
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Config {
    pub fn parse(text: &str, origin: &Path) -> anyhow::Result<Config> {
        let config: Config =
            toml::from_str(text).with_context(|| format!("invalid configuration in {}", origin.display()))?;
        config.validate().with_context(|| format!("invalid configuration in {}", origin.display()))?;
        Ok(config)
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Config::parse(&text, path)
    }

    /// Keys that still load but no longer do anything, for the operator.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (section, a, b) in [
            ("imap", self.imap.max_failed_logins.is_some(), self.imap.failed_login_delay_secs.is_some()),
            ("pop3", self.pop3.max_failed_logins.is_some(), self.pop3.failed_login_delay_secs.is_some()),
        ] {
            if a || b {
                w.push(format!(
                    "{section}.max_failed_logins and {section}.failed_login_delay_secs are ignored: failed logins \
                     are throttled across SMTP, IMAP and POP3 by the [auth] section; remove them"
                ));
            }
        }
        if let Some(n) = self.smtp.max_commands {
            w.push(format!(
                "smtp.max_commands = {n} is ignored: sessions are now bounded by smtp.max_messages_per_connection \
                 (messages, default 1000), smtp.max_errors and smtp.max_junk_commands; remove the key"
            ));
        }
        w
    }

    /// Settings that are valid but risky, each with why (at start and in
    /// `facteur config check`). The certificate's are in `tls::risks`.
    pub fn risks(&self) -> Vec<String> {
        let mut w = Vec::new();
        let loopback = |n: &ipnet::IpNet| match n {
            ipnet::IpNet::V4(v4) => "127.0.0.0/8".parse::<ipnet::Ipv4Net>().is_ok_and(|l| l.contains(v4)),
            ipnet::IpNet::V6(v6) => v6.prefix_len() == 128 && v6.addr().is_loopback(),
        };
        for n in self.smtp.trusted_networks.iter().filter(|n| !loopback(n)) {
            w.push(format!(
                "smtp.trusted_networks includes {n}: every host there may relay through this server without a \
                 password and skips the per-client limits; keep it to hosts you run"
            ));
        }
        let token = &self.admin.token;
        if token.starts_with("change-me") {
            w.push("admin.token is the example's: anyone who read the example can use the admin API; set a long random one".into());
        } else if !token.is_empty() && token.len() < 16 {
            w.push(format!("admin.token is {} characters long: use at least 16 random ones", token.len()));
        }
        let host = &self.server.hostname;
        if !host.contains('.') || host.eq_ignore_ascii_case("localhost") || host.ends_with(".localdomain") {
            w.push(format!(
                "server.hostname = {host:?} is not a fully qualified domain name: other servers see it in the \
                 greeting and EHLO (RFC 5321 \u{a7}4.1.1.1, \u{a7}2.3.5) and many refuse or score mail from such names"
            ));
        }
        for (key, secs, min, rfc) in [
            ("smtp.idle_timeout_secs", self.smtp.idle_timeout_secs, 300, "RFC 5321 \u{a7}4.5.3.2.7: 5 minutes"),
            ("imap.idle_timeout_secs", self.imap.idle_timeout_secs, 1800, "RFC 9051 \u{a7}5.4: 30 minutes"),
            ("pop3.idle_timeout_secs", self.pop3.idle_timeout_secs, 600, "RFC 1939 \u{a7}3: 10 minutes"),
        ] {
            if secs < min {
                w.push(format!("{key} = {secs} is under the minimum the RFC asks for ({rfc}): clients that wait that long are cut off"));
            }
        }
        w
    }

    /// Checks serde cannot express; every problem is reported at once.
    fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.server.hostname.trim().is_empty() || self.server.hostname.contains(char::is_whitespace) {
            problems.push(format!("server.hostname = {:?} is not a host name", self.server.hostname));
        }
        if self.smtp.max_recipients < 100 {
            problems.push(format!(
                "smtp.max_recipients = {} is below 100, the minimum RFC 5321 §4.5.3.1.8 requires",
                self.smtp.max_recipients
            ));
        }
        for (key, value) in [
            ("smtp.max_messages_per_connection", self.smtp.max_messages_per_connection),
            ("smtp.max_errors", self.smtp.max_errors),
            ("smtp.max_connections", self.smtp.max_connections),
            ("imap.max_connections", self.imap.max_connections),
            ("pop3.max_connections", self.pop3.max_connections),
        ] {
            if value == 0 {
                problems.push(format!("{key} = 0 would refuse every client; it must be at least 1"));
            }
        }
        if self.smtp.max_command_line < 512 {
            problems.push(format!(
                "smtp.max_command_line = {} is below 512, the minimum of RFC 5321 §4.5.3.1.4",
                self.smtp.max_command_line
            ));
        }
        if self.smtp.max_data_line < 1000 {
            problems.push(format!(
                "smtp.max_data_line = {} is below 1000, the minimum of RFC 5321 §4.5.3.1.6",
                self.smtp.max_data_line
            ));
        }
        problems.extend(self.delivery.problems(&self.route));
        if let Err(errors) = self.classify.validate() {
            problems.extend(errors.iter().map(|e| format!("classify.{e}")));
        }
        if self.storage.backend == Backend::Postgres && self.storage.url.trim().is_empty() {
            problems.push(
                "storage.backend = \"postgres\" needs storage.url = \"postgres://user@host:5432/database\"".into(),
            );
        }
        if self.node.heartbeat_secs == 0 || self.node.down_after_secs <= self.node.heartbeat_secs {
            problems.push(format!(
                "node.down_after_secs = {} must be above node.heartbeat_secs = {} (at least 1): a node would count as \
                 down between two heartbeats",
                self.node.down_after_secs, self.node.heartbeat_secs
            ));
        }
        if self.node_name().contains(char::is_whitespace) {
            problems.push(format!("node.name = {:?} must not contain blanks", self.node.name));
        }
        if self.storage.pool_size == 0 {
            problems.push("storage.pool_size = 0 would never reach the database; it must be at least 1".into());
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push("tls.cert and tls.key must be set together".into());
        }
        if let Err(e) = self.watch.objectives.check() {
            problems.push(e);
        }
        if !(self.watch.major_below > 0.0 && self.watch.major_below < 1.0) {
            problems.push(format!("watch.major_below = {} must be between 0 and 1", self.watch.major_below));
        }
        if let Err(e) = self.probe.check() {
            problems.push(e);
        }
        if let Err(e) = self.alerts.check() {
            problems.push(e);
        }
        problems.extend(self.sender_auth.validate());
        if problems.is_empty() { Ok(()) } else { anyhow::bail!(problems.join("; ")) }
    }
}

/// The commented file written to DATA/facteur.toml on first start. Every
/// value shown is the default (a test keeps the two in step).
pub fn default_file(hostname: &str) -> String {
    DEFAULT_TEMPLATE.replace("{hostname}", hostname)
}

const DEFAULT_TEMPLATE: &str = r#"# facteur configuration, written on first start with every default spelled out.
# Edit and restart facteur. See examples/production.toml in the source for a
# production setup on the standard ports.

[server]
# Our name in the SMTP greeting, the EHLO reply and Received fields.
hostname = "{hostname}"
# Log lines on standard error: "text" or "json". RUST_LOG sets the level.
log_format = "text"

[listen]
# Unprivileged development ports on loopback. Production: 25, 587, 465 on 0.0.0.0.
smtp = ["127.0.0.1:2525"]         # MX: mail from the world, STARTTLS offered
submission = ["127.0.0.1:2587"]   # STARTTLS then AUTH (RFC 6409)
submissions = ["127.0.0.1:2465"]  # implicit TLS then AUTH (RFC 8314)
http = ["127.0.0.1:8025"]         # /healthz, /readyz
imap = ["127.0.0.1:1143"]         # IMAP4rev2/rev1, STARTTLS then LOGIN
imaps = ["127.0.0.1:1993"]        # IMAP over implicit TLS
pop3 = ["127.0.0.1:1110"]         # POP3, STLS then USER/PASS or AUTH PLAIN
pop3s = ["127.0.0.1:1995"]        # POP3 over implicit TLS
status = ["127.0.0.1:8080"]       # the public status page: /status, /status.json, /status.atom

[tls]
# PEM files. When unset, facteur makes a self-signed certificate in tls/.
# cert = "/etc/facteur/fullchain.pem"
# key = "/etc/facteur/privkey.pem"

[smtp]
max_message_size = 26214400   # octets, advertised with SIZE (RFC 1870)
max_recipients = 100          # per message; RFC 5321 requires at least 100
max_command_line = 2048       # octets per command line, CRLF included
max_data_line = 1000          # octets per message line, CRLF included (RFC 5321 §4.5.3.1.6)
max_hops = 100                # more Received/Delivered-To fields than this: 554 5.4.6, a mail loop
success_notices_for_strangers = "none"  # NOTIFY=SUCCESS from unauthenticated, untrusted clients: "none", "headers", "full"
max_messages_per_connection = 1000  # messages on one connection, then 421 at the next MAIL
max_errors = 20               # error replies since the last accepted message, then 421
max_junk_commands = 100       # NOOP/RSET/VRFY/HELP/EHLO between messages before each counts as an error
idle_timeout_secs = 300       # silence allowed before 421 (RFC 5321 §4.5.3.2.7)
request_timeout_secs = 300    # one command or one message's content must arrive within this...
min_data_rate = 500           # ...plus 1 s per this many octets received (a trickle is cut)
write_timeout_secs = 300      # replies left unread this long end the session
stress_timeout_secs = 10      # at 3/4 of max_connections: timeouts shrink to this, stalled sessions make room
greet_pause_ms = 1000         # MX strangers wait this for the greeting; talking first gets 554 (0: off)
max_connections = 1000        # simultaneous SMTP sessions
auth_failure_delay_secs = 1   # pause before answering a failed AUTH
# Networks that may relay without AUTH (like Postfix's mynetworks); they are
# also exempt from the three per-client limits below (0: no limit).
trusted_networks = ["127.0.0.0/8", "::1/128"]
max_connections_per_ip = 50
max_messages_per_minute_per_ip = 300
max_messages_per_minute_per_user = 300
# A stolen password must not become a flood: past this many messages to
# other domains in an hour, an account's mail is held (facteur queue list
# --state held; release with facteur queue release) and a warning logged.
max_messages_per_hour_per_user = 500
max_recipients_per_message_per_user = 100   # more RCPTs from one user: 452 4.5.3

[storage]
backend = "sqlite"            # embedded, no other service needed; "postgres" for several nodes
path = "facteur.db"           # relative to the data folder
# With backend = "postgres" (see docs/cluster.md):
# url = "postgres://facteur@db.example:5432/facteur"
# schema = "facteur"          # default: the connection's (public)
pool_size = 16                # PostgreSQL connections this node keeps at most
statement_timeout_secs = 30   # PostgreSQL: a statement running longer is cancelled

check_interval_secs = 600     # background invariant check and repair
probe_interval_secs = 5       # /readyz: a tiny write is committed this often...
probe_timeout_secs = 5        # ...and must commit within this, or the node is not ready
keep_finished_secs = 2592000  # finished mail's queue record (queue show) is kept 30 days; bodies go at once
housekeeping_interval_secs = 60

[node]
# Several nodes may share one PostgreSQL database (docs/cluster.md).
name = ""                     # unique among nodes; empty: this machine's host name
region = "default"
heartbeat_secs = 5            # each node says it is alive this often...
down_after_secs = 15          # ...and counts as down after this long without

[probe]
# Every interval a message from probe-NODE@facteur.invalid to itself goes
# through this node's SMTP listener and is read back over IMAPS; result and
# time are metrics (facteur_probe_*, docs/metrics.md). Probe mail stays out
# of the traffic counters and users' mailboxes.
enabled = true
interval_secs = 60
timeout_secs = 30
# Echo probes: a message to each address out through the routes (or MX),
# submitted as probe-NODE@echo_domain, whose answer must come back in.
echo = []
echo_domain = ""
echo_timeout_secs = 300

[watch]
# Service objectives: a share of good events over a window, per component.
# A breach held for hold_secs opens an incident (docs/incidents.md); it
# resolves itself after quiet_secs without one.
enabled = true
evaluate_secs = 10            # how often the objectives are judged
min_events = 5                # a window with fewer events judges nothing...
min_failures = 3              # ...nor one with fewer failures: one failure is not an outage
hold_secs = 60
quiet_secs = 600
major_below = 0.5             # below this share of good events: a major outage
history_days = 90             # resolved incidents on the status page

[watch.objectives]
acceptance = { target = 0.99, window_secs = 600 }      # messages not refused for our fault
delivery = { target = 0.99, window_secs = 600 }        # every class: delivered or handed on within latency_secs
latency_secs = 300
destination = { target = 0.9, window_secs = 600 }      # each destination reached (not refusing, answering)
mailbox_access = { target = 0.995, window_secs = 600 } # IMAP/POP3 logins not failing for our fault
storage = { target = 0.999, window_secs = 600 }        # commits that held
# class.bulk = { target = 0.95, window_secs = 1800 }   # a class of its own

[addressing]
# Aliases live in the database (facteur alias add ADDRESS TARGET...).
recipient_delimiter = "+"     # alice+lists@ goes to alice; "" turns it off
detail_mailbox = false        # true: into her mailbox "lists" when she has one
# postmaster@ (RFC 5321 4.5.1) and abuse@ (RFC 2142) exist in every local
# domain that has no user or alias of that name, and go to this user
# ("": the first user created).
role_addresses = ["postmaster", "abuse"]
role_recipient = ""
origin = ""                   # the domain of `sendmail root`; "": the first local domain

[quota]
# Limits a new user gets (facteur user quota changes one user's); 0: none.
# Over its quota a user's mail gets 452 4.2.2 (senders retry), IMAP APPEND
# gets NO [OVERQUOTA]; IMAP clients read it with GETQUOTAROOT (RFC 9208).
default_bytes = 0
default_messages = 0
warn_percent = 90             # one message to the user past this share; 0: never

[sender_auth]
# Mail from strangers on the MX port gets SPF (HELO and MAIL FROM), DKIM,
# ARC and DMARC checked, and one Authentication-Results field saying so
# (any that claims our host name is removed first). DNS: delivery.dns_servers.
verify = true
# What a DMARC failure does when the From domain publishes p=reject or
# p=quarantine, and what an SPF fail alone does: "deliver", "junk" (into
# the recipient's Junk) or "reject" (550 5.7.1 at the end of DATA).
dmarc_reject = "reject"
dmarc_quarantine = "junk"
spf_fail = "deliver"          # forwarding breaks SPF; DMARC weighs it already
budget_secs = 10              # for all of one message's lookups; then temperror (delivered)
max_signatures = 5            # DKIM signatures checked per message
trusted_arc_sealers = []      # lists/forwarders whose ARC chain overrides a DMARC failure
# [sender_auth.domains."example.com"]   # one local domain's own actions
# dmarc_reject = "junk"

[alerts]
# Each incident opened, updated or resolved is POSTed here as JSON, signed
# X-Facteur-Signature: t=UNIX,v1=HMAC-SHA256(webhook_secret, "UNIX." + body)...
webhook_url = ""
webhook_secret = ""
# ...and mailed here, through facteur's own queue (class system).
email = ""
max_tries = 8                 # webhook tries, 2 s apart and doubling
timeout_secs = 10

[delivery]
enabled = true                          # run outbound delivery on this node
# relay_host = "smtp.provider.example:587"  # send everything not routed below through a smarthost
# relay_auth = { user = "me", password = "secret" }
tls = "opportunistic"                   # STARTTLS when offered: "opportunistic", "require" or "none"
# With "require" or relay credentials the server's certificate is verified
# (name and chain) against the system's authorities, or these:
# tls_ca_file = "/etc/facteur/relay-ca.pem"
tls_insecure_skip_verify = false        # true: do NOT verify (anyone on the path reads the password)
max_concurrent = 200                    # deliveries at once on this node
max_messages_per_connection = 100
first_retry_secs = 300                  # then doubling...
max_retry_secs = 14400                  # ...up to 4 hours between attempts
unreachable_probe_secs = 30             # an unreachable destination is probed this often; its mail waits parked
retry_jitter = 0.2                      # +/- 20 % so a backlog does not retry in step
delay_warning_secs = 14400              # delay notice to the sender after 4 hours (RFC 3461)
queue_lifetime_secs = 432000            # bounce after 5 days
connect_timeout_secs = 30
command_timeout_secs = 300              # RFC 5321 §4.5.3.2
lease_secs = 900                        # how long a message in delivery is reserved to this node
dns_servers = []                        # empty: /etc/resolv.conf
mx_port = 25
# Recipient domains' TLS policies, for mail delivered by MX: MTA-STS
# (RFC 8461) and DANE (RFC 7672; facteur validates DNSSEC itself). Under
# either, mail goes only over TLS whose certificate checks out, or waits.
mta_sts = true
dane = true
# dnssec_trust_anchor_file = "/usr/share/dns/root.key"  # default: the IANA root keys built in
# max_rate = 500.0                      # messages per second for the whole node (default: unlimited)

[delivery.shaping]
# Each destination starts slow and adapts, like Postfix's concurrency feedback:
# +1 connection per round of successes, x0.85 on a 421/throttling reply or a
# connection failure (at most once per cooldown), and a rate (msgs/s)
# discovered at the first push-back, raised while delivery runs clean.
initial_concurrency = 2
max_concurrency = 20
min_concurrency = 1
# max_rate = 50.0                       # a ceiling for every destination (default: none)
initial_rate = 10.0
increase_per_success = 1.0
decrease_factor = 0.85
rate_increase = 25.0                    # msgs/s gained per second of clean operation at the limit
cooldown_ms = 1000                      # at most one decrease per second

[delivery.weights]
# Who goes first when capacity is short; bulk always gets at least its share.
system = 8
interpersonal = 4
transactional = 2
bulk = 1
bulk_min_share = 0.1

[classify]
# Every message gets a class: system, interpersonal, transactional or bulk.
# Built-in rules: null sender / DSN -> system; Precedence bulk|list|junk,
# List-Id, List-Unsubscribe, Feedback-ID -> bulk; Auto-Submitted -> transactional;
# an authenticated user writing to few people, or ordinary MX mail -> interpersonal.
# Your rules come first; `facteur classify FILE.eml` shows what a message gets.
bulk_senders = []                       # addresses or domains, e.g. "news@example.com"
transactional_senders = []
transactional_users = []                # authenticated users whose mail is transactional
interpersonal_max_recipients = 10       # more from one authenticated message: bulk
identical_bulk_threshold = 20           # same body from one sender this often in 10 min: bulk
# [[classify.rules]]
# name = "receipts"
# class = "transactional"
# sender_domain = ["shop.example.com"]
# header = "X-Mailer"                   # optional: header present...
# header_value = "receipts"             # ...and containing this

[imap]
max_literal = 67108864        # octets in one literal (an APPENDed message); larger: BAD [TOOBIG]
max_line = 65536              # octets in a command line outside literals
max_preauth_command = 8192    # octets in a whole command (literals included) before login
max_connections_per_user = 20 # open IMAP sessions per user; more: NO [LIMIT]
max_connections = 1000        # simultaneous IMAP connections (imap + imaps)
max_connections_per_ip = 20   # from one address; more: BYE
idle_timeout_secs = 1800      # an idle client is logged out (RFC 9051 §5.4: at least 30 minutes)
preauth_timeout_secs = 60     # silence allowed before login
request_timeout_secs = 300    # one command (with its literals) must arrive within this...
min_data_rate = 1024          # ...plus 1 s per this many octets received
write_timeout_secs = 300      # output left unread this long ends the session
stress_timeout_secs = 10      # at 3/4 of max_connections: pre-login timeouts shrink to this
plaintext_auth = false        # LOGIN without TLS: only for loopback development

[pop3]
# The maildrop is the INBOX; DELEted messages are removed at QUIT (IMAP sees them go).
max_connections = 500         # simultaneous POP3 connections (pop3 + pop3s)
max_connections_per_ip = 10   # from one address; more: -ERR [SYS/TEMP]
idle_timeout_secs = 600       # a silent client is logged out (RFC 1939: at least 10 minutes)
preauth_timeout_secs = 60     # silence allowed before login
request_timeout_secs = 60     # one command line must arrive within this...
min_data_rate = 100           # ...plus 1 s per this many octets received
write_timeout_secs = 300      # a RETR left unread this long ends the session (and its lock)
stress_timeout_secs = 10      # at 3/4 of max_connections: pre-login timeouts shrink to this
plaintext_auth = false        # USER/PASS and AUTH without TLS: only for loopback development

[auth]
# Failed logins (SMTP AUTH, IMAP, POP3 together), judged before the password
# is checked. Per address: a few free, then 1 s, 2 s, 4 s... then a ban.
free_failures = 3
max_delay_secs = 30
ban_after = 10                # failures from one address, then it is banned...
ban_secs = 900                # ...for 15 minutes (0 for ban_after: never)
# Per account, from addresses that never logged in to it (a distributed
# guess): past this many failures, one guess per 1 s, 2 s, 4 s... interval.
account_free_failures = 10
account_max_delay_secs = 300

[admin]
# Bearer token for the HTTP admin API on the http listener (queue depth per
# class and destination, adaptive destination state, pause/resume/rate/retry).
# Empty: the admin API is off. Use a long random string.
token = ""

[admission]
# Back-pressure at the door, by class: above the first level new bulk mail
# gets "451 4.7.1 try again later", above the second transactional too, above
# the third everything (system last). Storage levels answer "452 4.3.1".
# Sending servers retry: nothing is lost. Each reopens with hysteresis.
queue_depth = [100000, 250000, 500000]          # ready recipients
oldest_age_secs = [600, 1800, 3600]             # age of the oldest ready message
free_disk_bytes = [4294967296, 2147483648, 1073741824]
reserve_bytes = 268435456                       # never store a message that leaves less free
hysteresis = 0.1

# Static routes, checked before relay_host and MX, exact domains first:
# [[route]]
# domain = "example.net"                # or "*.example.net", or "*"
# via = "127.0.0.1:2526"                # host:port, resolved by A/AAAA (not MX)
# tls = "opportunistic"                 # with auth or "require": certificate verified
# auth = { user = "me", password = "secret" }   # only ever sent over verified TLS
# tls_ca_file = "/etc/facteur/route-ca.pem"     # default: the system's authorities
"#;

/// The effective configuration as TOML: the defaults with the file's values
/// over them (`facteur config show`, as postconf and doveconf print it);
/// with `only_changed`, the keys that differ from the defaults (postconf -n).
/// Secrets (tokens, passwords, keys in URLs) are shown as `<redacted>`.
pub fn effective(file_text: Option<&str>, hostname: &str, only_changed: bool) -> anyhow::Result<String> {
    let defaults: toml::Table = toml::from_str(&default_file(hostname))?;
    let file: toml::Table = match file_text {
        Some(t) => toml::from_str(t)?,
        None => toml::Table::new(),
    };
    let mut out = if only_changed { toml::Table::new() } else { defaults.clone() };
    merge(&mut out, &file, &defaults, only_changed);
    redact(&mut out);
    Ok(toml::to_string(&out)?)
}

fn merge(out: &mut toml::Table, file: &toml::Table, defaults: &toml::Table, only_changed: bool) {
    for (k, v) in file {
        let d = defaults.get(k);
        match (v, d) {
            (toml::Value::Table(t), Some(toml::Value::Table(dt))) => {
                let entry = out.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(o) = entry {
                    merge(o, t, dt, only_changed);
                }
                if only_changed && entry.as_table().is_some_and(|t| t.is_empty()) {
                    out.remove(k);
                }
            }
            _ if only_changed && d == Some(v) => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
}

fn redact(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        match v {
            toml::Value::Table(inner) => redact(inner),
            toml::Value::Array(items) => {
                for i in items.iter_mut() {
                    if let toml::Value::Table(inner) = i {
                        redact(inner);
                    }
                }
            }
            toml::Value::String(s)
                if !s.is_empty() && (k.contains("token") || k.contains("secret") || k.contains("password")) =>
            {
                *s = "<redacted>".into();
            }
            toml::Value::String(s) if s.contains("://") && s.contains('@') => {
                // postgres://user:password@host/db: the password goes.
                if let Some((scheme, rest)) = s.split_once("://")
                    && let Some((cred, host)) = rest.split_once('@')
                    && let Some((user, _)) = cred.split_once(':')
                {
                    *s = format!("{scheme}://{user}:<redacted>@{host}");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_settings_are_named_with_why() {
        let mut c = Config::default();
        c.server.hostname = "mx.example.test".into();
        c.smtp.trusted_networks = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(c.risks().is_empty(), "{:?}", c.risks());
        c.smtp.trusted_networks.push("10.0.0.0/8".parse().unwrap());
        c.admin.token = "change-me-to-a-long-random-string".into();
        c.server.hostname = "mx".into();
        c.smtp.idle_timeout_secs = 299;
        c.imap.idle_timeout_secs = 1800;
        let w = c.risks().join("\n");
        for expected in [
            "10.0.0.0/8",
            "admin.token is the example",
            "\"mx\" is not a fully qualified",
            "smtp.idle_timeout_secs = 299",
        ] {
            assert!(w.contains(expected), "{expected}: {w}");
        }
        assert!(!w.contains("imap.idle_timeout_secs"), "at the edge is fine: {w}");
        c.admin.token = "short".into();
        assert!(c.risks().join("\n").contains("5 characters"));
    }

    #[test]
    fn the_effective_configuration_merges_redacts_and_shows_what_changed() {
        let file = "[smtp]\nmax_message_size = 1234\n[admin]\ntoken = \"s3cret-token-value\"\n\
                    [storage]\nbackend = \"postgres\"\nurl = \"postgres://facteur:pw@db.example.test/mail\"\n";
        let all = effective(Some(file), "mx.example.test", false).unwrap();
        let v: toml::Table = toml::from_str(&all).unwrap();
        assert_eq!(v["smtp"]["max_message_size"].as_integer(), Some(1234));
        assert!(v["smtp"]["max_recipients"].as_integer().is_some(), "defaults are shown");
        assert_eq!(v["admin"]["token"].as_str(), Some("<redacted>"));
        assert_eq!(v["storage"]["url"].as_str(), Some("postgres://facteur:<redacted>@db.example.test/mail"));
        assert!(!all.contains("s3cret") && !all.contains(":pw@"));
        let changed: toml::Table = toml::from_str(&effective(Some(file), "mx.example.test", true).unwrap()).unwrap();
        assert_eq!(changed.keys().collect::<Vec<_>>(), ["admin", "smtp", "storage"]);
        assert_eq!(changed["smtp"].as_table().unwrap().len(), 1);
        let same = format!("[smtp]\nmax_recipients = {}\n", Config::default().smtp.max_recipients);
        assert_eq!(
            effective(Some(&same), "mx.example.test", true).unwrap().trim(),
            "",
            "a default spelled out is no change"
        );
    }

    #[test]
    fn default_file_is_the_defaults() {
        let parsed = Config::parse(&default_file("mx.example.test"), Path::new("default")).unwrap();
        let mut expected = Config::default();
        expected.server.hostname = "mx.example.test".into();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn production_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/production.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.listen.smtp[0].port(), 25);
        assert_eq!(c.listen.submission[0].port(), 587);
        assert_eq!(c.listen.submissions[0].port(), 465);
        assert_eq!(c.listen.pop3[0].port(), 110);
        assert_eq!(c.listen.pop3s[0].port(), 995);
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::parse(
            "[admin]\ntoken = \"tok-s3cret\"\n[delivery]\nrelay_host = \"relay.test:587\"\n\
             relay_auth = { user = \"me\", password = \"pw-s3cret\" }\n\
             [[route]]\ndomain = \"x.test\"\nvia = \"h.test:25\"\nauth = { user = \"u\", password = \"route-s3cret\" }\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        for secret in ["tok-s3cret", "pw-s3cret", "route-s3cret"] {
            assert!(!shown.contains(secret), "{secret} printed");
        }
        assert!(shown.contains("<redacted>"));
        // And the values are there for use.
        assert_eq!(c.admin.token, "tok-s3cret");
    }

    #[test]
    fn errors_name_the_key_and_value() {
        let e = format!("{:#}", Config::parse("[smtp]\nmax_recipientz = 5\n", Path::new("x.toml")).unwrap_err());
        assert!(e.contains("max_recipientz"), "{e}");
        let e = format!("{:#}", Config::parse("[listen]\nsmtp = [\"nonsense\"]\n", Path::new("x.toml")).unwrap_err());
        assert!(e.contains("x.toml") && e.contains("smtp"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[smtp]\nmax_recipients = 5\nmax_data_line = 10\n", Path::new("x.toml")).unwrap_err()
        );
        assert!(e.contains("max_recipients = 5") && e.contains("max_data_line = 10"), "{e}");
    }
}
