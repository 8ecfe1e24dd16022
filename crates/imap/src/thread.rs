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
/// field gives the empty string, which sorts first.
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
    pub subject: String,
    /// Whether extracting the base subject removed a reply or forward
    /// marker (RFC 5256 §3, REFERENCES step 1).
    pub subject_is_reply: bool,
    /// The addr-mailbox of the first From, To and Cc address (RFC 5256 §3),
    /// folded: FROM, TO and CC.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// The display sort value of the first From and To address
    /// (RFC 5957 §3), folded: DISPLAYFROM and DISPLAYTO.
    pub display_from: String,
    pub display_to: String,
    /// The first valid msg-id of the Message-ID field, without its angle
    /// brackets and with its quoting removed.
    pub message_id: Option<String>,
    /// The references that REFERENCES links, oldest first (RFC 5256 §3,
    /// REFERENCES step 1).
    pub references: Vec<String>,
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
            summary.subject = casemap(&base);
            summary.subject_is_reply = reply;
        }
        let first = |name: HeaderName<'static>| raw_field(&message, name).and_then(|raw| first_address(&raw));
        if let Some(from) = first(HeaderName::From) {
            summary.from = casemap(&from.mailbox);
            summary.display_from = casemap(&from.display());
        }
        if let Some(to) = first(HeaderName::To) {
            summary.to = casemap(&to.mailbox);
            summary.display_to = casemap(&to.display());
        }
        if let Some(cc) = first(HeaderName::Cc) {
            summary.cc = casemap(&cc.mailbox);
        }
        summary.message_id =
            raw_field(&message, HeaderName::MessageId).and_then(|raw| msg_ids(&raw).into_iter().next());
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
        summary.references = references;
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
        // RFC 5957 §3: the display name; a comment is none.
        crate::address::Item::Mailbox(m) => {
            Some(FirstAddress { name: m.name.filter(|_| m.phrase), mailbox: m.local, host: m.domain })
        }
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
/// this lowercases, normalizes to NFKD and lowercases again (what NFKD
/// decomposed may be uppercase, as ℌ is H). The two foldings put the same
/// strings together except for rare characters whose lowercase and
/// titlecase forms differ in what else they equal.
pub fn casemap(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let lower = s.to_lowercase();
    icu_normalizer::DecomposingNormalizerBorrowed::new_nfkd().normalize(&lower).to_lowercase()
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
    criteria
        .iter()
        .map(|criterion| {
            let order = compare_key(a, b, &criterion.key);
            // RFC 5256 §3: REVERSE reverses the criterion that follows it.
            if criterion.reverse { order.reverse() } else { order }
        })
        .find(|order| order.is_ne())
        // RFC 5256 §3: messages equal by every criterion stay in mailbox
        // order (an implicit last criterion, the sequence number; never
        // reversed).
        .unwrap_or_else(|| a.seq.cmp(&b.seq))
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
    let thread_subject = |tops: &[Top], t: usize| msgs.get(tops[t].first()).map_or("", |m| m.subject.as_str());
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

/// The parent links of REFERENCES step (1), with the question "is this node
/// below that one?" answered in O(log n) amortized time: a link-cut tree
/// (Sleator and Tarjan) over the same links, kept beside them. Links only
/// ever hang a root under a node, so the tree is never re-rooted.
///
/// Each tree is cut into paths; each path is a splay tree ordered by depth
/// (`kid[_][0]` toward the root of the thread), and the top of each splay
/// tree points (`up`) to the node above its path.
struct Forest {
    /// The parent of each node, `NONE` at the top of a thread.
    parent: Vec<usize>,
    /// Splay tree parent, or at the root of a splay tree the node above
    /// its path.
    up: Vec<usize>,
    kid: Vec<[usize; 2]>,
}

impl Forest {
    fn new(nodes: usize) -> Forest {
        Forest { parent: vec![NONE; nodes], up: vec![NONE; nodes], kid: vec![[NONE; 2]; nodes] }
    }

    fn add(&mut self) -> usize {
        self.parent.push(NONE);
        self.up.push(NONE);
        self.kid.push([NONE; 2]);
        self.parent.len() - 1
    }

    /// Whether `node` is `top` or below it, for a `top` that has no parent:
    /// linking `top` under `node` would make a loop (RFC 5256 §3 step 1A:
    /// "before making message A the parent of B, make sure that A is not
    /// a descendent of B").
    fn below(&mut self, node: usize, top: usize) -> bool {
        self.root(node) == top
    }

    /// Hangs `node`, which has no parent, under `parent`.
    fn link(&mut self, node: usize, parent: usize) {
        debug_assert!(self.parent[node] == NONE && self.root(parent) != node, "a link may only hang a root elsewhere");
        self.access(node);
        self.up[node] = parent;
        self.parent[node] = parent;
    }

    /// Takes `node` (and what is below it) from its parent, if it has one.
    fn cut(&mut self, node: usize) {
        if self.parent[node] == NONE {
            return;
        }
        self.access(node);
        let above = self.kid[node][0];
        if above != NONE {
            self.up[above] = NONE;
        }
        self.kid[node][0] = NONE;
        self.parent[node] = NONE;
    }

    /// The top of the thread that holds `node`.
    fn root(&mut self, node: usize) -> usize {
        self.access(node);
        let mut top = node;
        while self.kid[top][0] != NONE {
            top = self.kid[top][0];
        }
        self.splay(top);
        top
    }

    /// Makes the path from the top of the thread to `node` one splay tree,
    /// rooted at `node`, with nothing deeper in it.
    fn access(&mut self, node: usize) {
        let mut below = NONE;
        let mut at = node;
        while at != NONE {
            self.splay(at);
            self.kid[at][1] = below;
            below = at;
            at = self.up[at];
        }
        self.splay(node);
    }

    fn is_splay_root(&self, x: usize) -> bool {
        let up = self.up[x];
        up == NONE || (self.kid[up][0] != x && self.kid[up][1] != x)
    }

    fn rotate(&mut self, x: usize) {
        let y = self.up[x];
        let z = self.up[y];
        let side = usize::from(self.kid[y][1] == x);
        if !self.is_splay_root(y) {
            let z_side = usize::from(self.kid[z][1] == y);
            self.kid[z][z_side] = x;
        }
        self.up[x] = z;
        let moved = self.kid[x][side ^ 1];
        self.kid[y][side] = moved;
        if moved != NONE {
            self.up[moved] = y;
        }
        self.kid[x][side ^ 1] = y;
        self.up[y] = x;
    }

    fn splay(&mut self, x: usize) {
        while !self.is_splay_root(x) {
            let y = self.up[x];
            if !self.is_splay_root(y) {
                let z = self.up[y];
                let straight = (self.kid[y][1] == x) == (self.kid[z][1] == y);
                self.rotate(if straight { y } else { x });
            }
            self.rotate(x);
        }
    }
}

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
mod tests {
    use super::*;

    // ------------------------------------------------------------ helpers

    /// A message with the given subject and sent date, Message-ID
    /// "<seq@t>".
    fn msg(seq: u32, subject: &str, sent: i64) -> Summary {
        let (base, reply) = base_subject(subject);
        Summary {
            seq,
            uid: seq + 1000,
            sent: Some(sent),
            subject: casemap(&base),
            subject_is_reply: reply,
            message_id: Some(format!("{seq}@t")),
            ..Summary::default()
        }
    }

    /// `m` referencing the messages (or missing IDs) numbered `refs`.
    fn refs(mut m: Summary, refs: &[u32]) -> Summary {
        m.references = refs.iter().map(|r| format!("{r}@t")).collect();
        m
    }

    /// The THREAD response of REFERENCES, messages shown by sequence number.
    fn by_references(msgs: &[Summary]) -> String {
        render(&references(msgs), |i| msgs[i].seq)
    }

    fn by_subject(msgs: &[Summary]) -> String {
        render(&ordered_subject(msgs), |i| msgs[i].seq)
    }

    fn criterion(reverse: bool, key: SortKey) -> SortCriterion {
        SortCriterion { reverse, key }
    }

    /// The sequence numbers in the SORT order.
    fn sorted(msgs: &[Summary], criteria: &[SortCriterion]) -> Vec<u32> {
        sort(msgs, criteria).into_iter().map(|i| msgs[i].seq).collect()
    }

    fn summary(header: &str) -> Summary {
        Summary::from_header(1, 1, 42, 100, header.as_bytes())
    }

    // ------------------------------------------------------- base subject

    #[test]
    fn base_subject_removes_leaders_blobs_and_trailers() {
        // RFC 5256 §2.1 steps (2) to (5).
        assert_eq!(base_subject("Re: [foo] Fwd: Hello (fwd)"), ("Hello".into(), true));
        assert_eq!(base_subject("Re[2]: x"), ("x".into(), true));
        assert_eq!(base_subject("RE [2] : x"), ("x".into(), true));
        assert_eq!(base_subject("fw: x"), ("x".into(), true));
        assert_eq!(base_subject("FWD:x"), ("x".into(), true));
        assert_eq!(base_subject("Re: Re: re: x"), ("x".into(), true));
        assert_eq!(base_subject("[list] Re: x"), ("x".into(), true));
        assert_eq!(base_subject("[a][b] x"), ("x".into(), false));
        assert_eq!(base_subject("hello(fwd) (FWD)  "), ("hello".into(), true));
        assert_eq!(base_subject("Re:"), ("".into(), true));
        assert_eq!(base_subject(""), ("".into(), false));
    }

    #[test]
    fn base_subject_keeps_what_is_not_a_marker() {
        assert_eq!(base_subject("Hello"), ("Hello".into(), false));
        // "Ref:" is not "re" *WSP ":".
        assert_eq!(base_subject("Ref: x"), ("Ref: x".into(), false));
        assert_eq!(base_subject("Regards"), ("Regards".into(), false));
        // RFC 5256 §2.1 (4): a blob goes only when something remains.
        assert_eq!(base_subject("[blob]"), ("[blob]".into(), false));
        assert_eq!(base_subject("[a] [b]"), ("[b]".into(), false));
        // A "[" inside is not a blob.
        assert_eq!(base_subject("[a[b] x"), ("[a[b] x".into(), false));
        assert_eq!(base_subject("x (fwd) y"), ("x (fwd) y".into(), false));
        assert_eq!(base_subject("[Liste française] x"), ("x".into(), false));
    }

    #[test]
    fn base_subject_unwraps_forward_headers() {
        // RFC 5256 §2.1 (6), and again from (2).
        assert_eq!(base_subject("[fwd: Re: x]"), ("x".into(), true));
        assert_eq!(base_subject("[Fwd: [Fwd: x (fwd)]]"), ("x".into(), true));
        assert_eq!(base_subject("Re: [fwd: x] (fwd)"), ("x".into(), true));
        // Not both ends: a blob before the text, which goes.
        assert_eq!(base_subject("[fwd: x] y"), ("y".into(), false));
        assert_eq!(base_subject("[fwd: x"), ("[fwd: x".into(), false));
    }

    #[test]
    fn base_subject_folds_whitespace() {
        // RFC 5256 §2.1 (1).
        assert_eq!(base_subject("  Re:\t hello \r\n\t world  "), ("hello world".into(), true));
        assert_eq!(base_subject("a\t\tb"), ("a b".into(), false));
    }

    #[test]
    fn casemap_folds_case_and_compatibility_forms() {
        assert_eq!(casemap("HeLLo"), "hello");
        assert_eq!(casemap("ÉCOLE"), casemap("école"));
        assert_eq!(casemap("ﬁle"), "file");
        assert_eq!(casemap("ℌ"), "h");
        assert_ne!(casemap("école"), casemap("ecole"));
    }

    // ---------------------------------------------------------- from_header

    #[test]
    fn summary_decodes_the_subject() {
        let s = summary("Subject: =?UTF-8?Q?R=C3=A9union?=\r\n\r\n");
        assert_eq!(s.subject, "re\u{301}union");
        assert_eq!((s.subject, s.subject_is_reply), (casemap("réunion"), false));
        let s = summary("Subject: =?UTF-8?Q?Re=3A_R=C3=89UNION?=\r\n\r\n");
        assert_eq!((s.subject, s.subject_is_reply), (casemap("réunion"), true));
        let s = summary("Subject: Re: [list]\r\n\tHello\r\n World\r\n\r\n");
        assert_eq!((s.subject.as_str(), s.subject_is_reply), ("hello world", true));
    }

    #[test]
    fn summary_reads_the_sent_date_in_utc() {
        let s = summary("Date: Mon, 1 Jan 2024 10:00:00 +0200\r\n\r\n");
        assert_eq!(s.sent, Some(1_704_096_000));
        assert_eq!(s.sent_date(), 1_704_096_000);
        let s = summary("Date: the day after tomorrow\r\n\r\n");
        assert_eq!(s.sent, None);
        assert_eq!(s.sent_date(), 42);
        assert_eq!(summary("Subject: x\r\n\r\n").sent, None);
    }

    #[test]
    fn summary_reads_the_first_addresses() {
        let s = summary(concat!(
            "From: \"Doe, John\" <John.Doe@Example.COM>, other@x\r\n",
            "To: <Alice@X.org>\r\n",
            "Cc: =?UTF-8?Q?J=C3=B6rg?= <Joerg@x>\r\n",
            "\r\n",
        ));
        assert_eq!((s.from.as_str(), s.display_from.as_str()), ("john.doe", "doe, john"));
        // RFC 5957 §3: no display name, the addr-spec.
        assert_eq!((s.to.as_str(), s.display_to.as_str()), ("alice", "alice@x.org"));
        assert_eq!(s.cc, "joerg");
        let s = summary("From: =?UTF-8?Q?Andr=C3=A9?= <z@x>\r\nTo: undisclosed-recipients:;\r\n\r\n");
        assert_eq!((s.from, s.display_from), ("z".into(), casemap("André")));
        // A group shows as its name, as in ENVELOPE.
        assert_eq!((s.to.as_str(), s.display_to.as_str()), ("undisclosed-recipients", "undisclosed-recipients"));
        let s = summary("Subject: x\r\n\r\n");
        assert_eq!((s.from.as_str(), s.to.as_str(), s.cc.as_str()), ("", "", ""));
        assert_eq!((s.display_from.as_str(), s.display_to.as_str()), ("", ""));
    }

    #[test]
    fn summary_reads_message_ids_and_references() {
        let s = summary(concat!(
            "Message-ID: <\"a.b\"@x>\r\n",
            "References: <1@x> (not <9@x>) <2@x>\r\n <3@x> <bad> <4@x\r\n",
            "In-Reply-To: <p@x>\r\n",
            "\r\n",
        ));
        // RFC 5256 §3: quoting does not make another msg-id.
        assert_eq!(s.message_id.as_deref(), Some("a.b@x"));
        assert_eq!(s.references, ["1@x", "2@x", "3@x"]);
        // No valid References: the first valid In-Reply-To msg-id.
        let s = summary("References: garbage\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\n");
        assert_eq!(s.references, ["p@x"]);
        let s = summary("In-Reply-To: <p@x> <q@x>\r\n\r\n");
        assert_eq!(s.references, ["p@x"]);
        let s = summary("Message-ID: no-brackets@x\r\n\r\n");
        assert_eq!((s.message_id, s.references), (None, Vec::new()));
    }

    #[test]
    fn summary_keeps_the_last_references() {
        let ids: Vec<String> = (0..150).map(|i| format!("<{i}@x>")).collect();
        let s = summary(&format!("References: {}\r\n\r\n", ids.join("\r\n ")));
        assert_eq!(s.references.len(), MAX_REFERENCES);
        assert_eq!(s.references.first().map(String::as_str), Some("50@x"));
        assert_eq!(s.references.last().map(String::as_str), Some("149@x"));
    }

    #[test]
    fn summary_of_no_header_is_empty() {
        let s = Summary::from_header(3, 7, 42, 100, b"");
        assert_eq!(s, Summary { seq: 3, uid: 7, internal_date: 42, size: 100, ..Summary::default() });
        // A header without its blank line is read all the same.
        assert_eq!(summary("Subject: Re: x").subject, "x");
    }

    // ------------------------------------------------------------------ SORT

    #[test]
    fn sort_by_each_key() {
        let mut a = msg(1, "b", 30);
        let mut b = msg(2, "Re: c", 10);
        let mut c = msg(3, "a", 20);
        (a.internal_date, b.internal_date, c.internal_date) = (3, 1, 2);
        (a.size, b.size, c.size) = (20, 30, 10);
        (a.from, b.from, c.from) = ("c".into(), "".into(), "b".into());
        (a.to, b.to, c.to) = ("a".into(), "c".into(), "b".into());
        (a.cc, b.cc, c.cc) = ("b".into(), "a".into(), "c".into());
        (a.display_from, b.display_from, c.display_from) = ("z".into(), "x".into(), "y".into());
        (a.display_to, b.display_to, c.display_to) = ("x".into(), "z".into(), "y".into());
        let msgs = [a, b, c];
        let by = |key| sorted(&msgs, &[criterion(false, key)]);
        assert_eq!(by(SortKey::Arrival), [2, 3, 1]);
        assert_eq!(by(SortKey::Date), [2, 3, 1]);
        assert_eq!(by(SortKey::Size), [3, 1, 2]);
        assert_eq!(by(SortKey::Subject), [3, 1, 2]);
        // The empty string sorts first.
        assert_eq!(by(SortKey::From), [2, 3, 1]);
        assert_eq!(by(SortKey::To), [1, 3, 2]);
        assert_eq!(by(SortKey::Cc), [2, 1, 3]);
        assert_eq!(by(SortKey::DisplayFrom), [2, 3, 1]);
        assert_eq!(by(SortKey::DisplayTo), [1, 3, 2]);
        assert_eq!(sorted(&msgs, &[criterion(true, SortKey::Size)]), [2, 1, 3]);
        assert_eq!(sorted(&msgs, &[criterion(true, SortKey::Subject)]), [2, 1, 3]);
    }

    #[test]
    fn sort_by_several_keys_then_sequence_number() {
        let mut msgs = vec![msg(4, "b", 1), msg(2, "a", 1), msg(3, "b", 2), msg(1, "a", 1), msg(5, "b", 2)];
        for m in &mut msgs {
            m.size = 7;
        }
        // SUBJECT, then REVERSE DATE, then the sequence number.
        let criteria = [criterion(false, SortKey::Subject), criterion(true, SortKey::Date)];
        assert_eq!(sorted(&msgs, &criteria), [1, 2, 3, 5, 4]);
        // Equal keys: mailbox order, whatever the order given, and never
        // reversed.
        assert_eq!(sorted(&msgs, &[criterion(false, SortKey::Size)]), [1, 2, 3, 4, 5]);
        assert_eq!(sorted(&msgs, &[criterion(true, SortKey::Size)]), [1, 2, 3, 4, 5]);
        assert_eq!(sorted(&msgs, &[]), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn sort_by_date_falls_back_to_the_internal_date() {
        let mut a = msg(1, "x", 30);
        let mut b = msg(2, "x", 0);
        let c = msg(3, "x", 10);
        b.sent = None;
        b.internal_date = 20;
        a.internal_date = 1;
        let msgs = [a, b, c];
        assert_eq!(sorted(&msgs, &[criterion(false, SortKey::Date)]), [3, 2, 1]);
        assert_eq!(sorted(&msgs, &[criterion(false, SortKey::Arrival)]), [3, 1, 2]);
    }

    #[test]
    fn sort_by_display_name_or_address() {
        let header = |from: &str| format!("From: {from}\r\n\r\n");
        let msgs = [
            Summary::from_header(1, 1, 0, 0, header("Zoe <alpha@x>").as_bytes()),
            Summary::from_header(2, 2, 0, 0, header("<beta@x>").as_bytes()),
            Summary::from_header(3, 3, 0, 0, header("\"\" <Gamma@x>").as_bytes()),
            Summary::from_header(4, 4, 0, 0, header("ALAN <zulu@x>").as_bytes()),
        ];
        assert_eq!(sorted(&msgs, &[criterion(false, SortKey::DisplayFrom)]), [4, 2, 3, 1]);
        assert_eq!(sorted(&msgs, &[criterion(false, SortKey::From)]), [1, 2, 3, 4]);
    }

    // -------------------------------------------------------- ORDEREDSUBJECT

    #[test]
    fn ordered_subject_groups_by_base_subject() {
        let msgs = [
            msg(1, "Hello", 10),
            msg(2, "Re: hello", 5),
            msg(3, "World", 7),
            msg(4, "re: world", 8),
            msg(5, "[fwd: HELLO]", 20),
            msg(6, "", 1),
            msg(7, "Re:", 2),
            msg(8, "alone", 9),
        ];
        assert_eq!(by_subject(&msgs), "(6 7)(2 (1)(5))(3 4)(8)");
        assert_eq!(by_subject(&[]), "");
    }

    #[test]
    fn ordered_subject_breaks_date_ties_by_sequence_number() {
        let msgs = [msg(3, "a", 1), msg(1, "a", 1), msg(2, "b", 1), msg(4, "a", 1)];
        assert_eq!(by_subject(&msgs), "(1 (3)(4))(2)");
    }

    // ------------------------------------------------------------ REFERENCES

    #[test]
    fn references_follows_reply_chains() {
        let msgs = [msg(1, "hello", 1), refs(msg(2, "Re: hello", 2), &[1]), refs(msg(3, "Re: hello", 3), &[1, 2])];
        assert_eq!(by_references(&msgs), "(1 2 3)");
    }

    #[test]
    fn references_sorts_siblings_by_date() {
        let msgs = [
            msg(1, "a", 1),
            refs(msg(2, "Re: a", 5), &[1]),
            refs(msg(3, "Re: a", 3), &[1]),
            refs(msg(4, "Re: a", 3), &[1]),
            msg(5, "other", 0),
            refs(msg(6, "Re: a", 4), &[1, 3]),
            refs(msg(7, "Re: a", 2), &[1, 3]),
        ];
        assert_eq!(by_references(&msgs), "(5)(1 (3 (7)(6))(4)(2))");
    }

    #[test]
    fn references_makes_dummies_for_missing_messages() {
        // Two replies to a missing message: a dummy holds them.
        let msgs = [refs(msg(1, "x", 2), &[99]), refs(msg(2, "y", 1), &[99]), refs(msg(3, "z", 3), &[98])];
        assert_eq!(by_references(&msgs), "((2)(1))(3)");
        // A missing message between two: the dummy goes, its child moves
        // up.
        let msgs = [msg(1, "a", 1), refs(msg(2, "b", 2), &[1, 77]), refs(msg(3, "c", 3), &[1, 77, 78])];
        assert_eq!(by_references(&msgs), "(1 (2)(3))");
    }

    #[test]
    fn references_merges_threads_by_subject() {
        // A reply without references joins the message it replies to.
        assert_eq!(by_references(&[msg(1, "hello", 1), msg(2, "Re: hello", 2)]), "(1 2)");
        assert_eq!(by_references(&[msg(1, "Re: hello", 1), msg(2, "hello", 2)]), "(2 1)");
        // Two messages that are not replies: a dummy holds both.
        assert_eq!(by_references(&[msg(1, "hello", 1), msg(2, "Hello", 2)]), "((1)(2))");
        // A message joins a dummy with its subject.
        let msgs = [refs(msg(1, "x", 1), &[99]), refs(msg(2, "Re: x", 2), &[99]), msg(3, "x", 3)];
        assert_eq!(by_references(&msgs), "((1)(2)(3))");
        // Two dummies with one subject become one.
        let msgs = [
            refs(msg(1, "x", 1), &[99]),
            refs(msg(2, "x", 3), &[99]),
            refs(msg(3, "x", 2), &[98]),
            refs(msg(4, "x", 4), &[98]),
        ];
        assert_eq!(by_references(&msgs), "((1)(3)(2)(4))");
        // An empty subject merges nothing.
        assert_eq!(by_references(&[msg(1, "", 1), msg(2, "Re:", 2)]), "(1)(2)");
    }

    #[test]
    fn references_makes_no_loop() {
        // 1 says it replies to 2, 2 that it replies to 1.
        let msgs = [refs(msg(1, "a", 1), &[2]), refs(msg(2, "b", 2), &[1])];
        assert_eq!(by_references(&msgs), "(2 1)");
        // A three-way loop within the references.
        let msgs = [refs(msg(1, "a", 1), &[2, 3]), refs(msg(2, "b", 2), &[3, 1]), refs(msg(3, "c", 3), &[1, 2])];
        assert_eq!(by_references(&msgs), "(2 3 1)");
    }

    #[test]
    fn references_ignores_a_self_reference() {
        assert_eq!(by_references(&[refs(msg(1, "a", 1), &[1])]), "(1)");
        assert_eq!(by_references(&[refs(msg(1, "a", 1), &[1, 1])]), "(1)");
        // Named last, its own ID still takes it from the parent the
        // reference before gave it (step 1B), and gives it none.
        assert_eq!(by_references(&[msg(2, "b", 0), refs(msg(1, "a", 1), &[2, 1])]), "(2)(1)");
    }

    #[test]
    fn references_gives_a_duplicate_message_id_to_the_first_message() {
        let mut first = msg(1, "a", 1);
        let mut second = msg(2, "b", 2);
        first.message_id = Some("x@t".into());
        second.message_id = Some("x@t".into());
        let mut reply = msg(3, "c", 3);
        reply.references = vec!["x@t".into()];
        // Given out of mailbox order: the lowest sequence number wins.
        let msgs = [second, reply, first];
        assert_eq!(by_references(&msgs), "(1 3)(2)");
    }

    #[test]
    fn references_breaks_a_link_the_message_itself_denies() {
        // 1 says 3 is the parent of 2; 2 says it has no parent (step 1B).
        let msgs = [refs(msg(1, "a", 1), &[3, 2]), msg(2, "b", 2), msg(3, "c", 3)];
        assert_eq!(by_references(&msgs), "(2 1)(3)");
        // 1 says 3 is the parent of 2; 2 says 4 is.
        let msgs = [refs(msg(1, "a", 1), &[3, 2]), refs(msg(2, "b", 2), &[4]), msg(3, "c", 3), msg(4, "d", 4)];
        assert_eq!(by_references(&msgs), "(3)(4 2 1)");
    }

    #[test]
    fn references_keeps_every_message_once() {
        let mut rng = fastrand::Rng::with_seed(5256);
        for _ in 0..200 {
            let n = rng.u32(1..40);
            let msgs: Vec<Summary> = (1..=n)
                .map(|seq| {
                    let subject = ["a", "Re: a", "b", "Fwd: b", ""][rng.usize(..5)];
                    let mut m = msg(seq, subject, rng.i64(0..5));
                    m.references = (0..rng.usize(0..5)).map(|_| format!("{}@t", rng.u32(1..n + 10))).collect();
                    if rng.u8(..10) == 0 {
                        m.message_id = Some("dup@t".into());
                    }
                    m
                })
                .collect();
            let trees = references(&msgs);
            let mut seen = vec![0; msgs.len()];
            let mut stack: Vec<&Tree> = trees.iter().collect();
            while let Some(tree) = stack.pop() {
                if let Some(m) = tree.msg {
                    seen[m] += 1;
                } else {
                    // Dummies only at the top, with two children or more.
                    assert!(trees.iter().any(|t| std::ptr::eq(t, tree)) && tree.children.len() >= 2);
                }
                stack.extend(&tree.children);
            }
            assert!(seen.iter().all(|&count| count == 1), "{seen:?}");
        }
    }

    #[test]
    fn references_handles_deep_threads_on_a_small_stack() {
        // 50,000 messages, each a reply to the one before and naming up to
        // its last 100 ancestors: one chain, as deep as the mailbox.
        let run = || {
            let n = 50_000u32;
            let msgs: Vec<Summary> = (1..=n)
                .map(|seq| {
                    refs(msg(seq, "Re: x", i64::from(seq)), &(seq.saturating_sub(100).max(1)..seq).collect::<Vec<_>>())
                })
                .collect();
            let trees = references(&msgs);
            let text = render(&trees, |i| msgs[i].seq);
            let expected: Vec<String> = (1..=n).map(|seq| seq.to_string()).collect();
            assert_eq!(text, format!("({})", expected.join(" ")));
            drop(trees);
            // Each naming its ancestors from the newest: links everywhere.
            let msgs: Vec<Summary> = (1..=n)
                .map(|seq| {
                    refs(msg(seq, "y", i64::from(seq)), &(seq.saturating_sub(50).max(1)..seq).rev().collect::<Vec<_>>())
                })
                .collect();
            let text = render(&references(&msgs), |i| msgs[i].seq);
            let mut shown: Vec<u32> =
                text.split(['(', ')', ' ']).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0)).collect();
            shown.sort_unstable();
            assert!(shown.into_iter().eq(1..=n));
        };
        let small = std::thread::Builder::new().stack_size(256 * 1024).spawn(run).expect("a thread");
        assert!(small.join().is_ok());
    }

    #[test]
    fn forest_finds_roots_as_a_walk_up_does() {
        let mut rng = fastrand::Rng::with_seed(1983);
        let n = 60;
        let mut forest = Forest::new(n);
        let walk = |parent: &[usize], mut node: usize| {
            while parent[node] != NONE {
                node = parent[node];
            }
            node
        };
        for _ in 0..20_000 {
            let (a, b) = (rng.usize(..n), rng.usize(..n));
            match rng.u8(..3) {
                0 => {
                    if forest.parent[a] == NONE && walk(&forest.parent, b) != a {
                        assert!(!forest.below(b, a));
                        forest.link(a, b);
                    } else if forest.parent[a] == NONE {
                        assert!(forest.below(b, a));
                    }
                }
                1 => forest.cut(a),
                _ => assert_eq!(forest.root(a), walk(&forest.parent, a)),
            }
        }
    }

    // ---------------------------------------------------------------- render

    fn node(msg: usize, children: Vec<Tree>) -> Tree {
        Tree { msg: Some(msg), children }
    }

    fn dummy(children: Vec<Tree>) -> Tree {
        Tree { msg: None, children }
    }

    #[test]
    fn render_follows_the_rfc_examples() {
        // RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))".
        let trees = [
            Tree::leaf(2),
            node(3, vec![node(6, vec![node(4, vec![Tree::leaf(23)]), node(44, vec![node(7, vec![Tree::leaf(96)])])])]),
        ];
        assert_eq!(render(&trees, |i| i as u32), "(2)(3 6 (4 23)(44 7 96))");
        // RFC 5256 §4: "((3)(5))", a dummy holding two threads.
        assert_eq!(render(&[dummy(vec![Tree::leaf(3), Tree::leaf(5)])], |i| i as u32), "((3)(5))");
    }

    #[test]
    fn render_shows_dummies_only_as_lists() {
        let id = |i: usize| i as u32 * 10;
        assert_eq!(render(&[], id), "");
        // A dummy with nothing under it shows nothing; one with one
        // message shows that message.
        assert_eq!(render(&[dummy(vec![]), dummy(vec![dummy(vec![])]), Tree::leaf(1)], id), "(10)");
        assert_eq!(render(&[dummy(vec![node(1, vec![Tree::leaf(2)])])], id), "(10 20)");
        // Below the top, a dummy gives way to its children.
        assert_eq!(render(&[node(1, vec![dummy(vec![Tree::leaf(2), Tree::leaf(3)])])], id), "(10 (20)(30))");
        assert_eq!(render(&[node(1, vec![dummy(vec![Tree::leaf(2)])])], id), "(10 20)");
        assert_eq!(
            render(&[dummy(vec![dummy(vec![Tree::leaf(1), Tree::leaf(2)]), Tree::leaf(3)])], id),
            "((10)(20)(30))"
        );
    }
}
