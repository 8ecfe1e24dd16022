//! Removing Authentication-Results fields forged in our name takes whole
//! header fields only, leaves none behind, and keeps the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| facteur_auth::fuzz_checks::strip_forged(message));
