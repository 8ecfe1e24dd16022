//! Sequence sets against a mailbox: the first byte is the message count,
//! the second the number of existing UIDs (drawn from the next bytes), the
//! rest the set, as text or as 3-byte elements. `seqs` is sorted, without
//! duplicates and within 1..=count, and agrees with `contains`; `uids` is
//! the existing UIDs `contains` holds; `past_the_end` is true exactly when
//! the set names a number past the count; `compress` parses back to the
//! same numbers. Nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| facteur_imap::fuzz_checks::seqset(data));
