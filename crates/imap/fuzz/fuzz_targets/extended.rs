//! Arbitrary command messages through `extended::rewrite`: never a panic,
//! and a rewritten command keeps its tag and everything after its first
//! line, and grows by at most two octets (`$` becomes `1` or `ALL`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| facteur_imap::fuzz_checks::extended(message));
