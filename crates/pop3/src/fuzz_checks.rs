//! The check of the fuzz target in `crates/pop3/fuzz`, as a plain function
//! over bytes: the target is a thin wrapper around it, and the tests below
//! run it on stable over scripted sessions and a few thousand
//! pseudo-random ones, so CI runs the same check without cargo-fuzz. Not
//! an API: the function panics when the check fails.
#![doc(hidden)]

use crate::session::{
    Action, AuthError, Maildrop, MaildropEntry, MaildropError, RetrieveError, Session, SessionConfig, State,
};

/// Stored messages the edge hands out for RETR and TOP (the fuzz input is
/// one more).
const BODIES: &[&[u8]] = &[
    b"From: a@example.test\r\nSubject: one\r\n\r\nline 1\r\n.starts with a dot\r\nline 3\r\n",
    b"Subject: three\n\nbare LF body\n..two dots\nlast line without end",
    b"",
    b".\r\n.\r\n\r\n.",
];

/// The edge, steered by the input: the first byte chooses the
/// configuration, the maildrop and how the session ends when the client's
/// bytes run out; the second steers the answers to the session's questions
/// (and whether a question is first asked again, unanswered); the third
/// how the client's stream is cut; the rest is that stream. The session
/// must never panic, must always make progress, must ask only the
/// questions its state allows and repeat a question until it is answered,
/// must end every reply with CRLF and every RETR or TOP with the one
/// `.` line, and must stay closed once closed. Returns the session's
/// questions and its `Close`, in order (for tests).
pub fn session(input: &[u8]) -> Vec<Action> {
    let mut asked = Vec::new();
    let [conf, steer, piece, stream @ ..] = input else { return asked };
    let cfg = SessionConfig { hostname: "fuzz.example".into(), plaintext_auth: conf & 1 != 0, stls: conf & 2 != 0 };
    let mut session = Session::new(cfg, conf & 4 != 0);
    let greeting = session.take_output();
    assert!(greeting.starts_with(b"+OK ") && greeting.ends_with(b"\r\n"));
    let maildrop = Maildrop {
        uidvalidity: 1700,
        messages: (0..u32::from(conf >> 3 & 7))
            .map(|i| MaildropEntry { uid: 3 * i + 2, size: BODIES[i as usize % BODIES.len()].len() as u64 })
            .collect(),
    };
    let mut steer = *steer;
    let piece = usize::from(*piece % 64) + 1;
    let mut chunks = stream.chunks(piece);
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(steps < 10 * input.len() + 1000, "no progress");
        steer = steer.rotate_left(1) ^ 0x5a;
        let action = session.poll();
        let state = session.state();
        match state {
            State::Authorization => assert!(session.user().is_none()),
            State::Transaction | State::Update => assert!(session.user().is_some()),
            State::Closed => assert_eq!(action, Action::Close),
        }
        let out = session.take_output();
        assert!(out.is_empty() || out.ends_with(b"\r\n"), "{:?}", out.escape_ascii().to_string());
        if action != Action::NeedInput {
            asked.push(action.clone());
        }
        if !matches!(action, Action::NeedInput | Action::Close) && steer & 0x80 != 0 {
            // Not answered, or answered as another question: asked again.
            wrong_answer(&mut session, &action);
            assert_eq!(session.poll(), action, "the same question until it is answered");
            assert_eq!(session.output_len(), 0);
        }
        match action {
            Action::NeedInput => match chunks.next() {
                Some(chunk) => session.feed(chunk),
                // The client hung up, was silent too long, or the server stops.
                None => match conf >> 6 {
                    0 => break,
                    1 => session.timeout(),
                    2 => session.shutdown(),
                    _ => session.close_with("bye"),
                },
            },
            Action::Close => {
                stays_closed(&mut session);
                break;
            }
            Action::StartTls => {
                assert!(state == State::Authorization && !session.tls());
                session.tls_established();
                assert!(session.tls());
            }
            Action::Authenticate { user, pass } => {
                assert_eq!(state, State::Authorization);
                assert!(!user.is_empty() && !pass.is_empty());
                match steer % 8 {
                    0 => session.auth_result(Err(AuthError::Credentials)),
                    1 => session.auth_result(Err(AuthError::Temporary)),
                    // Too many failed logins.
                    2 => session.close_with("[AUTH] invalid user name or password; too many failed logins"),
                    _ => session.auth_result(Ok(user.to_lowercase())),
                }
            }
            Action::LoadMaildrop { .. } => {
                assert_eq!(state, State::Authorization);
                let result = match steer % 8 {
                    0 => Err(MaildropError::InUse),
                    1 => Err(MaildropError::Temporary),
                    2 => Err(MaildropError::Missing),
                    _ => Ok(maildrop.clone()),
                };
                let opened = result.is_ok();
                session.maildrop_result(result);
                assert_eq!(session.state() == State::Transaction, opened);
            }
            Action::Retrieve { index, uid, top_lines } => {
                assert_eq!(state, State::Transaction);
                let entry = index.checked_sub(1).and_then(|i| maildrop.messages.get(i as usize));
                assert_eq!(entry.map(|e| e.uid), Some(uid), "message {index} is UID {uid}");
                let result = match steer % 6 {
                    0 => Err(RetrieveError::Gone),
                    1 => Err(RetrieveError::Temporary),
                    2 => Ok(stream.to_vec()),
                    n => Ok(BODIES[usize::from(n) % BODIES.len()].to_vec()),
                };
                let found = result.is_ok();
                session.retrieve_result(result);
                let reply = session.take_output();
                if found {
                    // One `.` line, the last: every other line was stuffed.
                    let end = reply.windows(5).position(|w| w == b"\r\n.\r\n");
                    assert_eq!(end, Some(reply.len() - 5), "{top_lines:?}: {:?}", reply.escape_ascii().to_string());
                    assert!(reply.starts_with(b"+OK "));
                } else {
                    assert!(reply.starts_with(b"-ERR ") && reply.ends_with(b"\r\n"));
                }
            }
            Action::Commit { deleted_uids, seen_uids } => {
                assert_eq!(state, State::Update);
                let known = |uid: &u32| maildrop.messages.iter().any(|m| m.uid == *uid);
                assert!(deleted_uids.iter().chain(&seen_uids).all(known), "only the maildrop's UIDs");
                assert!(deleted_uids.windows(2).all(|w| w[0] < w[1]) && seen_uids.windows(2).all(|w| w[0] < w[1]));
                assert!(
                    !deleted_uids.iter().any(|uid| seen_uids.contains(uid)),
                    "a deleted message is not marked seen"
                );
                session.commit_result(steer & 1 == 0);
                assert_eq!(session.state(), State::Closed);
            }
        }
        let out = session.take_output();
        assert!(out.is_empty() || out.ends_with(b"\r\n"), "{:?}", out.escape_ascii().to_string());
    }
    asked
}

/// Answers a question with the answer to another one (or not at all): the
/// session must ignore it.
fn wrong_answer(session: &mut Session, action: &Action) {
    match action {
        Action::StartTls => session.commit_result(true),
        Action::Authenticate { .. } => session.maildrop_result(Ok(Maildrop::default())),
        Action::LoadMaildrop { .. } => session.retrieve_result(Ok(b"x\r\n".to_vec())),
        Action::Retrieve { .. } => session.auth_result(Ok("someone".into())),
        Action::Commit { .. } => session.tls_established(),
        Action::NeedInput | Action::Close => {}
    }
}

/// Nothing the client or the edge does brings a closed session back.
fn stays_closed(session: &mut Session) {
    assert_eq!(session.state(), State::Closed);
    let _ = session.take_output();
    session.feed(b"CAPA\r\nUSER a\r\nPASS b\r\nSTLS\r\nQUIT\r\n");
    session.tls_established();
    session.auth_result(Ok("a".into()));
    session.maildrop_result(Ok(Maildrop::default()));
    session.retrieve_result(Ok(b"x".to_vec()));
    session.commit_result(true);
    session.timeout();
    session.shutdown();
    session.close_with("again");
    assert_eq!(session.poll(), Action::Close);
    assert_eq!(session.state(), State::Closed);
    assert!(session.take_output().is_empty(), "a closed session says nothing more");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client lines (and pieces of lines) of session/tests.rs.
    const PIECES: &[&str] = &[
        "USER alice@example.test\r\n",
        "user a\r\n",
        "PASS pw\r\n",
        "PASS a b \r\n",
        "AUTH\r\n",
        "AUTH PLAIN\r\n",
        "AUTH PLAIN AGFsaWNlAHB3\r\n",
        "AUTH PLAIN =\r\n",
        "AUTH LOGIN\r\n",
        "AGFsaWNlAHB3\r\n",
        "Ym9iAGFsaWNlAHB3\r\n",
        "*\r\n",
        "STLS\r\n",
        "CAPA\r\n",
        "STAT\r\n",
        "LIST\r\n",
        "LIST 1\r\n",
        "LIST 0\r\n",
        "UIDL\r\n",
        "UIDL 2\r\n",
        "RETR 1\r\n",
        "RETR 2\r\n",
        "RETR 4294967296\r\n",
        "TOP 1 0\r\n",
        "TOP 2 1\r\n",
        "TOP 1 99999999999\r\n",
        "DELE 1\r\n",
        "DELE 3\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "NOOP x\r\n",
        "QUIT\r\n",
        "APOP a b\r\n",
        "LIST  1\r\n",
        "\r\n",
        "\n",
        "\r",
        " ",
        "\0",
        "é",
        "1",
    ];

    /// Streams that reach TRANSACTION when the edge lets them.
    const LOGINS: &[&str] = &["USER a\r\nPASS pw\r\n", "AUTH PLAIN AGFsaWNlAHB3\r\n", "STLS\r\nUSER a\r\nPASS pw\r\n"];

    fn inputs() -> Vec<Vec<u8>> {
        let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        let long = "X".repeat(300);
        let very_long = "A".repeat(4100);
        let mut all = Vec::new();
        for round in 0..4000 {
            let mut input: Vec<u8> = (0..3).map(|_| rng.u8(..)).collect();
            if rng.usize(..8) == 0 {
                input.extend((0..rng.usize(..300)).map(|_| rng.u8(..)));
                all.push(input);
                continue;
            }
            if round % 2 == 0 {
                input.extend_from_slice(LOGINS[rng.usize(..LOGINS.len())].as_bytes());
            }
            for _ in 0..rng.usize(..20) + 1 {
                match rng.usize(..40) {
                    0 => input.extend_from_slice(long.as_bytes()),
                    1 => input.extend_from_slice(very_long.as_bytes()),
                    2..=5 => input.push(rng.u8(..)),
                    _ => input.extend_from_slice(PIECES[rng.usize(..PIECES.len())].as_bytes()),
                }
            }
            all.push(input);
        }
        all
    }

    #[test]
    fn session_checks_hold() {
        for input in inputs() {
            session(&input);
        }
    }

    #[test]
    fn scripted_sessions_reach_every_question() {
        let script = b"STLS\r\nUSER a\r\nPASS pw\r\nLIST\r\nRETR 1\r\nTOP 2 0\r\nDELE 2\r\nQUIT\r\n";
        let mut asked = Vec::new();
        for steer in 0..=255 {
            // STLS on offer; two messages; the client hangs up, or the
            // edge times out, stops or closes at the end.
            for conf in [0b0001_0010, 0b0101_0011, 0b1001_0110, 0b1101_0111] {
                let mut input = vec![conf, steer, steer];
                input.extend_from_slice(script);
                asked.extend(session(&input));
            }
        }
        let count = |f: fn(&Action) -> bool| asked.iter().filter(|a| f(a)).count();
        assert!(count(|a| *a == Action::StartTls) > 0);
        assert!(count(|a| matches!(a, Action::Authenticate { .. })) > 0);
        assert!(count(|a| matches!(a, Action::LoadMaildrop { .. })) > 0);
        assert!(count(|a| matches!(a, Action::Retrieve { index: 1, uid: 2, top_lines: None })) > 0);
        assert!(count(|a| matches!(a, Action::Retrieve { index: 2, uid: 5, top_lines: Some(0) })) > 0);
        assert!(count(|a| matches!(a, Action::Commit { deleted_uids, .. } if deleted_uids == &[5])) > 0);
        assert!(count(|a| *a == Action::Close) > 0);
    }
}
