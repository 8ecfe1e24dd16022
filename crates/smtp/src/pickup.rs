//! The maildrop: how local programs (cron, PHP `mail()`, logwatch, mdadm,
//! smartd) hand mail over through `facteur sendmail`, without a password
//! and without the network, even while the server is down.
//!
//! `facteur sendmail` writes one file per message into `DATA/maildrop`
//! (mode 1733: anyone may create a file there, nobody but the server may
//! list or read the folder) as a temporary name, fsyncs it, and renames it
//! into place: a file without a leading dot is complete. The server looks
//! every second (and at start), takes each file as a message from the Unix
//! user who owns it (the kernel says who, so it cannot be forged), runs it
//! through the same acceptance as SMTP (`accept_message`: addresses,
//! classification, the door, `Received:`, `Date:`/`Message-ID:`), and
//! deletes it once stored. A temporary refusal leaves the file for later;
//! a permanent one, and recipients that lead nowhere, are bounced to the
//! sender (RFC 3464), as Postfix's pickup does. A file that cannot be read
//! as a drop is moved to `DATA/maildrop-corrupt` and logged.
//!
//! File format: one JSON line ([`Drop`]), then the message as given.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use facteur_smtp_proto::{Address, Envelope, MailParams, RcptParams, Recipient, Reply};
use facteur_spool::addressing::{self, Resolution};
use facteur_spool::{About, Notice, NoticeItem};
use facteur_store::{Directory, Spool, StoredEnvelope};
use facteur_types::MessageId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::server::{Client, ListenerKind, SmtpContext, accept_message};

/// The folder under the data folder.
pub const MAILDROP: &str = "maildrop";
/// Where unreadable drops are put aside.
pub const CORRUPT: &str = "maildrop-corrupt";
/// A file that failed temporarily is looked at again after this.
const RETRY: Duration = Duration::from_secs(60);

/// The envelope line of a maildrop file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Drop {
    /// `-f`: the envelope sender (as given; `""` is the null sender);
    /// `None`: the Unix user at the origin domain.
    pub sender: Option<String>,
    /// Recipients as given (`root` is completed with the origin domain).
    pub recipients: Vec<String>,
    /// `-t`: also the `To:`, `Cc:` and `Bcc:` of the header (Bcc removed).
    pub extract: bool,
    /// `-F`: the sender's full name, for a `From:` the message lacks.
    pub full_name: Option<String>,
}

/// Write a drop into `maildrop` (temporary name, fsync, rename, fsync the
/// folder): once this returns, the message survives a crash.
pub fn write_drop(maildrop: &Path, drop: &Drop, message: &[u8]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = format!("{:032x}", rand_u128());
    let tmp = maildrop.join(format!(".{name}"));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
    let mut line = serde_json::to_vec(drop).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let written = f.write_all(&line).and_then(|_| f.write_all(message)).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let path = maildrop.join(&name);
    std::fs::rename(&tmp, &path)?;
    // The folder's entry too, where the caller may read the folder (root,
    // the server's user); others (mode 1733: write only) cannot open it,
    // and their file, itself synced, is found by name at the next look.
    match std::fs::File::open(maildrop) {
        Ok(dir) => dir.sync_all()?,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    Ok(path)
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    // SAFETY: `b` is a writable buffer of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No entropy source: time and pid still make a name nobody else has.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        return t ^ (u128::from(std::process::id()) << 96);
    }
    u128::from_le_bytes(b)
}

/// Split a drop into its envelope and message.
pub fn read_drop(bytes: &[u8]) -> Result<(Drop, &[u8]), String> {
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or("no envelope line")?;
    let drop: Drop = serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("envelope line: {e}"))?;
    Ok((drop, &bytes[nl + 1..]))
}

/// Make the maildrop (mode 1733) and the corrupt folder (0700) if missing.
pub fn prepare(data_dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = data_dir.join(MAILDROP);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1733))?;
    let corrupt = data_dir.join(CORRUPT);
    std::fs::create_dir_all(&corrupt)?;
    std::fs::set_permissions(&corrupt, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Take the maildrop's files every second until `shutdown`.
pub async fn run<S: Directory + Spool>(
    ctx: watch::Receiver<Arc<SmtpContext<S>>>,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut later: HashMap<PathBuf, tokio::time::Instant> = HashMap::new();
    loop {
        let c = ctx.borrow().clone();
        let files = tokio::task::spawn_blocking({
            let dir = data_dir.join(MAILDROP);
            move || waiting(&dir)
        })
        .await
        .unwrap_or_default();
        let now = tokio::time::Instant::now();
        later.retain(|p, _| files.contains(p));
        for path in files {
            if *shutdown.borrow() {
                return;
            }
            if later.get(&path).is_some_and(|t| *t > now) {
                continue;
            }
            if let Taken::Later = take(&c, &data_dir, &path).await {
                later.insert(path, now + RETRY);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Complete files, oldest first (at most 1000 a round).
fn waiting(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    files.into_iter().take(1000).map(|(_, p)| p).collect()
}

enum Taken {
    Done,
    Later,
}

/// Read at most this much of a drop beyond the message size limit.
const ENVELOPE_ALLOWANCE: u64 = 64 * 1024;

/// One drop: read it (not following links, regular files only), accept it,
/// bounce what cannot be delivered, delete it.
async fn take<S: Directory + Spool>(ctx: &SmtpContext<S>, data_dir: &Path, path: &Path) -> Taken {
    let limit = ctx.config.max_message_size + ENVELOPE_ALLOWANCE;
    let read = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        move || read_file(&path, limit)
    })
    .await;
    let (uid, bytes, too_big) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(file = %path.display(), error = %e, "maildrop file unreadable; put aside");
            set_aside(data_dir, path);
            return Taken::Done;
        }
        Err(_) => return Taken::Later,
    };
    let (drop, message) = match read_drop(&bytes) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(file = %path.display(), uid, error = %e, "maildrop file is not a drop; put aside");
            set_aside(data_dir, path);
            return Taken::Done;
        }
    };
    let user = unix_user(uid);
    let result = accept_drop(ctx, uid, user, drop, message, too_big).await;
    match result {
        Taken::Done => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::error!(file = %path.display(), error = %e, "cannot remove a picked-up maildrop file");
            }
            Taken::Done
        }
        Taken::Later => Taken::Later,
    }
}

fn read_file(path: &Path, limit: u64) -> std::io::Result<(u32, Vec<u8>, bool)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes)?;
    let too_big = bytes.len() as u64 > limit;
    bytes.truncate(limit as usize);
    Ok((meta.uid(), bytes, too_big))
}

fn set_aside(data_dir: &Path, path: &Path) {
    let to = data_dir.join(CORRUPT).join(path.file_name().unwrap_or_default());
    if let Err(e) = std::fs::rename(path, &to) {
        tracing::error!(file = %path.display(), error = %e, "cannot put a maildrop file aside; removing it");
        let _ = std::fs::remove_file(path);
    }
}

/// The login name and full name (GECOS, up to the first comma) of a uid.
fn unix_user(uid: u32) -> (String, String) {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live buffer of the given size; the
    // strings read are NUL-terminated inside `buf` when `found` is set.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return (format!("uid{uid}"), String::new());
    }
    let text = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string inside `buf` (see above).
            unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let gecos = text(pw.pw_gecos);
    (text(pw.pw_name), gecos.split(',').next().unwrap_or("").to_string())
}

/// `local` alone gets `@origin`.
fn qualify(address: &str, origin: &str) -> String {
    let a = address.trim().trim_start_matches('<').trim_end_matches('>');
    if a.contains('@') { a.to_lowercase() } else { format!("{a}@{origin}").to_lowercase() }
}

async fn origin<S: Directory>(ctx: &SmtpContext<S>) -> Result<String, facteur_store::StoreError> {
    if !ctx.addressing.origin.is_empty() {
        return Ok(ctx.addressing.origin.to_lowercase());
    }
    Ok(ctx.store.list_domains().await?.into_iter().next().map(|d| d.name).unwrap_or_else(|| ctx.hostname.clone()))
}

async fn accept_drop<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    uid: u32,
    (login, gecos): (String, String),
    drop: Drop,
    message: &[u8],
    too_big: bool,
) -> Taken {
    let origin = match origin(ctx).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "maildrop: storage unavailable; trying again later");
            return Taken::Later;
        }
    };
    let sender = match &drop.sender {
        Some(s) if s.is_empty() || s == "<>" => String::new(),
        Some(s) => qualify(s, &origin),
        None => qualify(&login, &origin),
    };
    let mut data = crlf(message);
    let mut wanted: Vec<String> = drop.recipients.iter().map(|r| qualify(r, &origin)).collect();
    if drop.extract {
        let (found, without_bcc) = header_recipients(&data);
        wanted.extend(found.iter().map(|r| qualify(r, &origin)));
        data = without_bcc;
    }
    wanted.dedup();
    let mut seen = std::collections::HashSet::new();
    wanted.retain(|w| seen.insert(w.clone()));
    if !has_field(&data, "From") {
        let name = drop.full_name.clone().unwrap_or(gecos);
        let from = if sender.is_empty() { qualify(&login, &origin) } else { sender.clone() };
        data = [from_field(&name, &from).into_bytes(), data].concat();
    }
    tracing::info!(uid, user = %login, from = %sender, recipients = wanted.len(), "maildrop: message from a local program");
    if too_big {
        let why = format!("message larger than smtp.max_message_size ({} octets)", ctx.config.max_message_size);
        return bounce(ctx, &sender, &wanted, (5, 3, 4), &why, &data).await;
    }
    if wanted.is_empty() {
        return bounce(ctx, &sender, &[qualify(&login, &origin)], (5, 1, 3), "no recipient given", &data).await;
    }
    let mut client = Client {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kind: ListenerKind::Local,
        uid: Some(uid),
        declared_size: 0,
        quotas: HashMap::new(),
        routes: HashMap::new(),
    };
    let days = ctx.clock.now_ms().div_euclid(86_400_000);
    let (mut unknown, mut malformed) = (Vec::new(), Vec::new());
    let mut recipients = Vec::new();
    for w in wanted {
        let Ok(address) = Address::parse_path(&w, true) else {
            malformed.push(w);
            continue;
        };
        match addressing::resolve(&ctx.store, &ctx.addressing, &w, days).await {
            Ok(Resolution::Unknown) => unknown.push(w),
            Ok(found) => {
                client.routes.insert(w.clone(), if let Resolution::Deliver(t) = found { Some(t) } else { None });
                recipients.push(Recipient { address, params: RcptParams::default() });
            }
            Err(e) => {
                tracing::warn!(error = %e, "maildrop: storage unavailable; trying again later");
                return Taken::Later;
            }
        }
    }
    if !recipients.is_empty() {
        let mail_from = if sender.is_empty() { None } else { Address::parse_path(&sender, true).ok() };
        let envelope = Envelope {
            helo: "localhost".into(),
            esmtp: true,
            mail_from,
            mail_params: MailParams { smtputf8: !data.is_ascii(), ..MailParams::default() },
            recipients,
            auth_user: None,
            tls: false,
            chunked: false,
        };
        let all: Vec<String> = envelope.recipients.iter().map(|r| r.address.to_string().to_lowercase()).collect();
        let reply = accept_message(ctx, &mut client, envelope, data.clone()).await;
        match reply.code {
            200..=299 => {}
            400..=499 => {
                tracing::warn!(reply = %reply_text(&reply), "maildrop: refused for now; trying again later");
                return Taken::Later;
            }
            _ => {
                let why = reply_text(&reply);
                return bounce(ctx, &sender, &all, reply.enhanced.unwrap_or((5, 0, 0)), &why, &data).await;
            }
        }
    }
    if !malformed.is_empty()
        && let Taken::Later = bounce(ctx, &sender, &malformed, (5, 1, 3), "not an address", &data).await
    {
        return Taken::Later;
    }
    if !unknown.is_empty() {
        return bounce(ctx, &sender, &unknown, (5, 1, 1), "no such recipient here", &data).await;
    }
    Taken::Done
}

fn reply_text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.to_bytes()).trim_end().to_string()
}

/// A failure notice to the local sender for `recipients`, stored now.
async fn bounce<S: Directory + Spool>(
    ctx: &SmtpContext<S>,
    sender: &str,
    recipients: &[String],
    status: (u8, u16, u16),
    why: &str,
    data: &[u8],
) -> Taken {
    tracing::info!(from = %sender, ?recipients, why, "maildrop: bounced to the sender");
    let now_ms = ctx.clock.now_ms();
    let envelope = StoredEnvelope { mail_from: sender.to_string(), ..StoredEnvelope::default() };
    let about = About {
        message_id: MessageId::new(now_ms.max(0) as u64),
        received_at: now_ms.div_euclid(1000),
        envelope: &envelope,
        original: data,
    };
    let items = recipients
        .iter()
        .map(|r| NoticeItem {
            address: r.clone(),
            orcpt: None,
            notice: Notice::Failed,
            status,
            diagnostic: Some(format!("smtp; {why}")),
            remote_mta: None,
            last_attempt: Some(now_ms.div_euclid(1000)),
            will_retry_until: None,
        })
        .collect();
    let notices = facteur_spool::notices::compose(&ctx.store, &about, items, &ctx.hostname, now_ms).await;
    if notices.is_empty() {
        return Taken::Done;
    }
    match ctx.store.store_messages(notices).await {
        Ok(_) => {
            if let Some(w) = &ctx.queued {
                w.notify_one();
            }
            Taken::Done
        }
        Err(e) => {
            tracing::warn!(error = %e, "maildrop: cannot store the notice; trying again later");
            Taken::Later
        }
    }
}

/// The message with CRLF line ends, ending in one (programs write LF).
fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = crate::headers::crlf(message);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn has_field(data: &[u8], name: &str) -> bool {
    crate::headers::has_field(data, name)
}

/// `From:` for a message that has none (RFC 5322 §3.6.2).
fn from_field(name: &str, address: &str) -> String {
    let plain =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() || c == ' ') && !name.contains(['"', '\\']);
    if plain { format!("From: \"{name}\" <{address}>\r\n") } else { format!("From: <{address}>\r\n") }
}

/// `-t`: the addresses of `To:`, `Cc:` and `Bcc:`, and the message without
/// its `Bcc:` fields (RFC 5322 §3.6.3: removed before it goes out).
fn header_recipients(data: &[u8]) -> (Vec<String>, Vec<u8>) {
    use mail_parser::{HeaderName, MessageParser};
    let header = crate::headers::header_section(data);
    let mut found = Vec::new();
    if let Some(parsed) = MessageParser::new().parse_headers(header) {
        for h in parsed.headers() {
            if matches!(h.name, HeaderName::To | HeaderName::Cc | HeaderName::Bcc)
                && let Some(list) = h.value.as_address()
            {
                found.extend(list.iter().filter_map(|a| a.address()).map(str::to_string));
            }
        }
    }
    // Drop Bcc fields with their continuation lines.
    let mut out = Vec::with_capacity(data.len());
    let mut skipping = false;
    let body_at = header.len();
    for line in data[..body_at].split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() > 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&data[body_at..]);
    (found, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = Drop { sender: Some("x".into()), recipients: vec!["root".into()], extract: true, full_name: None };
        let path = write_drop(dir.path(), &d, b"Subject: s\n\nbody\n").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (back, msg) = read_drop(&bytes).unwrap();
        assert_eq!((back, msg), (d, &b"Subject: s\n\nbody\n"[..]));
        assert!(!path.file_name().unwrap().to_string_lossy().starts_with('.'));
        assert!(read_drop(b"not json\nx").is_err());
        assert!(read_drop(b"no newline").is_err());
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"a\nb\r\nc\n\n"), b"a\r\nb\r\nc\r\n\r\n");
        assert_eq!(crlf(b""), b"\r\n");
    }

    #[test]
    fn bcc_is_read_then_removed() {
        let m = b"To: a@x.test, B <b@x.test>\r\nBcc: secret@x.test,\r\n  other@x.test\r\nCc: c@x.test\r\nSubject: s\r\n\r\nBcc: in the body stays\r\n";
        let (found, out) = header_recipients(m);
        assert_eq!(found, ["a@x.test", "b@x.test", "secret@x.test", "other@x.test", "c@x.test"]);
        assert_eq!(out, b"To: a@x.test, B <b@x.test>\r\nCc: c@x.test\r\nSubject: s\r\n\r\nBcc: in the body stays\r\n");
    }

    #[test]
    fn addresses_without_a_domain_get_the_origin() {
        assert_eq!(qualify("root", "example.test"), "root@example.test");
        assert_eq!(qualify("<Bob@Far.test>", "example.test"), "bob@far.test");
    }

    #[test]
    fn from_is_quoted_only_when_plain() {
        assert_eq!(from_field("Cron Daemon", "root@x.test"), "From: \"Cron Daemon\" <root@x.test>\r\n");
        assert_eq!(from_field("", "root@x.test"), "From: <root@x.test>\r\n");
        assert_eq!(from_field("Zoë", "z@x.test"), "From: <z@x.test>\r\n");
    }
}
