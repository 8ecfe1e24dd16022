//! DKIM key and DMARC records from DNS, and the From field signing reads:
//! parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|record: &[u8]| facteur_auth::fuzz_checks::records(record));
