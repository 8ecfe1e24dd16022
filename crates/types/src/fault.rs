//! Fault switches, for tests of what facteur does when a part fails.
//!
//! Purpose: the end-to-end tests (and `bench/detect.sh`) break storage or
//! IMAP logins on one node of a running server and watch the incident
//! open and resolve. The switches are flipped through the admin API, which
//! offers them only when the process was started with
//! `FACTEUR_ALLOW_FAULTS=1` (said loudly in the log); otherwise every
//! switch stays off for the life of the process.
//!
//! Invariants: a switch read is one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};

/// A part that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every commit of storage fails (as a failed fsync would).
    Storage = 0,
    /// IMAP and POP3 logins fail for the server's fault
    /// (`NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`).
    MailboxLogin = 1,
}

impl Fault {
    pub const ALL: [Fault; 2] = [Fault::Storage, Fault::MailboxLogin];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Storage => "storage",
            Fault::MailboxLogin => "mailbox-login",
        }
    }

    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

static ON: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];

/// Is `fault` switched on?
pub fn on(fault: Fault) -> bool {
    ON[fault as usize].load(Ordering::Relaxed)
}

/// Switch `fault` on or off (the admin API, only when allowed).
pub fn set(fault: Fault, value: bool) {
    ON[fault as usize].store(value, Ordering::Relaxed);
}

/// Did the environment allow fault switches for this process?
pub fn allowed() -> bool {
    std::env::var("FACTEUR_ALLOW_FAULTS").is_ok_and(|v| v == "1")
}
