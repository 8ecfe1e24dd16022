//! Drives a whole session with arbitrary bytes: the first byte chooses the
//! configuration, the next ones steer the answers and how the input is cut,
//! the rest is the client's stream. The session must never panic, must
//! always make progress, and must stay closed once closed.
#![no_main]

use facteur_smtp_proto::{Event, Reply, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fn config(choice: u8) -> SessionConfig {
    let base = SessionConfig { hostname: "fuzz.example".into(), ..SessionConfig::default() };
    match choice % 4 {
        0 => base,
        1 => SessionConfig { tls_active: true, auth_enabled: true, ..base },
        2 => SessionConfig {
            starttls_available: true,
            auth_enabled: true,
            auth_required: true,
            max_recipients: 2,
            max_errors: 5,
            ..base
        },
        _ => SessionConfig {
            max_command_line: 32,
            max_data_line: 16,
            max_message_size: 64,
            max_messages: 3,
            max_junk_commands: 5,
            ..base
        },
    }
}

fuzz_target!(|input: &[u8]| {
    let [conf, steer, piece, stream @ ..] = input else { return };
    let mut session = Session::new(config(*conf));
    let mut steer = *steer;
    let piece = usize::from(*piece % 64) + 1;
    let mut chunks = stream.chunks(piece);
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(steps < 10 * input.len() + 1000, "no progress");
        steer = steer.rotate_left(1) ^ 0x5a;
        match session.poll() {
            Event::NeedInput => match chunks.next() {
                Some(chunk) => session.feed(chunk),
                None => break,
            },
            Event::Close => {
                assert!(matches!(session.poll(), Event::Close));
                break;
            }
            Event::StartTls => session.tls_established(),
            Event::Auth(_) if steer & 1 == 0 => session.auth_result(Ok("user".into())),
            Event::Auth(_) => session.auth_result(Err(Reply::new(535, (5, 7, 8), "no"))),
            Event::Mail { .. } if steer & 2 == 0 => session.mail_result(Ok(())),
            Event::Mail { .. } => session.mail_result(Err(Reply::new(550, (5, 7, 1), "no"))),
            Event::Rcpt { .. } if steer & 4 == 0 => session.rcpt_result(Ok(())),
            Event::Rcpt { .. } => session.rcpt_result(Err(Reply::new(550, (5, 1, 1), "no"))),
            Event::Message { .. } => session.message_result(Reply::new(250, (2, 0, 0), "Ok")),
        }
        let out = session.take_output();
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
    }
});
