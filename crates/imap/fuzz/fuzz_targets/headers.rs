//! Arbitrary address fields and header blocks through `address::parse` and
//! the SORT/THREAD summaries: never a panic, groups balanced, every message
//! sorted and threaded once.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| facteur_imap::fuzz_checks::headers(raw));
