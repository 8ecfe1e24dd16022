//! One type for "whichever backend the configuration names", so the binary
//! is written once: every role delegates to the backend inside.

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{
    Admin, Alias, AuditRecord, ChangeFeed, CheckReport, ClaimFilter, Class, Cluster, Control, ControlKey, DeliveryJob,
    Directory, Domain, FlagOp, FlagsChanged, Housekeeping, Incident, IncidentChange, Incidents, Lookup, Mailbox,
    MailboxSnapshot, Mailstore, MessageId, MessageMeta, NewMessage, NodeRecord, Park, Part, Placement, QueueStats,
    QueuedMessage, Quota, RecipientUpdate, Result, Spool, Sweep, User,
};

#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// "sqlite" or "postgres", for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

impl AnyStore {
    /// Where the data is, for people: the SQLite file, or PostgreSQL's
    /// host, database and schema (never a password).
    pub fn location(&self) -> String {
        match self {
            AnyStore::Sqlite(s) => s.path().display().to_string(),
            AnyStore::Postgres(s) => s.location(),
        }
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> Self {
        AnyStore::Sqlite(s)
    }
}

impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> Self {
        AnyStore::Postgres(s)
    }
}

/// `async fn name(&self, args) -> R` for each method, forwarded.
macro_rules! forward {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    AnyStore::Sqlite(s) => s.$name($($arg),*).await,
                    AnyStore::Postgres(s) => s.$name($($arg),*).await,
                }
            }
        )*
    };
}

impl Directory for AnyStore {
    forward! {
        fn add_domain(&self, name: &str) -> Result<()>;
        fn remove_domain(&self, name: &str) -> Result<()>;
        fn list_domains(&self) -> Result<Vec<Domain>>;
        fn is_local_domain(&self, name: &str) -> Result<bool>;
        fn add_user(&self, address: &str, password_hash: &str) -> Result<()>;
        fn set_password(&self, address: &str, password_hash: &str) -> Result<()>;
        fn remove_user(&self, address: &str) -> Result<()>;
        fn list_users(&self) -> Result<Vec<User>>;
        fn get_user(&self, address: &str) -> Result<Option<User>>;
        fn quota(&self, user: &str) -> Result<Option<Quota>>;
        fn set_quota(&self, user: &str, bytes: Option<u64>, messages: Option<u64>) -> Result<()>;
        fn set_quota_warned(&self, user: &str, warned: bool) -> Result<()>;
        fn sender_grants(&self, owner: &str) -> Result<Vec<String>>;
        fn grant_sender(&self, owner: &str, address: &str) -> Result<()>;
        fn revoke_sender(&self, owner: &str, address: &str) -> Result<()>;
        fn lookup_recipient(&self, address: &str) -> Result<Lookup>;
        fn add_alias(&self, address: &str, target: &str) -> Result<()>;
        fn remove_alias(&self, address: &str, target: Option<&str>) -> Result<u64>;
        fn list_aliases(&self) -> Result<Vec<Alias>>;
        fn alias_targets(&self, address: &str) -> Result<Vec<String>>;
        fn secret(&self, name: &str) -> Result<String>;
    }
}

impl Mailstore for AnyStore {
    forward! {
        fn list_mailboxes(&self, owner: &str) -> Result<Vec<Mailbox>>;
        fn fetch_message(&self, mailbox_id: i64, uid: u32) -> Result<Option<Vec<u8>>>;
        fn fetch_messages(&self, mailbox_id: i64, uids: Vec<u32>, part: Part) -> Result<Vec<(u32, Vec<u8>)>>;
        fn mailbox(&self, owner: &str, name: &str) -> Result<Option<Mailbox>>;
        fn create_mailbox(&self, owner: &str, name: &str, special_use: Option<&str>) -> Result<Mailbox>;
        fn delete_mailbox(&self, owner: &str, name: &str) -> Result<()>;
        fn rename_mailbox(&self, owner: &str, from: &str, to: &str) -> Result<()>;
        fn subscribe(&self, owner: &str, name: &str, on: bool) -> Result<()>;
        fn non_ascii_mailboxes(&self) -> Result<Vec<(String, String)>>;
        fn subscriptions(&self, owner: &str) -> Result<Vec<String>>;
        fn mailbox_messages(&self, mailbox_id: i64) -> Result<Vec<MessageMeta>>;
        fn mailbox_snapshot(&self, mailbox_id: i64, known: Option<u64>) -> Result<Option<MailboxSnapshot>>;
        fn append_message(&self, mailbox_id: i64, data: Vec<u8>, flags: Vec<String>, internal_date: i64) -> Result<(u32, u64)>;
        fn append_messages(&self, mailbox_id: i64, messages: Vec<(Vec<u8>, Vec<String>, i64)>) -> Result<Vec<(u32, u64)>>;
        fn store_flags(&self, mailbox_id: i64, uids: Vec<u32>, op: FlagOp, flags: Vec<String>, unchanged_since: Option<u64>) -> Result<FlagsChanged>;
        fn vanished_since(&self, mailbox_id: i64, modseq: u64) -> Result<Vec<u32>>;
        fn recent_from(&self, mailbox_id: i64, claim_up_to: Option<u32>) -> Result<u32>;
        fn expunge(&self, mailbox_id: i64, only: Option<Vec<u32>>) -> Result<Vec<u32>>;
        fn copy_messages(&self, from: i64, uids: Vec<u32>, to: i64, moving: bool) -> Result<Vec<(u32, u32)>>;
    }

    fn mailbox_changes(&self) -> ChangeFeed {
        match self {
            AnyStore::Sqlite(s) => s.mailbox_changes(),
            AnyStore::Postgres(s) => s.mailbox_changes(),
        }
    }
}

impl Spool for AnyStore {
    forward! {
        fn store_message(&self, msg: NewMessage) -> Result<Vec<Placement>>;
        fn store_messages(&self, msgs: Vec<NewMessage>) -> Result<Vec<Placement>>;
        fn claim_due(&self, now: i64, lease_until: i64, limit: usize, filter: ClaimFilter) -> Result<Vec<DeliveryJob>>;
        fn next_due(&self) -> Result<Option<i64>>;
        fn message_body(&self, id: MessageId) -> Result<Option<Vec<u8>>>;
        fn complete(&self, updates: Vec<RecipientUpdate>, notices: Vec<NewMessage>) -> Result<()>;
        fn release_leases(&self) -> Result<u64>;
        fn renew_leases(&self, held: Vec<(MessageId, u32)>, until: i64) -> Result<Vec<(MessageId, u32)>>;
        fn queue_retry_where(&self, domain: Option<&str>, class: Option<Class>, now: i64, actor: &str) -> Result<u64>;
        fn park_destination(&self, park: Park) -> Result<u64>;
        fn queue_stats(&self, now: i64, by_domain: bool) -> Result<Vec<QueueStats>>;
        fn controls(&self) -> Result<Vec<Control>>;
    }
}

impl Admin for AnyStore {
    forward! {
        fn queue_list(&self) -> Result<Vec<QueuedMessage>>;
        fn queue_show(&self, id: MessageId) -> Result<Option<QueuedMessage>>;
        fn queue_retry(&self, id: Option<MessageId>, now: i64, actor: &str) -> Result<u64>;
        fn queue_hold(&self, id: MessageId, now: i64, actor: &str) -> Result<u64>;
        fn queue_release(&self, id: MessageId, now: i64, actor: &str) -> Result<u64>;
        fn queue_delete(&self, id: MessageId, now: i64, actor: &str, notices: Vec<NewMessage>) -> Result<u64>;
        fn audit_log(&self, id: Option<MessageId>) -> Result<Vec<AuditRecord>>;
        fn set_control(&self, key: &ControlKey, value: Option<&str>, now: i64, actor: &str) -> Result<()>;
        fn write_probe(&self, now: i64) -> Result<()>;
        fn check(&self, repair: bool) -> Result<CheckReport>;
        fn housekeeping(&self, now: i64, finished_before: i64, from: Sweep) -> Result<Housekeeping>;
    }
}

impl Cluster for AnyStore {
    fn node(&self) -> &str {
        match self {
            AnyStore::Sqlite(s) => s.node(),
            AnyStore::Postgres(s) => s.node(),
        }
    }

    forward! {
        fn join(&self, region: &str, version: &str, delivers: bool, now: i64) -> Result<()>;
        fn heartbeat(&self, now: i64) -> Result<()>;
        fn leave(&self, now: i64) -> Result<()>;
        fn nodes(&self) -> Result<Vec<NodeRecord>>;
    }
}

impl Incidents for AnyStore {
    forward! {
        fn incident_change(&self, change: IncidentChange) -> Result<Option<i64>>;
        fn incidents(&self, since: i64) -> Result<Vec<Incident>>;
        fn incident(&self, id: i64) -> Result<Option<Incident>>;
    }
}
