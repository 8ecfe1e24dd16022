//! Where a recipient address goes: aliases (to local users, other aliases
//! or addresses elsewhere), `user+detail`, the role addresses every domain
//! must have (`postmaster@`, RFC 5321 §4.5.1; `abuse@`, RFC 2142), an
//! optional catch-all, and bounces to our own SRS addresses; then what one
//! accepted message becomes: the relayed copy, one copy per local user with
//! `Return-Path:` and `Delivered-To:` (RFC 5321 §4.4), and one forward per
//! alias, re-sent with an SRS sender (RFC 5321 §3.9.1).
//!
//! The rules live here, above the backends: storage answers one lookup per
//! address ([`Directory::lookup_recipient`]); the order is Postfix's: an
//! alias before a user of the same address, the full address before its
//! `+detail` is cut, a role address or the catch-all only when nothing
//! else matched.

use std::collections::HashSet;

use facteur_store::{Directory, Lookup, NewMessage, NewRecipient, Result, Route, StoredEnvelope};
use facteur_types::{Class, MessageId};
use serde::Deserialize;

use crate::srs;

/// Targets one address may expand to, all aliases followed (Postfix's
/// virtual_alias_expansion_limit is 1000).
pub const MAX_TARGETS: usize = 1000;
/// Aliases followed one into another (Postfix's recursion limit is 1000;
/// a real chain is two or three deep).
pub const MAX_DEPTH: usize = 20;

/// The `[addressing]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AddressingConfig {
    /// Characters that start an address extension: `alice+lists@` goes to
    /// alice (Postfix's recipient_delimiter); empty: none.
    pub recipient_delimiter: String,
    /// Deliver `alice+lists@` into alice's mailbox `lists` when she has
    /// one (any case); otherwise, and by default, into her INBOX.
    pub detail_mailbox: bool,
    /// Local parts accepted for every local domain that has no user or
    /// alias of that name.
    pub role_addresses: Vec<String>,
    /// Who gets the role addresses' mail; empty: the first user created.
    pub role_recipient: String,
    /// The domain of addresses local programs give without one (`facteur
    /// sendmail`: the sender is the Unix user at this domain; `root` is
    /// `root@` it); empty: the first local domain, else the host name.
    pub origin: String,
}

impl Default for AddressingConfig {
    fn default() -> Self {
        AddressingConfig {
            recipient_delimiter: "+".into(),
            detail_mailbox: false,
            role_addresses: vec!["postmaster".into(), "abuse".into()],
            role_recipient: String::new(),
            origin: String::new(),
        }
    }
}

/// One place an address ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local user's mailbox (`mailbox`: the `+detail` one, if asked for).
    Local { user: String, mailbox: Option<String>, via: Vec<String> },
    /// Elsewhere: re-sent through the queue. `via` is never empty: its last
    /// address is the alias (or SRS address) that sent it on.
    Forward { address: String, via: Vec<String> },
}

impl Target {
    /// The addresses of ours this went through before it arrived here.
    pub fn via(&self) -> &[String] {
        match self {
            Target::Local { via, .. } | Target::Forward { via, .. } => via,
        }
    }
}

/// What a recipient address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Not a local domain: relayed, for clients that may.
    Remote,
    /// A local domain without this address (`550 5.1.1`).
    Unknown,
    /// Delivered here, sent on, or both.
    Deliver(Vec<Target>),
}

/// Resolve one (canonical, lower-case) recipient address. `days` (since the
/// Unix epoch) dates SRS addresses.
pub async fn resolve<D: Directory>(store: &D, cfg: &AddressingConfig, address: &str, days: i64) -> Result<Resolution> {
    let mut walk = Walk { store, cfg, days, out: Vec::new(), path: Vec::new(), seen: HashSet::new() };
    match store.lookup_recipient(address).await? {
        Lookup::Remote => return Ok(Resolution::Remote),
        found => walk.expand(address.to_string(), found, None, 0).await?,
    }
    Ok(if walk.out.is_empty() { Resolution::Unknown } else { Resolution::Deliver(walk.out) })
}

struct Walk<'a, D> {
    store: &'a D,
    cfg: &'a AddressingConfig,
    days: i64,
    out: Vec<Target>,
    /// The aliases being expanded, outermost first.
    path: Vec<String>,
    /// Every address already expanded: a cycle ends where it closes.
    seen: HashSet<String>,
}

impl<D: Directory> Walk<'_, D> {
    fn push(&mut self, t: Target) {
        if self.out.len() < MAX_TARGETS && !self.out.contains(&t) {
            self.out.push(t);
        }
    }

    /// `address` (already looked up: `found`), reached with `detail` cut
    /// from an address above it.
    fn expand(
        &mut self,
        address: String,
        found: Lookup,
        detail: Option<String>,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>
    where
        D: Sync,
    {
        Box::pin(async move {
            if depth > MAX_DEPTH || self.out.len() >= MAX_TARGETS || !self.seen.insert(address.clone()) {
                return Ok(());
            }
            match found {
                Lookup::Remote => {
                    let via = self.path.clone();
                    self.push(Target::Forward { address, via });
                }
                Lookup::LocalUser(user) => {
                    // The store takes the mailbox of that name (any case)
                    // if the user has one, else the INBOX.
                    let mailbox = detail.filter(|d| self.cfg.detail_mailbox && !d.is_empty());
                    let via = self.path.clone();
                    self.push(Target::Local { user, mailbox, via });
                }
                Lookup::Alias(targets) => {
                    self.path.push(address.clone());
                    for t in targets {
                        if t == address || self.path.contains(&t) {
                            // `a -> a, b`: a keeps its own copy (as in Postfix).
                            if self.store.get_user(&t).await?.is_some() {
                                let via = self.path[..self.path.len() - 1].to_vec();
                                self.push(Target::Local { user: t, mailbox: None, via });
                            }
                            continue;
                        }
                        let found = self.store.lookup_recipient(&t).await?;
                        self.expand(t, found, None, depth + 1).await?;
                    }
                    self.path.pop();
                }
                Lookup::UnknownUser => self.unknown(address, detail, depth).await?,
            }
            Ok(())
        })
    }

    /// A local domain has no such user or alias: an SRS bounce, `+detail`,
    /// a role address, the catch-all, or nothing.
    async fn unknown(&mut self, address: String, detail: Option<String>, depth: usize) -> Result<()>
    where
        D: Sync,
    {
        let Some((local, domain)) = address.rsplit_once('@') else { return Ok(()) };
        if depth == 0 && srs::is_srs(local) {
            let key = self.store.secret("srs").await?;
            match srs::reverse(local, key.as_bytes(), self.days) {
                Ok(back) => self.push(Target::Forward { address: back, via: vec![address.clone()] }),
                Err(why) => tracing::debug!(address, ?why, "SRS address refused"),
            }
            return Ok(());
        }
        if let Some(cut) = local.find(|c| self.cfg.recipient_delimiter.contains(c))
            && cut > 0
            && detail.is_none()
        {
            let base = format!("{}@{domain}", &local[..cut]);
            let found = self.store.lookup_recipient(&base).await?;
            if found != Lookup::UnknownUser {
                let detail = Some(local[cut + 1..].to_string());
                self.seen.remove(&base);
                return self.expand(base, found, detail, depth).await;
            }
        }
        if self.cfg.role_addresses.iter().any(|r| r.eq_ignore_ascii_case(local))
            && let Some(user) = role_recipient(self.store, self.cfg).await?
        {
            let via = self.path.clone();
            self.push(Target::Local { user, mailbox: None, via });
            return Ok(());
        }
        let targets = self.store.alias_targets(&format!("@{domain}")).await?;
        if !targets.is_empty() {
            self.path.push(address.clone());
            for t in targets {
                let found = self.store.lookup_recipient(&t).await?;
                self.expand(t, found, None, depth + 1).await?;
            }
            self.path.pop();
        }
        Ok(())
    }
}

/// Who gets `postmaster@` and `abuse@`: `role_recipient`, or the first
/// user created; `None` before there is any user.
pub async fn role_recipient<D: Directory>(store: &D, cfg: &AddressingConfig) -> Result<Option<String>> {
    if !cfg.role_recipient.is_empty() {
        let user = store.get_user(&cfg.role_recipient).await?.map(|u| u.address);
        if user.is_none() {
            tracing::warn!(role_recipient = %cfg.role_recipient, "addressing.role_recipient is not a user; role addresses refused");
        }
        return Ok(user);
    }
    let users = store.list_users().await?;
    Ok(users
        .into_iter()
        .min_by(|a, b| a.created_at.cmp(&b.created_at).then(a.address.cmp(&b.address)))
        .map(|u| u.address))
}

/// The addresses in the message's `Delivered-To:` fields (lower case).
pub fn delivered_to(data: &[u8]) -> Vec<String> {
    let header = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &data[..p + 2],
        None => data,
    };
    const NAME: &[u8] = b"delivered-to:";
    header
        .split(|&b| b == b'\n')
        .filter(|l| l.len() > NAME.len() && l[..NAME.len()].eq_ignore_ascii_case(NAME))
        .map(|l| {
            let v = String::from_utf8_lossy(&l[NAME.len()..]);
            v.trim().trim_start_matches('<').trim_end_matches('>').to_lowercase()
        })
        .collect()
}

/// RFC 5321 §6.3: an alias whose address is already in the message's
/// `Delivered-To:` fields has seen this message before: it is going round.
pub fn forward_loop<'a>(targets: impl IntoIterator<Item = &'a Target>, delivered: &[String]) -> Option<&'a str> {
    targets
        .into_iter()
        .filter(|t| matches!(t, Target::Forward { .. }))
        .flat_map(|t| t.via())
        .find(|a| delivered.contains(a))
        .map(String::as_str)
}

/// One envelope recipient as accepted, with where it goes.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub recipient: NewRecipient,
    /// `None`: relayed as it is ([`Route::Remote`]).
    pub targets: Option<Vec<Target>>,
}

/// What an accepted message is stored as (all in one transaction).
pub struct Copies {
    pub messages: Vec<NewMessage>,
    /// The original recipients delivered here (for NOTIFY=SUCCESS).
    pub delivered: Vec<NewRecipient>,
}

/// The message as it is committed: the relayed copy under `id` (when some
/// recipient is relayed), the local users' copy (with `Return-Path:`, and
/// `Delivered-To:` when there is one user; `id` when nothing is relayed),
/// each alias's forward with an SRS
/// sender (`srs_key`; `None` for senders in our own domains or the null
/// sender, which are not rewritten).
pub struct Split<'a> {
    pub id: MessageId,
    pub received_at: i64,
    pub class: Class,
    pub envelope: &'a StoredEnvelope,
    pub data: &'a [u8],
    /// Mints ids for the copies after the first.
    pub new_id: &'a (dyn Fn() -> MessageId + Sync),
    /// The envelope sender of a forward by an alias of this domain.
    pub forward_sender: &'a (dyn Fn(&str) -> String + Sync),
}

impl Split<'_> {
    pub fn copies(&self, accepted: Vec<Accepted>) -> Copies {
        let mut relayed = Vec::new();
        // Per local user: their copy's recipients and the aliases it came through.
        let mut locals: Vec<(String, Vec<String>, Vec<NewRecipient>)> = Vec::new();
        // Per forwarding alias: the addresses it sends to.
        let mut forwards: Vec<(Vec<String>, Vec<NewRecipient>)> = Vec::new();
        let mut delivered = Vec::new();
        for a in accepted {
            let Some(targets) = a.targets else {
                relayed.push(a.recipient);
                continue;
            };
            if targets.iter().all(|t| matches!(t, Target::Local { .. })) {
                delivered.push(a.recipient.clone());
            }
            for t in targets {
                match t {
                    Target::Local { user, mailbox, via } => {
                        let route = Route::Local { user: user.clone(), mailbox: mailbox.clone() };
                        let r = NewRecipient { route, ..a.recipient.clone() };
                        match locals.iter_mut().find(|(u, ..)| *u == user) {
                            Some((.., rs)) => rs.push(r),
                            None => locals.push((user, via, vec![r])),
                        }
                    }
                    Target::Forward { address, via } => {
                        let r = NewRecipient {
                            address,
                            notify: a.recipient.notify,
                            orcpt: a
                                .recipient
                                .orcpt
                                .clone()
                                .or_else(|| Some(format!("rfc822;{}", a.recipient.address))),
                            route: Route::Remote,
                        };
                        match forwards.iter_mut().find(|(v, _)| v.last() == via.last()) {
                            Some((_, rs)) if !rs.iter().any(|x| x.address == r.address) => rs.push(r),
                            Some(_) => {}
                            None => forwards.push((via, vec![r])),
                        }
                    }
                }
            }
        }
        let mut messages = Vec::new();
        let next_id = |messages: &Vec<NewMessage>| if messages.is_empty() { self.id } else { (self.new_id)() };
        if !relayed.is_empty() {
            messages.push(self.message(next_id(&messages), self.envelope.clone(), relayed, self.data.to_vec()));
        }
        if let [(user, via, _)] = locals.as_slice() {
            let mut data = final_delivery_fields(&self.envelope.mail_from, user, via);
            data.extend_from_slice(self.data);
            let recipients = locals.pop().map(|l| l.2).unwrap_or_default();
            messages.push(self.message(next_id(&messages), self.envelope.clone(), recipients, data));
        } else if !locals.is_empty() {
            // Several users: one body for all of them (stored once), so no
            // user's Delivered-To; the Return-Path is the same for all (as
            // Dovecot's LMTP does, and as Received names no recipient).
            let mut data = format!("Return-Path: <{}>\r\n", self.envelope.mail_from).into_bytes();
            data.extend_from_slice(self.data);
            let recipients = locals.into_iter().flat_map(|l| l.2).collect();
            messages.push(self.message(next_id(&messages), self.envelope.clone(), recipients, data));
        }
        for (via, recipients) in forwards {
            let alias = via.last().cloned().unwrap_or_default();
            let mut data = delivered_to_fields(&alias, &via[..via.len().saturating_sub(1)]);
            data.extend_from_slice(self.data);
            let mut envelope = self.envelope.clone();
            envelope.mail_from = (self.forward_sender)(&alias);
            messages.push(self.message(next_id(&messages), envelope, recipients, data));
        }
        Copies { messages, delivered }
    }

    fn message(
        &self,
        id: MessageId,
        envelope: StoredEnvelope,
        recipients: Vec<NewRecipient>,
        data: Vec<u8>,
    ) -> NewMessage {
        NewMessage { hold: false, id, received_at: self.received_at, class: self.class, envelope, recipients, data }
    }
}

/// What final delivery to `user` adds on top of a message from `sender`:
/// `Return-Path:` (RFC 5321 §4.4) and `Delivered-To:`.
pub fn final_delivery_fields(sender: &str, user: &str, via: &[String]) -> Vec<u8> {
    let mut out = format!("Return-Path: <{sender}>\r\n").into_bytes();
    out.extend(delivered_to_fields(user, via));
    out
}

/// Where mail we write ourselves (notices, alerts) to `address` goes: the
/// first place the address leads (an alias's first target, an SRS
/// address's original sender), as the recipient to store and its route;
/// `None` when it leads nowhere.
pub async fn route_to<D: Directory>(store: &D, address: &str, days: i64) -> Result<Option<(String, Route)>> {
    let address = address.to_lowercase();
    Ok(match resolve(store, &AddressingConfig::default(), &address, days).await? {
        Resolution::Remote => Some((address, Route::Remote)),
        Resolution::Unknown => None,
        Resolution::Deliver(targets) => targets.into_iter().next().map(|t| match t {
            Target::Local { user, .. } => (address, Route::inbox(user)),
            Target::Forward { address, .. } => (address, Route::Remote),
        }),
    })
}

/// `Delivered-To:` for `last`, on top of those for the aliases before it
/// (newest first, RFC 9228 §4).
fn delivered_to_fields(last: &str, via: &[String]) -> Vec<u8> {
    let mut out = format!("Delivered-To: {last}\r\n");
    for a in via.iter().rev() {
        out.push_str(&format!("Delivered-To: {a}\r\n"));
    }
    out.into_bytes()
}

/// The envelope sender of a forward by an alias at `alias`'s domain:
/// rewritten with SRS unless it is null or already ours.
pub fn srs_sender(sender: &str, alias: &str, local_domains: &[String], key: &[u8], days: i64) -> String {
    let ours = sender.rsplit_once('@').is_some_and(|(_, d)| local_domains.iter().any(|l| l.eq_ignore_ascii_case(d)));
    let domain = alias.rsplit_once('@').map(|(_, d)| d).unwrap_or(alias);
    if sender.is_empty() || ours { sender.to_string() } else { srs::forward(sender, domain, key, days) }
}
