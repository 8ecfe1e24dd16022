//! `facteur import`: a user's mail from a Maildir++ folder (as Dovecot lays
//! it out) or from an mbox file, into that user's mailboxes (docs/moving.md).
//!
//! - Maildir++: `DIR/cur` and `DIR/new` are INBOX; `DIR/.Name` and
//!   `DIR/.Parent.Child` are `Name` and `Parent/Child`, each level in
//!   modified UTF-7 (RFC 3501 §5.1.3) as Dovecot writes it. Flags come from
//!   the `:2,` info (S R F T D, P as `$Forwarded`), in `new/` too, where
//!   Dovecot leaves a message flagged before any client took it (one there
//!   without info is unseen); lower-case letters are keywords, named by
//!   the folder's `dovecot-keywords`. The internal date is the file's mtime
//!   (Dovecot keeps the received date there). Messages keep Dovecot's
//!   order: by UID in the folder's `dovecot-uidlist`, then (those it does
//!   not list yet) by the delivery time their names start with. `tmp/`
//!   holds deliveries that never finished and is left alone.
//! - mbox (mboxrd, and mboxo read the same way): a message starts at a
//!   line `From ` at the top of the file or after an empty line; `>From `
//!   lines lose one `>`; `Status:`/`X-Status:` (and Dovecot's `X-Keywords:`)
//!   become flags and are removed, as are Dovecot's `X-UID:`/`X-IMAPbase:`;
//!   the internal date is the From_ line's (asctime, read as UTC).
//!
//! Messages are stored with CRLF line ends, one at a time (a message over
//! [`MAX_MESSAGE`] is skipped), each with `Mailstore::append_message`.
//! Missing mailboxes are created, a well-known top-level name taking its
//! special use if the user has no mailbox with it yet. A file or message
//! that cannot be read is listed in [`Summary::skipped`] and the import
//! goes on; a storage error stops it (what was stored stays).
//!
//! Running an import again stores nothing twice that has a `Message-ID:`:
//! a message whose Message-ID and Date are those of a message that was in
//! the mailbox before the import began is counted in
//! [`Summary::duplicates`] and left out. Messages without a Message-ID are
//! stored again.
//!
//! This file uses only external crates' paths (no `crate::`): the tests
//! build it on its own (`crates/facteur/tests/import.rs`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use facteur_store::{Directory, Mailstore, Part};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The largest message imported (256 MiB); a larger one is skipped.
pub const MAX_MESSAGE: u64 = 256 * 1024 * 1024;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Mailboxes written into (created or already there).
    pub mailboxes: usize,
    /// Messages stored.
    pub messages: u64,
    /// Their size as stored (CRLF line ends).
    pub bytes: u64,
    /// Messages left out because the mailbox had them before the import.
    pub duplicates: u64,
    /// What could not be imported, and why: one line each.
    pub skipped: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} messages ({} octets) into {} mailboxes; {} already there; {} skipped",
            self.messages,
            self.bytes,
            self.mailboxes,
            self.duplicates,
            self.skipped.len()
        )
    }
}

/// Import a Maildir++ folder (`dir` holds `cur/`, `new/` and the `.Name`
/// folders) into `user`'s mailboxes. `progress`: a bar on stderr counting
/// messages.
pub async fn maildir<S: Mailstore + Directory>(
    store: &S,
    user: &str,
    dir: &Path,
    progress: bool,
) -> anyhow::Result<Summary> {
    let owner = existing_user(store, user).await?;
    let meta = tokio::fs::metadata(dir).await.with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a folder; for an mbox file use `facteur import mbox`", dir.display());
    }
    if !is_maildir(dir) {
        bail!("{} is not a Maildir: it has no cur/ or new/ folder", dir.display());
    }
    let mut summary = Summary::default();
    let folders = maildir_folders(dir, &mut summary.skipped).await?;
    let mut total = 0u64;
    for f in &folders {
        for sub in ["cur", "new"] {
            total += count_entries(&f.path.join(sub)).await;
        }
    }
    let bar = progress_bar(progress, total, "{prefix:>24} [{bar:30}] {pos}/{len} messages {msg}");
    let mut special = SpecialUse::of(store, &owner).await?;
    for folder in folders {
        bar.set_prefix(folder.name.clone());
        let mailbox = ensure_mailbox(store, &owner, &folder.name, &mut special).await?;
        summary.mailboxes += 1;
        let known = existing_keys(store, &mailbox).await?;
        let keywords = dovecot_keywords(&folder.path, &folder.name, &mut summary.skipped).await;
        let uids = dovecot_uids(&folder.path).await;
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let path = folder.path.join(sub);
            if let Err(e) = list_files(&path, &uids, &mut files).await {
                summary.skipped.push(format!("{}: cannot be listed: {e}", path.display()));
            }
        }
        files.sort();
        let mut last = None;
        for (_, name, path) in files {
            bar.inc(1);
            let flags = maildir_flags(&name, &keywords);
            let Some((data, internal_date)) = read_maildir_file(&path, &mut summary.skipped).await else { continue };
            last = store_one(store, &mailbox, &known, data, flags, internal_date, &mut summary)
                .await
                .with_context(|| format!("storing {} into {}", path.display(), folder.name))?
                .or(last);
        }
        not_recent(store, &mailbox, last).await?;
        bar.set_message(format!("{} imported", summary.messages));
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Import an mbox file into `user`'s `mailbox` (created if missing).
/// `progress`: a bar on stderr counting the file's octets.
pub async fn mbox<S: Mailstore + Directory>(
    store: &S,
    user: &str,
    file: &Path,
    mailbox: &str,
    progress: bool,
) -> anyhow::Result<Summary> {
    let owner = existing_user(store, user).await?;
    let name = facteur_imap::names::new_name(mailbox.as_bytes(), true)
        .map_err(|e| anyhow::anyhow!("{mailbox:?} is not a mailbox name: {e}"))?;
    let name = facteur_store::invariants::normalize_name(&name);
    let handle = tokio::fs::File::open(file).await.with_context(|| format!("cannot open {}", file.display()))?;
    let meta = handle.metadata().await.with_context(|| format!("cannot read {}", file.display()))?;
    if meta.is_dir() {
        bail!("{} is a folder; for a Maildir use `facteur import maildir`", file.display());
    }
    let fallback_date = meta.modified().map_or(0, unix_seconds);
    let mut reader = MboxReader::new(BufReader::with_capacity(64 * 1024, handle));
    // The first message is read before anything is created: a file that
    // is not an mbox leaves no empty mailbox behind.
    let mut next = reader.next().await.with_context(|| format!("reading {}", file.display()))?;
    if reader.not_mbox {
        bail!("{} is not an mbox file: it does not start with a \"From \" line", file.display());
    }
    let mut special = SpecialUse::of(store, &owner).await?;
    let target = ensure_mailbox(store, &owner, &name, &mut special).await?;
    let known = existing_keys(store, &target).await?;
    let mut summary = Summary { mailboxes: 1, ..Summary::default() };
    let bar = progress_bar(progress, meta.len(), "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {msg}");
    bar.set_prefix(name.clone());
    let mut last = None;
    while let Some(item) = next {
        bar.set_position(reader.offset);
        match item {
            MboxItem::TooLarge { line } => summary
                .skipped
                .push(format!("{}: message at line {line} is larger than {MAX_MESSAGE} octets", file.display())),
            MboxItem::Internal => {}
            MboxItem::Message(m) => {
                let date = m.date.unwrap_or(fallback_date);
                last = store_one(store, &target, &known, m.data, m.flags, date, &mut summary)
                    .await
                    .with_context(|| format!("storing the message at line {} of {}", m.line, file.display()))?
                    .or(last);
                bar.set_message(format!("{} messages", summary.messages));
            }
        }
        next = reader.next().await.with_context(|| format!("reading {}", file.display()))?;
    }
    not_recent(store, &target, last).await?;
    bar.finish_and_clear();
    Ok(summary)
}

/// The user's canonical address, or an error naming the user.
async fn existing_user<S: Directory>(store: &S, user: &str) -> anyhow::Result<String> {
    match store.get_user(user).await? {
        Some(u) => Ok(u.address),
        None => bail!("no user {user}: add it first (facteur user add {user})"),
    }
}

fn progress_bar(on: bool, total: u64, template: &str) -> indicatif::ProgressBar {
    if !on {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr()).with_style(style)
}

/// RFC 6154 special uses for well-known top-level names; a name takes its
/// use only while none of the user's mailboxes has it (facteur makes Sent,
/// Drafts, Trash, Junk and Archive for every user already).
struct SpecialUse {
    taken: HashSet<String>,
}

impl SpecialUse {
    async fn of<S: Mailstore>(store: &S, owner: &str) -> anyhow::Result<SpecialUse> {
        let taken = store.list_mailboxes(owner).await?.into_iter().filter_map(|m| m.special_use).collect();
        Ok(SpecialUse { taken })
    }

    fn take(&mut self, name: &str) -> Option<&'static str> {
        let use_ = match name {
            "Sent" => "\\Sent",
            "Drafts" => "\\Drafts",
            "Trash" => "\\Trash",
            "Junk" | "Spam" => "\\Junk",
            "Archive" => "\\Archive",
            _ => return None,
        };
        self.taken.insert(use_.to_string()).then_some(use_)
    }
}

/// The mailbox `name` of `owner`, created if missing.
async fn ensure_mailbox<S: Mailstore>(
    store: &S,
    owner: &str,
    name: &str,
    special: &mut SpecialUse,
) -> anyhow::Result<facteur_store::Mailbox> {
    if let Some(m) = store.mailbox(owner, name).await? {
        return Ok(m);
    }
    let use_ = special.take(name);
    store.create_mailbox(owner, name, use_).await.with_context(|| format!("creating mailbox {name}"))
}

/// (Message-ID, Date) of a message, as the duplicate check compares them:
/// `None` without a Message-ID.
type Key = (String, String);

/// The keys of the messages `mailbox` holds now, read by headers 256 at a
/// time.
async fn existing_keys<S: Mailstore>(store: &S, mailbox: &facteur_store::Mailbox) -> anyhow::Result<HashSet<Key>> {
    let mut keys = HashSet::new();
    if mailbox.messages == 0 {
        return Ok(keys);
    }
    let uids: Vec<u32> = store.mailbox_messages(mailbox.id).await?.into_iter().map(|m| m.uid).collect();
    for chunk in uids.chunks(256) {
        for (_, header) in store.fetch_messages(mailbox.id, chunk.to_vec(), Part::Header).await? {
            keys.extend(message_key(&header));
        }
    }
    Ok(keys)
}

/// Imported mail is not `\Recent` (RFC 3501 §2.3.2): it arrived before
/// the move, and the user's clients saw it on the old server. The messages
/// up to `last` (the last UID stored) are claimed as if a session had seen them.
async fn not_recent<S: Mailstore>(
    store: &S,
    mailbox: &facteur_store::Mailbox,
    last: Option<u32>,
) -> anyhow::Result<()> {
    if let Some(last) = last {
        store.recent_from(mailbox.id, Some(last)).await?;
    }
    Ok(())
}

/// Store one message unless the mailbox had it before the import: its UID
/// if it was stored.
async fn store_one<S: Mailstore>(
    store: &S,
    mailbox: &facteur_store::Mailbox,
    known: &HashSet<Key>,
    data: Vec<u8>,
    flags: Vec<String>,
    internal_date: i64,
    summary: &mut Summary,
) -> anyhow::Result<Option<u32>> {
    if !known.is_empty() && message_key(&data).is_some_and(|k| known.contains(&k)) {
        summary.duplicates += 1;
        return Ok(None);
    }
    let size = data.len() as u64;
    let (uid, _) = store.append_message(mailbox.id, data, flags, internal_date).await?;
    summary.messages += 1;
    summary.bytes += size;
    Ok(Some(uid))
}

/// The duplicate-check key of a message: its Message-ID and Date fields,
/// unfolded and with runs of blanks made one space.
fn message_key(message: &[u8]) -> Option<Key> {
    let (mut id, mut date) = (None, None);
    for (name, value) in header_fields(message) {
        let squeeze = || value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        if name.eq_ignore_ascii_case("message-id") && id.is_none() {
            id = Some(squeeze());
        } else if name.eq_ignore_ascii_case("date") && date.is_none() {
            date = Some(squeeze());
        }
    }
    id.filter(|i| !i.is_empty()).map(|i| (i, date.unwrap_or_default()))
}

/// The header fields of a message (up to its first empty line), unfolded:
/// (name, value) with the value's line ends kept.
fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
        } else if let Some((name, value)) = text.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

// ---------------------------------------------------------------- Maildir

/// One Maildir++ folder: its facteur name and where it is.
#[derive(Debug)]
struct Folder {
    name: String,
    path: PathBuf,
}

/// A folder Maildir readers take for a mailbox: it has `cur/` or `new/`
/// (Dovecot makes both, and `tmp/`, for every mailbox).
fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// INBOX first, then each `.Name` folder, parents before children.
async fn maildir_folders(dir: &Path, skipped: &mut Vec<String>) -> anyhow::Result<Vec<Folder>> {
    let mut folders = BTreeMap::new();
    let mut entries = tokio::fs::read_dir(dir).await.with_context(|| format!("cannot list {}", dir.display()))?;
    while let Some(entry) = entries.next_entry().await.with_context(|| format!("cannot list {}", dir.display()))? {
        let file_name = entry.file_name();
        let Some(raw) = file_name.to_str().and_then(|n| n.strip_prefix('.')) else { continue };
        if raw.is_empty() || raw == "." || !entry.path().is_dir() {
            continue;
        }
        if !is_maildir(&entry.path()) {
            skipped.push(format!("{}: no cur/ or new/ folder, not a Maildir folder; left out", entry.path().display()));
            continue;
        }
        match maildir_name(raw) {
            Ok(name) if name == "INBOX" => {
                skipped.push(format!("{}: a folder named INBOX besides INBOX itself; left out", entry.path().display()))
            }
            Ok(name) => {
                folders.insert(name, entry.path());
            }
            Err(e) => skipped.push(format!("{}: {e}; left out", entry.path().display())),
        }
    }
    let mut out = vec![Folder { name: "INBOX".into(), path: dir.to_path_buf() }];
    out.extend(folders.into_iter().map(|(name, path)| Folder { name, path }));
    Ok(out)
}

/// A Maildir++ folder name (without its leading dot) as a facteur mailbox
/// name: levels split at `.`, each decoded from modified UTF-7, joined
/// with `/`, in NFC. A level that is not ASCII is taken as UTF-8 (Dovecot's
/// `:UTF-8` layout option writes names so).
fn maildir_name(raw: &str) -> Result<String, String> {
    let mut levels = Vec::new();
    for level in raw.split('.') {
        if level.contains('/') {
            return Err(format!("folder name {raw:?} has a \"/\" in a level"));
        }
        let decoded = if level.is_ascii() {
            facteur_imap::utf7::decode(level).map_err(|e| format!("folder name {raw:?} is not modified UTF-7: {e}"))?
        } else {
            level.to_string()
        };
        levels.push(decoded);
    }
    let joined = levels.join("/");
    let name = facteur_imap::names::new_name(joined.as_bytes(), true)
        .map_err(|e| format!("folder name {raw:?} ({joined:?}) is not a mailbox name facteur takes: {e}"))?;
    Ok(facteur_store::invariants::normalize_name(&name))
}

/// Files in a `cur/` or `new/` folder (none when it does not exist).
async fn count_entries(dir: &Path) -> u64 {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return 0 };
    let mut n = 0;
    while let Ok(Some(e)) = entries.next_entry().await {
        n += u64::from(!e.file_name().to_string_lossy().starts_with('.'));
    }
    n
}

/// Where a message file comes in its folder: its UID in `dovecot-uidlist`
/// (`u64::MAX` if not there), the time its name starts with, its name.
type Order = (u64, u64, String);

/// The message files of a `cur/` or `new/` folder, added to `files` with
/// what sorts them in Dovecot's order. A missing folder has none.
async fn list_files(
    dir: &Path,
    uids: &std::collections::HashMap<String, u64>,
    files: &mut Vec<(Order, String, PathBuf)>,
) -> std::io::Result<()> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    while let Some(e) = entries.next_entry().await? {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            let base = name.split(':').next().unwrap_or(&name);
            let uid = uids.get(base).copied().unwrap_or(u64::MAX);
            files.push(((uid, leading_timestamp(&name), name.clone()), name, e.path()));
        }
    }
    Ok(())
}

/// A folder's `dovecot-uidlist`: message file name (without its `:2,`
/// info) → UID. Version 3 lines are `UID [extensions] :NAME`, version 1
/// lines `UID NAME`; the first line is the header. Empty when missing.
async fn dovecot_uids(folder: &Path) -> std::collections::HashMap<String, u64> {
    let Ok(text) = tokio::fs::read_to_string(folder.join("dovecot-uidlist")).await else { return Default::default() };
    parse_uidlist(&text)
}

fn parse_uidlist(text: &str) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines().skip(1) {
        let Some((uid, rest)) = line.split_once(' ') else { continue };
        let Ok(uid) = uid.parse::<u64>() else { continue };
        let name = match rest.strip_prefix(':') {
            Some(name) => name,
            None => rest.split_once(" :").map_or(rest, |(_, name)| name),
        };
        out.insert(name.to_string(), uid);
    }
    out
}

/// The digits a Maildir file name starts with (its delivery time);
/// `u64::MAX` for a name without, so those come last.
fn leading_timestamp(name: &str) -> u64 {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(u64::MAX)
}

/// Keyword letters (`a` is index 0) → keyword, from a folder's
/// `dovecot-keywords` ("0 $Forwarded" lines). A keyword that is not an
/// IMAP atom is reported and left out.
async fn dovecot_keywords(folder: &Path, name: &str, skipped: &mut Vec<String>) -> BTreeMap<char, String> {
    let mut out = BTreeMap::new();
    let Ok(text) = tokio::fs::read_to_string(folder.join("dovecot-keywords")).await else { return out };
    for line in text.lines() {
        let Some((index, keyword)) = line.trim().split_once(' ') else { continue };
        let Ok(index @ 0..=25) = index.parse::<u8>() else { continue };
        let keyword = keyword.trim();
        if is_keyword(keyword) {
            out.insert(char::from(b'a' + index), keyword.to_string());
        } else {
            skipped.push(format!("{name}: keyword {keyword:?} is not an IMAP keyword; left off its messages"));
        }
    }
    out
}

/// RFC 9051 §9 flag-keyword: an atom (no `\`).
fn is_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']'))
}

/// The flags a Maildir file name gives (its `:2,` info).
fn maildir_flags(name: &str, keywords: &BTreeMap<char, String>) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    let Some((_, info)) = name.rsplit_once(":2,") else { return flags };
    for c in info.chars() {
        let flag = match c {
            'S' => "\\Seen",
            'R' => "\\Answered",
            'F' => "\\Flagged",
            'T' => "\\Deleted",
            'D' => "\\Draft",
            // "Passed": resent, forwarded or bounced.
            'P' => "$Forwarded",
            'a'..='z' => match keywords.get(&c) {
                Some(k) => k,
                None => continue,
            },
            _ => continue,
        };
        if !flags.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
            flags.push(flag.to_string());
        }
    }
    flags
}

/// A message file with CRLF line ends and its mtime, or `None` (and a line
/// in `skipped`) when it cannot be read or is too large.
async fn read_maildir_file(path: &Path, skipped: &mut Vec<String>) -> Option<(Vec<u8>, i64)> {
    let meta = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) => {
            skipped.push(format!("{}: cannot be read: {e}", path.display()));
            return None;
        }
    };
    if !meta.is_file() {
        skipped.push(format!("{}: not a file", path.display()));
        return None;
    }
    if meta.len() > MAX_MESSAGE {
        skipped.push(format!("{}: larger than {MAX_MESSAGE} octets", path.display()));
        return None;
    }
    let date = meta.modified().map_or(0, unix_seconds);
    match tokio::fs::read(path).await {
        Ok(data) => Some((facteur_smtp::headers::crlf(&data), date)),
        Err(e) => {
            skipped.push(format!("{}: cannot be read: {e}", path.display()));
            None
        }
    }
}

// ---------------------------------------------------------------- mbox

/// One message of an mbox file, ready to store.
#[derive(Debug, PartialEq, Eq)]
struct MboxMessage {
    /// Where its From_ line is (1-based).
    line: u64,
    data: Vec<u8>,
    flags: Vec<String>,
    /// From the From_ line; `None` when it has no date we can read.
    date: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
enum MboxItem {
    Message(MboxMessage),
    /// A message past [`MAX_MESSAGE`], read through and dropped.
    TooLarge {
        line: u64,
    },
    /// UW-IMAP's and Dovecot's folder-data pseudo message (`X-IMAP:`).
    Internal,
}

/// Reads an mbox one message at a time: at most one message (and one
/// line) in memory.
struct MboxReader<R> {
    reader: R,
    /// Octets read so far.
    offset: u64,
    /// Lines read so far.
    lines: u64,
    /// The From_ line that starts the next message, once read.
    pending: Option<(u64, Vec<u8>)>,
    /// The line read last was empty (a From_ line may follow).
    after_empty: bool,
    messages_seen: u64,
    /// Text came before any From_ line: not an mbox.
    not_mbox: bool,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> MboxReader<BufReader<R>> {
    fn new(reader: BufReader<R>) -> Self {
        MboxReader {
            reader,
            offset: 0,
            lines: 0,
            pending: None,
            after_empty: true,
            messages_seen: 0,
            not_mbox: false,
            line: Vec::new(),
        }
    }

    /// The next line into `self.line` (at most [`MAX_MESSAGE`] + 1 octets
    /// of it kept); false at the end of the file.
    async fn read_line(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        let mut any = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(any);
            }
            any = true;
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = (MAX_MESSAGE as usize + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&buf[..take.min(room)]);
            self.reader.consume(take);
            self.offset += take as u64;
            if done {
                self.lines += 1;
                return Ok(true);
            }
        }
    }

    /// The next message, or `None` at the end of the file.
    async fn next(&mut self) -> std::io::Result<Option<MboxItem>> {
        // Find the From_ line that opens the next message.
        let (line_no, from_line) = loop {
            if let Some(p) = self.pending.take() {
                break p;
            }
            if !self.read_line().await? {
                return Ok(None);
            }
            if self.line.starts_with(b"From ") && self.after_empty {
                break (self.lines, std::mem::take(&mut self.line));
            }
            // Text before the first From_ line: not an mbox (the caller
            // tells), or blank lines between messages.
            self.after_empty = is_blank(&self.line);
            if !self.after_empty && self.messages_seen == 0 {
                self.not_mbox = true;
                return Ok(None);
            }
        };
        self.messages_seen += 1;
        let date = from_line_date(&from_line);
        let mut m = MessageBuilder::default();
        self.after_empty = false;
        while self.read_line().await? {
            if self.line.starts_with(b"From ") && self.after_empty {
                self.pending = Some((self.lines, std::mem::take(&mut self.line)));
                break;
            }
            self.after_empty = is_blank(&self.line);
            m.push(&self.line);
        }
        Ok(Some(m.finish(line_no, date)))
    }
}

fn is_blank(line: &[u8]) -> bool {
    matches!(line, b"\n" | b"\r\n")
}

/// A message taking shape line by line: header fields that carry mbox
/// metadata are read and dropped, `>From ` lines unescaped, line ends made
/// CRLF.
#[derive(Default)]
struct MessageBuilder {
    data: Vec<u8>,
    too_large: bool,
    in_header: bool,
    started: bool,
    /// The header field being read is one that is dropped.
    dropping: bool,
    status: String,
    x_status: String,
    keywords: Vec<String>,
    internal: bool,
    /// Empty lines in the body not yet written: the one before a From_
    /// line belongs to the mbox, not to the message.
    held_blanks: usize,
}

impl MessageBuilder {
    fn push(&mut self, raw: &[u8]) {
        if !self.started {
            self.started = true;
            self.in_header = true;
        }
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.in_header {
            if line.is_empty() {
                // The end of the header, kept at once.
                self.in_header = false;
                self.dropping = false;
                self.append(b"");
                return;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                if self.dropping {
                    return;
                }
            } else {
                self.dropping = self.metadata_field(line);
                if self.dropping {
                    return;
                }
            }
        } else if line.is_empty() {
            // Held until a line with text comes: the last one before a
            // From_ line (or the end) belongs to the mbox.
            self.held_blanks += 1;
            return;
        }
        for _ in 0..std::mem::take(&mut self.held_blanks) {
            self.append(b"");
        }
        // mboxrd (and mboxo): ">From " and ">>From " lose one ">".
        let unescaped = match line.iter().position(|&b| b != b'>') {
            Some(n) if n > 0 && line[n..].starts_with(b"From ") => &line[1..],
            _ => line,
        };
        self.append(unescaped);
    }

    fn append(&mut self, line: &[u8]) {
        if self.too_large {
            return;
        }
        if (self.data.len() + line.len() + 2) as u64 > MAX_MESSAGE {
            self.too_large = true;
            self.data = Vec::new();
            return;
        }
        self.data.extend_from_slice(line);
        self.data.extend_from_slice(b"\r\n");
    }

    /// Reads a metadata field (true: drop it from the message).
    fn metadata_field(&mut self, line: &[u8]) -> bool {
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else { return false };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "status" => self.status.push_str(value),
            "x-status" => self.x_status.push_str(value),
            "x-keywords" => self.keywords.extend(value.split_ascii_whitespace().map(str::to_string)),
            "x-uid" | "x-imapbase" => {}
            "x-imap" => self.internal = true,
            _ => return false,
        }
        true
    }

    fn finish(mut self, line: u64, date: Option<i64>) -> MboxItem {
        for _ in 1..self.held_blanks {
            self.append(b"");
        }
        if self.internal {
            return MboxItem::Internal;
        }
        if self.too_large {
            return MboxItem::TooLarge { line };
        }
        let mut flags: Vec<String> = Vec::new();
        let mut add = |f: &str| {
            if !flags.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                flags.push(f.to_string());
            }
        };
        // Status: R read, O old (seen by a client: nothing in IMAP terms).
        if self.status.contains('R') {
            add("\\Seen");
        }
        // X-Status as Dovecot and mutt write it.
        for (c, flag) in [('A', "\\Answered"), ('F', "\\Flagged"), ('T', "\\Draft"), ('D', "\\Deleted")] {
            if self.x_status.contains(c) {
                add(flag);
            }
        }
        for k in &self.keywords {
            if is_keyword(k) {
                add(k);
            }
        }
        MboxItem::Message(MboxMessage { line, data: self.data, flags, date })
    }
}

/// The date of a From_ line, `From sender Www Mmm dd hh:mm:ss yyyy`
/// (asctime, read as UTC; a zone token before or after the year is
/// passed over). `None` when there is none.
fn from_line_date(line: &[u8]) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let text = String::from_utf8_lossy(line);
    let tokens: Vec<&str> = text.split_ascii_whitespace().skip(2).collect();
    for (i, t) in tokens.iter().enumerate() {
        let Some(month) = MONTHS.iter().position(|m| t.eq_ignore_ascii_case(m)) else { continue };
        let day: u32 = tokens.get(i + 1)?.parse().ok()?;
        let mut hms = tokens.get(i + 2)?.split(':').map(|x| x.parse::<u32>().ok());
        let (h, mi) = (hms.next()??, hms.next()??);
        let s = hms.next().map_or(Some(0), |x| x)?;
        let year: i64 =
            tokens[i + 3..].iter().take(2).find_map(|y| y.parse().ok().filter(|y| (1970..=9999).contains(y)))?;
        if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let days = days_from_civil(year, month as u32 + 1, day);
        return Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + s));
    }
    None
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_names_decode() {
        assert_eq!(maildir_name("Sent").unwrap(), "Sent");
        assert_eq!(maildir_name("Lists.Rust").unwrap(), "Lists/Rust");
        assert_eq!(maildir_name("Lists.&AOk-t&AOk-").unwrap(), "Lists/été");
        assert_eq!(maildir_name("a&-b").unwrap(), "a&b");
        // Dovecot's UTF-8 layout option.
        assert_eq!(maildir_name("été").unwrap(), "été");
        assert!(maildir_name("Lists..Rust").is_err());
        assert!(maildir_name("bad&AOk").is_err());
        assert_eq!(maildir_name("inbox").unwrap(), "INBOX");
    }

    #[test]
    fn flags_from_names() {
        let kw = BTreeMap::from([('a', "$Forwarded".to_string()), ('b', "Work".to_string())]);
        assert_eq!(
            maildir_flags("1700000000.M1P2.host,S=10:2,DFPRSTabz", &kw),
            ["\\Draft", "\\Flagged", "$Forwarded", "\\Answered", "\\Seen", "\\Deleted", "Work"]
        );
        assert_eq!(maildir_flags("1700000000.M1P2.host:2,", &kw), Vec::<String>::new());
        assert_eq!(maildir_flags("1700000000.M1P2.host", &kw), Vec::<String>::new());
    }

    #[test]
    fn file_order_is_by_timestamp() {
        let mut v = [
            (leading_timestamp("999.a"), "999.a"),
            (leading_timestamp("1000.a"), "1000.a"),
            (leading_timestamp("x"), "x"),
        ];
        v.sort();
        assert_eq!(v.iter().map(|x| x.1).collect::<Vec<_>>(), ["999.a", "1000.a", "x"]);
    }

    #[test]
    fn uidlist_lines() {
        let uids = parse_uidlist(
            "3 V1796631142 N3 G879c\n1 :1796631142.M70111P16109.vm,S=46,W=51\n2 G1f W51 :1796631142.M100070P1.vm,S=46\n7 old-style-name\nbad line\n",
        );
        assert_eq!(uids.get("1796631142.M70111P16109.vm,S=46,W=51"), Some(&1));
        assert_eq!(uids.get("1796631142.M100070P1.vm,S=46"), Some(&2));
        assert_eq!(uids.get("old-style-name"), Some(&7));
        assert_eq!(uids.len(), 3);
    }

    #[test]
    fn keys_need_a_message_id() {
        let m = b"Subject: x\r\nMessage-ID:\r\n <a@b>\r\nDate: Mon,  7 Dec 2026\r\n 07:13:21 +0000\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(message_key(m), Some(("<a@b>".into(), "Mon, 7 Dec 2026 07:13:21 +0000".into())));
        assert_eq!(message_key(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), None);
    }

    #[test]
    fn from_line_dates() {
        // 2026-12-07 07:13:21 UTC
        let t = 1_796_627_601;
        assert_eq!(from_line_date(b"From bob@x.test Mon Dec  7 07:13:21 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From bob@x.test Mon Dec 7 07:13:21 +0100 2026\n"), Some(t));
        assert_eq!(from_line_date(b"From bob@x.test Mon Dec 7 07:13:21 2026 remote from y\n"), Some(t));
        assert_eq!(from_line_date(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"), Some(0));
        assert_eq!(from_line_date(b"From bob@x.test\n"), None);
        assert_eq!(from_line_date(b"From bob@x.test Mon Dec 99 07:13:21 2026\n"), None);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    async fn read_all(mbox: &[u8]) -> Vec<MboxItem> {
        let mut r = MboxReader::new(BufReader::new(mbox));
        let mut out = Vec::new();
        while let Some(m) = r.next().await.unwrap() {
            out.push(m);
        }
        out
    }

    fn message(item: &MboxItem) -> (&str, &[String]) {
        match item {
            MboxItem::Message(m) => (std::str::from_utf8(&m.data).unwrap(), &m.flags),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn mbox_splits_unescapes_and_reads_flags() {
        let mbox = b"From a@x Mon Dec  7 07:13:21 2026\n\
Status: RO\n\
X-Status: AF\n\
X-Keywords: $Forwarded Work\n\
X-UID: 7\n\
Subject: one\n\
\n\
body\n\
>From the start\n\
>>From twice\n\
From inside a paragraph is no separator\n\
\n\
\n\
From b@x Tue Dec  8 07:13:21 2026\n\
Subject: two\n\
X-Status: TD\n\
\tfolded x-status goes too\n\
\n\
last\n";
        let items = read_all(mbox).await;
        assert_eq!(items.len(), 2, "{items:?}");
        let (one, flags) = message(&items[0]);
        assert_eq!(
            one,
            "Subject: one\r\n\r\nbody\r\nFrom the start\r\n>From twice\r\nFrom inside a paragraph is no separator\r\n\r\n"
        );
        assert_eq!(flags, ["\\Seen", "\\Answered", "\\Flagged", "$Forwarded", "Work"]);
        let (two, flags) = message(&items[1]);
        assert_eq!(two, "Subject: two\r\n\r\nlast\r\n");
        assert_eq!(flags, ["\\Draft", "\\Deleted"]);
        match &items[1] {
            MboxItem::Message(m) => assert_eq!((m.line, m.date), (14, Some(1_796_627_601 + 86_400))),
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn mbox_edge_cases() {
        assert!(read_all(b"").await.is_empty());
        assert!(read_all(b"Subject: not an mbox\n").await.is_empty());
        // No newline at the end; the pseudo message is not a message.
        let items = read_all(
            b"From MAILER-DAEMON Mon Dec  7 07:13:21 2026\nX-IMAP: 1 2\nSubject: DON'T DELETE\n\nx\n\nFrom a Mon Dec  7 07:13:21 2026\n\nno end",
        )
        .await;
        assert_eq!(items[0], MboxItem::Internal);
        assert_eq!(message(&items[1]).0, "\r\nno end\r\n");
        // CRLF mbox files keep one CRLF per line.
        let items =
            read_all(b"From a Mon Dec  7 07:13:21 2026\r\nA: b\r\n\r\nx\r\n\r\nFrom b Mon Dec  7 07:13:21 2026\r\n")
                .await;
        assert_eq!(message(&items[0]).0, "A: b\r\n\r\nx\r\n");
        assert_eq!(message(&items[1]).0, "");
    }
}
