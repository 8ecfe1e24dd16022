//! The checks of the fuzz targets in `crates/imap/fuzz`, as plain functions
//! over bytes: the targets are thin wrappers around them, and the tests
//! below run them on stable over the modules' test inputs and a few
//! thousand pseudo-random ones, so CI runs the same checks without
//! cargo-fuzz. Not an API: each function panics when its check fails.
#![doc(hidden)]

use std::num::NonZeroU32;

use imap_codec::{
    ResponseCodec,
    encode::Encoder,
    imap_types::{
        core::{AString, Vec1},
        fetch::{MessageDataItem, Part, Section},
        response::{Data, Response},
        sequence::{SeqOrUid, Sequence, SequenceSet},
    },
};

use crate::{address, extended, mime, seqset, thread, utf7};

/// The wire form of one FETCH item: what the server would send.
fn wire(item: MessageDataItem<'static>) -> Vec<u8> {
    let response = Response::Data(Data::fetch(1, vec![item]).expect("one item"));
    ResponseCodec::default().encode(&response).dump()
}

/// Part paths for `BODY[path]`: fixed ones, and up to three taken from the
/// last bytes of the input (each byte a number from 1 to 4).
fn part_paths(raw: &[u8]) -> Vec<Vec<NonZeroU32>> {
    let number = |n: u32| NonZeroU32::new(n).expect("not zero");
    let mut paths: Vec<Vec<NonZeroU32>> = [&[1][..], &[2], &[1, 1], &[2, 1], &[2, 2], &[3]]
        .iter()
        .map(|p| p.iter().copied().map(number).collect())
        .collect();
    let tail = &raw[raw.len().saturating_sub(6)..];
    for len in 1..=3 {
        if let Some(bytes) = tail.get(..len) {
            paths.push(bytes.iter().map(|&b| number(u32::from(b % 4) + 1)).collect());
        }
    }
    paths
}

/// Field names for HEADER.FIELDS: fixed ones, and the first field name of
/// the input when it makes an IMAP string.
fn field_names(raw: &[u8]) -> Vec1<AString<'static>> {
    let mut names: Vec<AString<'static>> = ["Subject", "from", "CONTENT-TYPE", "x-absent"]
        .into_iter()
        .map(|n| AString::try_from(n).expect("valid astring"))
        .collect();
    let first = raw.iter().position(|&b| b == b':').map(|colon| raw[..colon].trim_ascii());
    if let Some(name) = first.filter(|n| !n.is_empty() && n.len() <= 64)
        && let Ok(name) = AString::try_from(name.to_vec())
    {
        names.push(name);
    }
    Vec1::try_from(names).expect("not empty")
}

/// A stored message: ENVELOPE, BODY, BODYSTRUCTURE (and their wire form),
/// the top-level sections, sections and BINARY of a few parts, and partial
/// ranges never panic; `top_level_section`, when it answers, gives the same
/// bytes as `section`; `BODY[]` and `BINARY[]` are the message as stored.
pub fn mime(raw: &[u8]) {
    let parsed = mime::Mime::parse(raw);
    let _ = wire(MessageDataItem::Envelope(parsed.envelope()));
    for extended in [false, true] {
        let structure = parsed.body_structure(extended);
        let _ =
            wire(if extended { MessageDataItem::BodyStructure(structure) } else { MessageDataItem::Body(structure) });
    }
    let names = field_names(raw);
    let top_level = [
        None,
        Some(Section::Header(None)),
        Some(Section::HeaderFields(None, names.clone())),
        Some(Section::HeaderFieldsNot(None, names.clone())),
        Some(Section::Text(None)),
    ];
    for section in &top_level {
        let bytes = parsed.section(section.as_ref());
        if let Some(fast) = mime::top_level_section(raw, section.as_ref()) {
            assert!(
                fast == bytes,
                "top_level_section differs from section for {section:?}: \"{}\" != \"{}\"",
                fast.escape_ascii(),
                bytes.escape_ascii()
            );
        }
    }
    assert_eq!(parsed.section(None), raw);
    assert_eq!(parsed.binary(&[]).as_deref(), Ok(raw));
    for path in part_paths(raw) {
        let part = Part(Vec1::try_from(path.clone()).expect("not empty"));
        for section in [
            Section::Part(part.clone()),
            Section::Mime(part.clone()),
            Section::Header(Some(part.clone())),
            Section::Text(Some(part.clone())),
            Section::HeaderFields(Some(part.clone()), names.clone()),
            Section::HeaderFieldsNot(Some(part), names.clone()),
        ] {
            let _ = parsed.section(Some(&section));
            assert!(mime::top_level_section(raw, Some(&section)).is_none(), "a part path needs the parse");
        }
        let _ = parsed.binary(&path);
    }
    // Partial ranges: origins and lengths from the first bytes, and extremes.
    let word = |at: usize| raw.get(at..at + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let ranges = [(0, 1), (word(0), word(4)), (word(0) % 64, word(4) % 64), (u32::MAX, u32::MAX), (1, u32::MAX)];
    for (origin, length) in ranges {
        partial(raw, origin, length);
    }
}

/// `partial` is the expected sub-slice, never a panic.
fn partial(data: &[u8], origin: u32, length: u32) {
    assert_eq!(mime::partial(data, None), data);
    let Some(length) = NonZeroU32::new(length) else { return };
    let got = mime::partial(data, Some((origin, length)));
    let start = (origin as usize).min(data.len());
    let end = start.saturating_add(length.get() as usize).min(data.len());
    assert_eq!(got, &data[start..end], "partial <{origin}.{length}> of {} octets", data.len());
}

/// A command message: `rewrite` never panics, and what it rewrites keeps
/// the tag and everything after the first line, and grows by at most two
/// octets (`$` becomes `ALL` as a first search key, `1` as a message set).
/// An address field and a header block from the network: `address::parse`
/// never panics, its groups are balanced and nothing it returns is longer
/// than the input; the SORT/THREAD summary of the input as a header never
/// panics, and sorting and threading it with copies of itself gives every
/// message once.
pub fn headers(raw: &[u8]) {
    let items = address::parse(raw);
    let mut open = 0i32;
    for item in &items {
        match item {
            address::Item::GroupStart(name) => {
                assert_eq!(open, 0, "groups do not nest");
                assert!(name.len() <= raw.len() * 3);
                open += 1;
            }
            address::Item::GroupEnd => open -= 1,
            address::Item::Mailbox(m) => {
                let len = m.local.len() + m.domain.len() + m.route.as_ref().map_or(0, String::len);
                assert!(len <= raw.len() * 3, "{m:?} from {} octets", raw.len());
            }
        }
        assert!((0..=1).contains(&open), "{items:?}");
    }
    assert_eq!(open, 0, "every group closed: {items:?}");
    let msgs: Vec<thread::Summary> = (1..=3).map(|n| thread::Summary::from_header(n, n, 0, 1, raw)).collect();
    let mut order = thread::sort(&msgs, &[]);
    order.sort_unstable();
    assert_eq!(order, [0, 1, 2]);
    for trees in [thread::ordered_subject(&msgs), thread::references(&msgs)] {
        let shown = thread::render(&trees, |i| msgs[i].seq);
        let mut seqs: Vec<&str> = shown.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, ["1", "2", "3"], "{shown}");
    }
}

pub fn extended(message: &[u8]) {
    let Some((plain, ext)) = extended::rewrite(message) else { return };
    let tag = message.split(|&b| b == b' ').next().unwrap_or_default();
    assert!(plain.starts_with(tag) && plain.get(tag.len()) == Some(&b' '), "the tag is kept");
    if let extended::Extension::Append { first, rest } = &ext {
        // The codec reads the first message: the command up to its end,
        // with an empty literal if it is catenated; every URL parses or not.
        let cut = match first {
            Some(_) => plain.strip_suffix(b"{0}\r\n\r\n"),
            None => plain.strip_suffix(b"\r\n"),
        };
        assert!(cut.is_some_and(|cut| message.starts_with(cut)), "{:?}", String::from_utf8_lossy(&plain));
        for part in first.iter().flatten().chain(rest.iter().flat_map(|m| &m.data)) {
            if let extended::CatPart::Url(url) = part {
                let _ = crate::url::MessageUrl::parse(url);
            }
        }
        return;
    }
    assert!(
        plain.len() <= message.len() + 2,
        "rewritten from {} to {} octets: {:?}",
        message.len(),
        plain.len(),
        String::from_utf8_lossy(&plain)
    );
    let end = message.windows(2).position(|w| w == b"\r\n").unwrap_or(message.len());
    assert!(plain.ends_with(&message[end..]), "the rest of the message is kept");
    let returned = match ext {
        extended::Extension::Search(r) | extended::Extension::Saved(Some(r)) => Some(r),
        _ => None,
    };
    if let Some(r) = returned {
        let partial = r.partial.is_some();
        assert!(r.min || r.max || r.all || r.count || r.save || r.update || partial, "RETURN () means ALL");
        assert!(!(r.all && partial), "PARTIAL and ALL together are BAD");
        assert!(r.partial.is_none_or(|(low, high)| 1 <= low && low <= high), "{:?}", r.partial);
    }
}

/// A mailbox name: any string survives `encode` then `decode`; `encode`
/// writes printable US-ASCII only; `decode` never panics and, being
/// strict, accepts only what `encode` writes (one spelling per name).
pub fn utf7(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let encoded = utf7::encode(&name);
    assert!(encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{encoded:?}");
    assert_eq!(utf7::decode(&encoded).as_deref(), Ok(&*name), "{encoded:?}");
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(decoded) = utf7::decode(text)
    {
        assert_eq!(utf7::encode(&decoded), text, "decoded to {decoded:?}");
    }
}

/// One sequence-set element number from two bytes.
fn seq_or_uid(kind: u8, byte: u8) -> SeqOrUid {
    let value = |n: u32| SeqOrUid::Value(NonZeroU32::new(n).expect("not zero"));
    match kind % 5 {
        0 => SeqOrUid::Asterisk,
        1 | 2 => value(u32::from(byte % 32) + 1),
        3 => value(u32::from(byte) << 8 | 1),
        _ => value(u32::MAX - u32::from(byte)),
    }
}

/// Sequence sets against a mailbox: the first byte is the message count
/// (0 to 255), the second the number of existing UIDs (0 to 31, drawn from
/// the bytes that follow). The rest is the set: parsed when it is one in
/// text form, else built from 3-byte elements. `seqs` is sorted, without
/// duplicates, within `1..=count` and agrees with `contains`; `uids` is the
/// existing UIDs that `contains` holds; `past_the_end` is true exactly
/// when the set names a number past the count (or any with no message);
/// `compress` gives a set that parses back to the same numbers.
pub fn seqset(data: &[u8]) {
    let [count, uid_count, rest @ ..] = data else { return };
    let count = u32::from(*count);
    let (gaps, rest) = rest.split_at(usize::from(uid_count % 32).min(rest.len()));
    let mut existing: Vec<u32> = Vec::with_capacity(gaps.len());
    let mut uid = 0u32;
    for &gap in gaps {
        uid = uid.saturating_add(if gap == 0xff { u32::MAX / 2 } else { u32::from(gap) + 1 });
        if existing.last() != Some(&uid) {
            existing.push(uid);
        }
    }
    let set = match std::str::from_utf8(rest).ok().and_then(|text| SequenceSet::try_from(text).ok()) {
        Some(set) => set,
        None => {
            let elements: Vec<Sequence> = rest
                .chunks_exact(3)
                .map(|c| match c[0] & 1 {
                    0 => Sequence::Single(seq_or_uid(c[0] >> 1, c[1])),
                    _ => Sequence::Range(seq_or_uid(c[0] >> 1, c[1]), seq_or_uid(c[0] >> 4, c[2])),
                })
                .collect();
            let Ok(elements) = Vec1::try_from(elements) else { return };
            SequenceSet(elements)
        }
    };
    check_set(&set, count, &existing);
}

fn check_set(set: &SequenceSet, count: u32, existing: &[u32]) {
    let numbers = seqset::seqs(set, count);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "seqs sorted, no duplicates: {numbers:?}");
    assert!(numbers.iter().all(|n| (1..=count).contains(n)), "seqs within 1..={count}: {numbers:?}");
    for n in 1..=count {
        assert_eq!(numbers.binary_search(&n).is_ok(), seqset::contains(set, n, count), "{n} of {count} in {set:?}");
    }
    let named = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => 0,
    };
    let beyond = count == 0
        || set.0.as_ref().iter().any(|s| match s {
            Sequence::Single(a) => named(a) > count,
            Sequence::Range(a, b) => named(a).max(named(b)) > count,
        });
    assert_eq!(seqset::past_the_end(set, count), beyond, "{set:?} past {count}");
    let largest = existing.last().copied().unwrap_or(0);
    let found = seqset::uids(set, existing);
    assert!(found.windows(2).all(|w| w[0] < w[1]), "uids sorted, no duplicates: {found:?}");
    for uid in existing {
        assert_eq!(found.binary_search(uid).is_ok(), seqset::contains(set, *uid, largest), "UID {uid} in {set:?}");
    }
    assert_eq!(found.len(), found.iter().filter(|u| existing.binary_search(u).is_ok()).count(), "only existing UIDs");
    for value in [0, 1, count, largest, u32::MAX] {
        let _ = seqset::contains(set, value, u32::MAX);
    }
    for values in [&numbers, &found] {
        let text = seqset::compress(values);
        let Some(compact) = seqset::sequence_set(values) else {
            assert!(values.is_empty() && text.is_empty());
            continue;
        };
        assert!(seqset::uid_set(values).is_some());
        let parsed = SequenceSet::try_from(text.as_str()).expect("compress gives a sequence set");
        assert_eq!(parsed, compact, "{text}");
        if std::ptr::eq(values, &numbers) {
            assert_eq!(&seqset::seqs(&parsed, count), values, "{text}");
        } else {
            assert_eq!(&seqset::uids(&parsed, existing), values, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::tests::{MALFORMED, MIXED, SIMPLE};

    /// `count` inputs after the seeds: an eighth raw bytes, three eighths
    /// a seed with one to four changes (cut, an octet changed, a piece put
    /// in, a stretch removed), the rest a string of `pieces` with a random
    /// octet here and there.
    fn inputs(seed: u64, count: usize, seeds: &[&[u8]], pieces: &[&[u8]], max_pieces: usize) -> Vec<Vec<u8>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut all: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
        for _ in 0..count {
            let input = match rng.usize(..8) {
                0 => (0..rng.usize(..64)).map(|_| rng.u8(..)).collect(),
                1..=3 if !seeds.is_empty() => {
                    let mut s = seeds[rng.usize(..seeds.len())].to_vec();
                    for _ in 0..rng.usize(..4) + 1 {
                        let at = rng.usize(..s.len() + 1);
                        match rng.usize(..4) {
                            0 => s.truncate(at),
                            1 if at < s.len() => s[at] = rng.u8(..),
                            2 => {
                                let end = (at + rng.usize(..16)).min(s.len());
                                s.drain(at..end);
                            }
                            _ => {
                                let piece = pieces[rng.usize(..pieces.len())];
                                s.splice(at..at, piece.iter().copied());
                            }
                        }
                    }
                    s
                }
                _ => {
                    let mut input = Vec::new();
                    for _ in 0..rng.usize(..max_pieces) + 1 {
                        if rng.usize(..6) == 0 {
                            input.push(rng.u8(..));
                        } else {
                            input.extend_from_slice(pieces[rng.usize(..pieces.len())]);
                        }
                    }
                    input
                }
            };
            all.push(input);
        }
        all
    }

    /// Every other input after the first `skip` gets one of `heads` in
    /// front, in turn, to reach the paths behind them more often.
    fn with_heads(mut all: Vec<Vec<u8>>, skip: usize, heads: &[&[u8]]) -> Vec<Vec<u8>> {
        for (n, input) in all.iter_mut().skip(skip).step_by(2).enumerate() {
            input.splice(0..0, heads[n % heads.len()].iter().copied());
        }
        all
    }

    /// The messages of mime.rs's tests.
    fn messages() -> Vec<&'static [u8]> {
        let more: [&[u8]; 5] = [
            b"Subject: no blank line\r\nFrom: x@y\r\n",
            b"Subject: lf only\nFrom: x@y\n\nbody\n",
            b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n",
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n",
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na==b\r\n",
        ];
        [SIMPLE, MIXED].into_iter().chain(MALFORMED.iter().copied()).chain(more).collect()
    }

    const MIME_PIECES: &[&[u8]] = &[
        b"Subject: x\r\n",
        b"From: A <a@b.example>\r\n",
        b"To: g: c@d, e@f;\r\n",
        b"Content-Type: multipart/mixed; boundary=B\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename=a\r\n",
        b"Content-Language: en\r\n",
        b"--B\r\n",
        b"--B--\r\n",
        b"\r\n",
        b"\n",
        b"\r\n\r\n",
        b"\n\n",
        b" folded\r\n",
        b"body line\r\n",
        b"=C3=A9=\r\n",
        b"QUJD\r\n",
        b"=?utf-8?q?caf=C3=A9?=",
        b":",
        b"\0",
        b"\xc3\xa9",
        b"\xff",
    ];

    /// Starts of composite messages.
    const MIME_HEADS: &[&[u8]] = &[
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n",
        b"Content-Type: multipart/alternative; boundary=B\r\n\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\npreamble\r\n--B\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n",
    ];

    fn mime_inputs() -> Vec<Vec<u8>> {
        let messages = messages();
        with_heads(inputs(0x9e37_79b9_7f4a_7c15, 2000, &messages, MIME_PIECES, 24), messages.len(), MIME_HEADS)
    }

    /// With the cases fuzzing found where the fast path cut the header
    /// elsewhere than the parse: a blank line after a bare LF, a line of a
    /// lone CR, a first line of white space.
    #[test]
    fn mime_checks_hold() {
        let minimal: &[&[u8]] = &[b"\n\r\n\r\n", b"\r\r\n\r\n", b"\t\r\n\r\n", b"Subject: a\n\r\nbody\r\n\r\nmore"];
        for raw in minimal.iter().map(|m| m.to_vec()).chain(mime_inputs()) {
            mime(&raw);
        }
    }

    #[test]
    fn header_checks_hold() {
        let seeds: &[&[u8]] = &[
            b"From: Joe <@relay.example,@hub.example:joe@b.example>\r\nSubject: Re: [x] Fwd: hi (fwd)\r\n",
            b"To: undisclosed-recipients: (none);, a@b (c (d) e), \"Q \\\" x\" <q@r>\r\n",
            b"Message-ID: <a@b>\r\nReferences: <a@b> <c@d>\r\nIn-Reply-To: <e@f>\r\n",
        ];
        let pieces: &[&[u8]] = &[
            b"(",
            b")",
            b"\"",
            b"\\",
            b"<",
            b">",
            b"@",
            b",",
            b";",
            b":",
            b".",
            b"[",
            b"]",
            b" ",
            b"\r\n",
            b"\r\n ",
            b"a",
            b"Re:",
            b"[fwd:",
            b"=?UTF-8?Q?=C3=A9?=",
            b"From: ",
            b"Subject: ",
            b"References: ",
            b"\xc3",
        ];
        for raw in inputs(0x5151_7c7c_3b3b_2d2d, 3000, seeds, pieces, 40) {
            headers(&raw);
        }
    }

    /// Found by this check: a `debug_assert!(false, "Invalid part ID, could
    /// not find multipart.")` in mail-parser 0.11.9 (parsers/message.rs)
    /// made `Mime::parse` panic in debug builds only; the workspace builds
    /// mail-parser without debug assertions, as in release.
    #[test]
    fn mime_parse_of_a_broken_nested_message() {
        mime(
            b"Content-Type:multipart;boundary=XX\n\n--XXContent-Type:message/rfc822\n\n\
Content-Type:message/rfc822\n\n\n--XX--",
        );
    }

    /// The command lines of extended.rs's tests.
    const EXT_SEEDS: &[&[u8]] = &[
        b"a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n",
        b"b search return () all\r\n",
        b"c SEARCH UNSEEN\r\n",
        b"c SEARCH $x\r\n",
        b"d SEARCH RETURN (BOGUS) ALL\r\n",
        b"e SEARCH RETURN (MIN ALL\r\n",
        b"a LIST (SPECIAL-USE) \"\" *\r\n",
        b"b LIST \"\" % RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)\r\n",
        b"c LIST (SUBSCRIBED RECURSIVEMATCH) \"\" * RETURN (STATUS (MESSAGES UNSEEN))\r\n",
        b"d LIST \"\" *\r\n",
        b"e LIST (NONSENSE) \"\" *\r\n",
        b"garbage",
        b"",
        b"x\0y LIST (",
        b"a FETCH $ (FLAGS)\r\n",
        b"b UID STORE $ +FLAGS (\\Seen)\r\n",
        b"c uid expunge $\r\n",
        b"d MOVE $ Archive\r\n",
        b"e SEARCH $ UNSEEN\r\n",
        b"f UID SEARCH RETURN (COUNT) $\r\n",
        b"g FETCH 1:3 (FLAGS)\r\n",
        b"h FETCH $1 (FLAGS)\r\n",
        b"i EXPUNGE\r\n",
        b"a UID SEARCH RETURN (PARTIAL 9:1 UPDATE CONTEXT COUNT) UNSEEN\r\n",
        b"b SORT RETURN (PARTIAL 1:10) (DATE) UTF-8 ALL\r\n",
        b"c CANCELUPDATE \"a\" \"b\"\r\n",
        b"d NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER]) MessageExpunge FlagChange)) (subtree (a \"b c\") (MessageNew MessageExpunge))\r\n",
        b"e NOTIFY NONE\r\n",
        b"a APPEND INBOX {3}\r\none (\\Draft) ~{3+}\r\ntwo\r\n",
        b"b APPEND Drafts (\\Seen) CATENATE (URL \"/Drafts;UIDVALIDITY=7/;UID=2/;SECTION=1.MIME\" TEXT {2}\r\nhi)\r\n",
        b"c APPEND x CATENATE (URL {13}\r\n/INBOX/;UID=1) CATENATE (URL imap://u;AUTH=*@h:1/a%20b/;UID=3/;PARTIAL=1.2)\r\n",
    ];

    /// Words of the extended forms.
    const EXT_PIECES: &[&[u8]] = &[
        b"a ",
        b"UID ",
        b"SEARCH ",
        b"search ",
        b"RETURN ",
        b"(",
        b")",
        b"MIN ",
        b"COUNT",
        b"SAVE",
        b"$",
        b"$ ",
        b"FETCH ",
        b"STORE ",
        b"EXPUNGE",
        b"LIST ",
        b" RETURN (",
        b"STATUS (",
        b"MESSAGES ",
        b"SUBSCRIBED ",
        b"\"\" *",
        b" ",
        b"  ",
        b"\t",
        b"\r\n",
        b"{3}\r\n",
        b"PARTIAL ",
        b"1:5",
        b"UPDATE",
        b"CANCELUPDATE ",
        b"NOTIFY SET ",
        b"(selected ",
        b"(personal (MessageNew MessageExpunge))",
        b"FlagChange",
        b"\"t\"",
        b"APPEND ",
        b"CATENATE (",
        b"TEXT ",
        b"URL ",
        b"/;UID=1",
        b";UIDVALIDITY=",
        b"/;SECTION=",
        b"%",
        b"~{1+}\r\n",
    ];

    /// Starts of command lines that take an extended form.
    const EXT_HEADS: &[&[u8]] = &[
        b"a SEARCH ",
        b"a UID SEARCH RETURN (",
        b"a SEARCH RETURN (SAVE) $",
        b"a LIST ",
        b"a LIST (",
        b"a FETCH $",
        b"a UID EXPUNGE $",
        b"a APPEND INBOX {1}\r\nx ",
        b"a APPEND INBOX CATENATE (",
    ];

    fn extended_inputs(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        with_heads(inputs(0x2545_f491_4f6c_dd1d, 4000, EXT_SEEDS, pieces, 12), EXT_SEEDS.len(), EXT_HEADS)
    }

    /// With the lines fuzzing found where `rewrite` cut inside a
    /// multi-octet character (it sliced at fixed byte offsets).
    #[test]
    fn extended_checks_hold() {
        let minimal: &[&[u8]] =
            &["a abcé".as_bytes(), "a abcdefé".as_bytes(), "a SEARCH abcdefé".as_bytes(), "a abcdé".as_bytes()];
        let pieces: Vec<&[u8]> = EXT_PIECES.iter().copied().chain(["é".as_bytes(), "€".as_bytes()]).collect();
        for message in minimal.iter().map(|m| m.to_vec()).chain(extended_inputs(&pieces)) {
            extended(&message);
        }
    }

    #[test]
    fn utf7_checks_hold() {
        let seeds: &[&[u8]] = &[
            b"INBOX",
            b"Entw&APw-rfe",
            "Entwürfe".as_bytes(),
            "台北".as_bytes(),
            b"&U,BTFw-",
            b"Tom &- Jerry",
            "~peter/mail/台北/日本語".as_bytes(),
            b"~peter/mail/&U,BTFw-/&ZeVnLIqe-",
            "😀".as_bytes(),
            b"&2D3eAA-",
            b"a\tb",
            b"a&AAk-b",
            b"&&-&",
            b"-&-",
            b"x\x7fy",
            b"&U,BTFw",
            b"abc&",
            b"&U/BTFw-",
            b"&AP=-",
            b"&APx-",
            b"&APwA-",
            b"&AP-",
            b"&2D0-",
            b"&AGE-",
            b"&AOQ-&APY-",
            b"&AOQ-x&APY-",
        ];
        let pieces: &[&[u8]] = &[
            b"&",
            b"-",
            b"&-",
            b"A",
            b"AP",
            b"w",
            b"2D",
            b",",
            b"+",
            b"/",
            b"=",
            b"a",
            b" ",
            "ü".as_bytes(),
            "台".as_bytes(),
            "😀".as_bytes(),
            b"\x7f",
            b"\t",
        ];
        for name in inputs(0xd1b5_4a32_d192_ed03, 4000, seeds, pieces, 16) {
            utf7(&name);
        }
    }

    #[test]
    fn seqset_checks_hold() {
        let seeds: &[&[u8]] = &[
            b"\x04\x05\x01\x02\x01\x00\x5c1:*",
            b"\x04\x00*",
            b"\x04\x003,1,2,2:3",
            b"\x09\x004:2",
            b"\x04\x002:10",
            b"\x04\x005:10,7",
            b"\x04\x006:*",
            b"\x03\x001:4294967295",
            b"\x00\x001:*",
            b"\x00\x001",
            b"\x03\x03\x00\x00\x00559:*",
            b"\x0a\x05\x01\x02\x01\x00\x5c8:3,7,1,101:200",
            b"\x00\x02\xff\xff*",
        ];
        let pieces: &[&[u8]] = &[b"1", b"2", b"7", b"42", b"*", b":", b",", b"4294967295", b"0", b"\x07", b"\x0d"];
        for data in inputs(0x8cb9_2ba7_2f3d_8dd7, 3000, seeds, pieces, 16) {
            seqset(&data);
        }
    }
}
