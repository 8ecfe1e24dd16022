//! What the simulator answers: one [`Step`] per point of the SMTP dialogue,
//! the extensions it advertises, and a few ready-made behaviours.

use std::fmt;
use std::sync::Arc;

/// How the simulator answers at one point of the dialogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The usual positive answer for that point (220, 250 or 354).
    Accept,
    /// This reply instead: the code and the full text after it, e.g.
    /// `Reply(451, "4.3.0 try later".into())`. A `\n` in the text makes a
    /// multi-line reply. Any 421 closes the connection after it is sent
    /// (RFC 5321 §3.8).
    Reply(u16, String),
    /// Never answer: the connection stays open, input is read and ignored,
    /// until the client closes it or the simulator stops.
    Hang,
    /// Close the connection at once, without a reply.
    Drop,
    /// For [`Behavior::data`]: answer 354 (or take the BDAT chunks) and close
    /// the connection, without a reply, once this many body octets have
    /// arrived — or at the end of the body if it is shorter. Elsewhere it is
    /// the same as [`Step::Drop`].
    DropAfter(usize),
}

/// What the simulator answers at each step, and what it advertises.
///
/// The default ([`Behavior::accept_all`]) accepts everything and advertises
/// PIPELINING, SIZE 0, 8BITMIME, SMTPUTF8, DSN, CHUNKING and
/// ENHANCEDSTATUSCODES (and STARTTLS when `tls` is set).
///
/// The simulator is strict where a client bug would otherwise go unnoticed:
/// a MAIL or RCPT parameter for an extension it does not advertise gets
/// `555 5.5.4`, BDAT without CHUNKING gets `502 5.5.1`, and a non-ASCII
/// address without the SMTPUTF8 parameter gets `553 5.6.7`.
#[derive(Clone)]
pub struct Behavior {
    /// The greeting: Accept is `220 sim ESMTP`; a non-2xx reply is sent and
    /// the connection closed.
    pub greeting: Step,
    pub pipelining: bool,
    pub chunking: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub eightbitmime: bool,
    /// The advertised SIZE (`None`: not advertised; `Some(0)`: no fixed
    /// limit). A non-zero limit is enforced at `MAIL ... SIZE=` and at the
    /// end of the body, both with `552 5.3.4`.
    pub size: Option<u64>,
    /// Offer STARTTLS, with a self-signed certificate for `localhost`.
    pub tls: bool,
    /// The reply to MAIL (Accept: `250 2.1.0 Ok`).
    pub mail: Step,
    /// The answer for each recipient (Accept: `250 2.1.5 Ok`). The closure
    /// sees the address as sent, without its angle brackets.
    pub rcpt: Arc<dyn Fn(&str) -> Step + Send + Sync>,
    /// The reply to DATA (Accept: `354`), or to the first BDAT chunk.
    pub data: Step,
    /// The reply after the body (Accept: `250 2.0.0 Ok: queued as simN`).
    /// A message is recorded when this reply is 2xx.
    pub end_of_data: Step,
    /// Accept at most this many messages per second, shared by all
    /// connections (a token bucket holding one second's worth); beyond it
    /// MAIL gets `421 4.7.0 rate limit` and the connection is closed.
    pub rate: Option<u32>,
    /// Keep accepted messages and the command transcript in memory (default
    /// true). Counting goes on when off, so long benchmarks do not grow.
    pub record: bool,
    /// Send every reply one octet at a time, this far apart: a server that
    /// is never silent long, yet never done (`None`: at once).
    pub trickle: Option<std::time::Duration>,
}

impl Behavior {
    /// Accept everything, advertise every extension except STARTTLS.
    pub fn accept_all() -> Self {
        Behavior {
            greeting: Step::Accept,
            pipelining: true,
            chunking: true,
            smtputf8: true,
            dsn: true,
            eightbitmime: true,
            size: Some(0),
            tls: false,
            mail: Step::Accept,
            rcpt: Arc::new(|_| Step::Accept),
            data: Step::Accept,
            end_of_data: Step::Accept,
            rate: None,
            record: true,
            trickle: None,
        }
    }

    /// A temporary failure: with 421 the greeting is `421` and the connection
    /// closes; with any other code (450, 451, 452) every recipient gets it.
    pub fn defer_all(code: u16) -> Self {
        if code == 421 {
            let greeting = Step::Reply(421, "4.3.2 sim: service not available, closing channel".into());
            return Behavior { greeting, ..Self::accept_all() };
        }
        Self::accept_all().with_rcpt(move |_| Step::Reply(code, "4.3.0 sim: try again later".into()))
    }

    /// Every recipient is refused with `550 5.1.1`.
    pub fn refuse_all() -> Self {
        Self::accept_all().with_rcpt(|_| no_such_user())
    }

    /// The connection is accepted but no greeting is ever sent.
    pub fn hang() -> Self {
        Behavior { greeting: Step::Hang, ..Self::accept_all() }
    }

    /// DATA gets 354, then the connection closes after 64 body octets (or at
    /// the end of a shorter body): nothing is ever received.
    pub fn drop_mid_data() -> Self {
        Behavior { data: Step::DropAfter(64), ..Self::accept_all() }
    }

    /// Accept only these recipients (compared ignoring ASCII case); the
    /// others get `550 5.1.1`.
    pub fn accept_only(addrs: &[&str]) -> Self {
        let allowed: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        Self::accept_all().with_rcpt(move |rcpt| {
            if allowed.iter().any(|a| a.eq_ignore_ascii_case(rcpt)) { Step::Accept } else { no_such_user() }
        })
    }

    /// Replace the per-recipient answer.
    pub fn with_rcpt(self, rcpt: impl Fn(&str) -> Step + Send + Sync + 'static) -> Self {
        Behavior { rcpt: Arc::new(rcpt), ..self }
    }
}

impl Default for Behavior {
    fn default() -> Self {
        Self::accept_all()
    }
}

impl fmt::Debug for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behavior")
            .field("greeting", &self.greeting)
            .field("pipelining", &self.pipelining)
            .field("chunking", &self.chunking)
            .field("smtputf8", &self.smtputf8)
            .field("dsn", &self.dsn)
            .field("eightbitmime", &self.eightbitmime)
            .field("size", &self.size)
            .field("tls", &self.tls)
            .field("mail", &self.mail)
            .field("rcpt", &"<closure>")
            .field("data", &self.data)
            .field("end_of_data", &self.end_of_data)
            .field("rate", &self.rate)
            .field("record", &self.record)
            .finish()
    }
}

fn no_such_user() -> Step {
    Step::Reply(550, "5.1.1 sim: no such user".into())
}
