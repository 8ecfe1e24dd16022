//! The command line: `facteur serve`, and the admin commands that work on
//! the same data folder (safe while the server runs: SQLite WAL allows it).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use facteur_store::{
    Admin, CheckReport, Cluster, Directory, Incidents, Mailstore, QueuedMessage, Spool, StoreError, password,
};
use facteur_types::{MessageId, Severity};

use crate::config::{self, Config, LogFormat};
use crate::controls::{self, Action};
use crate::queueview::Filter;
use crate::serve;

const DEFAULT_DATA: &str = "./facteur-data";

/// How long `serve` takes at most to stop after SIGTERM or SIGINT.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Parser, Debug)]
#[command(
    name = "facteur",
    version,
    about = "facteur — a mail server: SMTP in, a durable queue, local mailboxes read over IMAP",
    long_about = "facteur — a mail server: SMTP in, a durable queue, local mailboxes read over IMAP.\n\n\
        With no configuration, `facteur serve` keeps everything in ./facteur-data \
        (embedded SQLite, a generated config file and a self-signed certificate) and \
        listens on loopback: SMTP 2525, submission 2587, submissions 2465, IMAP 1143, \
        IMAPS 1993, HTTP 8025."
)]
pub struct Cli {
    /// Data folder: database, generated configuration and certificate [default: ./facteur-data]
    #[arg(long, global = true, env = "FACTEUR_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Configuration file [default: DIR/facteur.toml when it exists]
    #[arg(long, global = true, env = "FACTEUR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the mail server (SMTP, submission, HTTP health) until SIGINT or SIGTERM
    Serve,
    /// Make a new data folder (database and configuration file) without serving
    Init,
    /// Manage mail users (each gets an INBOX)
    #[command(subcommand)]
    User(UserCmd),
    /// Manage the domains this server receives mail for
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Aliases: addresses delivered to users, to other aliases, or forwarded elsewhere
    #[command(subcommand)]
    Alias(AliasCmd),
    /// DKIM keys the mail of this server's users is signed with (docs/authentication.md)
    #[command(subcommand)]
    Dkim(crate::dkim::DkimCmd),
    /// Look into a user's mailboxes
    #[command(subcommand)]
    Mailbox(MailboxCmd),
    /// Inspect messages waiting for delivery
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Show the traffic class a message would get, and the rule that chose it
    Classify {
        /// The message (RFC 5322, as it would arrive in DATA)
        file: PathBuf,
        /// Envelope sender [default: the null sender]
        #[arg(long, default_value = "")]
        from: String,
        /// Envelope recipient (repeat for several) [default: user@localhost]
        #[arg(long = "to")]
        to: Vec<String>,
        /// As if submitted by this authenticated user
        #[arg(long)]
        auth: Option<String>,
        /// The client's address
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
        #[command(flatten)]
        out: Output,
    },
    /// Verify storage invariants (UIDs, counters, mailboxes); exit 1 on a problem
    Check {
        /// Repair what can be rebuilt from the data (the server also does this at start)
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        out: Output,
    },
    /// The configuration in force
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Copy the database (consistent, while the server runs), configuration and certificate
    /// into a new folder, and check the copy
    Backup {
        /// The folder to create
        dest: PathBuf,
    },
    /// Put a backup in place of the database: checked first (integrity, schema, invariants);
    /// the server must be stopped; the database replaced is kept beside it
    Restore {
        /// A backup folder (or a facteur.db file)
        src: PathBuf,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Ask the running server to read its configuration and certificate again (SIGHUP), and
    /// print what changed
    Reload,
    /// Queue a message from standard input, as sendmail does (for cron, PHP mail(), ...):
    /// [-t] [-i] [-f SENDER] [-F NAME] [RCPT...]; exit codes of sysexits.h
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "SENDMAIL-ARGS")]
        args: Vec<String>,
    },
    /// The queue as Postfix's mailq lists it
    Mailq,
    /// Bring a user's mail from another server: a Maildir (Dovecot's Maildir++, with its folders)
    /// or an mbox file, keeping flags, keywords and dates (docs/moving.md)
    #[command(subcommand)]
    Import(ImportCmd),
    /// Incidents the watch opened (and operators' updates to them)
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// The nodes sharing this storage: region, state (up, down, stopped) and last heartbeat
    Nodes {
        #[command(flatten)]
        out: Output,
    },
    /// Copy this data folder's SQLite database into a PostgreSQL schema (resumable, verified;
    /// the SQLite file is only read)
    Migrate {
        /// The PostgreSQL database: postgres://user@host:5432/database
        #[arg(long, value_name = "URL")]
        to: String,
        /// The schema to create and fill [default: the connection's, normally public]
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
        /// Rows per transaction (a chunk also ends at about 8 MiB of data)
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        chunk_rows: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCmd {
    /// A Maildir (cur/, new/, and .Folder subfolders) into the user's mailboxes
    Maildir { user: String, dir: PathBuf },
    /// An mbox file into one mailbox
    Mbox {
        user: String,
        file: PathBuf,
        /// The mailbox to fill (made if missing)
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Check the configuration file: errors (exit 1), then risky settings and the certificate's
    /// (`--config FILE` names the file, as for every command)
    Check {
        #[command(flatten)]
        out: Output,
    },
    /// Every setting with its value, defaults included (postconf, doveconf); secrets redacted
    Show {
        /// Only what differs from the defaults (postconf -n)
        #[arg(long, short = 'n')]
        non_default: bool,
    },
}

#[derive(Subcommand, Debug)]
enum IncidentCmd {
    /// Open incidents and those resolved in the last 90 days, newest first
    List {
        #[command(flatten)]
        out: Output,
    },
    /// One incident with its timeline
    Show {
        id: i64,
        #[command(flatten)]
        out: Output,
    },
    /// Add an update to an incident's timeline (shown on the status page)
    Update { id: i64, text: String },
    /// Give an incident a new title
    Rename { id: i64, title: String },
    /// Resolve an incident now, with a last word
    Resolve {
        id: i64,
        #[arg(default_value = "")]
        text: String,
    },
}

#[derive(Args, Debug)]
struct Output {
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Default)]
struct ScopeArgs {
    /// Traffic class: system, interpersonal, transactional or bulk
    #[arg(long)]
    class: Option<String>,
    /// Recipient domain
    #[arg(long)]
    destination: Option<String>,
}

impl ScopeArgs {
    fn scope(&self) -> crate::controls::Scope {
        crate::controls::Scope { class: self.class.clone(), destination: self.destination.clone() }
    }
}

#[derive(Args, Debug)]
struct PasswordSource {
    /// Read the password from the first line of standard input
    /// (otherwise one is generated and printed)
    #[arg(long)]
    password_stdin: bool,
    /// Keep a hash from another server: {ARGON2ID}, {BLF-CRYPT}, {SHA512-CRYPT},
    /// {SHA256-CRYPT} as Dovecot writes them (docs/moving.md)
    #[arg(long, value_name = "HASH", conflicts_with = "password_stdin")]
    password_hash: Option<String>,
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Add a user; its domain must have been added first
    Add {
        /// user@domain
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Set a user's password
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Remove a user and their mailboxes (asks first when they hold mail)
    Remove {
        address: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Show a user's quota and use; --bytes/--messages set the limits ("none": no limit)
    Quota {
        address: String,
        /// Octets all of the user's mailboxes may hold: 500M, 10G, 123456, or none
        #[arg(long, value_parser = parse_limit)]
        bytes: Option<Limit>,
        /// Messages all of the user's mailboxes may hold, or none
        #[arg(long, value_parser = parse_limit)]
        messages: Option<Limit>,
        #[command(flatten)]
        out: Output,
    },
    /// Addresses a user may send as besides its own (RFC 6409 §6.1)
    #[command(subcommand)]
    Sender(SenderCmd),
}

#[derive(Subcommand, Debug)]
enum SenderCmd {
    /// Let USER send as ADDRESS (user@domain, or @domain for a whole domain)
    Add { user: String, address: String },
    /// Take the grant back
    Remove { user: String, address: String },
    /// What USER (or every user) may send as besides its own address
    List {
        user: Option<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand, Debug)]
enum DomainCmd {
    /// Receive mail for this domain
    Add { domain: String },
    /// List local domains
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Stop receiving mail for this domain (it must have no users)
    Remove { domain: String },
    /// What DOMAIN's DNS should hold for this server (MX, SPF, DKIM, DMARC,
    /// MTA-STS, TLS-RPT, reverse names) next to what it holds; exit 1 when
    /// something must change
    Check {
        domain: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand, Debug)]
enum AliasCmd {
    /// Deliver ADDRESS (user@domain of a local domain, or @domain: a catch-all)
    /// to each TARGET: local users, other aliases, addresses elsewhere (forwarded with SRS)
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Every alias and its targets
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Remove the given targets of ADDRESS, or the whole alias without one
    Remove { address: String, targets: Vec<String> },
    /// Where mail to ADDRESS goes now (aliases, +detail, role addresses, catch-all)
    Resolve {
        address: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand, Debug)]
enum MailboxCmd {
    /// A user's mailboxes with message counts, UIDVALIDITY and UIDNEXT
    List {
        /// user@domain
        address: String,
        #[command(flatten)]
        out: Output,
    },
    /// Print one stored message exactly as received
    Fetch {
        /// user@domain
        address: String,
        /// The message's UID in the mailbox
        uid: u32,
        /// Mailbox name
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// Messages with recipients not yet delivered: age, class, each waiting
    /// recipient's state (HELD marked), tries and last deferral reason
    List {
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        out: Output,
    },
    /// One message: envelope, the state of every recipient, every attempt
    Show {
        id: String,
        /// Print the message itself as queued (postcat), nothing else
        #[arg(long, conflicts_with = "json")]
        content: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Try a message, a destination, a class (or --all) now instead of at the next retry time
    Retry {
        /// Message id (see `queue list`)
        #[arg(required_unless_present_any = ["all", "destination", "class"], conflicts_with_all = ["all", "destination", "class"])]
        id: Option<String>,
        /// Every queued message
        #[arg(long, conflicts_with_all = ["destination", "class"])]
        all: bool,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Stop delivery for a class, a destination, or a class at a destination (until resumed)
    Pause {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Resume what `pause` stopped; its mail is tried at once
    Resume {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Cap the messages per second to a destination (or the node, without --destination)
    Rate {
        /// Recipient domain
        #[arg(long)]
        destination: Option<String>,
        /// Messages per second
        #[arg(required_unless_present = "clear")]
        rate: Option<f64>,
        /// Lift the cap
        #[arg(long, conflicts_with = "rate")]
        clear: bool,
    },
    /// Queue depth and age of the oldest ready message, per class and per destination,
    /// and messages by age per destination (qshape: 0-5, 5-10, 10-20, 20-40, 40-80, 80+ minutes)
    Stats {
        #[command(flatten)]
        out: Output,
    },
    /// The running server's adaptive state per destination (needs [admin] token)
    Destinations {
        #[command(flatten)]
        out: Output,
    },
    /// Stop delivery attempts for a message, or every message a filter names, until released
    Hold {
        #[command(flatten)]
        which: Which,
    },
    /// Resume delivery of held messages, at once
    Release {
        #[command(flatten)]
        which: Which,
    },
    /// Remove messages' pending recipients from the queue (audited), as postsuper -d
    Delete {
        #[command(flatten)]
        which: Which,
        /// Send the sender a non-delivery notice (DSN)
        #[arg(long)]
        bounce: bool,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// A message by id, or every message a filter names (whole messages, as
/// postsuper acts on queue files), or `--all`.
#[derive(Args, Debug)]
struct Which {
    /// Message id (see `queue list`)
    #[arg(required_unless_present_any = ["all", "sender", "recipient", "destination", "state", "older_than"])]
    id: Option<String>,
    #[command(flatten)]
    filter: Filter,
    /// Every message in the queue
    #[arg(long, conflicts_with = "id")]
    all: bool,
}

impl Which {
    /// The messages meant, each with its waiting recipients.
    async fn messages(&self, store: &impl Admin, now: i64) -> anyhow::Result<Vec<QueuedMessage>> {
        if let Some(id) = &self.id {
            if !self.filter.is_empty() {
                bail!("name a message or a filter, not both");
            }
            let id: MessageId = id.parse()?;
            return match store.queue_show(id).await? {
                Some(m) => Ok(vec![m]),
                None => bail!("no message with id {id}; see `facteur queue list`"),
            };
        }
        let all = store.queue_list().await?;
        Ok(all.into_iter().filter(|m| !self.filter.select(m, now).is_empty()).collect())
    }
}

/// Run as root on a data folder another user owns (the service's, as the
/// Debian package installs it), an admin command becomes that user first:
/// files it creates (the database's -wal and -shm) must stay the server's.
fn become_data_owner(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(data_dir) else { return Ok(()) };
    if meta.uid() == 0 {
        return Ok(());
    }
    // SAFETY: plain system calls on values read from the folder; the
    // order (groups, gid, then uid) is the one that can succeed.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0 && libc::setgid(meta.gid()) == 0 && libc::setuid(meta.uid()) == 0
    };
    if !ok {
        bail!(
            "cannot become the owner (uid {}) of {}: {}",
            meta.uid(),
            data_dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Where the data is and which configuration applies.
struct Resolved {
    config: Config,
    data_dir: PathBuf,
    /// The config file in force, if any.
    config_file: Option<PathBuf>,
}

fn resolve(cli: &Cli) -> anyhow::Result<Resolved> {
    // Installed as a system service (the Debian package): with neither
    // --data nor --config, commands act on the system's server.
    let system = Path::new(crate::sendmail::SYSTEM_CONFIG);
    let config = match (&cli.config, &cli.data) {
        (None, None) if system.is_file() => Some(system.to_path_buf()),
        (c, _) => c.clone(),
    };
    if let Some(file) = &config {
        let config = Config::load(file)?;
        let data_dir =
            cli.data.clone().or_else(|| config.server.data_dir.clone()).unwrap_or_else(|| DEFAULT_DATA.into());
        return Ok(Resolved { config, data_dir, config_file: Some(file.clone()) });
    }
    let data_dir = cli.data.clone().unwrap_or_else(|| DEFAULT_DATA.into());
    let file = data_dir.join("facteur.toml");
    if file.exists() {
        Ok(Resolved { config: Config::load(&file)?, data_dir, config_file: Some(file) })
    } else {
        Ok(Resolved { config: Config::default(), data_dir, config_file: None })
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn main() -> std::process::ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match crate::sendmail::personality(argv.first()) {
        Some("newaliases") => return crate::sendmail::newaliases(),
        Some(name) => {
            // Run as `sendmail` or `mailq` (a symlink): the system's data folder.
            let (data, config) = crate::sendmail::default_data_dir();
            let rest = argv[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            let command = if name == "mailq" { Command::Mailq } else { Command::Sendmail { args: rest } };
            Cli { data: Some(data), config, command }
        }
        None => Cli::parse(),
    };
    if !matches!(cli.command, Command::Serve) {
        // A command's output piped into `head` or `less` that closes early
        // ends the command quietly, as with any Unix tool, instead of a
        // panic on the failed write. (The server keeps SIGPIPE ignored: a
        // client that hangs up is an error on that socket, not the end.)
        // SAFETY: setting a signal's disposition to its default, before
        // any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("facteur: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("facteur: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // A task that never yields (it should not exist, but) must not keep
    // the process alive after its work is done: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    if let Command::Sendmail { args } = &cli.command {
        let (data, config) = match &cli.data {
            Some(d) => (d.clone(), cli.config.clone()),
            None => crate::sendmail::default_data_dir(),
        };
        let limit = config
            .or_else(|| Some(data.join("facteur.toml")))
            .and_then(|f| Config::load(&f).ok())
            .unwrap_or_default()
            .smtp
            .max_message_size;
        return Ok(crate::sendmail::run(&data, args, limit));
    }
    let r = resolve(&cli)?;
    match &cli.command {
        Command::Config(ConfigCmd::Check { out }) => return check_config(&r, out.json),
        Command::Config(ConfigCmd::Show { non_default }) => {
            let text = r.config_file.as_ref().map(std::fs::read_to_string).transpose()?;
            print!("{}", config::effective(text.as_deref(), &r.config.server.hostname, *non_default)?);
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Reload => return crate::reload::ask(&r.data_dir),
        Command::Backup { dest } => return backup_cmd(&r, dest),
        Command::Restore { src, yes } => {
            become_data_owner(&r.data_dir)?;
            return restore_cmd(&r, src, *yes).await;
        }
        _ => {}
    }
    if let Command::Classify { file, from, to, auth, client, out } = &cli.command {
        return classify_cmd(&r.config, file, from, to, auth.as_deref(), *client, out.json);
    }
    let is_serve = matches!(cli.command, Command::Serve);
    init_logging(r.config.server.log_format, if is_serve { "info" } else { "warn" });
    if is_serve {
        return serve_cmd(r).await.map(|_| std::process::ExitCode::SUCCESS);
    }
    if matches!(cli.command, Command::Init) {
        let mut r = r;
        return init_cmd(&mut r).await.map(|_| std::process::ExitCode::SUCCESS);
    }
    if let Command::Migrate { to, schema, chunk_rows } = &cli.command {
        let request = crate::migrate::Request {
            config: &r.config,
            config_file: r.config_file.as_deref(),
            data_dir: &r.data_dir,
            to,
            schema: schema.clone(),
            chunk_rows: *chunk_rows as usize,
        };
        return crate::migrate::run(request).await;
    }
    become_data_owner(&r.data_dir)?;
    let store = serve::open_store(&r.config, &r.data_dir, std::sync::Arc::new(facteur_types::SystemClock)).await?;
    let d = r.data_dir.display().to_string();
    match cli.command {
        Command::Serve
        | Command::Init
        | Command::Classify { .. }
        | Command::Migrate { .. }
        | Command::Sendmail { .. }
        | Command::Config(_)
        | Command::Reload
        | Command::Backup { .. }
        | Command::Restore { .. } => {
            unreachable!("handled above")
        }
        Command::Dkim(cmd) => {
            let domains: Vec<String> = store.list_domains().await?.into_iter().map(|d| d.name).collect();
            return crate::dkim::run(&r.data_dir, cmd, &domains);
        }
        Command::Domain(DomainCmd::Add { domain }) => {
            store.add_domain(&domain).await.map_err(friendly)?;
            println!(
                "domain {} added; add a user with: facteur --data {d} user add you@{}",
                domain.to_lowercase(),
                domain.to_lowercase()
            );
        }
        Command::Domain(DomainCmd::Remove { domain }) => {
            store.remove_domain(&domain).await.map_err(friendly)?;
            println!("domain {} removed", domain.to_lowercase());
        }
        Command::Domain(DomainCmd::Check { domain, out }) => {
            return crate::domaincheck::run(&r.config, &r.data_dir, &domain, out.json).await;
        }
        Command::Domain(DomainCmd::List { out }) => {
            let domains = store.list_domains().await?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&domains)?);
            } else if domains.is_empty() {
                println!("no domains; add one with: facteur --data {d} domain add example.com");
            } else {
                println!("{:<40} {:>6}", "DOMAIN", "USERS");
                for x in domains {
                    println!("{:<40} {:>6}", x.name, x.users);
                }
            }
        }
        Command::User(UserCmd::Add { address, password }) => {
            let (hash, generated) = obtain_hash(&password)?;
            store.add_user(&address, &hash).await.map_err(friendly)?;
            println!("user {} added with an INBOX", address.to_lowercase());
            let q = &r.config.quota;
            if q.default_bytes > 0 || q.default_messages > 0 {
                let limit = |v: u64| (v > 0).then_some(v);
                store.set_quota(&address, limit(q.default_bytes), limit(q.default_messages)).await.map_err(friendly)?;
                println!(
                    "quota: {} ([quota] default_bytes, default_messages)",
                    quota_line(&store.quota(&address).await?.unwrap_or_default())
                );
            }
            if let Some(pw) = generated {
                println!("password: {pw}");
            }
        }
        Command::User(UserCmd::Passwd { address, password }) => {
            let (hash, generated) = obtain_hash(&password)?;
            store.set_password(&address, &hash).await.map_err(friendly)?;
            println!("password of {} changed", address.to_lowercase());
            if let Some(pw) = generated {
                println!("password: {pw}");
            }
        }
        Command::User(UserCmd::Remove { address, yes }) => {
            let boxes = store.list_mailboxes(&address).await?;
            if boxes.is_empty() && store.get_user(&address).await?.is_none() {
                bail!("no user {address}; see `facteur --data {d} user list`");
            }
            let messages: u64 = boxes.iter().map(|b| b.messages).sum();
            if messages > 0
                && !yes
                && !confirm(&format!(
                    "remove {} and their {messages} message(s) in {} mailbox(es)?",
                    address.to_lowercase(),
                    boxes.len()
                ))?
            {
                bail!("not removed");
            }
            store.remove_user(&address).await.map_err(friendly)?;
            println!(
                "user {} removed with {} mailbox(es) and {messages} message(s)",
                address.to_lowercase(),
                boxes.len()
            );
        }
        Command::User(UserCmd::Quota { address, bytes, messages, out }) => {
            let Some(mut q) = store.quota(&address).await? else {
                bail!("no user {address}; see `facteur --data {d} user list`");
            };
            if bytes.is_some() || messages.is_some() {
                let bytes = bytes.map_or(q.limit_bytes, |l| l.0);
                let messages = messages.map_or(q.limit_messages, |l| l.0);
                store.set_quota(&address, bytes, messages).await.map_err(friendly)?;
                q = store.quota(&address).await?.unwrap_or_default();
            }
            if out.json {
                println!("{}", serde_json::to_string_pretty(&q)?);
            } else {
                println!("{}: {}", address.to_lowercase(), quota_line(&q));
            }
        }
        Command::User(UserCmd::Sender(SenderCmd::Add { user, address })) => {
            store.grant_sender(&user, &address).await.map_err(friendly)?;
            println!("{} may now send as {}", user.to_lowercase(), address.to_lowercase());
        }
        Command::User(UserCmd::Sender(SenderCmd::Remove { user, address })) => {
            store.revoke_sender(&user, &address).await.map_err(friendly)?;
            println!("{} may no longer send as {}", user.to_lowercase(), address.to_lowercase());
        }
        Command::User(UserCmd::Sender(SenderCmd::List { user, out })) => {
            let users = match user {
                Some(u) => vec![u.to_lowercase()],
                None => store.list_users().await?.into_iter().map(|u| u.address).collect(),
            };
            let mut grants = Vec::new();
            for u in users {
                for a in store.sender_grants(&u).await? {
                    grants.push(serde_json::json!({"user": u, "address": a}));
                }
            }
            if out.json {
                println!("{}", serde_json::to_string_pretty(&grants)?);
            } else if grants.is_empty() {
                println!("no grants: every user sends as its own address (and user+detail) only");
            } else {
                println!("{:<40} MAY SEND AS", "USER");
                for g in &grants {
                    println!("{:<40} {}", g["user"].as_str().unwrap_or(""), g["address"].as_str().unwrap_or(""));
                }
            }
        }
        Command::User(UserCmd::List { out }) => {
            let users = store.list_users().await?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else if users.is_empty() {
                println!("no users; add one with: facteur --data {d} user add you@example.com");
            } else {
                for u in users {
                    println!("{}", u.address);
                }
            }
        }
        Command::Alias(AliasCmd::Add { address, targets }) => {
            for t in &targets {
                store.add_alias(&address, t).await.map_err(friendly)?;
            }
            println!(
                "{} now goes to {} (effective at once)",
                address.to_lowercase(),
                targets.join(", ").to_lowercase()
            );
        }
        Command::Alias(AliasCmd::Remove { address, targets }) => {
            let mut n = 0;
            if targets.is_empty() {
                n = store.remove_alias(&address, None).await.map_err(friendly)?;
            }
            for t in &targets {
                n += store.remove_alias(&address, Some(t)).await.map_err(friendly)?;
            }
            println!("{n} target(s) of {} removed", address.to_lowercase());
        }
        Command::Alias(AliasCmd::List { out }) => {
            let aliases = store.list_aliases().await?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&aliases)?);
            } else if aliases.is_empty() {
                println!("no aliases; add one with: facteur --data {d} alias add team@example.com alice@example.com");
            } else {
                println!("{:<40} TARGET", "ALIAS");
                for a in aliases {
                    println!("{:<40} {}", a.address, a.target);
                }
            }
        }
        Command::Alias(AliasCmd::Resolve { address, out }) => {
            use facteur_spool::addressing::{Resolution, Target, resolve};
            let address = address.to_lowercase();
            let days = now().div_euclid(86_400);
            let found = resolve(&store, &r.config.addressing, &address, days).await?;
            let lines: Vec<serde_json::Value> = match &found {
                Resolution::Remote => vec![serde_json::json!({"relay": address})],
                Resolution::Unknown => Vec::new(),
                Resolution::Deliver(targets) => targets
                    .iter()
                    .map(|t| match t {
                        Target::Local { user, mailbox, via } => {
                            serde_json::json!({"user": user, "mailbox": mailbox.as_deref().unwrap_or("INBOX"), "via": via})
                        }
                        Target::Forward { address, via } => serde_json::json!({"forward": address, "via": via}),
                    })
                    .collect(),
            };
            if out.json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else if found == Resolution::Unknown {
                println!("{address}: unknown (refused with 550 5.1.1)");
            } else {
                for l in lines {
                    let via = l["via"].as_array().filter(|v| !v.is_empty()).map(|v| {
                        format!(" (via {})", v.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" -> "))
                    });
                    match (l["user"].as_str(), l["forward"].as_str(), l["relay"].as_str()) {
                        (Some(u), ..) => println!(
                            "{address}: deliver to {u}, {}{}",
                            l["mailbox"].as_str().unwrap_or("INBOX"),
                            via.unwrap_or_default()
                        ),
                        (_, Some(f), _) => println!("{address}: forward to {f}{}", via.unwrap_or_default()),
                        _ => println!("{address}: not a local domain; relayed for clients that may"),
                    }
                }
            }
        }
        Command::Mailbox(MailboxCmd::List { address, out }) => {
            let boxes = store.list_mailboxes(&address).await?;
            if boxes.is_empty() && store.get_user(&address).await?.is_none() {
                bail!("no user {address}; see `facteur --data {d} user list`");
            }
            if out.json {
                println!("{}", serde_json::to_string_pretty(&boxes)?);
            } else {
                println!("{:<24} {:>9} {:>12} {:>9}", "MAILBOX", "MESSAGES", "UIDVALIDITY", "UIDNEXT");
                for b in boxes {
                    println!("{:<24} {:>9} {:>12} {:>9}", b.name, b.messages, b.uidvalidity, b.uidnext);
                }
            }
        }
        Command::Mailbox(MailboxCmd::Fetch { address, uid, mailbox }) => {
            let boxes = store.list_mailboxes(&address).await?;
            let Some(b) = boxes.iter().find(|b| b.name.eq_ignore_ascii_case(&mailbox)) else {
                bail!("user {address} has no mailbox {mailbox:?}; see `facteur --data {d} mailbox list {address}`");
            };
            let Some(data) = store.fetch_message(b.id, uid).await? else {
                bail!(
                    "no message with UID {uid} in {address}/{}; see `facteur --data {d} mailbox list {address}`",
                    b.name
                );
            };
            use std::io::Write;
            std::io::stdout().write_all(&data)?;
        }
        Command::Queue(QueueCmd::List { filter, out }) => {
            let t = now();
            let q: Vec<QueuedMessage> =
                store.queue_list().await?.into_iter().filter(|m| !filter.select(m, t).is_empty()).collect();
            if out.json {
                println!("{}", serde_json::to_string_pretty(&q)?);
            } else {
                print!("{}", crate::queueview::list(&q, &filter, t));
            }
        }
        Command::Mailq => crate::queueview::print_mailq(&store.queue_list().await?),
        Command::Import(what) => {
            let progress = std::io::stderr().is_terminal();
            let summary = match what {
                ImportCmd::Maildir { user, dir } => crate::import::maildir(&store, &user, &dir, progress).await?,
                ImportCmd::Mbox { user, file, mailbox } => {
                    crate::import::mbox(&store, &user, &file, &mailbox, progress).await?
                }
            };
            println!("{summary}");
            for s in &summary.skipped {
                eprintln!("skipped: {s}");
            }
        }
        Command::Queue(QueueCmd::Show { id, content, out }) => {
            let id: MessageId = id.parse()?;
            let Some(m) = store.queue_show(id).await? else {
                bail!("no message with id {id}; see `facteur --data {d} queue list`");
            };
            if content {
                let Some(body) = store.message_body(id).await? else {
                    bail!("message {id} is no longer kept (delivered everywhere, or past storage.keep_finished_secs)");
                };
                use std::io::Write;
                std::io::stdout().write_all(&body)?;
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let audit = store.audit_log(Some(id)).await?;
            if out.json {
                let mut v = serde_json::to_value(&m)?;
                v["audit"] = serde_json::to_value(&audit)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_message(&m);
                for a in &audit {
                    println!(
                        "operator:    {} {} by {}: {}",
                        facteur_smtp::headers::rfc5322_date(a.at),
                        a.action,
                        a.actor,
                        a.detail
                    );
                }
            }
        }
        Command::Queue(QueueCmd::Retry { id, all, scope }) => {
            if id.is_none() && !all {
                let done = controls::apply(&store, &Action::Retry { scope: scope.scope() }, now(), &actor()).await?;
                println!("{done} (a running `facteur serve` tries them at once)");
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let id = id.map(|id| id.parse::<MessageId>()).transpose()?;
            let n = store.queue_retry(id, now(), &actor()).await.map_err(friendly)?;
            println!("{n} recipient(s) will be tried at once (by a running `facteur serve`)");
        }
        Command::Queue(QueueCmd::Pause { scope }) => {
            println!("{}", controls::apply(&store, &Action::Pause { scope: scope.scope() }, now(), &actor()).await?);
        }
        Command::Queue(QueueCmd::Resume { scope }) => {
            println!("{}", controls::apply(&store, &Action::Resume { scope: scope.scope() }, now(), &actor()).await?);
        }
        Command::Queue(QueueCmd::Rate { destination, rate, clear }) => {
            let action = Action::Rate { destination, rate: if clear { None } else { rate } };
            println!("{}", controls::apply(&store, &action, now(), &actor()).await?);
        }
        Command::Queue(QueueCmd::Stats { out }) => {
            let t = now();
            let classes = store.queue_stats(t, false).await?;
            let dests = store.queue_stats(t, true).await?;
            let controls = store.controls().await?;
            if out.json {
                let ages: Vec<serde_json::Value> = crate::queueview::shape(&store.queue_list().await?, t)
                    .into_iter()
                    .map(|(domain, b)| serde_json::json!({"destination": domain, "minutes": crate::queueview::BUCKETS, "messages": b}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"now": t, "classes": classes, "destinations": dests, "controls": controls, "ages": ages})
                );
            } else {
                let age = |o: Option<i64>| o.map(|o| format!("{}s", (t - o).max(0))).unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<14} {:>8} {:>8} {:>6} {:>10}",
                    "DESTINATION", "CLASS", "QUEUED", "READY", "HELD", "LATE"
                );
                for x in classes.iter().chain(&dests) {
                    let d = if x.domain.is_empty() { "(all)" } else { &x.domain };
                    println!(
                        "{:<28} {:<14} {:>8} {:>8} {:>6} {:>10}",
                        d,
                        x.class,
                        x.queued,
                        x.ready,
                        x.held,
                        age(x.ready_since)
                    );
                }
                println!("\nmessages by age in minutes, per destination (qshape):");
                print!("{}", crate::queueview::shape_text(&crate::queueview::shape(&store.queue_list().await?, t)));
                for c in controls {
                    println!(
                        "control: {} = {} (by {} at {})",
                        c.key,
                        c.value,
                        c.actor,
                        facteur_smtp::headers::rfc5322_date(c.set_at)
                    );
                }
            }
        }
        Command::Queue(QueueCmd::Destinations { out }) => {
            let v = admin_get(&r.config, "destinations")?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<28} {:>6} {:>7} {:>12} {:>10}  {:<22} WAITING (sys/ip/tx/bulk)",
                    "DESTINATION", "LIMIT", "ACTIVE", "RATE/S", "THROTTLES", "REACHABLE"
                );
                for d in v.as_array().into_iter().flatten() {
                    let sh = &d["shaper"];
                    let rate = sh["rate_limit"].as_f64().map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into());
                    let reachable = match (d["unreachable_failures"].as_u64(), d["next_probe"].as_i64()) {
                        (Some(n), Some(at)) if n > 0 => format!("no ({n}x), probe in {}s", (at - now()).max(0)),
                        _ => "yes".into(),
                    };
                    println!(
                        "{:<28} {:>6} {:>7} {:>12} {:>10}  {:<22} {}",
                        d["domain"].as_str().unwrap_or("?"),
                        sh["concurrency_limit"],
                        d["active"],
                        rate,
                        sh["throttles"],
                        reachable,
                        d["waiting"]
                    );
                }
            }
        }
        Command::Queue(QueueCmd::Hold { which }) => {
            let (mut n, mut messages) = (0, 0);
            for m in which.messages(&store, now()).await? {
                n += store.queue_hold(m.id, now(), &actor()).await.map_err(friendly)?;
                messages += 1;
            }
            println!("{n} recipient(s) of {messages} message(s) held; `facteur queue release` resumes");
        }
        Command::Queue(QueueCmd::Release { which }) => {
            let (mut n, mut messages) = (0, 0);
            for m in which.messages(&store, now()).await? {
                n += store.queue_release(m.id, now(), &actor()).await.map_err(friendly)?;
                messages += 1;
            }
            println!("{n} recipient(s) of {messages} message(s) released");
        }
        Command::Queue(QueueCmd::Delete { which, bounce, yes }) => {
            let messages = which.messages(&store, now()).await?;
            let pending: usize =
                messages.iter().map(|m| m.recipients.iter().filter(|r| !r.state.is_final()).count()).sum();
            if pending == 0 {
                bail!("no pending recipient in what was named; nothing to delete");
            }
            if !yes
                && !confirm(&format!(
                    "delete {pending} pending recipient(s) of {} message(s){}?",
                    messages.len(),
                    if bounce { " and notify the senders" } else { "" }
                ))?
            {
                bail!("not deleted");
            }
            let (mut n, mut notified) = (0, 0);
            for m in &messages {
                let notices =
                    if bounce { deletion_notices(&store, m, &r.config.server.hostname).await? } else { Vec::new() };
                notified += usize::from(!notices.is_empty());
                n += store.queue_delete(m.id, now(), &actor(), notices).await.map_err(friendly)?;
            }
            println!(
                "{n} recipient(s) of {} message(s) deleted{}",
                messages.len(),
                if notified > 0 { format!("; {notified} sender(s) notified") } else { String::new() }
            );
        }
        Command::Incident(IncidentCmd::List { out }) => {
            let list = store.incidents(now() - facteur_watch::status::DAYS * 86_400).await?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no incidents in the last {} days", facteur_watch::status::DAYS);
            } else {
                print!("{}", crate::incidents::lines(&list));
            }
        }
        Command::Incident(IncidentCmd::Show { id, out }) => {
            let Some(i) = store.incident(id).await? else {
                anyhow::bail!("no incident {id} (see `facteur incident list`)")
            };
            if out.json {
                println!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                print!("{}", crate::incidents::details(&i));
            }
        }
        Command::Incident(cmd) => {
            use crate::incidents::Action;
            let action = match cmd {
                IncidentCmd::Update { id, text } => Action::Update { id, text },
                IncidentCmd::Rename { id, title } => Action::Rename { id, title },
                IncidentCmd::Resolve { id, text } => Action::Resolve { id, text },
                IncidentCmd::List { .. } | IncidentCmd::Show { .. } => unreachable!("handled above"),
            };
            let (id, _) = crate::incidents::apply(&store, action, now(), &actor()).await.map_err(|e| {
                match e.downcast_ref::<facteur_store::StoreError>() {
                    Some(facteur_store::StoreError::NotFound(_)) => {
                        anyhow::anyhow!("{e} (see `facteur incident list`)")
                    }
                    _ => e,
                }
            })?;
            println!("incident {id} changed");
        }
        Command::Nodes { out } => {
            let now = now();
            let nodes = store.nodes().await?;
            let down_after = r.config.node.down_after_secs as i64;
            if out.json {
                let list: Vec<serde_json::Value> = nodes
                    .iter()
                    .map(|n| {
                        let mut v = serde_json::to_value(n).unwrap_or_default();
                        v["state"] = serde_json::to_value(n.state(now, down_after)).unwrap_or_default();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if nodes.is_empty() {
                println!("no node has started on this storage yet");
            } else {
                println!(
                    "{:<24} {:<14} {:<8} {:>14} {:<9} {:<20}",
                    "NODE", "REGION", "STATE", "HEARTBEAT", "DELIVERS", "VERSION"
                );
                for n in &nodes {
                    let state = serde_json::to_value(n.state(now, down_after))?;
                    println!(
                        "{:<24} {:<14} {:<8} {:>14} {:<9} {:<20}",
                        n.name,
                        n.region,
                        state.as_str().unwrap_or("?"),
                        format!("{} s ago", (now - n.heartbeat_at).max(0)),
                        if n.delivers { "yes" } else { "no" },
                        n.version
                    );
                }
            }
        }
        Command::Check { repair, out } => {
            let report = store.check(repair).await?;
            if out.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report, &store.location());
            }
            if !report.healthy() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facteur classify`: the same rules as at acceptance, on a file.
fn classify_cmd(
    config: &Config,
    file: &Path,
    from: &str,
    to: &[String],
    auth: Option<&str>,
    client: std::net::IpAddr,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let recipients: Vec<String> =
        if to.is_empty() { vec!["user@localhost".into()] } else { to.iter().map(|t| t.to_lowercase()).collect() };
    let facts = facteur_classify::Facts {
        mail_from: from,
        recipients: &recipients,
        auth_user: auth,
        client_ip: client,
        message: &data,
        listener: if auth.is_some() { facteur_classify::Listener::Submission } else { facteur_classify::Listener::Mx },
        identical_recent: 0,
        authenticated: None,
    };
    let d = facteur_classify::classify(&facts, &config.classify);
    if json {
        println!("{}", serde_json::json!({"class": d.class.as_str(), "rule": d.rule}));
    } else {
        println!("class: {}\nrule:  {}", d.class, d.rule);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn now() -> i64 {
    use facteur_store::Clock;
    facteur_store::SystemClock.now()
}

/// Who runs an operator command, for the audit trail.
fn actor() -> String {
    let user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| {
        // SAFETY: getuid has no preconditions and cannot fail.
        format!("uid {}", unsafe { libc::getuid() })
    });
    format!("cli:{user}")
}

/// GET /admin/WHAT from the running server (first http listener, [admin] token).
fn admin_get(config: &Config, what: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::{Read, Write};
    if config.admin.token.is_empty() {
        bail!("set [admin] token in the configuration (and restart the server) to read its live state");
    }
    let Some(addr) = config.listen.http.first() else { bail!("no [listen] http address configured") };
    let mut s = std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_secs(5))
        .with_context(|| format!("cannot reach the server's HTTP listener at {addr}; is `facteur serve` running?"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "GET /admin/{what} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        config.admin.token
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap_or("?");
    // axum answers with a Content-Length body here; no chunked decoding needed.
    if status != "200" {
        bail!("the server answered {status}: {body}");
    }
    serde_json::from_str(body).context("the server's answer is not JSON")
}

/// Ask on the terminal; without one, refuse (scripts pass --yes).
fn sqlite_only(r: &Resolved, what: &str) -> anyhow::Result<PathBuf> {
    if r.config.storage.backend == config::Backend::Postgres {
        bail!(
            "{what} is for the embedded SQLite database; with PostgreSQL use its own tools (pg_dump, \
             continuous archiving) on storage.url"
        );
    }
    Ok(r.data_dir.join(&r.config.storage.path))
}

fn backup_cmd(r: &Resolved, dest: &Path) -> anyhow::Result<std::process::ExitCode> {
    let db = sqlite_only(r, "facteur backup")?;
    if !db.exists() {
        bail!("no database at {}; nothing to back up", db.display());
    }
    let mut extra: Vec<PathBuf> = r.config_file.iter().cloned().collect();
    extra.push(crate::tls::certificate_path(&r.config.tls, &r.data_dir));
    if r.config.tls.cert.is_none() {
        extra.push(r.data_dir.join("tls/key.pem"));
    }
    let w = crate::backup::backup(&db, dest, &extra, now())?;
    println!(
        "backed up {} ({} octets, schema version {}) to {}; checked",
        db.display(),
        w.bytes,
        w.schema,
        w.database.display()
    );
    for f in &w.also {
        println!("  with {}", f.display());
    }
    println!(
        "keep it elsewhere than this disk; restore with: facteur --data {} restore {}",
        r.data_dir.display(),
        dest.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

async fn restore_cmd(r: &Resolved, src: &Path, yes: bool) -> anyhow::Result<std::process::ExitCode> {
    let db = sqlite_only(r, "facteur restore")?;
    let from = crate::backup::source_database(src);
    // No server may hold the folder while its database is replaced.
    let _lock = serve::lock_data_dir(&r.data_dir)?;
    let schema = crate::backup::verify(&from, true)?;
    // facteur's own invariants, on a scratch copy (checking may repair).
    let scratch = r.data_dir.join("facteur.db.restoring");
    let _ = std::fs::remove_file(&scratch);
    std::fs::copy(&from, &scratch).with_context(|| format!("cannot copy {}", from.display()))?;
    let report = {
        let store = facteur_store::sqlite::SqliteStore::open(&scratch)?;
        store.check(false).await?
    };
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(r.data_dir.join(format!("facteur.db.restoring{suffix}")));
    }
    if !report.healthy() {
        let _ = std::fs::remove_file(&scratch);
        print_report(&report, &from.display().to_string());
        bail!("{} does not pass facteur check; not restored", from.display());
    }
    if db.exists() && !yes && !confirm(&format!("replace {} with {} (schema {schema})?", db.display(), from.display()))?
    {
        let _ = std::fs::remove_file(&scratch);
        bail!("not restored");
    }
    let kept = db.with_file_name(format!("facteur.db.before-restore-{}", now()));
    if db.exists() {
        std::fs::rename(&db, &kept).with_context(|| format!("cannot move {} aside", db.display()))?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", db.display()));
            if side.exists() {
                std::fs::rename(&side, format!("{}{suffix}", kept.display()))?;
            }
        }
    }
    std::fs::rename(&scratch, &db)?;
    std::fs::File::open(&r.data_dir)?.sync_all()?;
    println!(
        "restored {} ({} mailboxes, {} messages; schema {schema}) to {}",
        from.display(),
        report.mailboxes,
        report.messages,
        db.display()
    );
    if kept.exists() {
        println!("the database it replaced is kept as {}", kept.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `facteur config check`: the file parsed and validated (an error ends
/// the command before this, exit 1), then its risky settings and the
/// certificate's; exit 0 with warnings.
fn check_config(r: &Resolved, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let mut risks = r.config.risks();
    let cert = crate::tls::certificate_path(&r.config.tls, &r.data_dir);
    if cert.exists() || r.config.tls.cert.is_some() {
        risks.extend(crate::tls::risks(&cert, &r.config.server.hostname, now()));
    }
    let file = r.config_file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "(defaults)".into());
    if json {
        println!("{}", serde_json::json!({"file": file, "valid": true, "warnings": risks}));
    } else {
        println!("{file}: valid");
        for w in &risks {
            println!("warning: {w}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// A quota limit from the command line: `none`, or octets/messages with an
/// optional K, M, G or T (powers of 1024).
#[derive(Debug, Clone, Copy)]
struct Limit(Option<u64>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") || t == "0" {
        return Ok(Limit(None));
    }
    let (n, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: the unit must be K, M, G or T")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a number, a size like 500M or 10G, or none"))?;
    n.checked_mul(mult).map(|v| Limit(Some(v))).ok_or_else(|| format!("{s:?} is too large"))
}

/// `12345 of 10485760 octets (0 %), 3 messages (no limit)`.
fn quota_line(q: &facteur_store::Quota) -> String {
    let part = |used: u64, limit: Option<u64>, unit: &str| match limit {
        Some(l) => format!("{used} of {l} {unit} ({:.0} %)", used as f64 * 100.0 / l.max(1) as f64),
        None => format!("{used} {unit} (no limit)"),
    };
    format!("{}, {}", part(q.used_bytes, q.limit_bytes, "octets"), part(q.used_messages, q.limit_messages, "messages"))
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without a terminal to ask on; pass --yes");
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Store errors already name the value and the fix; drop the Debug wrapping.
fn friendly(e: StoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The hash to store, and the password when one was generated (to print).
fn obtain_hash(src: &PasswordSource) -> anyhow::Result<(String, Option<String>)> {
    if let Some(h) = &src.password_hash {
        return Ok((password::accepted_hash(h).map_err(|why| anyhow::anyhow!("--password-hash: {why}"))?, None));
    }
    let (pw, generated) = obtain_password(src)?;
    Ok((password::hash(&pw), generated.then_some(pw)))
}

fn obtain_password(src: &PasswordSource) -> anyhow::Result<(String, bool)> {
    if src.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            bail!("--password-stdin: standard input gave an empty password");
        }
        if std::io::stdin().is_terminal() {
            eprintln!("(password read from the terminal)");
        }
        return Ok((pw, false));
    }
    Ok((generate_password(), true))
}

/// 20 characters that cannot be misread (no 0/O, 1/l/I).
pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// The failure notice a sender gets for recipients an operator deleted.
async fn deletion_notices(
    store: &facteur_store::any::AnyStore,
    m: &QueuedMessage,
    hostname: &str,
) -> anyhow::Result<Vec<facteur_store::NewMessage>> {
    let body = store.message_body(m.id).await?.unwrap_or_default();
    let items = m
        .recipients
        .iter()
        .filter(|r| !r.state.is_final())
        .map(|r| facteur_spool::NoticeItem {
            address: r.address.clone(),
            orcpt: r.orcpt.clone(),
            notice: facteur_spool::Notice::Failed,
            status: (5, 0, 0),
            diagnostic: Some("facteur: deleted from the queue by the postmaster".into()),
            remote_mta: None,
            last_attempt: None,
            will_retry_until: None,
        })
        .collect();
    let about =
        facteur_spool::About { message_id: m.id, received_at: m.received_at, envelope: &m.envelope, original: &body };
    Ok(facteur_spool::notices::compose(store, &about, items, hostname, now() * 1000).await)
}

fn print_message(m: &QueuedMessage) {
    let e = &m.envelope;
    println!("id:          {}", m.id);
    println!("received:    {} (unix {})", facteur_smtp::headers::rfc5322_date(m.received_at), m.received_at);
    println!("class:       {}", m.class);
    println!("size:        {} octets", m.size);
    println!("from:        <{}>", e.mail_from);
    println!(
        "client:      [{}] helo={} tls={} auth={}",
        e.client_ip,
        e.helo,
        e.tls,
        e.auth_user.as_deref().unwrap_or("-")
    );
    if let Some(envid) = &e.envid {
        println!("envid:       {envid}");
    }
    if let Some(ret) = &e.ret {
        println!("ret:         {ret}");
    }
    println!("recipients:");
    for r in &m.recipients {
        let next = match (r.state.as_str(), r.next_attempt) {
            ("queued", Some(t)) => facteur_smtp::headers::rfc5322_date(t),
            _ => "-".into(),
        };
        println!("  {:<40} {:<10} attempts={} next={}", r.address, r.state, r.attempts, next);
        if let Some(err) = &r.last_error {
            println!("    last error: {err}");
        }
    }
    if !m.attempts.is_empty() {
        println!("attempts:");
        for a in &m.attempts {
            println!(
                "  {}  {:<32} {:<10} {:<24} {}",
                facteur_smtp::headers::rfc5322_date(a.at),
                a.recipient,
                a.outcome,
                a.host.as_deref().unwrap_or("-"),
                a.reply
            );
        }
    }
}

fn print_report(r: &CheckReport, db: &str) {
    println!("storage:        {db} (schema version {})", r.schema_version);
    println!("mailboxes:      {}", r.mailboxes);
    println!("messages:       {}", r.messages);
    if r.findings.is_empty() {
        println!("invariants:     all hold");
        return;
    }
    for f in &r.findings {
        println!("{:<8} {:<24} {}", f.severity.as_str().to_uppercase(), f.invariant, f.detail);
    }
    if r.healthy() {
        println!("invariants:     all hold now (repaired above)");
    } else if r.findings.iter().any(|f| f.severity == Severity::Error) {
        println!("invariants:     BROKEN — `facteur check --repair` fixes what the data allows");
    }
}

/// `facteur init`: a new data folder, or an existing empty one, gets its
/// database and (without --config) the default configuration file.
async fn init_cmd(r: &mut Resolved) -> anyhow::Result<()> {
    drop(serve::init_store(&r.config, &r.data_dir).await?);
    facteur_smtp::pickup::prepare(&r.data_dir)
        .with_context(|| format!("cannot make the maildrop in {}", r.data_dir.display()))?;
    println!("facteur: created a new database in {}", r.data_dir.display());
    write_default_config(r)
}

/// Write DATA/facteur.toml when no configuration file is in force; it is
/// the file in force from then on (a SIGHUP reads it).
fn write_default_config(r: &mut Resolved) -> anyhow::Result<()> {
    if r.config_file.is_none() {
        let file = r.data_dir.join("facteur.toml");
        std::fs::write(&file, config::default_file(&r.config.server.hostname))
            .with_context(|| format!("cannot write {}", file.display()))?;
        r.config_file = Some(file.clone());
        println!(
            "facteur: wrote the default configuration to {} (edit it, then SIGHUP reloads it; ports and storage need a restart)",
            file.display()
        );
    }
    Ok(())
}

async fn serve_cmd(mut r: Resolved) -> anyhow::Result<()> {
    // Watch the signals before anything else: a SIGHUP while starting must
    // not kill the process (its default action).
    let signals = Signals::watch();
    // Only a folder that does not exist yet is a new installation. An
    // existing one without its database is refused by `serve::start` (a
    // mount that did not come up must not become a new, empty server).
    if !r.data_dir.exists() {
        if r.config.storage.backend == config::Backend::Sqlite {
            drop(serve::init_store(&r.config, &r.data_dir).await?);
            println!("facteur: NEW INSTALLATION: created data folder {} with an empty database", r.data_dir.display());
        } else {
            // A node joining shared storage: the database is made once, by
            // `facteur init`, not by every node's first start.
            std::fs::create_dir_all(&r.data_dir)
                .with_context(|| format!("cannot create data folder {}", r.data_dir.display()))?;
            println!("facteur: created data folder {} for this node", r.data_dir.display());
        }
        write_default_config(&mut r)?;
    }
    let running = serve::start(r.config.clone(), &r.data_dir).await?;
    let list = |v: &[std::net::SocketAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
    println!("facteur: listening as {}:", r.config.server.hostname);
    println!("  smtp         {}   (MX; STARTTLS offered)", list(&running.smtp));
    println!("  submission   {}   (STARTTLS, then AUTH)", list(&running.submission));
    println!("  submissions  {}   (implicit TLS, then AUTH)", list(&running.submissions));
    println!("  imap         {}   (STARTTLS, then LOGIN)", list(&running.imap));
    println!("  imaps        {}   (implicit TLS)", list(&running.imaps));
    println!("  pop3         {}   (STLS, then USER/PASS or AUTH)", list(&running.pop3));
    println!("  pop3s        {}   (implicit TLS)", list(&running.pop3s));
    println!("  http         {}   (/healthz, /readyz, /metrics, /admin)", list(&running.http));
    println!("  status       {}   (public status page: /status)", list(&running.status));
    for n in &running.notes {
        println!("facteur: {n}");
    }
    tracing::info!(hostname = %r.config.server.hostname, "facteur serving");
    // systemd (Type=notify): every listener is up. Without NOTIFY_SOCKET
    // (not under systemd) this does nothing.
    systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
    serve_until_stopped(&running, &r, signals).await;
    systemd(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: closing listeners, telling sessions 421/BYE");
    // Sessions get their grace (10 s at most); the whole stop has a deadline.
    if tokio::time::timeout(SHUTDOWN_DEADLINE, running.shutdown()).await.is_err() {
        tracing::warn!(deadline_secs = SHUTDOWN_DEADLINE.as_secs(), "shutdown deadline passed; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGHUP, watched from the start of `serve`.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn watch() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let (term, hup) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::hangup()).ok());
        if term.is_none() || hup.is_none() {
            tracing::warn!("cannot watch SIGTERM/SIGHUP; stop with Ctrl-C");
        }
        Signals { term, hup }
    }
}

/// Until SIGTERM or SIGINT. SIGHUP reloads the configuration file and the
/// certificates (as Postfix's `postfix reload`): sessions go on, a file
/// that does not parse or check leaves the running configuration as it is,
/// and the log says what changed or why nothing did.
async fn serve_until_stopped(running: &serve::Running, r: &Resolved, mut signals: Signals) {
    async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    loop {
        tokio::select! {
            _ = next(&mut signals.term) => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = next(&mut signals.hup) => reload(running, r).await,
        }
    }
}

/// A state for systemd's service manager, when it is listening.
fn systemd(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot tell systemd (NOTIFY_SOCKET)");
    }
}

async fn reload(running: &serve::Running, r: &Resolved) {
    let refused = |e: anyhow::Error| {
        let why = format!("{e:#}");
        tracing::error!(error = %why, "configuration reload refused; the running configuration stays");
        crate::reload::write_report(&r.data_dir, false, &[why]);
    };
    let new = match &r.config_file {
        Some(file) => match Config::load(file) {
            Ok(c) => c,
            Err(e) => return refused(e),
        },
        None => r.config.clone(),
    };
    match running.reload(new).await {
        Ok(changes) => {
            for c in &changes {
                tracing::info!(change = %c, "configuration reloaded");
            }
            crate::reload::write_report(&r.data_dir, true, &changes);
        }
        Err(e) => refused(e),
    }
}
