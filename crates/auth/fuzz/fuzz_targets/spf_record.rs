//! An SPF record from the network: evaluation never panics and stays
//! within RFC 7208 §4.6.4's lookup limits, whatever the record says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| facteur_auth::fuzz_checks::spf_record(record));
