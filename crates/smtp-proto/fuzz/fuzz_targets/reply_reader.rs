//! Frames arbitrary server bytes into replies, and hands every reply to a
//! client transaction. The first byte chooses how the input is cut and what
//! the server announced; the rest is the server's stream. Nothing may panic;
//! every reply read must print and read back the same (when the printed
//! lines fit the limit); the transaction's result must cover every
//! recipient.
#![no_main]

use facteur_smtp_proto::Reply;
use facteur_smtp_proto::client::{
    Capabilities, MAX_REPLY_LINE, OutboundEnvelope, OutboundRecipient, ReplyReader, Transaction, TxStep,
};
use libfuzzer_sys::fuzz_target;

fn envelope() -> OutboundEnvelope {
    let recipient = |address: &str| OutboundRecipient { address: address.into(), notify: None, orcpt: None };
    OutboundEnvelope {
        mail_from: "a@example.org".into(),
        recipients: vec![recipient("b@example.net"), recipient("c@example.net"), recipient("d@example.net")],
        size: 10,
        body: None,
        smtputf8: false,
        ret: None,
        envid: None,
    }
}

fn read_back(reply: &Reply) {
    let printed = reply.to_bytes();
    if printed.split(|&b| b == b'\n').any(|line| line.len() >= MAX_REPLY_LINE) {
        return;
    }
    let mut again = ReplyReader::default();
    again.feed(&printed);
    assert_eq!(again.next_reply(), Ok(Some(reply.clone())));
    assert_eq!(again.next_reply(), Ok(None));
}

fuzz_target!(|input: &[u8]| {
    let [choice, stream @ ..] = input else { return };
    let piece = usize::from(choice & 0x1f) + 1;
    let caps = Capabilities {
        pipelining: choice & 0x20 != 0,
        chunking: choice & 0x40 != 0,
        dsn: choice & 0x80 != 0,
        ..Capabilities::default()
    };
    let mut tx = Transaction::new(envelope(), &caps).expect("nothing to refuse up front");
    let _ = tx.take_output();
    let mut reader = ReplyReader::default();
    let mut done = false;
    for chunk in stream.chunks(piece) {
        reader.feed(chunk);
        loop {
            let reply = match reader.next_reply() {
                Ok(Some(reply)) => reply,
                Ok(None) => break,
                Err(_) => continue,
            };
            assert!((200..=559).contains(&reply.code));
            read_back(&reply);
            match tx.on_reply(reply) {
                TxStep::Continue => {
                    let _ = tx.take_output();
                }
                TxStep::SendBody => {
                    let body = tx.body_bytes(b"Subject: x\r\n\r\n.\r\n");
                    assert!(body.ends_with(b"\r\n") || caps.chunking);
                }
                TxStep::Done(result) => {
                    assert_eq!(result.outcomes.len(), 3);
                    done = true;
                }
            }
            if done {
                assert!(tx.take_output().is_empty());
            }
        }
        assert!(reader.buffered() < MAX_REPLY_LINE);
    }
});
