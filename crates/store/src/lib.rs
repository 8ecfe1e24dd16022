//! facteur's storage layer.
//!
//! Purpose: the contract for everything facteur keeps, split by role so
//! each crate asks only for what it uses —
//! [`Directory`] (domains, users, credentials, sender grants),
//! [`Mailstore`] (mailboxes, flags, UIDs, MODSEQ, changes),
//! [`Spool`] (accepting a message with its placements and notices in one
//! transaction; claiming, completing, parking the queue; controls as the
//! engine reads them), [`Admin`] (the operator's view and actions,
//! audit, invariant checks) and [`Cluster`] (the nodes sharing storage, with
//! their heartbeats) — and its backends: [`sqlite::SqliteStore`] (embedded
//! default, WAL, `synchronous=FULL`) and [`postgres::PgStore`] (several
//! nodes). One backend type implements every role; [`Store`] names all
//! five, [`any::AnyStore`] is whichever the configuration chose;
//! [`migrate`] copies a SQLite database into a PostgreSQL schema.
//!
//! Invariants live above the backends, in [`invariants`] (UID allocation,
//! UIDVALIDITY from the injected clock, default mailboxes, address and
//! domain validation), and are proven the same on every backend by the
//! conformance suite (`crates/store/tests/conformance`):
//! - **A message is acknowledged only after its commit returned**: the commit
//!   of [`Spool::store_message`] is durable (fsynced) before it resolves.
//! - **UIDs are allocated in the same transaction as the message**, from a
//!   per-mailbox counter that is never trusted alone: allocation takes the
//!   larger of the counter and `max(uid) + 1`, so a deleted or corrupted
//!   counter is repaired from the data, never reused (RFC 9051 §2.3.1.1).
//! - **UIDVALIDITY never changes while a mailbox lives**, and a re-created
//!   mailbox gets one strictly above any its owner had.
//!
//! Failure behaviour: every error is a backend-neutral [`StoreError`]; the
//! SMTP layer turns any of them into a temporary `451 4.3.0`, so mail is
//! deferred, not lost.

pub mod any;
pub mod changes;
mod depth;
pub mod incidents;
pub mod invariants;
pub mod lifecycle;
pub mod migrate;
pub mod password;
pub mod postgres;
pub mod sqlite;
mod telemetry;

use serde::{Deserialize, Serialize};

pub use changes::{ChangeFeed, ChangeHub, Changed, names_key};
pub use facteur_types::{
    BodyType, Class, Clock, ControlKey, ManualClock, MessageId, Notify, Outcome, RecipientStatus, Ret, Severity,
    SharedClock, SystemClock,
};
pub use incidents::{Incident, IncidentChange, IncidentUpdate};
pub use invariants::DEFAULT_MAILBOXES;
pub use lifecycle::{Housekeeping, Sweep};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed a statement (details from its driver).
    #[error("database error: {0}")]
    Backend(String),
    /// The backend cannot be reached or has stopped taking work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("database schema version {found} is newer than this facteur knows ({known}); run a newer facteur")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("storage pre-flight failed: {0}")]
    Preflight(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The disk (or the database server's) is full: nothing was written;
    /// it works again once there is room (SMTP answers `452 4.3.1`).
    #[error("storage is full: {0}")]
    Full(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The envelope as recorded with a message: what the delivery engine and DSNs
/// (RFC 3461) need later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredEnvelope {
    /// Reverse-path; empty string is the null sender `<>`.
    pub mail_from: String,
    pub helo: String,
    pub client_ip: String,
    pub auth_user: Option<String>,
    pub tls: bool,
    /// BODY=, if given.
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    /// RET=, if given.
    pub ret: Option<Ret>,
    pub envid: Option<String>,
}

/// Where one recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A mailbox of this local user (address in canonical lower case):
    /// `mailbox` if it names one the user has, else the INBOX.
    Local { user: String, mailbox: Option<String> },
    /// The outbound queue.
    Remote,
}

impl Route {
    /// The INBOX of `user`.
    pub fn inbox(user: impl Into<String>) -> Route {
        Route::Local { user: user.into(), mailbox: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    pub address: String,
    /// NOTIFY=, if given.
    pub notify: Option<Notify>,
    /// ORCPT= as `addr-type;address`.
    pub orcpt: Option<String>,
    pub route: Route,
}

/// A message to commit: id, envelope, recipients and the full data
/// (headers we added included).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    /// Unix seconds.
    pub received_at: i64,
    pub class: Class,
    pub envelope: StoredEnvelope,
    pub recipients: Vec<NewRecipient>,
    pub data: Vec<u8>,
    /// Its recipients elsewhere wait held (`facteur queue release`) instead
    /// of queued: an account over its sending limit.
    pub hold: bool,
}

impl NewMessage {
    /// The state a recipient in another domain starts in, and when it is due.
    pub fn remote_state(&self) -> (RecipientStatus, Option<i64>) {
        if self.hold { (RecipientStatus::Held, None) } else { (RecipientStatus::Queued, Some(self.received_at)) }
    }
}

/// Where a committed message landed, per local recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub user: String,
    pub mailbox_id: i64,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub address: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
}

/// A user's quota (`None`: no limit) and what counts against it: every
/// message in every mailbox, at its size (RFC 9208 §5: STORAGE is in units
/// of 1024 octets on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Quota {
    pub limit_bytes: Option<u64>,
    pub limit_messages: Option<u64>,
    pub used_bytes: u64,
    pub used_messages: u64,
    /// The user was told they passed the warning share.
    pub warned: bool,
}

impl Quota {
    /// Whether `bytes` more in `messages` more messages still fit.
    pub fn allows(&self, bytes: u64, messages: u64) -> bool {
        self.limit_bytes.is_none_or(|l| self.used_bytes.saturating_add(bytes) <= l)
            && self.limit_messages.is_none_or(|l| self.used_messages.saturating_add(messages) <= l)
    }

    /// Whether any limit is set.
    pub fn limited(&self) -> bool {
        self.limit_bytes.is_some() || self.limit_messages.is_some()
    }

    /// The larger share of a limit in use (0 without limits).
    pub fn share(&self) -> f64 {
        let of = |used: u64, limit: Option<u64>| limit.map(|l| if l == 0 { 1.0 } else { used as f64 / l as f64 });
        of(self.used_bytes, self.limit_bytes)
            .into_iter()
            .chain(of(self.used_messages, self.limit_messages))
            .fold(0.0, f64::max)
    }
}

/// One target of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    /// `user@domain` of a local domain, or `@domain` (every address of the
    /// domain that is neither a user nor another alias).
    pub address: String,
    /// A local user, another alias, or an address elsewhere.
    pub target: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    pub name: String,
    pub created_at: i64,
    pub users: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub id: i64,
    pub owner: String,
    /// Hierarchy separator `/`; "INBOX" in that spelling.
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u64,
    /// Messages without `\Seen`.
    pub unseen: u64,
    /// RFC 6154 attribute, e.g. `\Sent`.
    pub special_use: Option<String>,
    /// RFC 7162: the MODSEQ of the latest change in this mailbox.
    pub highest_modseq: u64,
}

/// One message in a mailbox, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageMeta {
    pub uid: u32,
    /// System flags with their backslash (`\Seen`), keywords as given.
    pub flags: Vec<String>,
    pub modseq: u64,
    /// Unix seconds (IMAP INTERNALDATE).
    pub internal_date: i64,
    pub size: u64,
    /// The stored message (for its body).
    pub message_id: MessageId,
}

/// A mailbox's messages and its HIGHESTMODSEQ, read at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxSnapshot {
    /// 0 when the mailbox no longer exists (and `messages` is empty).
    pub highest_modseq: u64,
    pub messages: Vec<MessageMeta>,
}

/// How much of a stored message to read.
/// Ordered by size: `Header` < `Whole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The header: up to and including the first empty line (CRLF CRLF),
    /// the whole message if it has none. A message list asks for this
    /// only, and the body is not read.
    Header,
    Whole,
}

/// How STORE changes flags (RFC 9051 §6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// What a STORE did: (uid, flags now, modseq) for messages it changed and
/// for those already as asked; UIDs it refused under UNCHANGEDSINCE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsChanged {
    pub changed: Vec<(u32, Vec<String>, u64)>,
    pub unchanged: Vec<(u32, Vec<String>, u64)>,
    pub modified: Vec<u32>,
}

/// What an address is to this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An alias (`facteur alias`): its targets, in the order added. An
    /// alias takes precedence over a user of the same address.
    Alias(Vec<String>),
    /// A local user; the canonical address.
    LocalUser(String),
    /// The domain is local but no such user exists.
    UnknownUser,
    /// Not a local domain.
    Remote,
}

/// State of one recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientState {
    pub address: String,
    pub state: RecipientStatus,
    pub attempts: u32,
    pub next_attempt: Option<i64>,
    pub last_error: Option<String>,
    pub notify: Option<Notify>,
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedMessage {
    pub id: MessageId,
    pub received_at: i64,
    pub class: Class,
    pub size: u64,
    pub envelope: StoredEnvelope,
    pub recipients: Vec<RecipientState>,
    /// Every delivery attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// One delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub recipient: String,
    /// Unix seconds.
    pub at: i64,
    /// The host that answered (or that we failed to reach).
    pub host: Option<String>,
    pub outcome: Outcome,
    /// The remote reply or our own diagnostic.
    pub reply: String,
}

/// One recipient handed to the delivery engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecipient {
    pub idx: u32,
    pub address: String,
    pub notify: Option<Notify>,
    pub orcpt: Option<String>,
    pub attempts: u32,
    pub delay_notified: bool,
}

/// A message's recipients for one destination domain, leased to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryJob {
    pub message_id: MessageId,
    pub received_at: i64,
    pub class: Class,
    pub size: u64,
    pub envelope: StoredEnvelope,
    pub domain: String,
    pub recipients: Vec<JobRecipient>,
    /// How often the destination pushed this claim back (421) and the
    /// engine kept it to try again when the pace allows; 0 from storage.
    pub pushed_back: u32,
}

/// Which due recipients a claim may take: `class` restricts it to one class;
/// `skip` leaves out (domain, class) pairs, where `None` matches any (paused
/// destinations, classes, or a class at a destination).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimFilter {
    pub class: Option<Class>,
    pub skip: Vec<(Option<String>, Option<Class>)>,
}

/// What happens to one recipient after an attempt or an operator's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewState {
    Delivered,
    /// Try again at this time (unix seconds).
    Deferred {
        next_attempt: i64,
    },
    /// Final failure; the DSN, if any, is among the notices of the same update.
    Bounced,
    /// Removed by an operator.
    Deleted,
}

impl NewState {
    /// The recipient's state once this is applied (a deferral stays queued).
    pub fn status(&self) -> RecipientStatus {
        match self {
            NewState::Delivered => RecipientStatus::Delivered,
            NewState::Deferred { .. } => RecipientStatus::Queued,
            NewState::Bounced => RecipientStatus::Bounced,
            NewState::Deleted => RecipientStatus::Deleted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientUpdate {
    pub message_id: MessageId,
    pub idx: u32,
    pub state: NewState,
    /// The attempt that led here, recorded in the history.
    pub attempt: Option<AttemptRecord>,
    pub last_error: Option<String>,
    /// A delay notice has now been sent for this recipient.
    pub delay_notified: bool,
}

/// Queue depth of one class (or one destination and class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub class: Class,
    /// Recipient domain; empty in per-class totals.
    pub domain: String,
    /// Recipients waiting (queued, any next attempt).
    pub queued: u64,
    /// Of those, due now.
    pub ready: u64,
    pub held: u64,
    /// The earliest due time among ready recipients (unix seconds): how
    /// long delivery has been behind.
    pub ready_since: Option<i64>,
}

/// A persistent operator control (pause, rate), as set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    pub key: ControlKey,
    pub value: String,
    pub set_at: i64,
    pub actor: String,
}

/// An operator's action, recorded with who and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub message_id: Option<MessageId>,
    pub detail: String,
}

/// One finding of an invariant check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub invariant: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CheckReport {
    pub schema_version: u32,
    pub mailboxes: u64,
    pub messages: u64,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// True when no invariant is broken now (repaired findings are fine).
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity == Severity::Repaired)
    }
}

/// Who is here: local domains, users and their credentials, and whom a
/// user may send as.
pub trait Directory: Clone + Send + Sync + 'static {
    fn add_domain(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn remove_domain(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn list_domains(&self) -> impl Future<Output = Result<Vec<Domain>>> + Send;
    fn is_local_domain(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Create a user (its domain must exist) with an INBOX and the
    /// [`DEFAULT_MAILBOXES`], all subscribed.
    fn add_user(&self, address: &str, password_hash: &str) -> impl Future<Output = Result<()>> + Send;
    fn set_password(&self, address: &str, password_hash: &str) -> impl Future<Output = Result<()>> + Send;
    fn remove_user(&self, address: &str) -> impl Future<Output = Result<()>> + Send;
    fn list_users(&self) -> impl Future<Output = Result<Vec<User>>> + Send;
    fn get_user(&self, address: &str) -> impl Future<Output = Result<Option<User>>> + Send;
    /// A user's quota and usage; `None` for no such user.
    fn quota(&self, user: &str) -> impl Future<Output = Result<Option<Quota>>> + Send;
    /// Set a user's limits (`None`: no limit); `NotFound` for no such user.
    fn set_quota(
        &self,
        user: &str,
        bytes: Option<u64>,
        messages: Option<u64>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Remember whether the user was told they near their quota.
    fn set_quota_warned(&self, user: &str, warned: bool) -> impl Future<Output = Result<()>> + Send;

    /// The addresses `owner` may send as besides its own (RFC 6409 §6.1):
    /// exact addresses, or `@domain` for a whole domain.
    fn sender_grants(&self, owner: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Let `owner` (a user) send as `address` (`user@domain` or `@domain`).
    fn grant_sender(&self, owner: &str, address: &str) -> impl Future<Output = Result<()>> + Send;
    /// Take a grant back; `NotFound` if there was none.
    fn revoke_sender(&self, owner: &str, address: &str) -> impl Future<Output = Result<()>> + Send;

    /// Classify a recipient address in one read: an alias, a local user,
    /// an unknown user of a local domain, or not ours.
    fn lookup_recipient(&self, address: &str) -> impl Future<Output = Result<Lookup>> + Send;

    /// Deliver `address` (of a local domain, or `@domain`) to `target` as
    /// well; `Exists` if it already was, `NotFound` if the domain is not local.
    fn add_alias(&self, address: &str, target: &str) -> impl Future<Output = Result<()>> + Send;
    /// Remove one target of an alias, or every target without one; how many
    /// went (`NotFound` if none).
    fn remove_alias(&self, address: &str, target: Option<&str>) -> impl Future<Output = Result<u64>> + Send;
    /// Every alias target, by address.
    fn list_aliases(&self) -> impl Future<Output = Result<Vec<Alias>>> + Send;
    /// The targets of one alias key (`user@domain` or `@domain`).
    fn alias_targets(&self, address: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// A secret shared by every node of this storage (64 hex digits), made
    /// on first use and never changed: the SRS key is `secret("srs")`.
    fn secret(&self, name: &str) -> impl Future<Output = Result<String>> + Send;
}

/// Users' mail: mailboxes, their messages, flags, UIDs and MODSEQs, and
/// the feed of changes IMAP sessions watch.
pub trait Mailstore: Clone + Send + Sync + 'static {
    fn list_mailboxes(&self, owner: &str) -> impl Future<Output = Result<Vec<Mailbox>>> + Send;
    /// The raw message stored under (mailbox, uid).
    fn fetch_message(&self, mailbox_id: i64, uid: u32) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Several raw messages of a mailbox in one read: (uid, message or its
    /// header) in UID order, for the UIDs that exist.
    fn fetch_messages(
        &self,
        mailbox_id: i64,
        uids: Vec<u32>,
        part: Part,
    ) -> impl Future<Output = Result<Vec<(u32, Vec<u8>)>>> + Send;

    // Names use `/` as the hierarchy separator.
    fn mailbox(&self, owner: &str, name: &str) -> impl Future<Output = Result<Option<Mailbox>>> + Send;
    /// Create a mailbox (and missing parents); `Exists` if it does.
    fn create_mailbox(
        &self,
        owner: &str,
        name: &str,
        special_use: Option<&str>,
    ) -> impl Future<Output = Result<Mailbox>> + Send;
    /// Delete a mailbox with its entries; INBOX is refused (`Invalid`).
    fn delete_mailbox(&self, owner: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Rename a mailbox and its children; INBOX's messages move instead.
    fn rename_mailbox(&self, owner: &str, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;
    fn subscribe(&self, owner: &str, name: &str, on: bool) -> impl Future<Output = Result<()>> + Send;
    /// (owner, name) of every mailbox whose name is not all ASCII: the only
    /// ones that may not be in Unicode NFC yet.
    fn non_ascii_mailboxes(&self) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;
    fn subscriptions(&self, owner: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The messages of a mailbox in UID order.
    fn mailbox_messages(&self, mailbox_id: i64) -> impl Future<Output = Result<Vec<MessageMeta>>> + Send;
    /// The messages with HIGHESTMODSEQ, or `None` if HIGHESTMODSEQ is still
    /// `known`: every change to a mailbox takes a new MODSEQ, so an IMAP
    /// session learns that nothing changed without listing the mailbox.
    fn mailbox_snapshot(
        &self,
        mailbox_id: i64,
        known: Option<u64>,
    ) -> impl Future<Output = Result<Option<MailboxSnapshot>>> + Send;
    /// Store a message into a mailbox (APPEND): its (UID, MODSEQ).
    fn append_message(
        &self,
        mailbox_id: i64,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: i64,
    ) -> impl Future<Output = Result<(u32, u64)>> + Send;
    /// Store several messages into a mailbox, all or none (MULTIAPPEND,
    /// RFC 3502 §6.3.11): each (data, flags, internal date) gets its (UID,
    /// MODSEQ), in order.
    fn append_messages(
        &self,
        mailbox_id: i64,
        messages: Vec<(Vec<u8>, Vec<String>, i64)>,
    ) -> impl Future<Output = Result<Vec<(u32, u64)>>> + Send;
    fn store_flags(
        &self,
        mailbox_id: i64,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> impl Future<Output = Result<FlagsChanged>> + Send;
    /// QRESYNC (RFC 7162 §3.2.5): the UIDs expunged from the mailbox after
    /// `modseq`, ascending. Expunges are remembered while the mailbox lives.
    fn vanished_since(&self, mailbox_id: i64, modseq: u64) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// `\Recent` (RFC 3501 §2.3.2): the first UID of the mailbox that no
    /// session has been told of as recent. With `claim_up_to`, the caller
    /// takes the messages from that UID up to `claim_up_to` as its own
    /// recent ones and the mark moves past them, atomically: two sessions
    /// never both get one. Without, it only reads. A mailbox that does not
    /// exist has none (`u32::MAX`).
    fn recent_from(&self, mailbox_id: i64, claim_up_to: Option<u32>) -> impl Future<Output = Result<u32>> + Send;
    /// Remove the messages flagged `\Deleted` (among `only`); their UIDs.
    fn expunge(&self, mailbox_id: i64, only: Option<Vec<u32>>) -> impl Future<Output = Result<Vec<u32>>> + Send;
    /// Copy (or move) messages; (source UID, new UID) pairs.
    fn copy_messages(
        &self,
        from: i64,
        uids: Vec<u32>,
        to: i64,
        moving: bool,
    ) -> impl Future<Output = Result<Vec<(u32, u32)>>> + Send;
    /// Changes to mailboxes, after they are committed.
    fn mailbox_changes(&self) -> ChangeFeed;
}

/// The spool: messages accepted with their placements, and the queue of
/// recipients the delivery engine claims and completes.
pub trait Spool: Clone + Send + Sync + 'static {
    /// Commit a message durably: body once, one mailbox entry (with a fresh
    /// UID) per local recipient, one queue entry per remote recipient.
    fn store_message(&self, msg: NewMessage) -> impl Future<Output = Result<Vec<Placement>>> + Send;
    /// Several messages in one transaction, all or none: what one SMTP
    /// transaction became (the relayed copy, each local user's copy, each
    /// forward).
    fn store_messages(&self, msgs: Vec<NewMessage>) -> impl Future<Output = Result<Vec<Placement>>> + Send;

    /// Lease up to `limit` recipients that are due (`queued`, next attempt
    /// at or before `now`, no live lease) until `lease_until`, in this
    /// handle's node's name, grouped into one job per message and
    /// destination domain, oldest first. Concurrent claimers (other nodes)
    /// never get the same recipient.
    fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
        filter: ClaimFilter,
    ) -> impl Future<Output = Result<Vec<DeliveryJob>>> + Send;
    /// The earliest next attempt among queued recipients, if any.
    fn next_due(&self) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// The raw stored message.
    fn message_body(&self, id: MessageId) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Apply recipient updates (releasing their leases) and store the
    /// notices they produced, in one transaction: a DSN exists if and only if
    /// the state change that caused it does.
    fn complete(
        &self,
        updates: Vec<RecipientUpdate>,
        notices: Vec<NewMessage>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Drop this node's leases (at its start: nothing of its own is in
    /// flight); other nodes' leases stay theirs until they run out.
    fn release_leases(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Extend to `until` the leases this node still holds on `held`
    /// (message, recipient index) — the recipients its engine has in hand:
    /// a live node keeps what it claimed however long its work waits in
    /// memory; a lease it let go of (its outcome could not be recorded)
    /// runs out, and so do a dead node's, for the others to take. Never
    /// waits on a recipient being recorded meanwhile. Returns the
    /// recipients renewed: those left out are no longer this node's to
    /// deliver (another node took them, or they are being recorded).
    fn renew_leases(
        &self,
        held: Vec<(MessageId, u32)>,
        until: i64,
    ) -> impl Future<Output = Result<Vec<(MessageId, u32)>>> + Send;
    /// Make every queued recipient of a destination and/or class due now
    /// (audited as `actor`'s).
    fn queue_retry_where(
        &self,
        domain: Option<&str>,
        class: Option<Class>,
        now: i64,
        actor: &str,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// A destination cannot be reached: postpone its queued recipients that
    /// are neither leased nor due later than `park.until` to `park.until`, in
    /// one statement, instead of trying each against a dead host. Recipients
    /// whose message was received at or before `park.keep_received_before`
    /// (those that would reach their delay warning or their expiry while
    /// parked) are left alone, so their notices go out at their own time.
    /// Not audited: it is the engine's routine, like a deferral.
    fn park_destination(&self, park: Park) -> impl Future<Output = Result<u64>> + Send;
    /// Queue depth per class (`by_domain` false) or per destination and class.
    fn queue_stats(&self, now: i64, by_domain: bool) -> impl Future<Output = Result<Vec<QueueStats>>> + Send;
    /// The operator's controls in force.
    fn controls(&self) -> impl Future<Output = Result<Vec<Control>>> + Send;
}

/// The operator's side: the queue as a list, actions on messages, controls,
/// the audit trail, and the checks of storage itself.
pub trait Admin: Clone + Send + Sync + 'static {
    /// Messages with at least one recipient not yet in a final state.
    fn queue_list(&self) -> impl Future<Output = Result<Vec<QueuedMessage>>> + Send;
    fn queue_show(&self, id: MessageId) -> impl Future<Output = Result<Option<QueuedMessage>>> + Send;
    /// Operator controls on queued recipients; `None` means every message.
    /// Each returns how many recipients changed and is audited.
    fn queue_retry(&self, id: Option<MessageId>, now: i64, actor: &str) -> impl Future<Output = Result<u64>> + Send;
    fn queue_hold(&self, id: MessageId, now: i64, actor: &str) -> impl Future<Output = Result<u64>> + Send;
    fn queue_release(&self, id: MessageId, now: i64, actor: &str) -> impl Future<Output = Result<u64>> + Send;
    /// Delete pending recipients; `notices` (a DSN, with `--bounce`) are stored in the same transaction.
    fn queue_delete(
        &self,
        id: MessageId,
        now: i64,
        actor: &str,
        notices: Vec<NewMessage>,
    ) -> impl Future<Output = Result<u64>> + Send;
    fn audit_log(&self, id: Option<MessageId>) -> impl Future<Output = Result<Vec<AuditRecord>>> + Send;
    /// Set (value Some) or clear (None) a control; audited.
    fn set_control(
        &self,
        key: &ControlKey,
        value: Option<&str>,
        now: i64,
        actor: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Write (durably) a tiny record: readiness asks whether storage takes
    /// writes, not only reads.
    fn write_probe(&self, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// Verify the invariants; with `repair`, fix what can be fixed from the
    /// data and report it as "repaired".
    fn check(&self, repair: bool) -> impl Future<Output = Result<CheckReport>> + Send;
    /// One round of housekeeping (see [`lifecycle`]), going on `from` where
    /// the last one stopped: the queue counters folded; the queue records of
    /// messages whose every outcome is older than `finished_before` removed,
    /// and with them the messages no mailbox holds; a batch of messages
    /// looked at for what nothing needs any more. Safe on any node at any
    /// time.
    fn housekeeping(
        &self,
        now: i64,
        finished_before: i64,
        from: Sweep,
    ) -> impl Future<Output = Result<Housekeeping>> + Send;
}

/// One node's entry in the shared list of nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    pub name: String,
    pub region: String,
    /// The facteur version it runs.
    pub version: String,
    /// When it last started (unix seconds).
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// When it stopped cleanly; `None` while it runs (or died).
    pub stopped_at: Option<i64>,
    /// Its delivery engine runs (it takes a share of each destination).
    pub delivers: bool,
}

/// What a node is doing, as the others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its heartbeat is recent.
    Up,
    /// It missed its heartbeats without saying goodbye: it died, or cannot
    /// reach storage.
    Down,
    /// It stopped cleanly.
    Stopped,
}

impl NodeRecord {
    /// Its state at `now`, if a heartbeat older than `down_after` seconds
    /// means it is gone.
    pub fn state(&self, now: i64, down_after: i64) -> NodeState {
        match self.stopped_at {
            Some(_) => NodeState::Stopped,
            None if now - self.heartbeat_at > down_after => NodeState::Down,
            None => NodeState::Up,
        }
    }
}

/// The nodes sharing this storage. A handle speaks for one node, named
/// when it is opened; the leases its claims take are in that name.
pub trait Cluster: Clone + Send + Sync + 'static {
    /// The node this handle speaks for.
    fn node(&self) -> &str;
    /// This node starts (or starts again): registered, its stop cleared;
    /// `delivers` when its delivery engine runs.
    fn join(&self, region: &str, version: &str, delivers: bool, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// This node is alive at `now`.
    fn heartbeat(&self, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// This node stops cleanly.
    fn leave(&self, now: i64) -> impl Future<Output = Result<()>> + Send;
    /// Every node that ever joined, by name.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeRecord>>> + Send;
}

/// Incidents and their timelines (see [`incidents`]).
pub trait Incidents: Clone + Send + Sync + 'static {
    /// Apply `change` (see [`incidents::plan`]) in one transaction; the
    /// incident's id, or `None` when the change touched nothing.
    fn incident_change(&self, change: IncidentChange) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Open incidents and those resolved at or after `since`, newest
    /// first, each with its timeline.
    fn incidents(&self, since: i64) -> impl Future<Output = Result<Vec<Incident>>> + Send;
    fn incident(&self, id: i64) -> impl Future<Output = Result<Option<Incident>>> + Send;
}

/// The six roles and the shared vocabulary, for code that uses a backend
/// whole (the binary, tests).
pub mod prelude {
    pub use crate::{Admin, Cluster, Directory, Incidents, Mailstore, Spool, Store};
    pub use facteur_types::{Class, Clock, MessageId, Notify, Outcome, RecipientStatus};
}

/// Every role: what one backend type implements.
pub trait Store: Directory + Mailstore + Spool + Admin + Cluster + Incidents {}

impl<T: Directory + Mailstore + Spool + Admin + Cluster + Incidents> Store for T {}

/// What [`Spool::park_destination`] postpones, and until when.
#[derive(Debug, Clone)]
pub struct Park {
    pub domain: String,
    pub now: i64,
    pub until: i64,
    /// Recorded as each parked recipient's last error.
    pub error: String,
    /// Recipients not yet warned whose message was received at or before
    /// this instant are not parked (they reach the delay warning meanwhile).
    pub warn_received_before: i64,
    /// Messages received at or before this instant are not parked (they
    /// expire meanwhile).
    pub expire_received_before: i64,
}

/// May `user` use `address` as its sender (RFC 6409 §6.1)? Its own
/// address, the same with a `+detail` (plus addressing), or one of its
/// `grants` (an address, or `@domain` for all of a domain). Case does not
/// matter.
pub fn may_send_as(user: &str, grants: &[String], address: &str) -> bool {
    let address = canonical_address(address);
    let user = canonical_address(user);
    let undetailed = match address.split_once('@') {
        Some((local, domain)) => match local.split_once('+') {
            Some((base, _)) => format!("{base}@{domain}"),
            None => address.clone(),
        },
        None => address.clone(),
    };
    if address == user || undetailed == user {
        return true;
    }
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    grants
        .iter()
        .map(|g| canonical_address(g))
        .any(|g| g == address || g == undetailed || g.strip_prefix('@').is_some_and(|d| !d.is_empty() && d == domain))
}

pub use invariants::canonical_address;

#[cfg(test)]
mod tests {
    #[test]
    fn senders_a_user_may_use() {
        let grants = vec!["sales@example.test".to_string(), "@alias.test".to_string()];
        let ok = |a: &str| super::may_send_as("alice@example.test", &grants, a);
        assert!(ok("alice@example.test"));
        assert!(ok("Alice@Example.TEST"), "case does not matter");
        assert!(ok("alice+lists@example.test"), "plus addressing");
        assert!(ok("sales@example.test") && ok("SALES+x@example.test"), "a granted address");
        assert!(ok("anyone@alias.test"), "a granted domain");
        assert!(!ok("bob@example.test"));
        assert!(!ok("ceo@victim.example"));
        assert!(!ok("anyone@sub.alias.test"), "a domain grant is that domain only");
        assert!(!ok("alice@example.test.evil"), "no suffix games");
        assert!(
            !super::may_send_as("alice@example.test", &["@".to_string()], "x@y.test"),
            "an empty domain grant is nothing"
        );
    }
}
