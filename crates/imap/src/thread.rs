//! SORT and THREAD (RFC 5256), with the DISPLAYFROM and DISPLAYTO keys of
//! SORT=DISPLAY (RFC 5957). Pure: the session reads each message's header
//! into a [`Summary`], asks this module for an order or for threads, and
//! writes the SORT or THREAD response.
//!
//! - [`Summary::from_header`]: what SORT and THREAD need of one message.
//! - [`base_subject`]: the base subject (RFC 5256 §2.1), and [`casemap`],
//!   the collation every string key is compared with.
//! - [`sort`]: the SORT order (RFC 5256 §3).
//! - [`ordered_subject`] and [`references`]: the two threading algorithms
//!   (RFC 5256 §3); [`thread`] picks one by name.
//! - [`render`]: the THREAD response data (RFC 5256 §4).
//!
//! Bounds: a mailbox may hold many thousands of messages and their headers
//! are written by strangers, so every step is O(n log n) in the number of
//! messages (REFERENCES answers "would this link make a loop?" with a
//! link-cut tree, not by walking up the thread), a message counts its last
//! [`MAX_REFERENCES`] references only, and nothing recurses: a thread may be
//! as deep as the mailbox is large, and [`Tree`] is even dropped without
//! recursion.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use mail_parser::{HeaderName, Message, MessageParser};

/// The references of one message that REFERENCES links (the last ones of
/// its References field). RFC 5256 sets no limit; a real thread rarely
/// names more than a few dozen ancestors, and the cap bounds the dummies a
/// hostile header can make.
pub const MAX_REFERENCES: usize = 100;

/// What SORT and THREAD need of one message, read from its header.
///
/// Every string key is already folded with [`casemap`], so that comparing
/// two keys octet by octet is the comparison RFC 5256 asks for (its
/// "Internationalization Considerations": i;unicode-casemap). An absent
/// field gives the empty string, which sorts first. The strings are shared:
/// a SORT copies a session's kept summaries with fresh sequence numbers,
/// and that copy must not cost an allocation per key (10,000 messages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub seq: u32,
    pub uid: u32,
    /// The internal date, in seconds since the epoch: ARRIVAL.
    pub internal_date: i64,
    /// RFC822.SIZE: SIZE.
    pub size: u64,
    /// The Date field in seconds since the epoch (UTC); `None` when it is
    /// missing or cannot be parsed. See [`Summary::sent_date`].
    pub sent: Option<i64>,
    /// The base subject (RFC 5256 §2.1), folded: SUBJECT, and the subject
    /// that ORDEREDSUBJECT and REFERENCES group by.
    pub subject: Arc<str>,
    /// Whether extracting the base subject removed a reply or forward
    /// marker (RFC 5256 §3, REFERENCES step 1).
    pub subject_is_reply: bool,
    /// The addr-mailbox of the first From, To and Cc address (RFC 5256 §3),
    /// folded: FROM, TO and CC.
    pub from: Arc<str>,
    pub to: Arc<str>,
    pub cc: Arc<str>,
    /// The display sort value of the first From and To address
    /// (RFC 5957 §3), folded: DISPLAYFROM and DISPLAYTO.
    pub display_from: Arc<str>,
    pub display_to: Arc<str>,
    /// The first valid msg-id of the Message-ID field, without its angle
    /// brackets and with its quoting removed.
    pub message_id: Option<Arc<str>>,
    /// The references that REFERENCES links, oldest first (RFC 5256 §3,
    /// REFERENCES step 1).
    pub references: Arc<[String]>,
}

impl Summary {
    /// The sort keys of a message from its raw header block (the octets up
    /// to the blank line; the body may follow, it is not read). A header
    /// that cannot be parsed at all gives a summary with empty keys.
    pub fn from_header(seq: u32, uid: u32, internal_date: i64, size: u64, header: &[u8]) -> Summary {
        let mut summary = Summary { seq, uid, internal_date, size, ..Summary::default() };
        // mail-parser reads a field up to its line end: a header block
        // without its blank line gets one.
        let header: Cow<'_, [u8]> =
            if header.windows(2).any(|w| w == b"\n\n") || header.windows(3).any(|w| w == b"\n\r\n") {
                Cow::Borrowed(header)
            } else {
                let mut owned = header.to_vec();
                if !owned.ends_with(b"\n") {
                    owned.extend_from_slice(b"\r\n");
                }
                owned.extend_from_slice(b"\r\n");
                Cow::Owned(owned)
            };
        let Some(message) = MessageParser::default().parse_headers(header.as_ref()).filter(|m| !m.parts.is_empty())
        else {
            return summary;
        };
        // RFC 5256 §2.2: the sent date is the Date field normalized to UTC;
        // one that cannot be parsed counts as missing.
        summary.sent = message.date().filter(|date| date.is_valid()).map(|date| date.to_timestamp());
        if let Some(subject) = message.subject() {
            // RFC 5256 §2.1 step (1): mail-parser has decoded the encoded
            // words (RFC 2047) to UTF-8.
            let (base, reply) = base_subject(subject);
            summary.subject = casemap(&base).into();
            summary.subject_is_reply = reply;
        }
        let first = |name: HeaderName<'static>| raw_field(&message, name).and_then(|raw| first_address(&raw));
        if let Some(from) = first(HeaderName::From) {
            summary.from = casemap(&from.mailbox).into();
            summary.display_from = casemap(&from.display()).into();
        }
        if let Some(to) = first(HeaderName::To) {
            summary.to = casemap(&to.mailbox).into();
            summary.display_to = casemap(&to.display()).into();
        }
        if let Some(cc) = first(HeaderName::Cc) {
            summary.cc = casemap(&cc.mailbox).into();
        }
        summary.message_id =
            raw_field(&message, HeaderName::MessageId).and_then(|raw| msg_ids(&raw).into_iter().next()).map(Arc::from);
        // RFC 5256 §3 REFERENCES step 1: the References field; when it is
        // missing or names no valid msg-id, the first valid msg-id of
        // In-Reply-To; else none.
        let mut references = raw_field(&message, HeaderName::References).map(|raw| msg_ids(&raw)).unwrap_or_default();
        if references.is_empty() {
            references = raw_field(&message, HeaderName::InReplyTo)
                .and_then(|raw| msg_ids(&raw).into_iter().next())
                .into_iter()
                .collect();
        }
        references.drain(..references.len().saturating_sub(MAX_REFERENCES));
        summary.references = references.into();
        summary
    }

    /// The sent date (RFC 5256 §2.2): the Date field, or the internal date
    /// when the Date field is missing or cannot be parsed.
    pub fn sent_date(&self) -> i64 {
        self.sent.unwrap_or(self.internal_date)
    }
}

/// The first address structure of an address field, as ENVELOPE shows it
/// (RFC 9051 §7.5.2, read by [`crate::address`] as [`crate::mime`] reads
/// it): a named group's first structure carries the group name as its
/// mailbox and no host.
struct FirstAddress {
    name: Option<String>,
    mailbox: String,
    host: String,
}

impl FirstAddress {
    /// RFC 5957 §3: the display name when there is a non-empty one, else
    /// addr-mailbox "@" addr-host, else addr-mailbox.
    fn display(&self) -> Cow<'_, str> {
        match (self.name.as_deref().map(str::trim).filter(|name| !name.is_empty()), self.host.as_str()) {
            (Some(name), _) => Cow::Borrowed(name),
            (None, "") => Cow::Borrowed(&self.mailbox),
            (None, host) => Cow::Owned(format!("{}@{host}", self.mailbox)),
        }
    }
}

fn first_address(raw: &str) -> Option<FirstAddress> {
    crate::address::parse(raw.as_bytes()).into_iter().find_map(|item| match item {
        crate::address::Item::GroupStart(name) => Some(FirstAddress { name: None, mailbox: name, host: String::new() }),
        // RFC 5957 §3: the display name (or `user@host (Name)`'s, as Dovecot reads it).
        crate::address::Item::Mailbox(m) => Some(FirstAddress { name: m.name, mailbox: m.local, host: m.domain }),
        crate::address::Item::GroupEnd => None,
    })
}

/// The value of the last field called `name`, as written.
fn raw_field<'m>(message: &'m Message<'_>, name: HeaderName<'_>) -> Option<Cow<'m, str>> {
    let field = message.headers().iter().rev().find(|h| h.name == name)?;
    let raw = message.raw_message().get(field.offset_start as usize..field.offset_end as usize)?;
    Some(String::from_utf8_lossy(raw))
}

/// The valid msg-ids of a Message-ID, In-Reply-To or References field, in
/// order, without angle brackets (RFC 5322 §3.6.4). Comments are skipped.
/// RFC 5256 §3 REFERENCES: msg-ids are normalized so that quoting does not
/// matter (`<"a.b"@x>` is `<a.b@x>`); they are then compared
/// case-sensitively.
fn msg_ids(raw: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut chars = raw.chars();
    let mut comment = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' if comment > 0 => {
                chars.next();
            }
            '(' => comment += 1,
            ')' => comment = comment.saturating_sub(1),
            '<' if comment == 0 => ids.extend(msg_id(&mut chars)),
            _ => {}
        }
    }
    ids
}

/// One msg-id after its "<", up to its ">": quoting removed, whitespace
/// outside quotes (folding) dropped. `None` when it is not
/// id-left "@" id-right, or is not closed.
fn msg_id(chars: &mut std::str::Chars<'_>) -> Option<String> {
    let mut id = String::new();
    let mut quoted = false;
    loop {
        match chars.next()? {
            '"' => quoted = !quoted,
            '\\' if quoted => id.push(chars.next()?),
            '>' if !quoted => break,
            // A "<" inside starts again: the one before was not closed.
            '<' if !quoted => id.clear(),
            c if !quoted && c.is_whitespace() => {}
            c => id.push(c),
        }
    }
    let (left, right) = id.rsplit_once('@')?;
    (!left.is_empty() && !right.is_empty()).then_some(id)
}

// -------------------------------------------------------------- base subject

/// The i;unicode-casemap collation (RFC 5051), which RFC 5256 uses for
/// every string key: strings are folded, then compared octet by octet.
/// RFC 5051 §2 maps each character to its titlecase and normalizes to NFKD;
/// this uppercases (titlecase for all but a few digraphs, and the same
/// order against `[`, `_` and the other ASCII marks as Dovecot), normalizes
/// to NFKD and uppercases again (what NFKD decomposed may be lowercase).
pub fn casemap(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    let upper = s.to_uppercase();
    icu_normalizer::DecomposingNormalizerBorrowed::new_nfkd().normalize(&upper).to_uppercase()
}

/// The base subject of a decoded subject (RFC 5256 §2.1), as written (fold
/// it with [`casemap`] to compare), and whether the extraction removed a
/// reply or forward marker: a subj-refwd, a "(fwd)" subj-trailer, or a
/// subj-fwd-hdr and subj-fwd-trl (RFC 5256 §3, REFERENCES).
///
/// A subj-blob may hold any character but "[" and "]": the ABNF's BLOBCHAR
/// is US-ASCII only, but decoded subjects are UTF-8 and "[Liste
/// française]" is a blob to anyone reading it.
pub fn base_subject(decoded: &str) -> (String, bool) {
    // (1) Tabs and continuations become spaces, runs of spaces one space.
    let mut subject = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') { ' ' } else { c };
        if !(c == ' ' && subject.ends_with(' ')) {
            subject.push(c);
        }
    }
    let mut reply = false;
    loop {
        // (2) Remove subj-trailers ("(fwd)" or WSP) until none is left.
        let mut rest = subject.as_str();
        loop {
            rest = rest.trim_end_matches(' ');
            match strip_suffix_ci(rest, "(fwd)") {
                Some(shorter) => {
                    rest = shorter;
                    reply = true;
                }
                None => break,
            }
        }
        // (5) Repeat (3) and (4) until neither removes anything.
        loop {
            let before = rest.len();
            // (3) Remove a subj-leader: WSP, or *subj-blob subj-refwd.
            if let Some(shorter) = rest.strip_prefix(' ') {
                rest = shorter;
            } else if let Some(len) = leader(rest) {
                rest = &rest[len..];
                reply = true;
            }
            // (4) Remove a leading subj-blob if a non-empty subj-base
            // remains after it.
            if let Some(len) = blob(rest)
                && len < rest.len()
            {
                rest = &rest[len..];
            }
            if rest.len() == before {
                break;
            }
        }
        // (6) "[fwd:" ... "]" around the whole: remove both, and again
        // from (2).
        if let Some(inner) = strip_prefix_ci(rest, "[fwd:").and_then(|r| r.strip_suffix(']')) {
            subject = inner.to_owned();
            reply = true;
            continue;
        }
        // (7) What is left is the base subject.
        return (rest.to_owned(), reply);
    }
}

/// The length of a subj-leader that is not WSP: *subj-blob subj-refwd,
/// where subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":".
fn leader(s: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(len) = blob(&s[at..]) {
        at += len;
    }
    let word = ["re", "fwd", "fw"].into_iter().find(|word| strip_prefix_ci(&s[at..], word).is_some())?;
    at += word.len();
    at += s[at..].len() - s[at..].trim_start_matches(' ').len();
    if let Some(len) = blob(&s[at..]) {
        at += len;
    }
    s[at..].starts_with(':').then_some(at + 1)
}

/// The length of a subj-blob at the start of `s`: "[" *BLOBCHAR "]" *WSP.
fn blob(s: &str) -> Option<usize> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find([']', '['])?;
    if inner.as_bytes()[close] != b']' {
        return None;
    }
    let after = &inner[close + 1..];
    Some(s.len() - after.trim_start_matches(' ').len())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    s.get(cut..)?.eq_ignore_ascii_case(suffix).then(|| &s[..cut])
}

// ---------------------------------------------------------------------- SORT

/// The SORT order (RFC 5256 §3): indices into `msgs`, by the criteria in
/// turn, then by sequence number.
pub fn sort(msgs: &[Summary], criteria: &[SortCriterion]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| compare(&msgs[a], &msgs[b], criteria));
    order
}

fn compare(a: &Summary, b: &Summary, criteria: &[SortCriterion]) -> Ordering {
    // RFC 5256 §3: messages equal by every criterion stay in mailbox order
    // (an implicit last criterion, the sequence number; never reversed).
    by_criteria(a, b, criteria).then(a.seq.cmp(&b.seq))
}

/// The SORT order of two messages whose summaries may have been read at
/// different times (their sequence numbers then need not be current): ties
/// go by UID, which orders messages as sequence numbers do.
pub fn in_sort_order(a: &Summary, b: &Summary, criteria: &[SortCriterion]) -> Ordering {
    by_criteria(a, b, criteria).then(a.uid.cmp(&b.uid))
}

fn by_criteria(a: &Summary, b: &Summary, criteria: &[SortCriterion]) -> Ordering {
    criteria
        .iter()
        .map(|criterion| {
            let order = compare_key(a, b, &criterion.key);
            // RFC 5256 §3: REVERSE reverses the criterion that follows it.
            if criterion.reverse { order.reverse() } else { order }
        })
        .find(|order| order.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn compare_key(a: &Summary, b: &Summary, key: &SortKey) -> Ordering {
    match key {
        // RFC 5256 §3: ARRIVAL is the internal date and time.
        SortKey::Arrival => a.internal_date.cmp(&b.internal_date),
        // RFC 5256 §3: CC, FROM and TO are the addr-mailbox of the first
        // address.
        SortKey::Cc => a.cc.cmp(&b.cc),
        SortKey::From => a.from.cmp(&b.from),
        SortKey::To => a.to.cmp(&b.to),
        // RFC 5256 §3: DATE is the sent date (§2.2).
        SortKey::Date => a.sent_date().cmp(&b.sent_date()),
        // RFC 5256 §3: SIZE is RFC822.SIZE.
        SortKey::Size => a.size.cmp(&b.size),
        // RFC 5256 §3: SUBJECT is the base subject (§2.1).
        SortKey::Subject => a.subject.cmp(&b.subject),
        // RFC 5957 §4: the display sort value of the first address.
        SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
        SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
    }
}

// -------------------------------------------------------------------- THREAD

/// A thread: a message (an index into the `msgs` given), or a dummy
/// (`None`) that only holds children together.
///
/// Threads can be as deep as the mailbox is large, so a tree is dropped
/// without recursion. The derived `Debug` and `PartialEq` do recurse: they
/// are for tests and small trees.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub msg: Option<usize>,
    pub children: Vec<Tree>,
}

impl Tree {
    /// A message without replies.
    pub fn leaf(msg: usize) -> Tree {
        Tree { msg: Some(msg), children: Vec::new() }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let mut below = std::mem::take(&mut self.children);
        while let Some(mut tree) = below.pop() {
            below.append(&mut tree.children);
        }
    }
}

/// The threads by the named algorithm; `None` for an algorithm this module
/// does not have (the session answers BAD: RFC 5256 §3 lets a server refuse
/// one it does not advertise).
pub fn thread(msgs: &[Summary], algorithm: &ThreadingAlgorithm<'_>) -> Option<Vec<Tree>> {
    match algorithm {
        ThreadingAlgorithm::OrderedSubject => Some(ordered_subject(msgs)),
        ThreadingAlgorithm::References => Some(references(msgs)),
        ThreadingAlgorithm::Other(_) => None,
    }
}

/// RFC 5256 §2.2: by sent date, and by sequence number when they are equal.
fn by_date(msgs: &[Summary], a: usize, b: usize) -> Ordering {
    let (a, b) = (&msgs[a], &msgs[b]);
    a.sent_date().cmp(&b.sent_date()).then(a.seq.cmp(&b.seq))
}

/// ORDEREDSUBJECT (RFC 5256 §3): one thread per base subject, its first
/// message (by sent date) at the top and every other message a child of
/// it; threads in the order of their first messages.
///
/// Messages with an empty base subject make one thread too: the RFC makes
/// no exception for them.
pub fn ordered_subject(msgs: &[Summary]) -> Vec<Tree> {
    // The messages by base subject, then by sent date.
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| msgs[a].subject.cmp(&msgs[b].subject).then_with(|| by_date(msgs, a, b)));
    // One thread per run of equal base subjects: the first message at the
    // root, the others its children ("no grandchildren"), by sent date.
    let mut threads: Vec<(usize, Tree)> = order
        .chunk_by(|&a, &b| msgs[a].subject == msgs[b].subject)
        .filter_map(|run| run.split_first())
        .map(|(&first, rest)| {
            (first, Tree { msg: Some(first), children: rest.iter().map(|&m| Tree::leaf(m)).collect() })
        })
        .collect();
    // The threads by the sent date of their first message.
    threads.sort_by(|a, b| by_date(msgs, a.0, b.0));
    threads.into_iter().map(|(_, tree)| tree).collect()
}

/// REFERENCES (RFC 5256 §3): threads from the References and In-Reply-To
/// fields, after Jamie Zawinski's algorithm, then threads whose first
/// messages share a base subject merged.
pub fn references(msgs: &[Summary]) -> Vec<Tree> {
    let n = msgs.len();
    // Messages are taken in mailbox order, whatever the order of `msgs`.
    let mut by_seq: Vec<usize> = (0..n).collect();
    by_seq.sort_by_key(|&m| msgs[m].seq);
    // RFC 5256 §3: a Message ID that several messages carry is the first
    // one's (lowest sequence number); the others get unique IDs, that is,
    // none that a reference can name. A message without one gets a unique
    // ID too.
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(n);
    for &m in &by_seq {
        if let Some(id) = msgs[m].message_id.as_deref() {
            ids.entry(id).or_insert(m);
        }
    }
    // (1) Link messages to what they reference. Nodes 0..n are the
    // messages; dummies are added for IDs that no message has.
    let mut forest = Forest::new(n);
    for &m in &by_seq {
        let references = &msgs[m].references;
        let references = &references[references.len().saturating_sub(MAX_REFERENCES)..];
        let mut previous: Option<usize> = None;
        for reference in references {
            // (1A) A reference that no message has becomes a dummy, used
            // for every later reference to the same ID.
            let node = *ids.entry(reference.as_str()).or_insert_with(|| forest.add());
            // (1A) Each reference is the parent of the next, unless the
            // next already has a parent or the link would make a loop.
            if let Some(parent) = previous
                && forest.parent[node] == NONE
                && !forest.below(parent, node)
            {
                forest.link(node, parent);
            }
            previous = Some(node);
        }
        // (1B) The last reference is the parent of the message: a parent
        // the message already has goes (it came from a truncated
        // References field), even when there is no new one; no loop.
        forest.cut(m);
        if let Some(parent) = previous
            && !forest.below(parent, m)
        {
            forest.link(m, parent);
        }
    }
    drop(ids);
    let parent = forest.parent;

    // Children of every node, from the parent links.
    let mut start = vec![0; parent.len() + 1];
    for &p in parent.iter().filter(|&&p| p != NONE) {
        start[p + 1] += 1;
    }
    for i in 0..parent.len() {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut child = vec![0; start[parent.len()]];
    for (node, &p) in parent.iter().enumerate().filter(|(_, p)| **p != NONE) {
        child[next[p]] = node;
        next[p] += 1;
    }
    let children = |node: usize| &child[start[node]..start[node + 1]];
    // The messages under a list of nodes: a dummy is replaced by what is
    // under it, and one with nothing under it goes.
    let messages_under = |nodes: &[usize]| {
        let mut found = Vec::new();
        let mut lists = vec![nodes];
        while let Some(list) = lists.last_mut() {
            match list.split_first() {
                Some((&node, rest)) => {
                    *list = rest;
                    if node < n {
                        found.push(node);
                    } else {
                        lists.push(children(node));
                    }
                }
                None => {
                    lists.pop();
                }
            }
        }
        found
    };

    // (3) Prune dummies. Below the top, every dummy is replaced by its
    // children ("splice them in with the dummy's siblings"), so a message's
    // children are messages.
    let mut kids: Vec<Vec<usize>> = (0..n).map(|m| messages_under(children(m))).collect();
    // (2) The nodes without a parent are the tops of the threads. (3) A
    // dummy among them with no message under it goes, one with a single
    // message gives its place to it, and one with several stays.
    let mut tops: Vec<Top> = Vec::new();
    for node in (0..parent.len()).filter(|&node| parent[node] == NONE) {
        if node < n {
            tops.push(Top::Message(node));
            continue;
        }
        let under = messages_under(children(node));
        match under.as_slice() {
            [] => {}
            &[only] => tops.push(Top::Message(only)),
            _ => tops.push(Top::Dummy(under)),
        }
    }

    // (4) Sort the tops by sent date; a dummy by its first child, once its
    // children are sorted.
    for top in &mut tops {
        if let Top::Dummy(under) = top {
            under.sort_by(|&a, &b| by_date(msgs, a, b));
        }
    }
    tops.sort_by(|a, b| by_date(msgs, a.first(), b.first()));

    // (5) Merge threads whose tops have the same base subject.
    merge_by_subject(msgs, &mut tops, &mut kids);

    // (6) Sort every set of siblings by sent date; a dummy by its first
    // child, so its children first.
    for list in &mut kids {
        list.sort_by(|&a, &b| by_date(msgs, a, b));
    }
    for top in &mut tops {
        if let Top::Dummy(under) = top {
            under.sort_by(|&a, &b| by_date(msgs, a, b));
        }
    }
    tops.sort_by(|a, b| by_date(msgs, a.first(), b.first()));
    build(tops, &kids)
}

/// A thread at the top of REFERENCES: a message, or a dummy holding the
/// messages under it (always two or more).
#[derive(Debug)]
enum Top {
    Message(usize),
    Dummy(Vec<usize>),
}

impl Top {
    /// The message that stands for the thread: the message, or a dummy's
    /// first child (RFC 5256 §3 REFERENCES steps 4, 5B and 6).
    fn first(&self) -> usize {
        match self {
            Top::Message(m) => *m,
            Top::Dummy(under) => under.first().copied().unwrap_or(usize::MAX),
        }
    }
}

/// REFERENCES step (5): threads whose tops have the same base subject
/// become one. `tops` are sorted as step (4) left them; a merged thread
/// leaves `tops`, a new dummy joins them.
fn merge_by_subject(msgs: &[Summary], tops: &mut Vec<Top>, kids: &mut [Vec<usize>]) {
    let is_dummy = |top: &Top| matches!(top, Top::Dummy(_));
    // (5A) The subject table: a base subject and the top that holds it.
    let mut table: HashMap<&str, usize> = HashMap::new();
    // (5B) One top per thread subject (the base subject of the top, or of
    // a dummy's first child); an empty one takes no part. A dummy takes the
    // place of a message, and a message that is not a reply the place of
    // one that is.
    let count = tops.len();
    let thread_subject = |tops: &[Top], t: usize| msgs.get(tops[t].first()).map_or("", |m| m.subject.as_ref());
    for t in 0..count {
        let subject = thread_subject(tops, t);
        if subject.is_empty() {
            continue;
        }
        let held = *table.entry(subject).or_insert(t);
        let replace = match (&tops[held], &tops[t]) {
            (Top::Dummy(_), _) => false,
            (Top::Message(_), Top::Dummy(_)) => true,
            (Top::Message(h), Top::Message(m)) => msgs[*h].subject_is_reply && !msgs[*m].subject_is_reply,
        };
        if replace {
            table.insert(subject, t);
        }
    }
    // (5C) Every other top with that subject joins the one in the table.
    let mut gone = vec![false; count];
    for t in 0..count {
        let subject = thread_subject(tops, t);
        if subject.is_empty() || gone[t] {
            continue;
        }
        let Some(&held) = table.get(subject) else { continue };
        if held == t {
            continue;
        }
        match (is_dummy(&tops[t]), is_dummy(&tops[held])) {
            // Both dummies: the current one's children join the other's.
            (true, true) => {
                let moved = match &mut tops[t] {
                    Top::Dummy(under) => std::mem::take(under),
                    Top::Message(_) => Vec::new(),
                };
                if let Top::Dummy(under) = &mut tops[held] {
                    under.extend(moved);
                }
                gone[t] = true;
            }
            // A message joins the dummy in the table as one of its
            // children.
            (false, true) => {
                let m = tops[t].first();
                if let Top::Dummy(under) = &mut tops[held] {
                    under.push(m);
                }
                gone[t] = true;
            }
            (false, false) => {
                let (m, h) = (tops[t].first(), tops[held].first());
                if msgs[m].subject_is_reply && !msgs[h].subject_is_reply {
                    // A reply becomes a child of the message that is not.
                    kids[h].push(m);
                    gone[t] = true;
                } else {
                    // Otherwise a new dummy holds both, and takes the
                    // table's place.
                    tops.push(Top::Dummy(vec![m, h]));
                    gone.push(false);
                    gone[t] = true;
                    gone[held] = true;
                    table.insert(subject, tops.len() - 1);
                }
            }
            // A dummy with a message in the table: step 5B never leaves
            // one there.
            (true, false) => {}
        }
    }
    let mut index = 0;
    tops.retain(|_| {
        index += 1;
        !gone[index - 1]
    });
}

/// The trees of the threads, built bottom-up without recursion: in the
/// reverse of a pre-order walk, a message's children are built before it.
fn build(tops: Vec<Top>, kids: &[Vec<usize>]) -> Vec<Tree> {
    let mut preorder = Vec::with_capacity(kids.len());
    let mut stack: Vec<usize> = Vec::new();
    for top in &tops {
        match top {
            Top::Message(m) => stack.push(*m),
            Top::Dummy(under) => stack.extend(under.iter().rev()),
        }
        while let Some(m) = stack.pop() {
            preorder.push(m);
            stack.extend(kids[m].iter().rev());
        }
    }
    let mut built: Vec<Option<Tree>> = (0..kids.len()).map(|_| None).collect();
    for &m in preorder.iter().rev() {
        let children = kids[m].iter().filter_map(|&c| built[c].take()).collect();
        built[m] = Some(Tree { msg: Some(m), children });
    }
    tops.iter()
        .filter_map(|top| match top {
            Top::Message(m) => built[*m].take(),
            Top::Dummy(under) => {
                Some(Tree { msg: None, children: under.iter().filter_map(|&m| built[m].take()).collect() })
            }
        })
        .collect()
}

const NONE: usize = usize::MAX;

mod forest;
use forest::Forest;

// -------------------------------------------------------------------- render

/// The THREAD response data (RFC 5256 §4), the text after "THREAD " (empty
/// when there are no threads); `id` gives each message's number (sequence
/// number or UID, as the command asked).
///
/// A thread is a parenthesized list: a message followed by its only child
/// continues the list ("(1 2 3)"); several children are each a list of
/// their own after it ("(3 6 (4 23)(44 7 96))"); a dummy shows only as the
/// list around its children ("((3)(5))"). The grammar has no place for a
/// dummy below the top, nor for an empty list: a dummy below the top is
/// replaced by its children and one with no message under it shows nothing.
pub fn render(trees: &[Tree], id: impl Fn(usize) -> u32) -> String {
    enum Step<'t> {
        Text(&'static str),
        Node(&'t Tree),
    }
    let mut out = String::new();
    let mut stack: Vec<Step<'_>> = Vec::new();
    for tree in trees {
        if tree.msg.is_none() && shown(tree).is_empty() {
            continue;
        }
        out.push('(');
        stack.push(Step::Node(tree));
        while let Some(step) = stack.pop() {
            let tree = match step {
                Step::Text(text) => {
                    out.push_str(text);
                    continue;
                }
                Step::Node(tree) => tree,
            };
            let children = shown(tree);
            if let Some(m) = tree.msg {
                out.push_str(&id(m).to_string());
                if !children.is_empty() {
                    out.push(' ');
                }
            }
            match children.as_slice() {
                // thread-members: an only child continues the list.
                &[only] => stack.push(Step::Node(only)),
                // thread-nested: two or more children, a list each.
                many => {
                    for child in many.iter().rev() {
                        stack.push(Step::Text(")"));
                        stack.push(Step::Node(child));
                        stack.push(Step::Text("("));
                    }
                }
            }
        }
        out.push(')');
    }
    out
}

/// The children of a node as the response shows them: messages, with each
/// dummy replaced by what is under it.
fn shown(tree: &Tree) -> Vec<&Tree> {
    let mut found = Vec::new();
    let mut lists = vec![tree.children.iter()];
    while let Some(list) = lists.last_mut() {
        match list.next() {
            Some(child) if child.msg.is_some() => found.push(child),
            Some(dummy) => lists.push(dummy.children.iter()),
            None => {
                lists.pop();
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
