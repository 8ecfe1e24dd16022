//! Mailbox names in modified UTF-7: any string survives `encode` then
//! `decode`, `encode` writes printable US-ASCII only, and `decode` never
//! panics and accepts only what `encode` writes (one spelling per name).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &[u8]| facteur_imap::fuzz_checks::utf7(name));
