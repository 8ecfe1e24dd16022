//! Sequence sets against the messages that exist (RFC 9051 §6.4.8, §9
//! `sequence-set`; RFC 3501 §9), and the compact `1:3,7` form of UID lists
//! for COPYUID and APPENDUID (RFC 4315 §3) and ESEARCH (RFC 4731).
//!
//! Nothing here walks a range number by number: a client's `1:4294967295`
//! costs as much as `1:3`. Ranges are clamped to the mailbox (message
//! sequence numbers) or looked up in the sorted list of existing UIDs.

use std::num::NonZeroU32;

use imap_codec::imap_types::{
    core::Vec1,
    extensions::uidplus::{UidElement, UidSet},
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

/// The inclusive bounds of one element of a set, `*` being `largest`
/// (RFC 9051 §9: `n:m` and `m:n` are the same range). With no `largest`
/// (an empty mailbox), an element naming `*` matches nothing.
fn bounds(sequence: &Sequence, largest: Option<u32>) -> Option<(u32, u32)> {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => Some(n.get()),
        SeqOrUid::Asterisk => largest,
    };
    match sequence {
        Sequence::Single(a) => value(a).map(|a| (a, a)),
        Sequence::Range(a, b) => {
            let (a, b) = (value(a)?, value(b)?);
            Some((a.min(b), a.max(b)))
        }
    }
}

/// Whether `value` is in `set`, `*` standing for `largest` (the number of
/// messages, or the highest UID); with `largest` 0, `*` matches nothing.
/// A range past the end, such as `559:*` when the highest UID is 3, holds
/// `*` (RFC 9051 §6.4.8).
pub fn contains(set: &SequenceSet, value: u32, largest: u32) -> bool {
    let largest = (largest != 0).then_some(largest);
    set.0.as_ref().iter().filter_map(|s| bounds(s, largest)).any(|(lo, hi)| lo <= value && value <= hi)
}

/// Whether `set` names a message sequence number past `count`, the number
/// of messages, `*` included when there is none: RFC 9051 §9 asks for a
/// tagged BAD then.
pub fn past_the_end(set: &SequenceSet, count: u32) -> bool {
    set.0.as_ref().iter().any(|s| bounds(s, (count != 0).then_some(count)).is_none_or(|(_, hi)| hi > count))
}

/// The message sequence numbers in `1..=count` that `set` names, ascending
/// and without duplicates; `*` is `count`. Numbers past `count` are dropped
/// (the caller decides whether that is an error).
pub fn seqs(set: &SequenceSet, count: u32) -> Vec<u32> {
    if count == 0 {
        return Vec::new();
    }
    let ranges = set
        .0
        .as_ref()
        .iter()
        .filter_map(|s| bounds(s, Some(count)))
        .filter_map(|(lo, hi)| (lo <= count).then_some((lo.max(1), hi.min(count))));
    merge(ranges).into_iter().flat_map(|(lo, hi)| lo..=hi).collect()
}

/// The UIDs of `existing_sorted_uids` (ascending) that `set` names,
/// ascending and without duplicates. `*` is the highest existing UID, so a
/// range like `5:*` holds it even when it is below 5 (RFC 9051 §6.4.8); in
/// an empty mailbox nothing matches.
pub fn uids(set: &SequenceSet, existing_sorted_uids: &[u32]) -> Vec<u32> {
    let existing = existing_sorted_uids;
    let largest = existing.last().copied();
    // Each range becomes the index range of the UIDs it holds.
    let spans = set.0.as_ref().iter().filter_map(|s| bounds(s, largest)).filter_map(|(lo, hi)| {
        let start = existing.partition_point(|&uid| uid < lo);
        let end = existing.partition_point(|&uid| uid <= hi);
        // Index spans as inclusive u32 pairs, so `merge` serves both.
        (start < end).then(|| (start as u32, end as u32 - 1))
    });
    merge(spans).into_iter().flat_map(|(first, last)| &existing[first as usize..=last as usize]).copied().collect()
}

/// Sorts inclusive ranges and joins those that overlap or touch.
fn merge(ranges: impl Iterator<Item = (u32, u32)>) -> Vec<(u32, u32)> {
    let mut ranges: Vec<_> = ranges.collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// Runs of consecutive ascending values, in the given order; 0 (never a
/// UID or sequence number) is skipped.
fn runs(values: &[u32]) -> Vec<(NonZeroU32, NonZeroU32)> {
    let mut runs: Vec<(NonZeroU32, NonZeroU32)> = Vec::new();
    for value in values.iter().copied().filter_map(NonZeroU32::new) {
        match runs.last_mut() {
            Some(run) if run.1.checked_add(1) == Some(value) => run.1 = value,
            _ => runs.push((value, value)),
        }
    }
    runs
}

/// The UIDs as a UIDPLUS `uid-set` (RFC 4315 §3), consecutive values
/// joined into ranges. The order is kept, since COPYUID pairs source and
/// destination UIDs by position; `None` when there is no UID.
pub fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let elements = runs(uids)
        .into_iter()
        .map(|(lo, hi)| if lo == hi { UidElement::Single(lo) } else { UidElement::Range(lo, hi) })
        .collect::<Vec<_>>();
    Vec1::try_from(elements).ok().map(UidSet)
}

/// The values as a `sequence-set` (for VANISHED, MODIFIED), consecutive
/// values joined into ranges, in the given order; `None` when empty.
pub fn sequence_set(values: &[u32]) -> Option<SequenceSet> {
    let sequences = runs(values)
        .into_iter()
        .map(|(lo, hi)| {
            if lo == hi {
                Sequence::Single(SeqOrUid::Value(lo))
            } else {
                Sequence::Range(SeqOrUid::Value(lo), SeqOrUid::Value(hi))
            }
        })
        .collect::<Vec<_>>();
    Vec1::try_from(sequences).ok().map(SequenceSet)
}

/// The values in the wire form of a sequence set, `"1:3,7,9:10"`, for
/// responses written by hand (ESEARCH); in the given order, so pass sorted
/// values for the shortest form. Empty input gives an empty string.
pub fn compress(values: &[u32]) -> String {
    let parts: Vec<String> =
        runs(values).into_iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}:{hi}") }).collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use imap_codec::{
        ResponseCodec,
        encode::Encoder,
        imap_types::response::{Code, Response, Status},
    };

    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    #[test]
    fn sequence_numbers_are_clamped_to_the_mailbox() {
        assert_eq!(seqs(&set("1:*"), 4), [1, 2, 3, 4]);
        assert_eq!(seqs(&set("*"), 4), [4]);
        assert_eq!(seqs(&set("3,1,2,2:3"), 4), [1, 2, 3]);
        assert_eq!(seqs(&set("4:2"), 9), [2, 3, 4]);
        assert_eq!(seqs(&set("2:10"), 4), [2, 3, 4]);
        assert_eq!(seqs(&set("5:10,7"), 4), Vec::<u32>::new());
        assert_eq!(seqs(&set("6:*"), 4), [4]);
        assert_eq!(seqs(&set("1:4294967295"), 3), [1, 2, 3]);
        assert_eq!(seqs(&set("1:*"), 0), Vec::<u32>::new());
        assert_eq!(seqs(&set("1"), 0), Vec::<u32>::new());
    }

    #[test]
    fn uids_are_looked_up_among_the_existing() {
        let existing = [2, 5, 7, 8, 100];
        assert_eq!(uids(&set("1:*"), &existing), existing);
        assert_eq!(uids(&set("*"), &existing), [100]);
        assert_eq!(uids(&set("3:7"), &existing), [5, 7]);
        assert_eq!(uids(&set("8:3,7,1,101:200"), &existing), [5, 7, 8]);
        assert_eq!(uids(&set("1:4294967295"), &existing), existing);
        assert_eq!(uids(&set("9:99"), &existing), Vec::<u32>::new());
        // RFC 9051 §6.4.8: 559:* holds the highest UID even below 559.
        assert_eq!(uids(&set("559:*"), &[1, 2, 3]), [3]);
        assert_eq!(uids(&set("1:*"), &[]), Vec::<u32>::new());
        assert_eq!(uids(&set("*"), &[]), Vec::<u32>::new());
        assert_eq!(uids(&set("1:5"), &[]), Vec::<u32>::new());
    }

    #[test]
    fn containment() {
        assert!(contains(&set("1:*"), 9, 9));
        assert!(contains(&set("559:*"), 3, 3));
        assert!(!contains(&set("559:*"), 2, 3));
        assert!(contains(&set("2,4:6"), 5, 3));
        assert!(!contains(&set("2,4:6"), 3, 10));
        assert!(!contains(&set("*"), 1, 0));
        assert!(!contains(&set("1:*"), 1, 0));
        assert!(contains(&set("1:2"), 1, 0));
    }

    #[test]
    fn compression() {
        assert_eq!(compress(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(compress(&[]), "");
        assert_eq!(compress(&[0, 5]), "5");
        assert_eq!(compress(&[4294967294, 4294967295]), "4294967294:4294967295");
        // The order is kept: 3,1,2 pairs with destination UIDs by position.
        assert_eq!(compress(&[3, 1, 2]), "3,1:2");
        assert_eq!(sequence_set(&[1, 2, 3, 7]).unwrap(), set("1:3,7"));
        assert!(sequence_set(&[]).is_none());
    }

    #[test]
    fn copyuid_uid_sets() {
        assert!(uid_set(&[]).is_none());
        assert!(uid_set(&[0]).is_none());
        let status = Status::ok(
            Some("a1".try_into().unwrap()),
            Some(Code::CopyUid {
                uid_validity: NonZeroU32::new(38505).unwrap(),
                source: uid_set(&[304, 319, 320]).unwrap(),
                destination: uid_set(&[3956, 3957, 3958]).unwrap(),
            }),
            "Done",
        )
        .unwrap();
        let wire = ResponseCodec::default().encode(&Response::Status(status)).dump();
        assert_eq!(wire, b"a1 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n");
    }

    #[test]
    fn numbers_past_the_end() {
        let set = |s: &str| -> SequenceSet { s.try_into().unwrap() };
        assert!(!past_the_end(&set("1:3"), 3));
        assert!(!past_the_end(&set("*"), 3));
        assert!(!past_the_end(&set("2,3:*"), 3));
        assert!(past_the_end(&set("4"), 3));
        assert!(past_the_end(&set("1,2:4"), 3));
        assert!(past_the_end(&set("*"), 0), "* with no message");
        assert!(past_the_end(&set("1:*"), 0));
    }
}
