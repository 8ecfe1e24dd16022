//! Parses arbitrary command lines, and checks the address round trip:
//! printing a parsed address and parsing it again gives the same address.
#![no_main]

use facteur_smtp_proto::{Address, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    for smtputf8 in [false, true] {
        let Ok(command) = Command::parse_with(line, smtputf8) else { continue };
        let address = match command {
            Command::Mail(Some(address), _) | Command::Rcpt(address, _) => address,
            _ => continue,
        };
        if address.domain.is_empty() {
            // The domain-less <Postmaster> of RFC 5321 §4.5.1.
            continue;
        }
        let printed = address.to_string();
        assert_eq!(Address::parse_path(&printed, !address.is_ascii()), Ok(address), "{printed}");
    }
    if let Ok(text) = std::str::from_utf8(line) {
        let _ = Address::parse_path(text, true);
    }
});
