//! The client against facteur's own server session, in memory: what one
//! side writes the other must read back unchanged (envelope parameters,
//! xtext, dot-stuffing, BDAT), with and without PIPELINING and CHUNKING.

mod common;

use common::{Harness, accept_all, config};
use facteur_smtp_proto::client::{
    Capabilities, OutboundEnvelope, OutboundRecipient, RcptOutcome, ReplyReader, Transaction, TxResult, TxStep,
};
use facteur_smtp_proto::{BodyType, Event, Notify, Reply, Ret, SessionConfig};

/// A greeted session and the capabilities its EHLO reply announces.
fn connect(harness: Harness) -> (Harness, ReplyReader, Capabilities) {
    let mut h = harness;
    let mut reader = ReplyReader::default();
    reader.feed(h.transcript().as_bytes());
    assert_eq!(reader.next_reply().unwrap().unwrap().code, 220);
    reader.feed(h.send("EHLO client.example\r\n").as_bytes());
    let caps = Capabilities::from_ehlo(&reader.next_reply().unwrap().unwrap());
    (h, reader, caps)
}

/// Runs one transaction over the session until Done.
fn deliver(
    h: &mut Harness,
    reader: &mut ReplyReader,
    caps: &Capabilities,
    env: OutboundEnvelope,
    message: &[u8],
) -> TxResult {
    let mut tx = Transaction::new(env, caps).expect("starts");
    let mut out = tx.take_output();
    loop {
        assert!(!out.is_empty(), "the client waits for a reply that cannot come");
        reader.feed(h.send(&out).as_bytes());
        out.clear();
        while let Some(reply) = reader.next_reply().expect("facteur's replies are well-formed") {
            match tx.on_reply(reply) {
                TxStep::Continue => out.extend(tx.take_output()),
                TxStep::SendBody => out.extend(tx.body_bytes(message)),
                TxStep::Done(result) => {
                    assert_eq!(reader.buffered(), 0);
                    return result;
                }
            }
        }
    }
}

fn rich_envelope() -> OutboundEnvelope {
    OutboundEnvelope {
        mail_from: "sender@example.org".into(),
        recipients: vec![
            OutboundRecipient {
                address: "b@example.net".into(),
                notify: Some(Notify { success: true, delay: true, ..Notify::default() }),
                orcpt: Some("rfc822;B+x=y@example.net".into()),
            },
            OutboundRecipient {
                address: "\"odd one\"@example.net".into(),
                notify: Some(Notify { never: true, ..Notify::default() }),
                orcpt: None,
            },
        ],
        size: 0,
        body: Some(BodyType::EightBitMime),
        smtputf8: true,
        ret: Some(Ret::Hdrs),
        envid: Some("id+1=2 three~".into()),
    }
}

/// A message with everything dot-stuffing and line-end repair must handle.
const AWKWARD: &[u8] = b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\nbare LF\rbare CR\r\n\r\n.\r\nno final line end";
/// What facteur stores for it after DATA: CRLF everywhere, a final CRLF.
const AWKWARD_STORED: &[u8] =
    b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\nbare LF\r\nbare CR\r\n\r\n.\r\nno final line end\r\n";

#[test]
fn envelope_and_body_round_trip() {
    // PIPELINING + DATA, PIPELINING + BDAT, one command at a time + DATA.
    let variants: [(bool, bool); 3] = [(true, false), (true, true), (false, false)];
    for (pipelining, chunking) in variants {
        let (mut h, mut reader, mut caps) = connect(Harness::new(config()));
        caps.pipelining = pipelining;
        caps.chunking = chunking;
        // BDAT sends the message as stored, so give it the stored form.
        let message = if chunking { AWKWARD_STORED } else { AWKWARD };
        let mut env = rich_envelope();
        env.size = message.len() as u64;
        let r = deliver(&mut h, &mut reader, &caps, env.clone(), message);
        assert!(r.outcomes.iter().all(|o| matches!(o, RcptOutcome::Delivered(_))), "{r:?}");
        assert!(r.reusable);

        let [(envelope, data)] = &h.messages[..] else { panic!("{:?}", h.messages.len()) };
        assert_eq!(data, AWKWARD_STORED, "pipelining {pipelining}, chunking {chunking}");
        assert_eq!(envelope.chunked, chunking);
        assert_eq!(envelope.mail_from.as_ref().map(|a| a.to_string()).as_deref(), Some("sender@example.org"));
        let p = &envelope.mail_params;
        assert_eq!(p.size, Some(env.size));
        assert_eq!(p.body, env.body);
        assert!(p.smtputf8);
        assert_eq!(p.ret, env.ret);
        assert_eq!(p.envid, env.envid);
        for (sent, got) in env.recipients.iter().zip(&envelope.recipients) {
            assert_eq!(got.address.to_string(), sent.address);
            assert_eq!(got.params.notify, sent.notify);
            assert_eq!(got.params.orcpt, sent.orcpt);
        }
    }
}

#[test]
fn bdat_sends_the_message_unchanged() {
    // With CHUNKING the stored message goes as is (RFC 3030 §2), bare line
    // ends included: no dot-stuffing, no repair. (facteur's server takes a
    // bare LF inside BDAT; it refuses one only in DATA.)
    let (mut h, mut reader, caps) = connect(Harness::new(config()));
    let mut env = rich_envelope();
    env.size = AWKWARD.len() as u64;
    let r = deliver(&mut h, &mut reader, &caps, env, AWKWARD);
    assert!(r.outcomes.iter().all(|o| matches!(o, RcptOutcome::Delivered(_))), "{r:?}");
    assert_eq!(h.messages[0].1, AWKWARD);
}

/// Accepts everything except recipients whose local part is "nobody".
fn picky() -> common::Answer {
    let mut inner = accept_all();
    Box::new(move |event| match event {
        Event::Rcpt { to, .. } if to.local == "nobody" => Err(Reply::new(550, (5, 1, 1), "No such user")),
        _ => inner(event),
    })
}

#[test]
fn connection_stays_usable_across_transactions() {
    for pipelining in [true, false] {
        let (mut h, mut reader, mut caps) = connect(Harness::with(config(), picky()));
        caps.pipelining = pipelining;
        caps.chunking = false;
        let env = |to: &[&str]| OutboundEnvelope {
            mail_from: "a@example.org".into(),
            recipients: to
                .iter()
                .map(|a| OutboundRecipient { address: a.to_string(), notify: None, orcpt: None })
                .collect(),
            size: 9,
            body: None,
            smtputf8: false,
            ret: None,
            envid: None,
        };
        // Nobody accepted: RSET, connection clean.
        let r = deliver(&mut h, &mut reader, &caps, env(&["nobody@example.net"]), b"Hi there\n");
        assert!(matches!(&r.outcomes[..], [RcptOutcome::Permanent(reply)] if reply.code == 550), "{r:?}");
        assert!(r.reusable);
        // Then a mix on the same connection.
        let r = deliver(&mut h, &mut reader, &caps, env(&["x@example.net", "nobody@example.net"]), b"Hi there\n");
        assert!(matches!(r.outcomes[0], RcptOutcome::Delivered(_)), "{r:?}");
        assert!(matches!(r.outcomes[1], RcptOutcome::Permanent(_)), "{r:?}");
        assert!(r.reusable);
        // And again.
        let r = deliver(&mut h, &mut reader, &caps, env(&["y@example.net"]), b"Again\r\n");
        assert!(matches!(r.outcomes[0], RcptOutcome::Delivered(_)), "{r:?}");
        assert_eq!(h.messages.len(), 2);
        assert_eq!(h.messages[0].1, b"Hi there\r\n");
    }
}

#[test]
fn server_size_limit_checked_before_sending() {
    let (_h, _reader, caps) = connect(Harness::new(SessionConfig { max_message_size: 100, ..config() }));
    assert_eq!(caps.size, Some(100));
    let mut env = rich_envelope();
    env.size = 101;
    let Err(r) = Transaction::new(env, &caps) else { panic!("accepted") };
    assert!(r.outcomes.iter().all(|o| matches!(o, RcptOutcome::Permanent(reply) if reply.code == 552)));
}
