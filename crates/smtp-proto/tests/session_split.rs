//! However the input is cut, the session answers the same; and no input
//! makes it panic.

mod common;

use common::*;
use facteur_smtp_proto::{Command, Event, Reply, Session, SessionConfig};

/// A whole session touching every reading mode: commands, AUTH exchange,
/// DATA with stuffing and smuggling, BDAT with binary content, limits.
fn script() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"EHLO client.example\r\n");
    s.extend_from_slice(b"AUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\n");
    s.extend_from_slice(b"MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME\r\n");
    s.extend_from_slice(b"RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE\r\nRCPT TO:<Postmaster>\r\n");
    s.extend_from_slice(b"DATA\r\nSubject: one\r\n\r\n..stuffed\r\n.\r\n");
    s.extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<c@example.net>\r\n");
    s.extend_from_slice(b"DATA\r\nsmuggled\n.\r\nMAIL FROM:<evil@x>\r\n.\r\n");
    s.extend_from_slice(b"NOOP\nVRFY x\r\nBOGUS\r\n");
    s.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    s.extend_from_slice(b"BDAT 8\r\n\r\n.\r\n\x00\xff\nBDAT 0 LAST\r\n");
    s.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3 LAST\r\n\r\n.");
    s.extend_from_slice(format!("NOOP {}\r\n", "x".repeat(600)).as_bytes());
    s.extend_from_slice(b"RSET\r\nQUIT\r\nNOOP\r\n");
    s
}

fn script_config() -> SessionConfig {
    SessionConfig { tls_active: true, auth_enabled: true, max_command_line: 512, ..config() }
}

/// Output and messages of the script fed in the given pieces.
fn run_pieces(pieces: &[&[u8]]) -> (String, Vec<Vec<u8>>, Vec<&'static str>) {
    let mut h = Harness::new(script_config());
    for piece in pieces {
        h.send(piece);
    }
    let messages = h.messages.into_iter().map(|(_, data)| data).collect();
    (String::from_utf8_lossy(&h.output).into_owned(), messages, h.events)
}

#[test]
fn script_reference_output() {
    let (out, messages, events) = run_pieces(&[&script()]);
    let want = greeting()
        + &ehlo_reply().replace("250 CHUNKING\r\n", "250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n")
        + &lines(&[
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "235 2.7.0 Authentication successful",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q1",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "554 5.5.2 Error: bare CR or LF in message data (RFC 5321 §2.3.8)",
            "500 5.5.2 Error: bare LF in command; lines must end with CRLF",
            "252 2.5.0 Cannot VRFY user, but will accept message",
            "500 5.5.2 Error: command not recognized",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 8 octets received",
            "250 2.0.0 Ok: queued as Q2",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok: queued as Q3",
            "500 5.5.2 Error: line too long",
            "250 2.0.0 Ok",
            "221 2.0.0 Bye",
        ]);
    assert_eq!(out, want);
    assert_eq!(messages, [&b"Subject: one\r\n\r\n.stuffed\r\n"[..], b"\r\n.\r\n\x00\xff\n", b"\r\n."]);
    assert_eq!(events.last(), Some(&"close"));
}

#[test]
fn every_split_offset_gives_the_same_output() {
    let script = script();
    let whole = run_pieces(&[&script]);
    for k in 0..=script.len() {
        let (a, b) = script.split_at(k);
        assert_eq!(run_pieces(&[a, b]), whole, "split at {k}");
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_output() {
    let script = script();
    let whole = run_pieces(&[&script]);
    let bytes: Vec<&[u8]> = script.chunks(1).collect();
    assert_eq!(run_pieces(&bytes), whole);
    let threes: Vec<&[u8]> = script.chunks(3).collect();
    assert_eq!(run_pieces(&threes), whole);
}

/// xorshift64*, fixed seed: reproducible pseudo-random inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that steer random inputs into every state.
const PIECES: &[&[u8]] = &[
    b"EHLO x.example\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b>\r\n",
    b"MAIL FROM:<> SMTPUTF8 SIZE=10\r\n",
    b"RCPT TO:<c@d>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT x\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
    b"dXNlcg==\r\n",
    b"*\r\n",
    b"STARTTLS\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..",
    b"\r",
    b"\n",
    b"\n.\n",
    b"\r.\r\n",
    b"\x00\xff",
    b"<\"a\\\"b\"@[IPv6:::1]>",
    b" NOTIFY=NEVER ORCPT=rfc822;a+2B",
];

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let mut input = Vec::new();
    if rng.below(2) == 0 {
        // Half the inputs start inside a transaction, to reach DATA/BDAT.
        input.extend_from_slice(b"EHLO x.example\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    }
    for _ in 0..rng.below(30) {
        match rng.below(8) {
            0 => input.extend((0..rng.below(10)).map(|_| rng.next() as u8)),
            1 => input.extend_from_slice(b"some text\r\n"),
            _ => input.extend_from_slice(PIECES[rng.below(PIECES.len())]),
        }
    }
    input
}

/// How often each event was seen, to check the inputs reach every state.
#[derive(Default, Debug)]
struct Seen {
    starttls: usize,
    auth: usize,
    mail: usize,
    rcpt: usize,
    message: usize,
    close: usize,
}

impl Seen {
    fn count(&mut self, event: &Event) {
        match event {
            Event::NeedInput => {}
            Event::StartTls => self.starttls += 1,
            Event::Auth(_) => self.auth += 1,
            Event::Mail { .. } => self.mail += 1,
            Event::Rcpt { .. } => self.rcpt += 1,
            Event::Message { .. } => self.message += 1,
            Event::Close => self.close += 1,
        }
    }
}

/// Drives a session over `input` in random pieces with random answers;
/// checks the documented guarantees along the way.
fn drive(rng: &mut Rng, config: SessionConfig, input: &[u8], seen: &mut Seen) {
    let mut s = Session::new(config);
    let mut rest = input;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 100_000, "no progress");
        let event = s.poll();
        seen.count(&event);
        match event {
            Event::NeedInput => {
                if rest.is_empty() {
                    break;
                }
                let n = 1 + rng.below(rest.len().min(64));
                let (piece, tail) = rest.split_at(n);
                s.feed(piece);
                rest = tail;
            }
            Event::Close => {
                assert!(matches!(s.poll(), Event::Close));
                break;
            }
            Event::StartTls => {
                if rng.below(2) == 0 {
                    // Repeated polls are harmless.
                    assert!(matches!(s.poll(), Event::StartTls));
                }
                s.tls_established();
            }
            Event::Auth(_) => match rng.below(3) {
                0 => s.auth_result(Ok("u".into())),
                1 => s.auth_result(Err(Reply::new(535, (5, 7, 8), "no"))),
                _ => assert!(matches!(s.poll(), Event::Auth(_))),
            },
            Event::Mail { .. } => match rng.below(3) {
                0 => s.mail_result(Ok(())),
                1 => s.mail_result(Err(Reply::new(550, (5, 7, 1), "no"))),
                // Caller bug: a wrong answer is ignored.
                _ => s.rcpt_result(Ok(())),
            },
            Event::Rcpt { .. } => match rng.below(3) {
                0 => s.rcpt_result(Err(Reply::new(550, (5, 1, 1), "no"))),
                _ => s.rcpt_result(Ok(())),
            },
            Event::Message { .. } => {
                if rng.below(4) == 0 {
                    s.timeout();
                } else {
                    s.message_result(Reply::new(250, (2, 0, 0), "Ok"));
                }
            }
        }
        let out = s.take_output();
        // Replies are always whole CRLF lines.
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let configs = [
        script_config(),
        SessionConfig { max_command_line: 16, max_data_line: 8, max_message_size: 20, ..config() },
        SessionConfig {
            max_recipients: 1,
            max_messages: 2,
            max_junk_commands: 3,
            max_errors: 2,
            starttls_available: true,
            auth_enabled: true,
            auth_required: true,
            ..config()
        },
        SessionConfig {
            max_message_size: 0,
            max_errors: usize::MAX,
            max_messages: usize::MAX,
            max_junk_commands: usize::MAX,
            starttls_available: true,
            auth_enabled: true,
            ..config()
        },
    ];
    let mut seen = Seen::default();
    for i in 0..6000 {
        let input = random_input(&mut rng);
        let config = configs[i % configs.len()].clone();
        drive(&mut rng, config, &input, &mut seen);
        // The command parser alone, on each line of the input.
        for line in input.split(|&b| b == b'\n') {
            let _ = Command::parse_with(line, i % 2 == 0);
        }
    }
    println!("{seen:?}");
    for count in [seen.starttls, seen.auth, seen.mail, seen.rcpt, seen.message, seen.close] {
        assert!(count > 20, "{seen:?}");
    }
}
