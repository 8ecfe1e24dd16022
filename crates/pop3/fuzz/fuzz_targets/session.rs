//! Drives a whole POP3 session with arbitrary bytes: the first byte
//! chooses the configuration, the maildrop and how the session ends, the
//! next ones steer the answers to its questions and how the input is cut,
//! the rest is the client's stream. The session must never panic, must
//! always make progress, must ask only the questions its state allows and
//! repeat one until it is answered, must end every reply with CRLF and
//! every RETR or TOP with the one `.` line, and must stay closed once
//! closed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = facteur_pop3::fuzz_checks::session(input);
});
