//! One IMAP session: the state machine of RFC 9051 §3 (not authenticated,
//! authenticated, selected, logout) and every command's behaviour, over
//! decoded commands in and response bytes out. The network, TLS and the
//! wait in IDLE are the caller's (`server.rs`); storage is the `Store`.
//!
//! IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) clients are served by the
//! same code: the differences that matter to clients in the field (RECENT in
//! SELECT, LSUB) are answered for both.

use std::num::NonZeroU32;
use std::sync::Arc;

use facteur_net::Attempt;
use facteur_store::{Directory, FlagOp, Mailstore, MessageMeta, Part, StoreError};
use facteur_types::fault::{self, Fault};
use facteur_types::signal::{self, Signal};
use imap_codec::ResponseCodec;
use imap_codec::encode::{Encoder, Fragment};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody, SelectParameter};
use imap_codec::imap_types::core::{AString, IString, Literal, LiteralMode, NString, NString8, Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::{Literal8, LiteralOrLiteral8};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::quota::QuotaGet;
use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::extended::{CatPart, Extension, ListOptions, SearchReturn};
use crate::url::MessageUrl;
use crate::view::{MAX_SEARCH_CONTEXTS, SearchContext, Update, View};
use crate::{mime, names, notify, quota, search, seqset, thread, utf7};

/// What a session needs to know about its server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// Allow LOGIN and AUTHENTICATE without TLS (loopback development only).
    pub plaintext_auth: bool,
    /// STARTTLS is offered (a certificate is configured).
    pub starttls: bool,
    /// The largest message APPEND takes (`imap.max_literal`), announced as
    /// APPENDLIMIT (RFC 7889).
    pub append_limit: u32,
}

/// What the connection must do after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Command,
    /// Start TLS now (the tagged OK is in the output), then read commands.
    StartTls,
    /// Read one line of SASL data (AUTHENTICATE continuation).
    AuthData,
    /// IDLE: push updates until the client sends DONE.
    Idle,
    /// Send the output and close.
    Logout,
    /// A FETCH has more to send: send the output, then call
    /// [`Session::resume`] (the response goes out in bounded pieces).
    More,
}

enum Outcome {
    Ok(Option<String>, String),
    No(Option<&'static str>, String),
    /// `NO [BADURL url] why` (RFC 4469 §5): a CATENATE URL not taken.
    BadUrl(String, String),
    Bad(String),
}

impl Outcome {
    fn ok(text: &str) -> Outcome {
        Outcome::Ok(None, text.to_string())
    }
}

/// Open sessions per user, shared by a server's connections.
#[derive(Debug, Default)]
pub struct UserSlots {
    max: std::sync::atomic::AtomicUsize,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl UserSlots {
    pub fn new(max: usize) -> Self {
        UserSlots { max: max.into(), open: Default::default() }
    }

    /// A new limit (configuration reload); sessions open stay open.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    fn acquire(&self, user: &str) -> bool {
        let Ok(mut open) = self.open.lock() else { return true };
        let n = open.entry(user.to_string()).or_insert(0);
        if *n >= self.max.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, user: &str) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(user);
            }
        }
    }
}

pub struct Session<S> {
    slots: Option<Arc<UserSlots>>,
    store: S,
    cfg: Arc<SessionConfig>,
    tls: bool,
    user: Option<String>,
    selected: Option<View>,
    condstore: bool,
    /// ENABLE IMAP4rev2: SEARCH answers with ESEARCH (RFC 9051 §7.3.4).
    rev2: bool,
    /// ENABLE QRESYNC (RFC 7162 §3.2.3): expunges are told as VANISHED.
    qresync: bool,
    /// Options of the extended form of the command being handled.
    extension: Option<Extension>,
    /// AUTHENTICATE waiting for its data line.
    auth_tag: Option<Tag<'static>>,
    idle_tag: Option<Tag<'static>>,
    /// Failed logins are throttled with SMTP's and POP3's, by the client's
    /// address (and the listener's name, for the log).
    auth: Option<(Arc<facteur_net::AuthThrottle>, &'static str, std::net::SocketAddr)>,
    /// The client's address is banned for failed logins: the server says
    /// BYE and closes.
    pub banned: bool,
    /// The FETCH being sent, between two pieces (`Next::More`).
    pending: Option<PendingFetch>,
    /// What NOTIFY SET asked to be pushed (RFC 5465); `None` before it and
    /// after NOTIFY NONE.
    notify: Option<NotifyState>,
    out: Vec<u8>,
}

/// A session's NOTIFY (RFC 5465): the events to push as they happen.
struct NotifyState {
    /// Message events for the selected mailbox (`selected` or
    /// `selected-delayed`); `None` when not asked (§3.1: as `SELECTED
    /// NONE`), and then the mailbox is told of changes at commands only.
    selected: Option<SelectedEvents>,
    /// The groups for other mailboxes, in the order given.
    others: Vec<notify::Group>,
    /// The mailboxes those groups give message events for: id and name,
    /// read at NOTIFY SET and whenever names change (the first group
    /// covering a mailbox decides).
    watched: std::collections::HashMap<i64, String>,
    /// The owner's mailboxes and subscriptions as the client knows them,
    /// when a group asks for MailboxName or SubscriptionChange.
    names: Option<Names>,
}

/// The owner's mailboxes (id → name) and subscribed names.
#[derive(Clone, Default)]
struct Names {
    boxes: std::collections::BTreeMap<i64, String>,
    subscribed: std::collections::BTreeSet<String>,
}

struct SelectedEvents {
    /// `selected-delayed`: expunges wait for a command that may tell them.
    delayed: bool,
    /// MessageNew's FETCH items, sent after the EXISTS for each new message.
    fetch: Vec<MessageDataItemName<'static>>,
}

/// A FETCH under way: what it asked and the messages still to send.
struct PendingFetch {
    tag: Tag<'static>,
    uids: Vec<u32>,
    next: usize,
    names: Vec<MessageDataItemName<'static>>,
    changed_since: Option<u64>,
    /// Messages this FETCH marked \Seen: their FLAGS go out with them.
    seen_now: std::collections::HashSet<u32>,
}

/// One piece of a FETCH reads at most this many messages, and stops
/// after this many octets of them (at least one message): a session's
/// memory stays bounded whatever the size of the mailbox fetched.
const FETCH_PIECE_MESSAGES: usize = 256;
const FETCH_PIECE_OCTETS: u64 = 4 << 20;

fn store_error(e: &StoreError) -> Outcome {
    match e {
        StoreError::NotFound(what) => Outcome::No(Some("NONEXISTENT"), format!("no such {what}")),
        StoreError::Exists(what) => Outcome::No(Some("ALREADYEXISTS"), format!("{what} already exists")),
        StoreError::Invalid(why) => Outcome::No(Some("CANNOT"), why.clone()),
        other => {
            tracing::error!(error = %other, "IMAP command failed in storage");
            Outcome::No(Some("SERVERBUG"), "temporary storage failure, try again".into())
        }
    }
}

/// A refusal for lack of room (RFC 9208 §4.3.1: OVERQUOTA in the tagged NO).
fn over_quota(what: &str) -> Outcome {
    Outcome::No(Some("OVERQUOTA"), format!("{what} in your quota; delete some mail first"))
}

/// A string for the wire: quoted when it can be, else a literal.
pub(crate) fn quote(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("{{{}}}\r\n{s}", s.len())
    }
}

/// RFC 9051 §6.4.4 (and RFC 5256 §3 for SORT and THREAD): US-ASCII and
/// UTF-8 (strings are compared as UTF-8); any other charset is refused
/// with the list.
fn unsupported_charset(charset: Option<&str>) -> Option<Outcome> {
    let cs = charset?.to_ascii_uppercase();
    (cs != "UTF-8" && cs != "US-ASCII")
        .then(|| Outcome::No(Some("BADCHARSET (UTF-8 US-ASCII)"), format!("charset {cs} is not supported")))
}

/// `SELECT … (QRESYNC (uidvalidity modseq [known-uids]))` (RFC 7162 §3.2.5).
struct Resync {
    uidvalidity: u32,
    modseq: u64,
    known_uids: Option<SequenceSet>,
}

/// Most messages one MULTIAPPEND may carry (each costs a storage write in
/// the one transaction; the command's size is bounded too).
const MAX_MULTIAPPEND: usize = 1000;

/// A message of an APPEND: its parts (one literal, or CATENATE's), flags
/// and internal date.
type NewMessage = (Vec<CatPart>, Vec<String>, i64);

/// A MULTIAPPEND message after the first: its flags (system flags or
/// keywords) and date-time (RFC 9051 §9 `date-time`) checked as the codec
/// checks the first's; a bad one is BAD for the whole command.
fn append_part(part: crate::extended::AppendPart, now: i64) -> Result<NewMessage, Outcome> {
    let mut flags = Vec::new();
    for f in &part.flags {
        match Flag::try_from(f.as_str()) {
            // `\Recent` and other flags that are not system flags.
            Ok(Flag::Extension(_)) => return Err(Outcome::Bad(format!("{f} cannot be set by APPEND"))),
            Ok(flag) => flags.push(flag_string(&flag)),
            Err(_) => return Err(Outcome::Bad(format!("{f:?} is not a flag"))),
        }
    }
    let date = match &part.date {
        Some(d) => chrono::DateTime::parse_from_str(d.trim_start(), "%d-%b-%Y %H:%M:%S %z")
            .map_err(|_| Outcome::Bad(format!("{d:?} is not an IMAP date-time")))?
            .timestamp(),
        None => now,
    };
    Ok((part.data, flags, date))
}

/// FETCH items as a FETCH command writes them between its parentheses,
/// read by FETCH's own grammar (the codec's): for NOTIFY's MessageNew
/// (RFC 5465 §5.2) and an IMAP URL's section.
fn fetch_names(items: &str) -> Option<Vec<MessageDataItemName<'static>>> {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    if items.contains(['\r', '\n', '{']) {
        return None;
    }
    let line = format!("f UID FETCH 1 ({items})\r\n");
    let (rest, command) = CommandCodec::new().decode(line.as_bytes()).ok()?;
    let CommandBody::Fetch { macro_or_item_names, .. } = command.body else { return None };
    if !rest.is_empty() {
        return None;
    }
    Some(match macro_or_item_names {
        MacroOrMessageDataItemNames::Macro(m) => m.expand().into_iter().map(IntoStatic::into_static).collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(n) => n.into_iter().map(IntoStatic::into_static).collect(),
    })
}

/// MessageNew's FETCH items, UID first if not named (RFC 5465 §5.2).
fn fetch_items(items: &str) -> Option<Vec<MessageDataItemName<'static>>> {
    let mut names = fetch_names(items)?;
    if !names.contains(&MessageDataItemName::Uid) {
        names.insert(0, MessageDataItemName::Uid);
    }
    Some(names)
}

/// An IMAP URL's section (RFC 5092 `enc-section`, decoded) as FETCH's
/// grammar reads it between `BODY[` and `]` (RFC 9051 §6.4.5).
fn fetch_section(section: &str) -> Option<imap_codec::imap_types::fetch::Section<'static>> {
    if section.contains(['[', ']']) {
        return None;
    }
    match fetch_names(&format!("BODY.PEEK[{section}]"))?.as_slice() {
        [MessageDataItemName::BodyExt { section: Some(sec), partial: None, .. }] => Some(sec.clone()),
        _ => None,
    }
}

/// The special-use attributes of RFC 6154 §2 (and \Important, RFC 8457).
const SPECIAL_USES: [&str; 8] =
    ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important"];

/// The ESEARCH answer of `SORT RETURN (...)` (RFC 5267 §3.2): MIN and MAX
/// are the first and last in the sort order, ALL the whole order (a range
/// only where it ascends by one, so the order survives), COUNT the number.
fn esort(head: String, r: &SearchReturn, order: &[u32]) -> String {
    let mut line = head;
    if let (true, Some(first)) = (r.min, order.first()) {
        line.push_str(&format!(" MIN {first}"));
    }
    if let (true, Some(last)) = (r.max, order.last()) {
        line.push_str(&format!(" MAX {last}"));
    }
    if r.all && !order.is_empty() {
        line.push_str(&format!(" ALL {}", ordered_set(order)));
    }
    if let Some((low, high)) = r.partial {
        line.push_str(&partial_item(low, high, order, ordered_set));
    }
    if r.count {
        line.push_str(&format!(" COUNT {}", order.len()));
    }
    line
}

/// Numbers in the order given, with a range only where they ascend by one
/// (RFC 5267 §3.2).
fn ordered_set(order: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && order[j + 1] == order[j].wrapping_add(1) {
            j += 1;
        }
        parts.push(if j > i { format!("{}:{}", order[i], order[j]) } else { order[i].to_string() });
        i = j + 1;
    }
    parts.join(",")
}

/// ` PARTIAL (low:high set)` (RFC 5267 §4.4): the results at those
/// positions, `NIL` when there are none.
fn partial_item(low: u32, high: u32, results: &[u32], set: fn(&[u32]) -> String) -> String {
    let from = (low as usize - 1).min(results.len());
    let to = (high as usize).min(results.len());
    let within = &results[from..to];
    let shown = if within.is_empty() { "NIL".to_string() } else { set(within) };
    format!(" PARTIAL ({low}:{high} {shown})")
}

/// `* ESEARCH (TAG "t") [UID] ADDTO|REMOVEFROM (0 set)` (RFC 5267 §4.3.3–4):
/// a search context's result grew or shrank; position 0 as for every
/// SEARCH context (its results are in mailbox order).
fn context_line(ctx: &SearchContext, item: &str, ids: &mut [u32]) -> String {
    ids.sort_unstable();
    let uid = if ctx.uid { " UID" } else { "" };
    format!("* ESEARCH (TAG {}){uid} {item} (0 {})", quote(&ctx.tag), seqset::compress(ids))
}

/// Sort keys by UID.
type Summaries = std::collections::HashMap<u32, std::sync::Arc<thread::Summary>>;

/// Take the messages `gone` (UID, number to tell) out of a SORT context's
/// result: (position, number) pairs, each position as the result stood
/// when that message was removed (RFC 5267 §4.3.4).
fn remove_sorted(ctx: &mut SearchContext, gone: impl Iterator<Item = (u32, u32)>) -> Vec<(u32, u32)> {
    let mut pairs = Vec::new();
    for (u, seq) in gone {
        if let Some(at) = ctx.result.iter().position(|r| *r == u) {
            ctx.result.remove(at);
            pairs.push((at as u32 + 1, if ctx.uid { u } else { seq }));
        }
    }
    pairs
}

/// `* ESEARCH (TAG "t") [UID] ADDTO|REMOVEFROM (pos n pos n …)` for a SORT
/// context (RFC 5267 §4.3.3–4): pairs in the order they apply.
fn sorted_context_line(ctx: &SearchContext, item: &str, pairs: &[(u32, u32)]) -> String {
    let uid = if ctx.uid { " UID" } else { "" };
    let pairs: Vec<String> = pairs.iter().map(|(at, n)| format!("{at} {n}")).collect();
    format!("* ESEARCH (TAG {}){uid} {item} ({})", quote(&ctx.tag), pairs.join(" "))
}

/// What SORT or THREAD does with the messages a search found.
enum Ordering {
    Sort(Vec<SortCriterion>),
    Thread(ThreadingAlgorithm<'static>),
}

fn flag_string(f: &Flag) -> String {
    f.to_string()
}

/// FLAGS as the untagged lines of STORE and NOOP write them.
fn flags_text(flags: &[String], recent: bool) -> String {
    let mut text = flags.join(" ");
    if recent {
        text.push_str(if text.is_empty() { "\\Recent" } else { " \\Recent" });
    }
    text
}

fn system_or_keyword(s: &str) -> Option<Flag<'static>> {
    Flag::try_from(s).ok().map(IntoStatic::into_static)
}

/// FLAGS of a message as FETCH shows it, `\Recent` added when the
/// message is recent for the session (RFC 3501 §2.3.2).
fn fetch_flags(flags: &[String], recent: bool) -> Vec<FlagFetch<'static>> {
    let mut out: Vec<FlagFetch<'static>> =
        flags.iter().filter_map(|f| system_or_keyword(f)).map(FlagFetch::Flag).collect();
    if recent {
        out.push(FlagFetch::Recent);
    }
    out
}

/// What of the stored message a FETCH item needs: nothing (it is in the
/// message list), the header only (the fields and ENVELOPE a client lists
/// messages with), or the whole message. `None` < `Header` < `Whole`.
fn needs(name: &MessageDataItemName<'_>) -> Option<Part> {
    use imap_codec::imap_types::fetch::Section;
    match name {
        MessageDataItemName::Uid
        | MessageDataItemName::Flags
        | MessageDataItemName::InternalDate
        | MessageDataItemName::Rfc822Size
        | MessageDataItemName::ModSeq => None,
        MessageDataItemName::Rfc822Header | MessageDataItemName::Envelope => Some(Part::Header),
        MessageDataItemName::BodyExt {
            section: Some(Section::Header(None) | Section::HeaderFields(None, _) | Section::HeaderFieldsNot(None, _)),
            ..
        } => Some(Part::Header),
        _ => Some(Part::Whole),
    }
}

fn imap_date(unix: i64) -> Option<DateTime> {
    let dt = chrono::DateTime::from_timestamp(unix, 0)?.fixed_offset();
    DateTime::try_from(dt).ok()
}

fn literal(data: Vec<u8>) -> NString<'static> {
    let data = if data.contains(&0) { data.into_iter().map(|b| if b == 0 { b' ' } else { b }).collect() } else { data };
    match Literal::try_from(data) {
        Ok(l) => NString(Some(IString::Literal(l))),
        Err(_) => NString(None),
    }
}

impl<S: Directory + Mailstore> Session<S> {
    pub fn new(store: S, cfg: Arc<SessionConfig>, tls: bool) -> Self {
        Session {
            slots: None,
            store,
            cfg,
            tls,
            user: None,
            selected: None,
            condstore: false,
            rev2: false,
            qresync: false,
            extension: None,
            auth_tag: None,
            idle_tag: None,
            auth: None,
            banned: false,
            pending: None,
            notify: None,
            out: Vec::new(),
        }
    }

    /// Limit this user's concurrent sessions with `slots`.
    pub fn with_slots(mut self, slots: Arc<UserSlots>) -> Self {
        self.slots = Some(slots);
        self
    }

    /// Throttle this session's logins with `throttle`, as from `client` on `listener`.
    pub fn with_auth(
        mut self,
        throttle: Arc<facteur_net::AuthThrottle>,
        listener: &'static str,
        client: std::net::SocketAddr,
    ) -> Self {
        self.auth = Some((throttle, listener, client));
        self
    }

    /// The greeting (RFC 9051 §7.1.1), with capabilities.
    pub fn greeting(&mut self) {
        let caps = self.capabilities();
        self.line(&format!("* OK [CAPABILITY {caps}] {} facteur IMAP4rev2 ready", self.cfg.hostname));
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn selected_mailbox(&self) -> Option<i64> {
        self.selected.as_ref().map(|v| v.mailbox_id)
    }

    /// TLS is now on (after STARTTLS).
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    fn line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn capabilities(&self) -> String {
        let mut c = vec!["IMAP4rev2", "IMAP4rev1"];
        if self.user.is_none() {
            if self.cfg.starttls && !self.tls {
                c.push("STARTTLS");
            }
            if self.tls || self.cfg.plaintext_auth {
                c.push("AUTH=PLAIN");
                c.push("SASL-IR");
            } else {
                c.push("LOGINDISABLED");
            }
        }
        c.extend([
            "LITERAL+",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "MULTIAPPEND",
            "CATENATE",
            "NOTIFY",
            "ID",
            "CONDSTORE",
            "QRESYNC",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "CHILDREN",
            "BINARY",
            // In IMAP4rev2, named for IMAP4rev1 clients that look for them.
            "ESEARCH",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            "SEARCHRES",
            // RFC 5256 §1, RFC 5957 §3.
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            // RFC 5267 §4: PARTIAL and UPDATE for SEARCH and SORT.
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            // RFC 9208 §1, §3.1.1: QUOTA and each resource offered; no
            // QUOTASET, as SETQUOTA is refused (§4.1.3).
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
        ]);
        // RFC 7889 §2: one limit for every mailbox.
        format!("{} APPENDLIMIT={}", c.join(" "), self.cfg.append_limit)
    }

    fn finish(&mut self, tag: &Tag, outcome: Outcome) {
        let tag = tag.as_ref();
        match outcome {
            Outcome::Ok(Some(code), text) => self.line(&format!("{tag} OK [{code}] {text}")),
            Outcome::Ok(None, text) => self.line(&format!("{tag} OK {text}")),
            Outcome::No(Some(code), text) => self.line(&format!("{tag} NO [{code}] {text}")),
            Outcome::No(None, text) => self.line(&format!("{tag} NO {text}")),
            Outcome::BadUrl(url, why) => {
                // `url-resp-text` holds no `]`, CR or LF.
                let url: String = url.chars().filter(|c| !matches!(c, ']' | '\r' | '\n')).collect();
                self.line(&format!("{tag} NO [BADURL {url}] {why}"))
            }
            Outcome::Bad(text) => self.line(&format!("{tag} BAD {text}")),
        }
    }

    /// A command that did not parse: `BAD` with the tag if there is one.
    pub fn bad_syntax(&mut self, tag: Option<&str>, why: &str) {
        self.line(&format!("{} BAD {why}", tag.unwrap_or("*")));
    }

    /// A literal over the limit: `NO [TOOBIG]` for an APPEND (RFC 7889 §4),
    /// `BAD [TOOBIG]` for any other command.
    pub fn too_big(&mut self, tag: Option<&str>, append: bool, why: &str) {
        let kind = if append { "NO" } else { "BAD" };
        self.line(&format!("{} {kind} [TOOBIG] {why}", tag.unwrap_or("*")));
    }

    /// A command refused before it was decoded, with a response code.
    pub fn bad_syntax_code(&mut self, tag: Option<&str>, code: &str, why: &str) {
        self.line(&format!("{} BAD [{code}] {why}", tag.unwrap_or("*")));
    }

    /// Untagged BYE before closing (RFC 9051 §7.1.5).
    pub fn bye(&mut self, why: &str) {
        self.line(&format!("* BYE {why}"));
    }

    /// Something other than DONE during IDLE: IDLE ends with BAD.
    pub fn idle_bad(&mut self) {
        if let Some(tag) = self.idle_tag.take() {
            self.finish(&tag, Outcome::Bad("expected DONE to end IDLE".into()));
        }
    }

    fn data(&mut self, d: Data<'_>) {
        let bytes = ResponseCodec::new().encode(&Response::Data(d)).dump();
        self.out.extend_from_slice(&bytes);
    }

    /// A FETCH response whose BINARY items (in order) answer partial
    /// requests at `origins`: RFC 3516 §4.2 and RFC 9051 §7.5.2 give such an
    /// item as `BINARY[section]<origin>`, which the codec does not write, so
    /// the origin goes in before the item's literal8 (`~{n}`), which always
    /// ends the line fragment that names it.
    fn fetch_data(&mut self, seq: NonZeroU32, items: Vec1<MessageDataItem<'_>>, origins: &[Option<u32>]) {
        let response = Response::Data(Data::Fetch { seq, items });
        let mut origins = origins.iter();
        for fragment in ResponseCodec::new().encode(&response) {
            match fragment {
                Fragment::Line { mut data } => {
                    if let Some(at) = literal8_at_end(&data)
                        && let Some(Some(origin)) = origins.next()
                    {
                        data.splice(at..at, format!("<{origin}>").into_bytes());
                    }
                    self.out.extend_from_slice(&data);
                }
                Fragment::Literal { data, .. } => self.out.extend_from_slice(&data),
            }
        }
    }

    /// Handle one command in an extended form (see `extended`).
    pub async fn handle_extended(&mut self, cmd: Command<'static>, ext: Extension) -> Next {
        self.extension = Some(ext);
        let next = self.handle(cmd).await;
        self.extension = None;
        next
    }

    /// Handle one command; the output holds what to send.
    pub async fn handle(&mut self, cmd: Command<'static>) -> Next {
        let tag = cmd.tag.clone();
        use CommandBody as C;
        let names_cmd = matches!(
            cmd.body,
            C::Create { .. } | C::Delete { .. } | C::Rename { .. } | C::Subscribe { .. } | C::Unsubscribe { .. }
        );
        let (next, outcome) = self.dispatch(&tag, cmd.body).await;
        if names_cmd && matches!(outcome, Some(Outcome::Ok(..))) && self.notify.is_some() {
            // RFC 5465 §5: this session's own changes are not pushed back.
            self.names_changed(false).await;
        }
        if let Some(o) = outcome {
            self.finish(&tag, o);
        }
        next
    }

    async fn dispatch(&mut self, tag: &Tag<'static>, body: CommandBody<'static>) -> (Next, Option<Outcome>) {
        use CommandBody as C;
        let authed = self.user.is_some();
        let selected = self.selected.is_some();
        let wrong_state = |what: &str| (Next::Command, Some(Outcome::Bad(format!("{what} is not allowed now"))));
        match body {
            C::Capability => {
                let caps = self.capabilities();
                self.line(&format!("* CAPABILITY {caps}"));
                (Next::Command, Some(Outcome::ok("CAPABILITY completed")))
            }
            // NOTIFY (RFC 5465) and CANCELUPDATE (RFC 5267 §4.3.5) come as NOOP.
            C::Noop => match self.extension.take() {
                Some(Extension::Notify(n)) => (Next::Command, Some(self.notify_cmd(n).await)),
                Some(Extension::CancelUpdate(tags)) => {
                    let Some(view) = self.selected.as_mut() else {
                        return (Next::Command, Some(Outcome::Bad("select a mailbox first".into())));
                    };
                    let before = view.contexts.len();
                    view.contexts.retain(|c| !tags.contains(&c.tag));
                    let unknown = tags.len() > before - view.contexts.len();
                    self.poll(true).await;
                    let outcome = match unknown {
                        true => Outcome::No(None, "a tag names no search kept up to date".into()),
                        false => Outcome::ok("CANCELUPDATE completed"),
                    };
                    (Next::Command, Some(outcome))
                }
                _ => {
                    self.poll(true).await;
                    (Next::Command, Some(Outcome::ok("NOOP completed")))
                }
            },
            C::Logout => {
                self.line("* BYE facteur IMAP signing off");
                (Next::Logout, Some(Outcome::ok("LOGOUT completed")))
            }
            C::StartTLS => {
                if self.tls || !self.cfg.starttls || authed {
                    (Next::Command, Some(Outcome::Bad("STARTTLS is not available now".into())))
                } else {
                    (Next::StartTls, Some(Outcome::ok("begin TLS negotiation now")))
                }
            }
            C::Login { username, password } => {
                if authed {
                    return wrong_state("LOGIN");
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                (Next::Command, Some(self.login(&user, &pass).await))
            }
            C::Authenticate { mechanism, initial_response } => {
                if authed {
                    return wrong_state("AUTHENTICATE");
                }
                if mechanism != AuthMechanism::Plain {
                    return (Next::Command, Some(Outcome::No(None, "only AUTHENTICATE PLAIN is supported".into())));
                }
                if !(self.tls || self.cfg.plaintext_auth) {
                    return (Next::Command, Some(Outcome::No(Some("PRIVACYREQUIRED"), "use STARTTLS first".into())));
                }
                match initial_response {
                    Some(data) => (Next::Command, Some(self.plain(data.declassify()).await)),
                    None => {
                        self.auth_tag = Some(tag.clone());
                        self.line("+ ");
                        (Next::AuthData, None)
                    }
                }
            }
            // RFC 2971 §3.1: ID is valid in every state.
            C::Id { .. } => {
                self.line("* ID (\"name\" \"facteur\" \"vendor\" \"facteur\")");
                (Next::Command, Some(Outcome::ok("ID completed")))
            }
            _ if !authed => (Next::Command, Some(Outcome::Bad("log in first".into()))),
            C::Enable { capabilities } => {
                let mut on = Vec::new();
                for c in capabilities.as_ref() {
                    match c {
                        // RFC 5161 §3.2: ENABLED lists what this command enabled.
                        CapabilityEnable::CondStore if !self.condstore => {
                            self.condstore_on();
                            on.push("CONDSTORE".to_string());
                        }
                        // RFC 7162 §3.2.3: QRESYNC turns CONDSTORE on too.
                        other if !self.qresync && other.to_string().eq_ignore_ascii_case("QRESYNC") => {
                            self.qresync = true;
                            self.condstore_on();
                            on.push("QRESYNC".into());
                        }
                        other if !self.rev2 && other.to_string().eq_ignore_ascii_case("IMAP4rev2") => {
                            self.rev2 = true;
                            if let Some(view) = self.selected.as_mut() {
                                view.forget_recent();
                            }
                            on.push("IMAP4rev2".into());
                        }
                        _ => {}
                    }
                }
                self.line(format!("* ENABLED {}", on.join(" ")).trim_end());
                (Next::Command, Some(Outcome::ok("ENABLE completed")))
            }
            C::Select { mailbox, parameters } => {
                (Next::Command, Some(self.select_cmd(&mailbox, &parameters, false).await))
            }
            C::Examine { mailbox, parameters } => {
                (Next::Command, Some(self.select_cmd(&mailbox, &parameters, true).await))
            }
            C::Create { mailbox } => {
                let name = match self.new_name_in(&mailbox) {
                    Ok(n) => n,
                    Err(refusal) => return (Next::Command, Some(refusal)),
                };
                // RFC 6154 §3 CREATE-SPECIAL-USE: one known attribute per
                // mailbox (storage keeps one); anything else is USEATTR.
                let special_use = match self.extension.take() {
                    Some(Extension::CreateUse(attrs)) => match attrs.as_slice() {
                        [one] => match SPECIAL_USES.iter().find(|u| u.eq_ignore_ascii_case(one)) {
                            Some(known) => Some(*known),
                            None => {
                                let why = format!("{one} is not a special use facteur knows");
                                return (Next::Command, Some(Outcome::No(Some("USEATTR"), why)));
                            }
                        },
                        _ => {
                            let why = "a mailbox takes one special use";
                            return (Next::Command, Some(Outcome::No(Some("USEATTR"), why.into())));
                        }
                    },
                    _ => None,
                };
                let r = self.store.create_mailbox(self.owner(), &name, special_use).await;
                (Next::Command, Some(r.map_or_else(|e| store_error(&e), |_| Outcome::ok("CREATE completed"))))
            }
            C::Delete { mailbox } => {
                let name = self.name_in(&mailbox);
                // RFC 9051 §6.3.5 lets a server refuse to delete a mailbox with
                // children (HASCHILDREN, §7.1); deleting it would leave them
                // under a name that no longer lists.
                let children = format!("{name}/");
                let has_children = match self.store.list_mailboxes(self.owner()).await {
                    Ok(all) => all.iter().any(|m| m.name.starts_with(&children)),
                    Err(e) => return (Next::Command, Some(store_error(&e))),
                };
                if has_children {
                    let why = format!("{name} has mailboxes under it; delete them first");
                    return (Next::Command, Some(Outcome::No(Some("HASCHILDREN"), why)));
                }
                let r = self.store.delete_mailbox(self.owner(), &name).await;
                (Next::Command, Some(r.map_or_else(|e| store_error(&e), |_| Outcome::ok("DELETE completed"))))
            }
            C::Rename { from, to } => {
                let to = match self.new_name_in(&to) {
                    Ok(n) => n,
                    Err(refusal) => return (Next::Command, Some(refusal)),
                };
                let r = self.store.rename_mailbox(self.owner(), &self.name_in(&from), &to).await;
                (Next::Command, Some(r.map_or_else(|e| store_error(&e), |_| Outcome::ok("RENAME completed"))))
            }
            C::Subscribe { mailbox } => {
                let r = self.store.subscribe(self.owner(), &self.name_in(&mailbox), true).await;
                (Next::Command, Some(r.map_or_else(|e| store_error(&e), |_| Outcome::ok("SUBSCRIBE completed"))))
            }
            C::Unsubscribe { mailbox } => {
                let r = self.store.subscribe(self.owner(), &self.name_in(&mailbox), false).await;
                (Next::Command, Some(r.map_or_else(|e| store_error(&e), |_| Outcome::ok("UNSUBSCRIBE completed"))))
            }
            C::List { reference, mailbox_wildcard } => {
                let opts = match self.extension.take() {
                    Some(Extension::List(o)) => Some(o),
                    _ => None,
                };
                (Next::Command, Some(self.list(&self.name_in(&reference), &mailbox_wildcard, false, opts).await))
            }
            C::Lsub { reference, mailbox_wildcard } => {
                (Next::Command, Some(self.list(&self.name_in(&reference), &mailbox_wildcard, true, None).await))
            }
            C::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                (Next::Command, Some(Outcome::ok("NAMESPACE completed")))
            }
            C::Status { mailbox, item_names } => {
                (Next::Command, Some(self.status(&self.name_in(&mailbox), item_names.as_ref()).await))
            }
            C::GetQuotaRoot { mailbox } => (Next::Command, Some(self.get_quota_root(&self.name_in(&mailbox)).await)),
            C::GetQuota { root } => (Next::Command, Some(self.get_quota(root.as_ref()).await)),
            // RFC 9208 §4.1.3: SETQUOTA needs QUOTASET, which is not offered;
            // limits are the operator's (`facteur user quota`).
            C::SetQuota { .. } => {
                let why = "quota limits are set by the server's operator";
                (Next::Command, Some(Outcome::No(Some("NOPERM"), why.into())))
            }
            C::Append { mailbox, flags, date, message } => {
                let data = match message {
                    LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
                    LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
                };
                let now = chrono::Utc::now().timestamp();
                let date = date.map(|d| d.as_ref().timestamp()).unwrap_or(now);
                let (first, rest) = match self.extension.take() {
                    Some(Extension::Append { first, rest }) => (first, rest),
                    _ => (None, Vec::new()),
                };
                // CATENATE (RFC 4469): the first message's parts.
                let first = first.unwrap_or_else(|| vec![CatPart::Text(data)]);
                let mut messages = vec![(first, flags.iter().map(flag_string).collect(), date)];
                // MULTIAPPEND (RFC 3502): the other messages, read the same way.
                if rest.len() >= MAX_MULTIAPPEND {
                    let why = format!("at most {MAX_MULTIAPPEND} messages in one APPEND");
                    return (Next::Command, Some(Outcome::No(Some("LIMIT"), why)));
                }
                for part in rest {
                    match append_part(part, now) {
                        Ok(m) => messages.push(m),
                        Err(refusal) => return (Next::Command, Some(refusal)),
                    }
                }
                (Next::Command, Some(self.append(&self.name_in(&mailbox), messages).await))
            }
            C::Idle => {
                self.idle_tag = Some(tag.clone());
                self.line("+ idling");
                self.poll(true).await;
                (Next::Idle, None)
            }
            _ if !selected => (Next::Command, Some(Outcome::Bad("select a mailbox first".into()))),
            // RFC 3501 §6.4.1: CHECK is a selected-state command (IMAP4rev2
            // dropped it, RFC 9051 Appendix E); storage is always durable,
            // so it is a NOOP there.
            C::Check => {
                self.poll(true).await;
                (Next::Command, Some(Outcome::ok("CHECK completed")))
            }
            C::Close => {
                if let Some(v) = self.selected.take()
                    && !v.read_only
                {
                    // RFC 9051 §6.4.1: expunge silently.
                    if let Err(e) = self.store.expunge(v.mailbox_id, None).await {
                        return (Next::Command, Some(store_error(&e)));
                    }
                }
                (Next::Command, Some(Outcome::ok("CLOSE completed")))
            }
            C::Unselect => {
                self.selected = None;
                (Next::Command, Some(Outcome::ok("UNSELECT completed")))
            }
            C::Expunge => (Next::Command, Some(self.expunge(None).await)),
            C::ExpungeUid { sequence_set } => {
                let uids = self.resolve(&sequence_set, true);
                (Next::Command, Some(self.expunge(Some(uids)).await))
            }
            C::Search { criteria, uid, charset } => {
                if let Some(refusal) = unsupported_charset(charset.as_ref().map(|c| c.as_ref())) {
                    return (Next::Command, Some(refusal));
                }
                let (ret, saved_key) = match self.extension.take() {
                    Some(Extension::Search(r)) => (Some(r), false),
                    Some(Extension::Saved(r)) => (r, true),
                    _ => (None, false),
                };
                let ret = ret.or_else(|| self.rev2.then(|| SearchReturn { all: true, ..Default::default() }));
                (Next::Command, Some(self.search(tag, criteria.as_ref(), uid, ret, saved_key).await))
            }
            C::Sort { sort_criteria, charset, search_criteria, uid } => {
                let how = Ordering::Sort(sort_criteria.into_inner());
                (
                    Next::Command,
                    Some(self.sort_or_thread(tag, how, charset.as_ref(), search_criteria.as_ref(), uid).await),
                )
            }
            C::Thread { algorithm, charset, search_criteria, uid } => {
                let how = Ordering::Thread(algorithm.into_static());
                (
                    Next::Command,
                    Some(self.sort_or_thread(tag, how, charset.as_ref(), search_criteria.as_ref(), uid).await),
                )
            }
            C::Fetch { sequence_set, macro_or_item_names, uid, modifiers } => {
                use imap_codec::imap_types::command::FetchModifier;
                let changed_since = modifiers.iter().find_map(|m| match m {
                    FetchModifier::ChangedSince(n) => Some(n.get()),
                    _ => None,
                });
                // RFC 7162 §3.2.6: VANISHED needs UID FETCH, CHANGEDSINCE and
                // ENABLE QRESYNC; the UIDs of the set expunged since come first.
                if modifiers.contains(&FetchModifier::Vanished) {
                    let Some(since) = changed_since.filter(|_| uid && self.qresync) else {
                        let why = "VANISHED needs UID FETCH with CHANGEDSINCE after ENABLE QRESYNC (RFC 7162 §3.2.6)";
                        return (Next::Command, Some(Outcome::Bad(why.into())));
                    };
                    if let Some(refusal) = self.vanished_earlier(&sequence_set, since).await {
                        return (Next::Command, Some(refusal));
                    }
                }
                match self.fetch(tag, &sequence_set, macro_or_item_names, uid, changed_since).await {
                    Some(outcome) => (Next::Command, Some(outcome)),
                    None => (Next::More, None),
                }
            }
            C::Store { sequence_set, kind, response, flags, uid, modifiers } => {
                let unchanged_since = modifiers
                    .iter()
                    .map(|m| match m {
                        imap_codec::imap_types::command::StoreModifier::UnchangedSince(n) => *n,
                    })
                    .next();
                (Next::Command, Some(self.store_cmd(&sequence_set, kind, response, flags, uid, unchanged_since).await))
            }
            C::Copy { sequence_set, mailbox, uid } => {
                (Next::Command, Some(self.copy(&sequence_set, &self.name_in(&mailbox), uid, false).await))
            }
            C::Move { sequence_set, mailbox, uid } => {
                (Next::Command, Some(self.copy(&sequence_set, &self.name_in(&mailbox), uid, true).await))
            }
            other => (Next::Command, Some(Outcome::Bad(format!("{} is not supported", other.name())))),
        }
    }

    /// A mailbox name from the client: UTF-8 once IMAP4rev2 is enabled
    /// (RFC 9051 §5.1), else modified UTF-7 (RFC 3501 §5.1.3), a name that
    /// does not decode being taken as it is.
    fn name_in(&self, m: &Mailbox) -> String {
        match m {
            Mailbox::Inbox => "INBOX".into(),
            Mailbox::Other(o) => self.name_from_wire(o.as_ref()),
        }
    }

    /// CONDSTORE turned on by a command (RFC 7162 §3.1): with a mailbox
    /// selected, the client learns its HIGHESTMODSEQ at once, as at SELECT.
    fn condstore_on(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        let highest = self
            .selected
            .as_ref()
            .map(|v| v.synced().unwrap_or_else(|| v.messages().iter().map(|m| m.modseq).max().unwrap_or(0)));
        if let Some(highest) = highest {
            self.line(&format!("* OK [HIGHESTMODSEQ {highest}] highest"));
        }
    }

    fn name_from_wire(&self, raw: &[u8]) -> String {
        names::lookup_name(raw, self.rev2)
    }

    /// The name for a new mailbox (CREATE, RENAME's destination), strictly
    /// decoded and checked; `NO [CANNOT]` says why not (RFC 5530 §3).
    fn new_name_in(&self, m: &Mailbox) -> Result<String, Outcome> {
        match m {
            Mailbox::Inbox => Ok("INBOX".into()),
            Mailbox::Other(o) => names::new_name(o.as_ref(), self.rev2)
                .map_err(|e| Outcome::No(Some("CANNOT"), format!("invalid mailbox name: {e}"))),
        }
    }

    /// A mailbox name for the client, as `name_in` reads them.
    fn name_out(&self, name: &str) -> String {
        if self.rev2 { quote(name) } else { quote(&utf7::encode(name)) }
    }

    fn owner(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    async fn login(&mut self, user: &str, pass: &str) -> Outcome {
        if !(self.tls || self.cfg.plaintext_auth) {
            return Outcome::No(Some("PRIVACYREQUIRED"), "use STARTTLS before LOGIN".into());
        }
        if fault::on(Fault::MailboxLogin) {
            signal::record(Signal::MailboxAccess, false, 1);
            return Outcome::No(Some("UNAVAILABLE"), "logins are failing on this server (injected fault)".into());
        }
        let store = self.store.clone();
        let check = facteur_store::password::login(&store, user, pass);
        let attempt = match &self.auth {
            Some((throttle, listener, client)) => throttle.attempt(listener, *client, user, check).await,
            None => check.await.map(|a| a.map_or(Attempt::Failed, Attempt::Ok)),
        };
        let ok = match attempt {
            Ok(Attempt::Ok(address)) => Some(address),
            Ok(Attempt::Failed | Attempt::Throttled) => None,
            Ok(Attempt::Banned) => {
                self.banned = true;
                tracing::debug!(user, "IMAP login refused: address banned for failed logins");
                return Outcome::No(Some("UNAVAILABLE"), "too many failed logins from your address".into());
            }
            Err(e) => {
                signal::record(Signal::MailboxAccess, false, 1);
                return store_error(&e);
            }
        };
        match ok {
            Some(address) => {
                signal::record(Signal::MailboxAccess, true, 1);
                if let Some(slots) = &self.slots
                    && !slots.acquire(&address)
                {
                    tracing::warn!(user = %address, "IMAP login refused: too many sessions for this user");
                    return Outcome::No(Some("LIMIT"), "too many open sessions for this user".into());
                }
                tracing::info!(user = %address, "IMAP login");
                self.user = Some(address);
                let caps = self.capabilities();
                Outcome::Ok(Some(format!("CAPABILITY {caps}")), "logged in".into())
            }
            None => {
                tracing::debug!(user, "IMAP login failed");
                Outcome::No(Some("AUTHENTICATIONFAILED"), "invalid credentials".into())
            }
        }
    }

    /// SASL PLAIN (RFC 4616): authzid NUL authcid NUL password.
    async fn plain(&mut self, data: &[u8]) -> Outcome {
        let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        let [authz, user, pass] = parts.as_slice() else {
            return Outcome::Bad("malformed PLAIN response".into());
        };
        let (authz, user, pass) =
            (String::from_utf8_lossy(authz), String::from_utf8_lossy(user), String::from_utf8_lossy(pass));
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(&user) {
            return Outcome::No(Some("AUTHORIZATIONFAILED"), "cannot act as another user".into());
        }
        self.login(&user, &pass).await
    }

    /// The data line after `AUTHENTICATE PLAIN` without initial response.
    pub async fn auth_data(&mut self, data: AuthenticateData<'_>) -> Next {
        let Some(tag) = self.auth_tag.take() else { return Next::Command };
        let outcome = match data {
            AuthenticateData::Continue(d) => self.plain(d.declassify()).await,
            AuthenticateData::Cancel => Outcome::Bad("AUTHENTICATE cancelled".into()),
        };
        self.finish(&tag, outcome);
        Next::Command
    }

    /// Bad data after AUTHENTICATE's continuation.
    pub fn auth_garbage(&mut self) {
        if let Some(tag) = self.auth_tag.take() {
            self.finish(&tag, Outcome::Bad("malformed base64 in AUTHENTICATE".into()));
        }
    }

    /// DONE after IDLE.
    pub fn idle_done(&mut self) {
        if let Some(tag) = self.idle_tag.take() {
            self.finish(&tag, Outcome::ok("IDLE terminated"));
        }
    }

    /// NOTIFY (RFC 5465 §3.1): NONE stops the pushes; SET reads which
    /// mailboxes are watched, tells what changed in the selected one (an
    /// implicit NOOP) and, with STATUS, the state of each watched one.
    async fn notify_cmd(&mut self, n: notify::Notify) -> Outcome {
        let (status, groups) = match n {
            notify::Notify::None => {
                self.notify = None;
                self.poll(true).await;
                return Outcome::ok("NOTIFY completed");
            }
            notify::Notify::Bad(why) => return Outcome::Bad(why),
            notify::Notify::BadEvent => {
                let why = "only these events are pushed".to_string();
                return Outcome::No(Some(notify::BADEVENT), why);
            }
            notify::Notify::Set { status, groups } => (status, groups),
        };
        let mut selected = None;
        let mut others = Vec::new();
        for g in groups {
            match g.filter {
                notify::Filter::Selected | notify::Filter::SelectedDelayed => {
                    if !g.events.messages {
                        continue;
                    }
                    let fetch = match g.events.fetch.as_deref().map(fetch_items) {
                        Some(Some(items)) => items,
                        Some(None) => return Outcome::Bad("MessageNew's FETCH items do not parse".into()),
                        None => Vec::new(),
                    };
                    selected = Some(SelectedEvents { delayed: g.filter == notify::Filter::SelectedDelayed, fetch });
                }
                _ => others.push(g),
            }
        }
        let wants_names = others.iter().any(|g| g.events.names || g.events.subscriptions);
        let (watched, names) = match self.read_names(&others).await {
            Ok((w, n)) => (w, wants_names.then_some(n)),
            Err(e) => return store_error(&e),
        };
        self.notify = Some(NotifyState { selected, others, watched, names });
        self.poll(true).await;
        if status {
            // §3.1: for each watched mailbox but the selected one.
            let selected = self.selected_mailbox();
            let mut ids: Vec<i64> = self
                .notify
                .as_ref()
                .map(|n| n.watched.keys().copied().filter(|id| Some(*id) != selected).collect())
                .unwrap_or_default();
            ids.sort_unstable();
            for id in ids {
                self.push_status(id).await;
            }
        }
        Outcome::ok("NOTIFY completed")
    }

    /// The owner's mailboxes and subscriptions, and those of the mailboxes
    /// `groups` give message events for (RFC 5465 §6), by id.
    async fn read_names(
        &self,
        groups: &[notify::Group],
    ) -> Result<(std::collections::HashMap<i64, String>, Names), StoreError> {
        let boxes = self.store.list_mailboxes(self.owner()).await?;
        let names = Names {
            boxes: boxes.into_iter().map(|m| (m.id, m.name)).collect(),
            subscribed: self.store.subscriptions(self.owner()).await?.into_iter().collect(),
        };
        let watched = names
            .boxes
            .iter()
            .filter(|(_, name)| self.covering(groups, name, &names).is_some_and(|g| g.events.messages))
            .map(|(id, name)| (*id, name.clone()))
            .collect();
        Ok((watched, names))
    }

    /// The first group that covers the mailbox `name` (RFC 5465 §6).
    fn covering<'g>(&self, groups: &'g [notify::Group], name: &str, names: &Names) -> Option<&'g notify::Group> {
        use notify::Filter as F;
        let named = |list: &[Vec<u8>]| list.iter().map(|n| self.name_from_wire(n)).collect::<Vec<_>>();
        groups.iter().find(|g| match &g.filter {
            // §6.3: INBOX is the one mailbox mail is delivered to.
            F::Inboxes => name == "INBOX",
            F::Personal => true,
            F::Subscribed => names.subscribed.contains(name),
            F::Subtree(list) => named(list).iter().any(|n| name == n || name.starts_with(&format!("{n}/"))),
            F::Mailboxes(list) => named(list).iter().any(|n| n == name),
            F::Selected | F::SelectedDelayed => false,
        })
    }

    /// The owner's names or subscriptions changed: the watched mailboxes
    /// are read again and, when `tell`, the changes the groups ask for are
    /// sent as LIST responses (RFC 5465 §5.4–5.5): a new mailbox `()`, a
    /// deleted one `(\NonExistent)`, a renamed one under its new name with
    /// `("OLDNAME" (old))`, a subscription change with or without
    /// `\Subscribed`. This session's own changes are not told (§5).
    async fn names_changed(&mut self, tell: bool) {
        let Some(others) = self.notify.as_ref().map(|n| n.others.clone()) else { return };
        let (watched, fresh) = match self.read_names(&others).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "IMAP NOTIFY: the mailbox list could not be read");
                return;
            }
        };
        let Some(n) = self.notify.as_mut() else { return };
        n.watched = watched;
        let Some(old) = n.names.replace(fresh.clone()) else { return };
        if !tell {
            return;
        }
        let wants = |g: Option<&notify::Group>, names: bool| {
            g.is_some_and(|g| if names { g.events.names } else { g.events.subscriptions })
        };
        let mut lines = Vec::new();
        for (id, name) in &fresh.boxes {
            match old.boxes.get(id) {
                Some(was)
                    if was != name
                        && (wants(self.covering(&others, name, &fresh), true)
                            || wants(self.covering(&others, was, &old), true)) =>
                {
                    let (new, was) = (self.name_out(name), self.name_out(was));
                    lines.push(format!("* LIST () \"/\" {new} (\"OLDNAME\" ({was}))"));
                }
                None if wants(self.covering(&others, name, &fresh), true) => {
                    lines.push(format!("* LIST () \"/\" {}", self.name_out(name)));
                }
                _ => {}
            }
        }
        for (id, was) in &old.boxes {
            if !fresh.boxes.contains_key(id) && wants(self.covering(&others, was, &old), true) {
                lines.push(format!("* LIST (\\NonExistent) \"/\" {}", self.name_out(was)));
            }
        }
        for name in fresh.subscribed.symmetric_difference(&old.subscribed) {
            if wants(self.covering(&others, name, &fresh), false) {
                let mut attrs = Vec::new();
                if fresh.subscribed.contains(name) {
                    attrs.push("\\Subscribed");
                }
                if !fresh.boxes.values().any(|b| b == name) {
                    attrs.push("\\NonExistent");
                }
                lines.push(format!("* LIST ({}) \"/\" {}", attrs.join(" "), self.name_out(name)));
            }
        }
        for l in lines {
            self.line(&l);
        }
    }

    /// Whether NOTIFY asked for anything to be pushed: the connection then
    /// listens for changes between commands too.
    pub fn notifying(&self) -> bool {
        self.notify.as_ref().is_some_and(|n| n.selected.is_some() || !n.watched.is_empty() || n.names.is_some())
    }

    /// A change the connection heard of while NOTIFY is on (RFC 5465 §5):
    /// the selected mailbox's EXISTS, EXPUNGE (not with selected-delayed)
    /// and FETCH, or another watched mailbox's STATUS.
    pub async fn notify_change(&mut self, change: facteur_store::Changed) {
        let selected = self.selected_mailbox();
        let ids: Vec<i64> = match change {
            facteur_store::Changed::Mailbox(id) => vec![id],
            facteur_store::Changed::Names(key) => {
                if key == facteur_store::names_key(self.owner()) {
                    self.names_changed(true).await;
                }
                return;
            }
            facteur_store::Changed::Unknown => {
                // Changes were missed: names are read again too.
                self.names_changed(true).await;
                let mut all: Vec<i64> =
                    self.notify.as_ref().map(|n| n.watched.keys().copied().collect()).unwrap_or_default();
                all.sort_unstable();
                all.extend(selected);
                all
            }
        };
        for id in ids {
            if Some(id) == selected {
                self.push_selected().await;
            } else if self.notify.as_ref().is_some_and(|n| n.watched.contains_key(&id)) {
                self.push_status(id).await;
            }
        }
    }

    /// The selected mailbox's changes, pushed (RFC 5465 §5.1–5.3): what a
    /// NOOP would tell (expunges held with selected-delayed), then the
    /// FETCH items MessageNew asked for, for each new message.
    async fn push_selected(&mut self) {
        let Some((delayed, fetch)) =
            self.notify.as_ref().and_then(|n| n.selected.as_ref()).map(|s| (s.delayed, s.fetch.clone()))
        else {
            return;
        };
        let before = self.selected.as_ref().map_or(0, |v| v.last_uid());
        self.poll(!delayed).await;
        let Some(view) = self.selected.take() else { return };
        let new: Vec<u32> = view.messages().iter().rev().map(|m| m.uid).take_while(|u| *u > before).collect();
        if !fetch.is_empty() && !new.is_empty() {
            let mut uids = new;
            uids.reverse();
            let tag = Tag::try_from("notify").expect("a valid tag");
            let mut job =
                PendingFetch { tag, uids, next: 0, names: fetch, changed_since: None, seen_now: Default::default() };
            while let Ok(false) = self.fetch_from(&view, &mut job).await {}
        }
        self.selected = Some(view);
    }

    /// `* STATUS name (MESSAGES UIDNEXT UIDVALIDITY UNSEEN [HIGHESTMODSEQ])`
    /// for a watched mailbox (RFC 5465 §5.1–5.3, the items Dovecot sends);
    /// one that is gone stops being watched.
    async fn push_status(&mut self, id: i64) {
        let Some(name) = self.notify.as_ref().and_then(|n| n.watched.get(&id)).cloned() else { return };
        match self.store.mailbox(self.owner(), &name).await {
            Ok(Some(m)) if m.id == id => {
                let mut items = vec![
                    StatusDataItemName::Messages,
                    StatusDataItemName::UidNext,
                    StatusDataItemName::UidValidity,
                    StatusDataItemName::Unseen,
                ];
                if self.condstore {
                    items.push(StatusDataItemName::HighestModSeq);
                }
                self.status_line(&m, &items).await;
            }
            Ok(_) => {
                if let Some(n) = self.notify.as_mut() {
                    n.watched.remove(&id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "IMAP NOTIFY: a mailbox's STATUS could not be read"),
        }
    }

    /// Tell the client what changed in its selected mailbox.
    pub async fn poll(&mut self, expunges: bool) {
        let Some((id, known)) = self.selected.as_ref().map(|v| (v.mailbox_id, v.synced())) else { return };
        // Unchanged HIGHESTMODSEQ: nothing to tell, no listing read.
        let Ok(Some(fresh)) = self.store.mailbox_snapshot(id, known).await else { return };
        let condstore = self.condstore;
        let Some(mut view) = self.selected.take() else { return };
        let last_known = view.last_uid();
        let updates = view.refresh(fresh, expunges);
        if view.take_new_keywords() {
            self.flags_lines(&view);
        }
        // Search contexts lose expunged messages before the EXPUNGEs, with
        // the numbers the client has now: the updates number each expunge
        // after the ones before it, lowest first.
        let gone: Vec<(u32, u32)> = updates
            .iter()
            .filter_map(|u| match u {
                Update::Expunge { seq, uid } => Some((*uid, *seq)),
                _ => None,
            })
            .enumerate()
            .map(|(k, (uid, seq))| (uid, seq + k as u32))
            .collect();
        self.contexts_lose(&mut view, &gone);
        // What the contexts must look at again: flags changed, and arrivals.
        let mut changed: Vec<u32> = Vec::new();
        if !view.contexts.is_empty() {
            let flagged = updates.iter().filter_map(|u| match u {
                Update::Flags { uid, .. } => Some(*uid),
                _ => None,
            });
            let arrived = view.messages().iter().rev().map(|m| m.uid).take_while(|u| *u > last_known);
            changed = flagged.chain(arrived).collect();
        }
        if updates.iter().any(|u| matches!(u, Update::Exists(_))) {
            self.claim_recent(&mut view).await;
        }
        // Expunges come first; under QRESYNC they are told in one VANISHED
        // before anything numbered after them (RFC 7162 §3.2.10).
        let mut vanished = Vec::new();
        for u in updates {
            if !matches!(u, Update::Expunge { .. }) {
                self.vanished(&mut vanished);
            }
            match u {
                Update::Expunge { seq, uid } => {
                    if self.qresync {
                        vanished.push(uid);
                    } else {
                        self.line(&format!("* {seq} EXPUNGE"));
                    }
                }
                Update::Exists(n) => {
                    self.line(&format!("* {n} EXISTS"));
                    // RFC 3501 §7.3.2: RECENT goes with EXISTS.
                    if !self.rev2 {
                        self.line(&format!("* {} RECENT", view.recent_count()));
                    }
                }
                Update::Flags { seq, uid, flags, modseq } => {
                    let m = if condstore { format!(" MODSEQ ({modseq})") } else { String::new() };
                    let flags = flags_text(&flags, view.is_recent(uid));
                    self.line(&format!("* {seq} FETCH (FLAGS ({flags}) UID {uid}{m})"));
                }
            }
        }
        self.vanished(&mut vanished);
        self.selected = Some(view);
        changed.sort_unstable();
        changed.dedup();
        self.contexts_recheck(changed).await;
    }

    /// A SORT context's part of `contexts_recheck`: the messages among
    /// `uids` that left the result are removed where they stand, then those
    /// that joined are inserted where the sort order puts them, each told
    /// as a (position, number) pair in the order applied (RFC 5267 §4.3.3–4).
    async fn recheck_sorted(&mut self, i: usize, uids: &[u32], hits: Vec<(u32, u32, u64)>) {
        let Some(ctx) = self.selected.as_ref().and_then(|v| v.contexts.get(i)) else { return };
        let hit: std::collections::HashSet<u32> = hits.iter().map(|h| h.0).collect();
        let members: std::collections::HashSet<u32> = ctx.result.iter().copied().collect();
        let leaving: Vec<u32> = uids.iter().copied().filter(|u| !hit.contains(u) && members.contains(u)).collect();
        let joining: Vec<(u32, u32)> = hits.iter().filter(|h| !members.contains(&h.0)).map(|h| (h.0, h.1)).collect();
        if leaving.is_empty() && joining.is_empty() {
            return;
        }
        // The sort keys of the result and of the messages joining it.
        let mut wanted: Vec<(u32, u32)> = joining.clone();
        if !joining.is_empty() {
            let Some(view) = self.selected.as_ref() else { return };
            wanted.extend(ctx.result.iter().filter_map(|&u| view.seq_of(u).map(|seq| (u, seq))));
        }
        let keys = match self.summarize(&wanted).await {
            Ok(keys) => keys,
            Err(_) => {
                tracing::warn!("IMAP: a SORT context's new messages could not be read; its updates stop");
                if let Some(view) = self.selected.as_mut() {
                    view.contexts.remove(i);
                }
                return;
            }
        };
        let Some(view) = self.selected.as_mut() else { return };
        let seqs: Vec<(u32, u32)> = leaving.iter().filter_map(|&u| view.seq_of(u).map(|seq| (u, seq))).collect();
        let ctx = &mut view.contexts[i];
        let removed = remove_sorted(ctx, seqs.into_iter());
        let criteria = ctx.sort.clone().unwrap_or_default();
        let mut added = Vec::new();
        for (u, seq) in joining {
            let Some(new) = keys.get(&u) else { continue };
            let at = ctx
                .result
                .partition_point(|r| keys.get(r).is_some_and(|old| thread::in_sort_order(old, new, &criteria).is_lt()));
            ctx.result.insert(at, u);
            added.push((at as u32 + 1, if ctx.uid { u } else { seq }));
        }
        let mut lines = Vec::new();
        if !removed.is_empty() {
            lines.push(sorted_context_line(ctx, "REMOVEFROM", &removed));
        }
        if !added.is_empty() {
            lines.push(sorted_context_line(ctx, "ADDTO", &added));
        }
        for l in lines {
            self.line(&l);
        }
    }

    /// Keep a search up to date (RFC 5267 §4.3): `BAD` if its tag already
    /// names one; past [`MAX_SEARCH_CONTEXTS`], `* NO [NOUPDATE]` and the
    /// command goes on (§4.3.1).
    fn keep_context(&mut self, ctx: SearchContext) -> Option<Outcome> {
        let Some(view) = self.selected.as_mut() else { return Some(Outcome::Bad("select a mailbox first".into())) };
        if view.contexts.iter().any(|c| c.tag == ctx.tag) {
            return Some(Outcome::Bad(format!("tag {} already names a search kept up to date", ctx.tag)));
        }
        if view.contexts.len() >= MAX_SEARCH_CONTEXTS {
            let why = format!("at most {MAX_SEARCH_CONTEXTS} searches are kept up to date");
            self.line(&format!("* NO [NOUPDATE {}] {why}", quote(&ctx.tag)));
        } else {
            view.contexts.push(ctx);
        }
        None
    }

    /// REMOVEFROM for messages about to be told expunged, `gone` as (UID,
    /// sequence number now): RFC 5267 §4.3.4 wants it before the EXPUNGE,
    /// while those numbers still hold.
    fn contexts_lose(&mut self, view: &mut View, gone: &[(u32, u32)]) {
        if gone.is_empty() || view.contexts.is_empty() {
            return;
        }
        let gone_uids: std::collections::HashSet<u32> = gone.iter().map(|g| g.0).collect();
        let mut lines = Vec::new();
        for ctx in &mut view.contexts {
            if ctx.sort.is_some() {
                let pairs = remove_sorted(ctx, gone.iter().copied());
                if !pairs.is_empty() {
                    lines.push(sorted_context_line(ctx, "REMOVEFROM", &pairs));
                }
                continue;
            }
            let mut ids: Vec<u32> = gone
                .iter()
                .filter(|(u, _)| ctx.result.binary_search(u).is_ok())
                .map(|&(u, seq)| if ctx.uid { u } else { seq })
                .collect();
            if !ids.is_empty() {
                ctx.result.retain(|u| !gone_uids.contains(u));
                lines.push(context_line(ctx, "REMOVEFROM", &mut ids));
            }
        }
        for l in lines {
            self.line(&l);
        }
    }

    /// ADDTO and REMOVEFROM (RFC 5267 §4.3.3–4) for the messages among
    /// `uids` (sorted) that arrived or whose flags changed: each search
    /// context's program is run on those messages alone.
    async fn contexts_recheck(&mut self, uids: Vec<u32>) {
        let count = self.selected.as_ref().map_or(0, |v| v.contexts.len());
        if uids.is_empty() || count == 0 {
            return;
        }
        for i in 0..count {
            // The program only: the result stays where it is.
            let Some((criteria, saved_key, sorted)) = self
                .selected
                .as_ref()
                .and_then(|v| v.contexts.get(i))
                .map(|c| (c.criteria.clone(), c.saved_key, c.sort.is_some()))
            else {
                return;
            };
            let Some(hits) = self.matching(&criteria, saved_key, Some(&uids)).await else { return };
            if sorted {
                self.recheck_sorted(i, &uids, hits).await;
                continue;
            }
            let Some(view) = self.selected.as_mut() else { return };
            let ctx = &view.contexts[i];
            let hit: std::collections::HashSet<u32> = hits.iter().map(|h| h.0).collect();
            let id = |u: u32, seq: u32| if ctx.uid { u } else { seq };
            let known = |u: &u32| ctx.result.binary_search(u).is_ok();
            let to_add: Vec<(u32, u32)> = hits.iter().filter(|h| !known(&h.0)).map(|h| (h.0, h.1)).collect();
            let to_remove: std::collections::HashSet<u32> =
                uids.iter().copied().filter(|u| !hit.contains(u) && known(u)).collect();
            let mut added: Vec<u32> = to_add.iter().map(|&(u, seq)| id(u, seq)).collect();
            let mut removed: Vec<u32> =
                to_remove.iter().filter_map(|&u| view.seq_of(u).map(|seq| id(u, seq))).collect();
            let ctx = &mut view.contexts[i];
            ctx.result.retain(|u| !to_remove.contains(u));
            if !to_add.is_empty() {
                ctx.result.extend(to_add.iter().map(|a| a.0));
                ctx.result.sort_unstable();
            }
            let mut lines = Vec::new();
            if !removed.is_empty() {
                lines.push(context_line(ctx, "REMOVEFROM", &mut removed));
            }
            if !added.is_empty() {
                lines.push(context_line(ctx, "ADDTO", &mut added));
            }
            for l in lines {
                self.line(&l);
            }
        }
    }

    /// `* VANISHED (EARLIER) uids`: the UIDs of `set` expunged after
    /// `modseq` (RFC 7162 §3.2.6); a storage failure is the refusal.
    async fn vanished_earlier(&mut self, set: &SequenceSet, modseq: u64) -> Option<Outcome> {
        let view = self.selected.as_ref()?;
        let vanished = match self.store.vanished_since(view.mailbox_id, modseq).await {
            Ok(v) => v,
            Err(e) => return Some(store_error(&e)),
        };
        let largest = vanished.last().copied().unwrap_or(0).max(view.last_uid());
        let vanished: Vec<u32> = vanished.into_iter().filter(|u| seqset::contains(set, *u, largest)).collect();
        if !vanished.is_empty() {
            self.line(&format!("* VANISHED (EARLIER) {}", seqset::compress(&vanished)));
        }
        None
    }

    /// `* VANISHED uids` (RFC 7162 §3.2.10) for the UIDs gathered, if any.
    fn vanished(&mut self, uids: &mut Vec<u32>) {
        if !uids.is_empty() {
            uids.sort_unstable();
            self.line(&format!("* VANISHED {}", seqset::compress(uids)));
            uids.clear();
        }
    }

    /// `\Recent` for an IMAP4rev1 session (RFC 3501 §2.3.2): the messages
    /// of the view no session was told of yet become this session's recent
    /// ones, claimed in storage so no other session gets them. A read-only
    /// session (EXAMINE) claims nothing (§6.3.2) and sees as recent what
    /// nobody has claimed. IMAP4rev2 sessions have no `\Recent` (RFC 9051
    /// Appendix E) and leave the messages to IMAP4rev1 sessions.
    async fn claim_recent(&mut self, view: &mut View) {
        let last = view.last_uid();
        if self.rev2 || last == 0 {
            return;
        }
        let from = match self.store.recent_from(view.mailbox_id, None).await {
            Ok(from) if from <= last && !view.read_only => self.store.recent_from(view.mailbox_id, Some(last)).await,
            other => other,
        };
        match from {
            Ok(from) => view.mark_recent(from),
            Err(e) => tracing::warn!(error = %e, "IMAP: \\Recent not read; no message shown recent"),
        }
    }

    /// SELECT or EXAMINE with their parameters: CONDSTORE (RFC 7162 §3.1.8)
    /// and QRESYNC (§3.2.5), which needs ENABLE QRESYNC first.
    async fn select_cmd(&mut self, mailbox: &Mailbox<'_>, parameters: &[SelectParameter], read_only: bool) -> Outcome {
        let mut resync = None;
        for p in parameters {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { uid_validity, mod_sequence_value, known_uids, .. } => {
                    if !self.qresync {
                        return Outcome::Bad(
                            "the QRESYNC parameter needs ENABLE QRESYNC first (RFC 7162 §3.2.5)".into(),
                        );
                    }
                    // The sequence match data is not needed: every expunge
                    // is remembered with its MODSEQ.
                    resync = Some(Resync {
                        uidvalidity: uid_validity.get(),
                        modseq: mod_sequence_value.get(),
                        known_uids: known_uids.clone(),
                    });
                }
            }
        }
        self.select(&self.name_in(mailbox), read_only, resync).await
    }

    async fn select(&mut self, name: &str, read_only: bool, resync: Option<Resync>) -> Outcome {
        // RFC 9051 §6.3.2: the mailbox selected before is closed, and said so
        // (the CLOSED code of RFC 7162 §3.2.11), whether this one opens or not.
        if self.selected.take().is_some() {
            self.line("* OK [CLOSED] previous mailbox closed");
        }
        let mailbox = match self.store.mailbox(self.owner(), name).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::No(Some("NONEXISTENT"), format!("no mailbox {name}")),
            Err(e) => return store_error(&e),
        };
        let snapshot = match self.store.mailbox_snapshot(mailbox.id, None).await {
            Ok(Some(m)) => m,
            Ok(None) => Default::default(),
            Err(e) => return store_error(&e),
        };
        let highest_modseq = snapshot.highest_modseq;
        let mut view = View::new(mailbox.id, mailbox.uidvalidity, read_only, snapshot);
        self.claim_recent(&mut view).await;
        self.line(&format!("* {} EXISTS", view.len()));
        self.line(&format!("* {} RECENT", view.recent_count()));
        self.flags_lines(&view);
        if let Some(first) = view.messages().iter().position(|m| !m.flags.iter().any(|f| f == "\\Seen")) {
            self.line(&format!("* OK [UNSEEN {}] first unseen", first + 1));
        }
        self.line(&format!("* OK [UIDVALIDITY {}] UIDs valid", mailbox.uidvalidity));
        self.line(&format!("* OK [UIDNEXT {}] predicted next UID", mailbox.uidnext));
        self.line(&format!("* OK [HIGHESTMODSEQ {highest_modseq}] highest"));
        self.line(&format!("* LIST () \"/\" {}", self.name_out(&mailbox.name)));
        // RFC 7162 §3.2.5.1: with the UIDVALIDITY the client knew, what
        // vanished and what changed since its MODSEQ; otherwise nothing (the
        // client resynchronizes in full).
        self.selected = Some(view);
        if let Some(r) = resync.filter(|r| r.uidvalidity == mailbox.uidvalidity) {
            let all = SequenceSet::try_from("1:*").expect("a valid set");
            if let Some(refusal) = self.vanished_earlier(r.known_uids.as_ref().unwrap_or(&all), r.modseq).await {
                self.selected = None;
                return refusal;
            }
            let changed: Vec<String> = self
                .selected
                .iter()
                .flat_map(|view| {
                    view.messages().iter().enumerate().filter(|(_, m)| m.modseq > r.modseq).map(|(i, m)| {
                        let flags = flags_text(&m.flags, view.is_recent(m.uid));
                        format!("* {} FETCH (UID {} FLAGS ({flags}) MODSEQ ({}))", i + 1, m.uid, m.modseq)
                    })
                })
                .collect();
            for line in changed {
                self.line(&line);
            }
        }
        if read_only {
            Outcome::Ok(Some("READ-ONLY".into()), "EXAMINE completed".into())
        } else {
            Outcome::Ok(Some("READ-WRITE".into()), "SELECT completed".into())
        }
    }

    /// FLAGS and PERMANENTFLAGS of the selected mailbox: the system flags
    /// and every keyword its messages carry (RFC 9051 §7.3.5, §7.1), at
    /// SELECT and again whenever a new keyword appears.
    fn flags_lines(&mut self, view: &View) {
        let mut flags = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        for k in view.keywords() {
            flags.push(' ');
            flags.push_str(k);
        }
        self.line(&format!("* FLAGS ({flags})"));
        if view.read_only {
            self.line("* OK [PERMANENTFLAGS ()] read-only");
        } else {
            self.line(&format!("* OK [PERMANENTFLAGS ({flags} \\*)] flags are kept"));
        }
    }

    /// LIST and LSUB (RFC 9051 §6.3.9); with `opts`, the extended LIST of
    /// RFC 5258 (selection SUBSCRIBED, SPECIAL-USE; return SUBSCRIBED,
    /// CHILDREN, SPECIAL-USE, STATUS of RFC 5819).
    async fn list(
        &mut self,
        reference: &str,
        pattern: &ListMailbox<'_>,
        lsub: bool,
        opts: Option<ListOptions>,
    ) -> Outcome {
        let pattern: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let verb = if lsub { "LSUB" } else { "LIST" };
        // RFC 5258 §3: `LIST ref (p1 p2 ...)` lists what any pattern matches.
        let patterns: Vec<String> = match opts.as_ref().filter(|o| !o.patterns.is_empty()) {
            Some(o) => o.patterns.iter().map(|p| self.name_from_wire(p)).collect(),
            None => vec![self.name_from_wire(pattern)],
        };
        if let [only] = patterns.as_slice()
            && only.is_empty()
        {
            // RFC 9051 §6.3.9: the hierarchy delimiter and root.
            self.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Outcome::ok(&format!("{verb} completed"));
        }
        let fulls: Vec<String> = patterns.iter().map(|p| format!("{reference}{p}")).collect();
        // Bounded work per command: matching costs the pattern times each name.
        if fulls.iter().any(|f| f.len() > names::MAX_PATTERN_OCTETS) {
            return Outcome::No(Some("LIMIT"), format!("mailbox pattern over {} octets", names::MAX_PATTERN_OCTETS));
        }
        let mailboxes = match self.store.list_mailboxes(self.owner()).await {
            Ok(m) => m,
            Err(e) => return store_error(&e),
        };
        let subscribed = match self.store.subscriptions(self.owner()).await {
            Ok(s) => s,
            Err(e) => return store_error(&e),
        };
        let names: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
        let matches = |name: &str| {
            fulls.iter().any(|full| {
                // INBOX matches case-insensitively.
                let pat = if full.to_ascii_uppercase().starts_with("INBOX") && name == "INBOX" {
                    format!("INBOX{}", &full[5..])
                } else {
                    full.clone()
                };
                names::wildcard_match(pat.as_bytes(), name.as_bytes())
            })
        };
        if lsub {
            for name in subscribed.iter().filter(|n| matches(n)) {
                let exists = names.contains(&name.as_str());
                let attrs = if exists { "" } else { "\\Noselect" };
                self.line(&format!("* LSUB ({attrs}) \"/\" {}", self.name_out(name)));
            }
            // RFC 3501 §6.3.9: a subscribed name the pattern does not reach
            // (`%` stops at the delimiter) shows as its parent, \Noselect,
            // when the parent is not subscribed itself.
            let mut parents: Vec<&str> = subscribed
                .iter()
                .filter(|n| !matches(n))
                .flat_map(|n| n.match_indices('/').map(move |(i, _)| &n[..i]))
                .filter(|p| !subscribed.iter().any(|s| s == p) && matches(p))
                .collect();
            parents.sort_unstable();
            parents.dedup();
            for p in parents {
                self.line(&format!("* LSUB (\\Noselect) \"/\" {}", self.name_out(p)));
            }
        } else {
            let o = opts.unwrap_or_default();
            let show_subscribed = o.return_subscribed || o.select_subscribed;
            // RFC 5258 §3.5 (RFC 9051 §6.3.9.5's table): with RECURSIVEMATCH,
            // a name the patterns match that has a subscribed descendant they
            // do not match is listed with CHILDINFO, even when it is not
            // subscribed (or does not exist) itself. A descendant that is
            // listed on its own gives no CHILDINFO, as Dovecot answers.
            let childinfo = |name: &str| {
                let prefix = format!("{name}/");
                o.recursive_match
                    && o.select_subscribed
                    && subscribed.iter().any(|s| s.starts_with(&prefix) && !matches(s))
            };
            const CHILDINFO: &str = " (\"CHILDINFO\" (\"SUBSCRIBED\"))";
            for m in mailboxes.iter().filter(|m| matches(&m.name)) {
                let is_subscribed = subscribed.contains(&m.name);
                let info = if childinfo(&m.name) { CHILDINFO } else { "" };
                if (o.select_subscribed && !is_subscribed && info.is_empty())
                    || (o.select_special_use && m.special_use.is_none())
                {
                    continue;
                }
                let prefix = format!("{}/", m.name);
                let mut attrs = vec![if names.iter().any(|n| n.starts_with(&prefix)) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                }];
                if let Some(su) = &m.special_use {
                    attrs.push(su);
                }
                if show_subscribed && is_subscribed {
                    attrs.push("\\Subscribed");
                }
                self.line(&format!("* LIST ({}) \"/\" {}{info}", attrs.join(" "), self.name_out(&m.name)));
                if o.return_status.is_some() {
                    self.list_status(m, o.return_status.as_deref().unwrap_or_default()).await;
                }
            }
            // Subscribed names that no longer exist (RFC 5258 §3.1).
            if o.select_subscribed {
                for name in subscribed.iter().filter(|n| matches(n) && !names.contains(&n.as_str())) {
                    let info = if childinfo(name) { CHILDINFO } else { "" };
                    self.line(&format!("* LIST (\\NonExistent \\Subscribed) \"/\" {}{info}", self.name_out(name)));
                }
                // Parents that neither exist nor are subscribed, listed only
                // for the CHILDINFO of a subscribed descendant.
                let mut parents: Vec<&str> = subscribed
                    .iter()
                    .flat_map(|n| n.match_indices('/').map(move |(i, _)| &n[..i]))
                    .filter(|p| !names.contains(p) && !subscribed.iter().any(|s| s == p) && matches(p) && childinfo(p))
                    .collect();
                parents.sort_unstable();
                parents.dedup();
                for p in parents {
                    self.line(&format!("* LIST (\\NonExistent) \"/\" {}{CHILDINFO}", self.name_out(p)));
                }
            }
        }
        Outcome::ok(&format!("{verb} completed"))
    }

    /// The STATUS line of a mailbox (RFC 9051 §6.3.11, §7.2.4). RECENT,
    /// SIZE, DELETED and DELETED-STORAGE read the message list.
    async fn status_line(&mut self, m: &facteur_store::Mailbox, items: &[StatusDataItemName]) {
        let needs_list = items.iter().any(|i| {
            matches!(
                i,
                StatusDataItemName::Deleted
                    | StatusDataItemName::Size
                    | StatusDataItemName::DeletedStorage
                    | StatusDataItemName::Recent
            )
        });
        let list = if needs_list { self.store.mailbox_messages(m.id).await.unwrap_or_default() } else { Vec::new() };
        // RFC 3501 §6.3.10: RECENT counts what no session has claimed yet.
        let recent = if items.contains(&StatusDataItemName::Recent) && !self.rev2 {
            let from = self.store.recent_from(m.id, None).await.unwrap_or(u32::MAX);
            list.iter().filter(|x| x.uid >= from).count()
        } else {
            0
        };
        let deleted = || list.iter().filter(|x| x.flags.iter().any(|f| f == "\\Deleted"));
        let parts: Vec<String> = items
            .iter()
            .map(|i| match i {
                StatusDataItemName::Messages => format!("MESSAGES {}", m.messages),
                StatusDataItemName::Recent => format!("RECENT {recent}"),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", m.uidnext),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", m.uidvalidity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", m.unseen),
                StatusDataItemName::HighestModSeq => format!("HIGHESTMODSEQ {}", m.highest_modseq),
                StatusDataItemName::Deleted => format!("DELETED {}", deleted().count()),
                StatusDataItemName::Size => format!("SIZE {}", list.iter().map(|x| x.size).sum::<u64>()),
                StatusDataItemName::DeletedStorage => {
                    format!("DELETED-STORAGE {}", deleted().map(|x| x.size).sum::<u64>())
                }
            })
            .collect();
        self.line(&format!("* STATUS {} ({})", self.name_out(&m.name), parts.join(" ")));
    }

    /// LIST ... RETURN (STATUS (items)) (RFC 5819): the items as written;
    /// unknown ones are left out.
    async fn list_status(&mut self, m: &facteur_store::Mailbox, items: &str) {
        let items: Vec<StatusDataItemName> = items
            .split_ascii_whitespace()
            .filter_map(|item| {
                Some(match item.to_ascii_uppercase().as_str() {
                    "MESSAGES" => StatusDataItemName::Messages,
                    "UIDNEXT" => StatusDataItemName::UidNext,
                    "UIDVALIDITY" => StatusDataItemName::UidValidity,
                    "UNSEEN" => StatusDataItemName::Unseen,
                    "RECENT" => StatusDataItemName::Recent,
                    "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
                    "SIZE" => StatusDataItemName::Size,
                    "DELETED" => StatusDataItemName::Deleted,
                    "DELETED-STORAGE" => StatusDataItemName::DeletedStorage,
                    _ => return None,
                })
            })
            .collect();
        self.status_line(m, &items).await;
    }

    async fn status(&mut self, name: &str, items: &[StatusDataItemName]) -> Outcome {
        let m = match self.store.mailbox(self.owner(), name).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::No(Some("NONEXISTENT"), format!("no mailbox {name}")),
            Err(e) => return store_error(&e),
        };
        self.status_line(&m, items).await;
        Outcome::ok("STATUS completed")
    }

    /// APPEND of one message or, with MULTIAPPEND (RFC 3502 §6.3.11), of
    /// several: all stored in one step, or none.
    async fn append(&mut self, name: &str, messages: Vec<NewMessage>) -> Outcome {
        let m = match self.store.mailbox(self.owner(), name).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::No(Some("TRYCREATE"), format!("no mailbox {name}")),
            Err(e) => return store_error(&e),
        };
        let mut joined = Vec::with_capacity(messages.len());
        for (parts, flags, date) in messages {
            match self.catenate(parts).await {
                Ok(data) => joined.push((data, flags, date)),
                Err(refusal) => return refusal,
            }
        }
        let messages = joined;
        // RFC 9208 §4.3.1: messages that would pass a limit are not stored.
        let bytes = messages.iter().map(|m| m.0.len() as u64).sum();
        match self.store.quota(self.owner()).await {
            Ok(q) if !quota::fits(q.as_ref(), bytes, messages.len() as u64) => {
                return over_quota("the message does not fit");
            }
            Ok(_) => {}
            Err(e) => return store_error(&e),
        }
        let r = if messages.len() == 1 {
            let (data, flags, date) = messages.into_iter().next().unwrap_or_default();
            self.store.append_message(m.id, data, flags, date).await.map(|placed| vec![placed])
        } else {
            self.store.append_messages(m.id, messages).await
        };
        match r {
            Ok(placed) => {
                self.poll(true).await;
                // RFC 4315 §3: with MULTIAPPEND, the UIDs as a set.
                let uids: Vec<u32> = placed.iter().map(|p| p.0).collect();
                let code = format!("APPENDUID {} {}", m.uidvalidity, seqset::compress(&uids));
                Outcome::Ok(Some(code), "APPEND completed".into())
            }
            Err(e) => store_error(&e),
        }
    }

    /// A message made of its parts (RFC 4469 §3): the octets sent, and the
    /// parts of stored messages the URLs name, in order. A URL that names
    /// another server or user, a mailbox that does not exist or has another
    /// UIDVALIDITY, or a UID not there is `NO [BADURL]`; a result past
    /// APPENDLIMIT is `NO [TOOBIG]`.
    async fn catenate(&self, mut parts: Vec<CatPart>) -> Result<Vec<u8>, Outcome> {
        // One literal (a plain APPEND): stored as it came, not copied.
        if let [CatPart::Text(_)] = parts.as_slice()
            && let Some(CatPart::Text(data)) = parts.pop()
        {
            return Ok(data);
        }
        let limit = self.cfg.append_limit as usize;
        let too_big = || Outcome::No(Some("TOOBIG"), format!("the message would be over {limit} octets"));
        let mut out = Vec::new();
        for part in parts {
            let piece = match part {
                CatPart::Text(text) => text,
                CatPart::Url(url) => self.url_part(&url).await.map_err(|why| Outcome::BadUrl(url, why))?,
            };
            if out.len() + piece.len() > limit {
                return Err(too_big());
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    /// The octets an IMAP URL names in this user's mail (RFC 5092, as
    /// FETCH BODY.PEEK[section]<partial> would give them), or why not.
    async fn url_part(&self, url: &str) -> Result<Vec<u8>, String> {
        let u = MessageUrl::parse(url)?;
        if u.host.as_deref().is_some_and(|h| !h.eq_ignore_ascii_case(&self.cfg.hostname)) {
            return Err("the URL names another server".into());
        }
        if u.user.as_deref().is_some_and(|user| !user.eq_ignore_ascii_case(self.owner())) {
            return Err("the URL names another user".into());
        }
        let section = match &u.section {
            Some(s) => Some(fetch_section(s).ok_or_else(|| format!("{s:?} is not a message section"))?),
            None => None,
        };
        let m = match self.store.mailbox(self.owner(), &u.mailbox).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(format!("no mailbox {}", u.mailbox)),
            Err(e) => {
                tracing::error!(error = %e, "IMAP CATENATE failed in storage");
                return Err("temporary storage failure, try again".into());
            }
        };
        if u.uidvalidity.is_some_and(|v| v != m.uidvalidity) {
            return Err(format!("{} has UIDVALIDITY {} now", u.mailbox, m.uidvalidity));
        }
        let raw = match self.store.fetch_messages(m.id, vec![u.uid], Part::Whole).await {
            Ok(found) => found.into_iter().next().map(|(_, raw)| raw),
            Err(e) => {
                tracing::error!(error = %e, "IMAP CATENATE failed in storage");
                return Err("temporary storage failure, try again".into());
            }
        };
        let raw = raw.ok_or_else(|| format!("no message with UID {} in {}", u.uid, u.mailbox))?;
        let partial = u.partial;
        // Parsing a large message is not for the runtime's threads.
        tokio::task::spawn_blocking(move || {
            let data = match &section {
                Some(sec) => mime::section(&raw, Some(sec)),
                None => raw,
            };
            match partial {
                None => data,
                Some((offset, length)) => {
                    let length = length.and_then(NonZeroU32::new).unwrap_or(NonZeroU32::MAX);
                    mime::partial(&data, Some((offset, length))).to_vec()
                }
            }
        })
        .await
        .map_err(|e| format!("reading the part failed: {e}"))
    }

    /// A tagged BAD for a message sequence number past the last message
    /// (RFC 9051 §9); UID sets and `$` are never past the end.
    fn seqs_past_the_end(&self, set: &SequenceSet, uid: bool) -> Option<Outcome> {
        let view = self.selected.as_ref()?;
        let saved = matches!(self.extension, Some(Extension::Saved(_)));
        (!uid && !saved && seqset::past_the_end(set, view.len()))
            .then(|| Outcome::Bad(format!("message sequence number past the last message ({})", view.len())))
    }

    /// The UIDs a command's message set names in the view (`uid`: a UID
    /// set, else sequence numbers); `$` (see `Extension::Saved`) names the
    /// saved result's messages still in the mailbox.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<u32> {
        let Some(view) = &self.selected else { return Vec::new() };
        if matches!(self.extension, Some(Extension::Saved(_))) {
            return view.saved.iter().copied().filter(|u| view.seq_of(*u).is_some()).collect();
        }
        if uid {
            seqset::uids(set, &view.uids())
        } else {
            seqset::seqs(set, view.len()).into_iter().filter_map(|s| view.by_seq(s).map(|m| m.uid)).collect()
        }
    }

    /// This session's own expunge (EXPUNGE, UID EXPUNGE, MOVE) of `uids`:
    /// out of the view, told as EXPUNGEs or, under QRESYNC, one VANISHED.
    fn expunged(&mut self, uids: &[u32]) {
        let Some(mut view) = self.selected.take() else { return };
        let gone: Vec<(u32, u32)> = uids.iter().filter_map(|&u| view.seq_of(u).map(|seq| (u, seq))).collect();
        self.contexts_lose(&mut view, &gone);
        // Only those the view had: the others were told already.
        let mut known: Vec<u32> = gone.iter().map(|g| g.0).collect();
        let seqs = view.remove(uids);
        self.selected = Some(view);
        if self.qresync {
            self.vanished(&mut known);
        } else {
            for s in seqs {
                self.line(&format!("* {s} EXPUNGE"));
            }
        }
    }

    async fn expunge(&mut self, only: Option<Vec<u32>>) -> Outcome {
        let Some(view) = &self.selected else { return Outcome::Bad("select a mailbox first".into()) };
        if view.read_only {
            return Outcome::No(Some("READ-ONLY"), "mailbox is read-only".into());
        }
        let id = view.mailbox_id;
        match self.store.expunge(id, only).await {
            Ok(uids) => {
                self.expunged(&uids);
                self.poll(true).await;
                Outcome::ok("EXPUNGE completed")
            }
            Err(e) => store_error(&e),
        }
    }

    /// SEARCH (RFC 9051 §6.4.4): `* SEARCH` for IMAP4rev1 clients, `*
    /// ESEARCH` (RFC 4731, RFC 9051 §7.3.4) with RETURN or after ENABLE IMAP4rev2.
    async fn search(
        &mut self,
        tag: &Tag<'_>,
        criteria: &[SearchKey<'_>],
        uid: bool,
        ret: Option<SearchReturn>,
        saved_key: bool,
    ) -> Outcome {
        let Some(hits) = self.search_hits(criteria, saved_key).await else {
            return Outcome::Bad("select a mailbox first".into());
        }; // RETURN (SAVE) keeps the result as `$` (RFC 5182 §2.1): only the
        // minimum and maximum when just those were asked besides SAVE.
        if let Some(r) = ret.as_ref().filter(|r| r.save) {
            let saved: Vec<u32> = if (r.min || r.max) && !r.all && !r.count {
                let ends = [r.min.then(|| hits.first()), r.max.then(|| hits.last())];
                let mut ends: Vec<u32> = ends.into_iter().flatten().flatten().map(|h| h.0).collect();
                ends.dedup();
                ends
            } else {
                hits.iter().map(|h| h.0).collect()
            };
            if let Some(view) = self.selected.as_mut() {
                view.saved = saved;
            }
        }
        // RFC 7162 §3.1.5: the highest MODSEQ of the messages returned —
        // with only MIN and/or MAX asked, of those one or two.
        let top_modseq = match &ret {
            Some(r) if (r.min || r.max) && !r.all && !r.count => {
                let ends = [r.min.then(|| hits.first()), r.max.then(|| hits.last())];
                ends.into_iter().flatten().flatten().map(|h| h.2).max().unwrap_or(0)
            }
            _ => hits.iter().map(|h| h.2).max().unwrap_or(0),
        };
        if ret.as_ref().is_some_and(|r| r.update) {
            let ctx = SearchContext {
                tag: tag.as_ref().to_string(),
                uid,
                criteria: criteria.iter().map(|k| k.clone().into_static()).collect(),
                saved_key,
                sort: None,
                result: hits.iter().map(|h| h.0).collect(),
            };
            if let Some(refusal) = self.keep_context(ctx) {
                return refusal;
            }
        }
        let hits: Vec<u32> = hits.into_iter().map(|(u, seq, _)| if uid { u } else { seq }).collect();
        let uses_modseq = criteria.iter().any(search::uses_modseq);
        if let Some(r) = ret {
            if r.save && !(r.min || r.max || r.all || r.count || r.update || r.partial.is_some()) {
                // SAVE alone answers nothing but the OK (RFC 5182 §2.1).
                return Outcome::ok("SEARCH completed");
            }
            let mut line = format!("* ESEARCH (TAG {})", quote(tag.as_ref()));
            if uid {
                line.push_str(" UID");
            }
            if let (true, Some(min)) = (r.min, hits.first()) {
                line.push_str(&format!(" MIN {min}"));
            }
            if let (true, Some(max)) = (r.max, hits.last()) {
                line.push_str(&format!(" MAX {max}"));
            }
            if r.all && !hits.is_empty() {
                line.push_str(&format!(" ALL {}", seqset::compress(&hits)));
            }
            if let Some((low, high)) = r.partial {
                line.push_str(&partial_item(low, high, &hits, seqset::compress));
            }
            if r.count {
                line.push_str(&format!(" COUNT {}", hits.len()));
            }
            if uses_modseq && !hits.is_empty() {
                line.push_str(&format!(" MODSEQ {top_modseq}"));
            }
            self.line(&line);
            return Outcome::ok("SEARCH completed");
        }
        let mut line = String::from("* SEARCH");
        for h in &hits {
            line.push_str(&format!(" {h}"));
        }
        if uses_modseq && !hits.is_empty() {
            line.push_str(&format!(" (MODSEQ {top_modseq})"));
        }
        self.line(&line);
        Outcome::ok("SEARCH completed")
    }

    /// The messages of the selected mailbox that match `criteria` (after
    /// the updates SEARCH may send, RFC 9051 §7.4.1), as (UID, sequence
    /// number, MODSEQ) in sequence order; `None` with no mailbox selected.
    async fn search_hits(&mut self, criteria: &[SearchKey<'_>], saved_key: bool) -> Option<Vec<(u32, u32, u64)>> {
        self.poll(false).await;
        self.matching(criteria, saved_key, None).await
    }

    /// The messages of the selected mailbox (or of those among `only`, a
    /// sorted list of UIDs) that match `criteria`, as `search_hits` gives
    /// them; nothing is polled.
    async fn matching(
        &self,
        criteria: &[SearchKey<'_>],
        saved_key: bool,
        only: Option<&[u32]>,
    ) -> Option<Vec<(u32, u32, u64)>> {
        let view = self.selected.as_ref()?;
        // `$` as the first key: only the saved result's messages are candidates.
        let candidate = |u: u32| !saved_key || view.saved.binary_search(&u).is_ok();
        let part = criteria.iter().map(search::needs).max().flatten();
        let (max_seq, max_uid) = (view.len(), view.messages().last().map_or(0, |m| m.uid));
        let wanted: Vec<(u32, &MessageMeta)> = match only {
            None => view.messages().iter().enumerate().map(|(i, m)| (i as u32 + 1, m)).collect(),
            Some(uids) => {
                uids.iter().filter_map(|&u| view.seq_of(u).and_then(|s| Some((s, view.by_seq(s)?)))).collect()
            }
        };
        let mut hits = Vec::new();
        // Messages are read (when a key needs them) as FETCH reads them: in
        // batches, and only the header when no key looks further.
        for chunk in wanted.chunks(FETCH_PIECE_MESSAGES) {
            let uids = chunk.iter().map(|(_, m)| m.uid).collect();
            let mut raws = self.read_messages(view.mailbox_id, uids, part).await.unwrap_or_default();
            for &(seq, m) in chunk {
                let raw = raws.remove(&m.uid).unwrap_or_default();
                let c = search::Candidate {
                    seq,
                    uid: m.uid,
                    flags: &m.flags,
                    internal_date: m.internal_date,
                    size: m.size,
                    modseq: m.modseq,
                    recent: view.is_recent(m.uid),
                    raw: &raw,
                };
                if candidate(m.uid) && criteria.iter().all(|k| search::matches(k, &c, max_seq, max_uid)) {
                    hits.push((m.uid, seq, m.modseq));
                }
            }
        }
        Some(hits)
    }

    /// The sort keys of the messages `wanted` (UID, sequence number), by
    /// UID: those the view keeps, and the others' headers read and parsed
    /// in batches, off the runtime's threads (then kept, up to the bound).
    async fn summarize(&mut self, wanted: &[(u32, u32)]) -> Result<Summaries, Outcome> {
        let Some(view) = self.selected.as_ref() else { return Err(Outcome::Bad("select a mailbox first".into())) };
        let mut all: Summaries =
            wanted.iter().filter_map(|(u, _)| view.sort_keys.get(u).map(|s| (*u, s.clone()))).collect();
        let missing: Vec<(u32, u32)> = wanted.iter().filter(|h| !all.contains_key(&h.0)).copied().collect();
        let mut fresh = std::collections::HashMap::with_capacity(missing.len());
        for chunk in missing.chunks(FETCH_PIECE_MESSAGES) {
            let uids = chunk.iter().map(|h| h.0).collect();
            let headers =
                self.read_messages(view.mailbox_id, uids, Some(Part::Header)).await.map_err(|e| store_error(&e))?;
            let metas: Vec<(u32, u32, i64, u64)> = chunk
                .iter()
                .filter_map(|&(u, seq)| view.by_seq(seq).map(|m| (u, seq, m.internal_date, m.size)))
                .collect();
            let parsed = tokio::task::spawn_blocking(move || {
                metas
                    .into_iter()
                    .map(|(u, seq, date, size)| {
                        let header = headers.get(&u).map(Vec::as_slice).unwrap_or_default();
                        thread::Summary::from_header(seq, u, date, size, header)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| Outcome::No(Some("SERVERBUG"), format!("reading the headers failed: {e}")))?;
            fresh.extend(parsed.into_iter().map(|s| (s.uid, std::sync::Arc::new(s))));
        }
        all.extend(fresh.iter().map(|(u, s)| (*u, s.clone())));
        if let Some(view) = self.selected.as_mut() {
            view.remember_sort_keys(fresh);
        }
        Ok(all)
    }

    /// SORT and THREAD (RFC 5256 §3, RFC 5957): the messages SEARCH would
    /// find, their headers read in batches as SEARCH reads them, sorted or
    /// threaded off the async runtime's threads (a large mailbox costs
    /// real CPU time), then `* SORT …` or `* THREAD …` with sequence
    /// numbers or UIDs.
    async fn sort_or_thread(
        &mut self,
        tag: &Tag<'_>,
        how: Ordering,
        charset: &str,
        criteria: &[SearchKey<'_>],
        uid: bool,
    ) -> Outcome {
        if let Some(refusal) = unsupported_charset(Some(charset)) {
            return refusal;
        }
        let (saved_key, ret) = match self.extension.take() {
            Some(Extension::Saved(_)) => (true, None),
            Some(Extension::Search(r)) => (false, Some(r)),
            _ => (false, None),
        };
        let Some(hits) = self.search_hits(criteria, saved_key).await else {
            return Outcome::Bad("select a mailbox first".into());
        };
        let wanted: Vec<(u32, u32)> = hits.iter().map(|h| (h.0, h.1)).collect();
        let known = match self.summarize(&wanted).await {
            Ok(known) => known,
            Err(refusal) => return refusal,
        };
        let summaries: Vec<thread::Summary> = hits
            .iter()
            .filter_map(|&(u, seq, _)| known.get(&u).map(|s| thread::Summary { seq, ..(**s).clone() }))
            .collect();
        drop(known);
        let id = move |s: &thread::Summary| if uid { s.uid } else { s.seq };
        let update = ret.as_ref().is_some_and(|r| r.update);
        let program: Vec<SearchKey<'static>> = match update {
            true => criteria.iter().map(|k| k.clone().into_static()).collect(),
            false => Vec::new(),
        };
        let esearch =
            ret.map(|r| (r, format!("* ESEARCH (TAG {}){}", quote(tag.as_ref()), if uid { " UID" } else { "" })));
        let verb = if matches!(how, Ordering::Sort(_)) { "SORT" } else { "THREAD" };
        let line = tokio::task::spawn_blocking(move || match how {
            Ordering::Sort(criteria) => {
                let sorted = thread::sort(&summaries, &criteria);
                let order: Vec<u32> = sorted.iter().map(|&i| id(&summaries[i])).collect();
                let line = match esearch {
                    Some((r, head)) => esort(head, &r, &order),
                    None => {
                        let ids: Vec<String> = order.iter().map(u32::to_string).collect();
                        format!("* SORT {}", ids.join(" ")).trim_end().to_string()
                    }
                };
                // CONTEXT=SORT: the result kept, as UIDs in this order.
                let kept = update.then(|| (criteria, sorted.iter().map(|&i| summaries[i].uid).collect::<Vec<_>>()));
                Some((line, kept))
            }
            Ordering::Thread(algorithm) => {
                let trees = thread::thread(&summaries, &algorithm)?;
                let line = format!("* THREAD {}", thread::render(&trees, |i| id(&summaries[i]))).trim_end().to_string();
                Some((line, None))
            }
        })
        .await;
        match line {
            Ok(Some((line, kept))) => {
                if let Some((sort, result)) = kept {
                    let tag = tag.as_ref().to_string();
                    let ctx = SearchContext { tag, uid, criteria: program, saved_key, sort: Some(sort), result };
                    if let Some(refusal) = self.keep_context(ctx) {
                        return refusal;
                    }
                }
                self.line(&line);
                Outcome::ok(&format!("{verb} completed"))
            }
            Ok(None) => Outcome::Bad("unknown threading algorithm".into()),
            Err(e) => Outcome::No(Some("SERVERBUG"), format!("sorting failed: {e}")),
        }
    }

    /// FETCH (RFC 9051 §6.4.5): `None` when the first piece is in the
    /// output and more follow (`Next::More`).
    async fn fetch(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        changed_since: Option<u64>,
    ) -> Option<Outcome> {
        self.poll(false).await;
        let mut names: Vec<MessageDataItemName> = match names {
            MacroOrMessageDataItemNames::Macro(m) => m.expand().into_iter().map(IntoStatic::into_static).collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(n) => {
                n.into_iter().map(IntoStatic::into_static).collect()
            }
        };
        if uid && !names.contains(&MessageDataItemName::Uid) {
            names.insert(0, MessageDataItemName::Uid);
        }
        // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ in the response.
        if changed_since.is_some() && !names.contains(&MessageDataItemName::ModSeq) {
            names.push(MessageDataItemName::ModSeq);
        }
        if names.contains(&MessageDataItemName::ModSeq) {
            self.condstore_on();
        }
        if let Some(bad) = self.seqs_past_the_end(set, uid) {
            return Some(bad);
        }
        let uids = self.resolve(set, uid);
        let Some(view) = self.selected.as_mut() else { return Some(Outcome::Bad("select a mailbox first".into())) };
        // Reading a body without PEEK sets \Seen (RFC 9051 §6.4.5).
        let marks_seen = !view.read_only
            && names.iter().any(|n| {
                matches!(
                    n,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                        | MessageDataItemName::Binary { peek: false, .. }
                )
            });
        let mut seen_now = std::collections::HashSet::new();
        if marks_seen {
            let unseen: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| {
                    view.seq_of(*u).and_then(|s| view.by_seq(s)).is_some_and(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                })
                .collect();
            if !unseen.is_empty() {
                let r = self.store.store_flags(view.mailbox_id, unseen, FlagOp::Add, vec!["\\Seen".into()], None).await;
                match r {
                    Ok(r) => {
                        for (u, f, m) in r.changed {
                            view.set_flags(u, f, m);
                            view.own_change(m);
                            seen_now.insert(u);
                        }
                    }
                    Err(e) => return Some(store_error(&e)),
                }
            }
        }
        let mut seen: Vec<u32> = seen_now.iter().copied().collect();
        seen.sort_unstable();
        self.contexts_recheck(seen).await;
        let job = PendingFetch { tag: tag.clone(), uids, next: 0, names, changed_since, seen_now };
        self.fetch_piece(job).await
    }

    /// Send the next piece of a FETCH that returned `Next::More`.
    pub async fn resume(&mut self) -> Next {
        let Some(job) = self.pending.take() else { return Next::Command };
        let tag = job.tag.clone();
        match self.fetch_piece(job).await {
            Some(outcome) => {
                self.finish(&tag, outcome);
                Next::Command
            }
            None => Next::More,
        }
    }

    /// Put one piece of a FETCH in the output: its outcome when it is the
    /// last, else `None` with the rest kept in `pending`.
    async fn fetch_piece(&mut self, mut job: PendingFetch) -> Option<Outcome> {
        let Some(view) = self.selected.take() else { return Some(Outcome::Bad("select a mailbox first".into())) };
        let done = self.fetch_from(&view, &mut job).await;
        self.selected = Some(view);
        match done {
            Ok(true) => Some(Outcome::ok("FETCH completed")),
            Ok(false) => {
                self.pending = Some(job);
                None
            }
            Err(outcome) => Some(outcome),
        }
    }

    /// The stored messages (or as much of them as `part` says) by UID, in
    /// one storage read; nothing is read when `part` is `None`.
    async fn read_messages(
        &self,
        mailbox_id: i64,
        uids: Vec<u32>,
        part: Option<Part>,
    ) -> Result<std::collections::HashMap<u32, Vec<u8>>, StoreError> {
        match part {
            Some(part) => Ok(self.store.fetch_messages(mailbox_id, uids, part).await?.into_iter().collect()),
            None => Ok(Default::default()),
        }
    }

    /// The messages of `job` from `job.next`, up to a piece's bounds;
    /// `Ok(true)` when none is left.
    async fn fetch_from(&mut self, view: &View, job: &mut PendingFetch) -> Result<bool, Outcome> {
        let part = job.names.iter().map(needs).max().flatten();
        let mut octets = 0;
        let piece: Vec<u32> = job.uids[job.next..]
            .iter()
            .copied()
            .take(FETCH_PIECE_MESSAGES)
            .take_while(|u| {
                let first = octets == 0;
                octets += view.seq_of(*u).and_then(|s| view.by_seq(s)).map_or(0, |m| m.size.max(1));
                first || part.is_none() || octets <= FETCH_PIECE_OCTETS
            })
            .collect();
        job.next += piece.len();
        let mut bodies = self.read_messages(view.mailbox_id, piece.clone(), part).await.map_err(|e| store_error(&e))?;
        let origins: Vec<Option<u32>> = job
            .names
            .iter()
            .filter_map(|n| match n {
                MessageDataItemName::Binary { partial, .. } => Some(partial.map(|p| p.0)),
                _ => None,
            })
            .collect();
        for u in piece {
            let Some(seq) = view.seq_of(u) else { continue };
            let Some(meta) = view.by_seq(seq) else { continue };
            if job.changed_since.is_some_and(|c| meta.modseq <= c) {
                continue;
            }
            let raw = match bodies.remove(&u) {
                Some(r) => r,
                None if part.is_some() => continue, // expunged meanwhile
                None => Vec::new(),
            };
            let mut items = match self.items(meta, view.is_recent(u), &raw, &job.names) {
                Ok(items) => items,
                Err(mime::UnknownCte(why)) => return Err(Outcome::No(Some("UNKNOWN-CTE"), why)),
            };
            if job.seen_now.contains(&u) && !job.names.contains(&MessageDataItemName::Flags) {
                items.push(MessageDataItem::Flags(fetch_flags(&meta.flags, view.is_recent(u))));
            }
            if let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(items)) {
                self.fetch_data(seq, items, &origins);
            }
        }
        Ok(job.next >= job.uids.len())
    }

    /// The FETCH items of one message; BINARY of a part it cannot decode
    /// refuses the whole FETCH (`NO [UNKNOWN-CTE]`).
    fn items(
        &self,
        m: &MessageMeta,
        recent: bool,
        raw: &[u8],
        names: &[MessageDataItemName<'_>],
    ) -> Result<Vec<MessageDataItem<'static>>, mime::UnknownCte> {
        use imap_codec::imap_types::fetch::Section;
        // The MIME parse is done once, and only for items that need it: the
        // header sections of a message list are cut without it.
        let mut parsed: Option<mime::Mime> = None;
        fn cut<'r>(raw: &'r [u8], parsed: &mut Option<mime::Mime<'r>>, sec: Option<&Section>) -> Vec<u8> {
            if let Some(bytes) = mime::top_level_section(raw, sec) {
                return bytes;
            }
            parsed.get_or_insert_with(|| mime::Mime::parse(raw)).section(sec)
        }
        let mut out = Vec::new();
        for n in names {
            let item = match n {
                MessageDataItemName::Uid => NonZeroU32::new(m.uid).map(MessageDataItem::Uid),
                MessageDataItemName::Flags => Some(MessageDataItem::Flags(fetch_flags(&m.flags, recent))),
                MessageDataItemName::InternalDate => imap_date(m.internal_date).map(MessageDataItem::InternalDate),
                MessageDataItemName::Rfc822Size => Some(MessageDataItem::Rfc822Size(m.size as u32)),
                MessageDataItemName::ModSeq => std::num::NonZeroU64::new(m.modseq).map(MessageDataItem::ModSeq),
                MessageDataItemName::Rfc822 => Some(MessageDataItem::Rfc822(literal(raw.to_vec()))),
                MessageDataItemName::Rfc822Header => {
                    Some(MessageDataItem::Rfc822Header(literal(cut(raw, &mut parsed, Some(&Section::Header(None))))))
                }
                MessageDataItemName::Rfc822Text => {
                    Some(MessageDataItem::Rfc822Text(literal(cut(raw, &mut parsed, Some(&Section::Text(None))))))
                }
                MessageDataItemName::BodyExt { section: sec, partial, .. } => {
                    let data = cut(raw, &mut parsed, sec.as_ref());
                    Some(MessageDataItem::BodyExt {
                        section: sec.clone().map(IntoStatic::into_static),
                        origin: partial.map(|p| p.0),
                        data: literal(mime::partial(&data, *partial).to_vec()),
                    })
                }
                _ => None,
            };
            if let Some(item) = item {
                out.push(item);
                continue;
            }
            let p = parsed.get_or_insert_with(|| mime::Mime::parse(raw));
            let item = match n {
                MessageDataItemName::Envelope => Some(MessageDataItem::Envelope(p.envelope())),
                MessageDataItemName::BodyStructure => Some(MessageDataItem::BodyStructure(p.body_structure(true))),
                MessageDataItemName::Body => Some(MessageDataItem::Body(p.body_structure(false))),
                // RFC 9051 §6.4.5 (from RFC 3516): decoded, in a literal8
                // since it may hold NUL; a partial one's origin is added
                // by `fetch_data`.
                MessageDataItemName::Binary { section, partial, .. } => {
                    let data = p.binary(section)?;
                    Some(MessageDataItem::Binary {
                        section: section.clone(),
                        value: NString8::Literal8(Literal8 {
                            data: mime::partial(&data, *partial).to_vec().into(),
                            mode: LiteralMode::Sync,
                        }),
                    })
                }
                MessageDataItemName::BinarySize { section } => Some(MessageDataItem::BinarySize {
                    section: section.clone(),
                    size: u32::try_from(p.binary(section)?.len()).unwrap_or(u32::MAX),
                }),
                _ => None,
            };
            out.extend(item);
        }
        Ok(out)
    }

    async fn store_cmd(
        &mut self,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<Flag<'_>>,
        uid: bool,
        unchanged_since: Option<u64>,
    ) -> Outcome {
        self.poll(false).await;
        let Some((mailbox_id, read_only)) = self.selected.as_ref().map(|v| (v.mailbox_id, v.read_only)) else {
            return Outcome::Bad("select a mailbox first".into());
        };
        if read_only {
            return Outcome::No(Some("READ-ONLY"), "mailbox is read-only".into());
        }
        if let Some(bad) = self.seqs_past_the_end(set, uid) {
            return bad;
        }
        let uids = self.resolve(set, uid);
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let flags: Vec<String> = flags.iter().map(flag_string).collect();
        let r = match self.store.store_flags(mailbox_id, uids, op, flags, unchanged_since).await {
            Ok(r) => r,
            Err(e) => return store_error(&e),
        };
        if unchanged_since.is_some() {
            self.condstore_on();
        }
        let silent = response == StoreResponse::Silent;
        let Some(mut view) = self.selected.take() else { return Outcome::Bad("select a mailbox first".into()) };
        for (_, _, m) in &r.changed {
            view.own_change(*m);
        }
        for (u, f, m) in r.changed.iter().chain(r.unchanged.iter()) {
            view.set_flags(*u, f.clone(), *m);
        }
        if view.take_new_keywords() {
            self.flags_lines(&view);
        }
        for (u, f, m) in r.changed.iter().chain(r.unchanged.iter()) {
            // .SILENT still reports MODSEQ under CONDSTORE (RFC 7162 §3.1.3).
            if silent && !self.condstore {
                continue;
            }
            let Some(seq) = view.seq_of(*u) else { continue };
            let uid_part = if uid { format!(" UID {u}") } else { String::new() };
            let modseq = if self.condstore { format!(" MODSEQ ({m})") } else { String::new() };
            if silent {
                // Only UID and MODSEQ, one space between them.
                self.line(&format!("* {seq} FETCH ({})", format!("{uid_part}{modseq}").trim_start()));
            } else {
                self.line(&format!("* {seq} FETCH (FLAGS ({}){uid_part}{modseq})", flags_text(f, view.is_recent(*u))));
            }
        }
        let modified: Vec<u32> =
            if uid { r.modified.clone() } else { r.modified.iter().filter_map(|u| view.seq_of(*u)).collect() };
        self.selected = Some(view);
        let mut changed: Vec<u32> = r.changed.iter().map(|c| c.0).collect();
        changed.sort_unstable();
        self.contexts_recheck(changed).await;
        if !modified.is_empty() {
            return Outcome::Ok(
                Some(format!("MODIFIED {}", seqset::compress(&modified))),
                "conditional STORE failed".into(),
            );
        }
        Outcome::ok("STORE completed")
    }

    /// The octets and number of the messages among `uids` in the selected
    /// mailbox, as its view knows them.
    fn sizes(&self, uids: &[u32]) -> (u64, u64) {
        let Some(view) = &self.selected else { return (0, 0) };
        uids.iter()
            .filter_map(|u| view.seq_of(*u).and_then(|s| view.by_seq(s)))
            .fold((0, 0), |(bytes, n), m| (bytes.saturating_add(m.size), n + 1))
    }

    /// GETQUOTAROOT (RFC 9208 §4.1.2): `* QUOTAROOT mailbox ""` and the
    /// root's QUOTA; a user without any limit has no quota root, so the
    /// QUOTAROOT response names none (§4.2.2 allows zero roots).
    async fn get_quota_root(&mut self, name: &str) -> Outcome {
        let m = match self.store.mailbox(self.owner(), name).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::No(Some("NONEXISTENT"), format!("no mailbox {name}")),
            Err(e) => return store_error(&e),
        };
        let resources = match self.store.quota(self.owner()).await {
            Ok(q) => q.as_ref().and_then(quota::resources),
            Err(e) => return store_error(&e),
        };
        let roots = if resources.is_some() { format!(" {}", quote(quota::ROOT)) } else { String::new() };
        self.line(&format!("* QUOTAROOT {}{roots}", self.name_out(&m.name)));
        if let Some(resources) = resources {
            self.quota_response(resources);
        }
        Outcome::ok("GETQUOTAROOT completed")
    }

    /// GETQUOTA (RFC 9208 §4.1.1): the user's one root, if they have limits.
    async fn get_quota(&mut self, root: &[u8]) -> Outcome {
        let resources = match self.store.quota(self.owner()).await {
            Ok(q) => q.as_ref().and_then(quota::resources),
            Err(e) => return store_error(&e),
        };
        match resources {
            Some(resources) if root == quota::ROOT.as_bytes() => {
                self.quota_response(resources);
                Outcome::ok("GETQUOTA completed")
            }
            _ => Outcome::No(None, "no such quota root".into()),
        }
    }

    /// `* QUOTA "" (…)` (RFC 9208 §4.2.1).
    fn quota_response(&mut self, quotas: Vec1<QuotaGet<'static>>) {
        if let Ok(root) = AString::try_from(quota::ROOT) {
            self.data(Data::Quota { root, quotas });
        }
    }

    async fn copy(&mut self, set: &SequenceSet, target: &str, uid: bool, moving: bool) -> Outcome {
        let Some((mailbox_id, read_only)) = self.selected.as_ref().map(|v| (v.mailbox_id, v.read_only)) else {
            return Outcome::Bad("select a mailbox first".into());
        };
        if moving && read_only {
            return Outcome::No(Some("READ-ONLY"), "mailbox is read-only".into());
        }
        if let Some(bad) = self.seqs_past_the_end(set, uid) {
            return bad;
        }
        let dest = match self.store.mailbox(self.owner(), target).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::No(Some("TRYCREATE"), format!("no mailbox {target}")),
            Err(e) => return store_error(&e),
        };
        let uids = self.resolve(set, uid);
        // RFC 9208 §4.3.1: a COPY that would pass a limit copies nothing.
        // A MOVE stays under the user's one quota root (all their mailboxes)
        // and adds nothing to it (storage places the copies and removes the
        // originals in one transaction), so it is never refused for quota.
        if !moving {
            let (bytes, count) = self.sizes(&uids);
            match self.store.quota(self.owner()).await {
                Ok(q) if !quota::fits(q.as_ref(), bytes, count) => return over_quota("the messages do not fit"),
                Ok(_) => {}
                Err(e) => return store_error(&e),
            }
        }
        let pairs = match self.store.copy_messages(mailbox_id, uids, dest.id, moving).await {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        let verb = if moving { "MOVE" } else { "COPY" };
        if pairs.is_empty() {
            return Outcome::ok(&format!("{verb} completed (nothing to do)"));
        }
        let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let code = format!("COPYUID {} {} {}", dest.uidvalidity, seqset::compress(&src), seqset::compress(&dst));
        if moving {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
            self.line(&format!("* OK [{code}] moved"));
            self.expunged(&src);
            self.poll(true).await;
            return Outcome::ok("MOVE completed");
        }
        if dest.id == mailbox_id {
            self.poll(true).await;
        }
        Outcome::Ok(Some(code), "COPY completed".into())
    }
}

/// Where a line fragment that ends in a BINARY item's literal8 header
/// (`…] ~{n}\r\n`) has that item's closing bracket end: the place of its
/// `<origin>`.
fn literal8_at_end(line: &[u8]) -> Option<usize> {
    let head = line.strip_suffix(b"}\r\n")?;
    let digits = head.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let head = &head[..head.len() - digits];
    (digits > 0 && head.ends_with(b"] ~{")).then(|| head.len() - 3)
}

impl<S> Drop for Session<S> {
    fn drop(&mut self) {
        if let (Some(slots), Some(user)) = (&self.slots, &self.user) {
            slots.release(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        assert_eq!(quote("Sent"), "\"Sent\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("é"), "{2}\r\né");
    }

    #[test]
    fn esort_keeps_the_sort_order() {
        let all = SearchReturn { min: true, max: true, all: true, count: true, ..Default::default() };
        let line = esort("* ESEARCH (TAG \"a\")".into(), &all, &[7, 3, 4, 5, 1, 9]);
        assert_eq!(line, "* ESEARCH (TAG \"a\") MIN 7 MAX 9 ALL 7,3:5,1,9 COUNT 6");
        let count = SearchReturn { count: true, ..Default::default() };
        assert_eq!(esort("* ESEARCH (TAG \"b\") UID".into(), &count, &[]), "* ESEARCH (TAG \"b\") UID COUNT 0");
        let ends = SearchReturn { min: true, max: true, ..Default::default() };
        assert_eq!(esort("* ESEARCH (TAG \"c\")".into(), &ends, &[]), "* ESEARCH (TAG \"c\")");
    }

    #[test]
    fn a_binary_literal8_is_found_at_the_end_of_its_line() {
        assert_eq!(literal8_at_end(b"* 1 FETCH (BINARY[1.2] ~{17}\r\n"), Some(22));
        assert_eq!(literal8_at_end(b"* 1 FETCH (BINARY[] ~{0}\r\n"), Some(19));
        assert_eq!(literal8_at_end(b"* 1 FETCH (BODY[1] {17}\r\n"), None);
        assert_eq!(literal8_at_end(b"ENVELOPE (\"] ~{\" NIL) BODY[] {3}\r\n"), None);
        assert_eq!(literal8_at_end(b"x] ~{}\r\n"), None);
    }
}
