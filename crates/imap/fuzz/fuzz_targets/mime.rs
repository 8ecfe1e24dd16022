//! Arbitrary bytes as a stored message: ENVELOPE, BODY, BODYSTRUCTURE
//! (and their wire form), HEADER, HEADER.FIELDS(.NOT), TEXT, the sections
//! and BINARY of part paths taken from the input, and partial ranges never
//! panic; `top_level_section`, when it answers, gives the same bytes as
//! `section`; `BODY[]` and `BINARY[]` are the message as stored.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| facteur_imap::fuzz_checks::mime(raw));
