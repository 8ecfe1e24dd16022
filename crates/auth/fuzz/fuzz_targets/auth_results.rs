//! The Authentication-Results field built from a client's HELO name,
//! envelope sender and From domain is always exactly one header field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| facteur_auth::fuzz_checks::auth_results(input));
