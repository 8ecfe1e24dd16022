//! The end of message content: DATA (RFC 5321 §4.1.1.4) and BDAT chunks
//! (RFC 3030 §2).

use super::handlers::too_big;
use super::{Envelope, Event, Mode, Pending, Phase, Session};
use crate::framing::DataError;
use crate::reply::Reply;

/// What happens to the octets of a BDAT chunk.
#[derive(Debug)]
pub(super) enum ChunkPlan {
    /// Append them to the message; then `250` or, for LAST, the message.
    Keep { size: u64, last: bool },
    /// Drop them; then send `reply` and apply `after`.
    Discard { reply: Reply, after: After },
}

impl ChunkPlan {
    pub(super) fn keeps_data(&self) -> bool {
        matches!(self, ChunkPlan::Keep { .. })
    }
}

/// The state of the transaction after a refused chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Unchanged (the chunk was out of sequence).
    Stay,
    /// The transaction failed: later chunks are refused until RSET or LAST.
    Fail,
    /// The transaction is over (the refused chunk was LAST).
    Reset,
}

impl Session {
    /// The DATA reader saw CRLF "." CRLF.
    pub(super) fn end_data(&mut self) -> Option<Event> {
        let Mode::Data(reader) = std::mem::replace(&mut self.mode, Mode::Command) else {
            return None;
        };
        match reader.finish() {
            Ok(data) => Some(self.emit_message(data, false)),
            Err(error) => {
                // The transaction is over: nothing was accepted.
                self.reset_transaction();
                self.reply(match error {
                    // RFC 5321 §2.3.8 (SMTP smuggling, CVE-2023-51764 class)
                    DataError::BareCrLf => {
                        Reply::new(554, (5, 5, 2), "Error: bare CR or LF in message data (RFC 5321 §2.3.8)")
                    }
                    DataError::LineTooLong => {
                        Reply::new(500, (5, 5, 2), "Error: line too long in message data (RFC 5321 §4.5.3.1.6)")
                    }
                    DataError::TooBig => too_big(),
                });
                None
            }
        }
    }

    /// The last octet of a BDAT chunk arrived.
    pub(super) fn end_chunk(&mut self) -> Option<Event> {
        let Mode::Chunk { plan, .. } = std::mem::replace(&mut self.mode, Mode::Command) else {
            return None;
        };
        match plan {
            ChunkPlan::Keep { last: true, .. } => {
                let data = std::mem::take(&mut self.tx.body);
                Some(self.emit_message(data, true))
            }
            ChunkPlan::Keep { size, last: false } => {
                self.phase = Phase::Chunking;
                self.reply(Reply::new(250, (2, 0, 0), format!("{size} octets received")));
                None
            }
            ChunkPlan::Discard { reply, after } => {
                match after {
                    After::Stay => {}
                    After::Fail => {
                        self.tx.body = Vec::new();
                        self.phase = Phase::ChunkFailed;
                    }
                    After::Reset => self.reset_transaction(),
                }
                self.reply(reply);
                None
            }
        }
    }

    /// Hands the message over; the transaction ends here, and the reply
    /// comes with [`Session::message_result`].
    fn emit_message(&mut self, data: Vec<u8>, chunked: bool) -> Event {
        let tx = std::mem::take(&mut self.tx);
        self.reset_transaction();
        let envelope = Envelope {
            helo: self.helo.clone(),
            esmtp: self.esmtp,
            mail_from: tx.from,
            mail_params: tx.params,
            recipients: tx.recipients,
            auth_user: self.auth_user.clone(),
            tls: self.tls_active,
            chunked,
        };
        self.pending = Some(Pending::Message(envelope.clone()));
        Event::Message { envelope, data }
    }
}
