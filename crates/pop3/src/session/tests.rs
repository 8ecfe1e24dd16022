//! The session byte by byte: every command, bad input, state errors, and
//! the answers to every action.

use std::collections::HashMap;

use super::*;

fn cfg() -> SessionConfig {
    SessionConfig { hostname: "pop.example.test".into(), plaintext_auth: false, stls: true }
}

/// The edge, scripted: credentials, a maildrop, bodies, and what happened.
struct Fake {
    password: &'static str,
    maildrop: Result<Maildrop, MaildropError>,
    auth_error: Option<AuthError>,
    bodies: HashMap<u32, Vec<u8>>,
    commits: Vec<(Vec<u32>, Vec<u32>)>,
    commit_ok: bool,
    actions: Vec<Action>,
}

const M1: &str = "From: a@example.test\r\nSubject: one\r\n\r\nline 1\r\n.starts with a dot\r\nline 3\r\n";
const M2: &str = "Subject: two\r\n\r\nbody\r\n";
const M3: &str = "Subject: three\n\nbare LF body\n..two dots\nlast line without end";

impl Fake {
    fn new() -> Fake {
        let bodies: HashMap<u32, Vec<u8>> =
            [(3, M1), (5, M2), (9, M3)].into_iter().map(|(u, b)| (u, b.as_bytes().to_vec())).collect();
        let messages =
            [3, 5, 9].into_iter().map(|uid| MaildropEntry { uid, size: bodies[&uid].len() as u64 }).collect();
        Fake {
            password: "pw",
            maildrop: Ok(Maildrop { uidvalidity: 1700, messages }),
            auth_error: None,
            bodies,
            commits: Vec::new(),
            commit_ok: true,
            actions: Vec::new(),
        }
    }

    /// Feed `input`, answer every question, stop at NeedInput, StartTls or
    /// Close; the output as text.
    fn run(&mut self, s: &mut Session, input: &str) -> String {
        self.run_bytes(s, input.as_bytes())
    }

    fn run_bytes(&mut self, s: &mut Session, input: &[u8]) -> String {
        s.feed(input);
        loop {
            let a = s.poll();
            self.actions.push(a.clone());
            match a {
                Action::NeedInput | Action::StartTls | Action::Close => break,
                Action::Authenticate { user, pass } => {
                    let r = match self.auth_error {
                        Some(e) => Err(e),
                        None if pass == self.password => Ok(user.to_lowercase()),
                        None => Err(AuthError::Credentials),
                    };
                    s.auth_result(r);
                }
                Action::LoadMaildrop { .. } => s.maildrop_result(self.maildrop.clone()),
                Action::Retrieve { uid, .. } => {
                    s.retrieve_result(self.bodies.get(&uid).cloned().ok_or(RetrieveError::Gone))
                }
                Action::Commit { deleted_uids, seen_uids } => {
                    self.commits.push((deleted_uids, seen_uids));
                    s.commit_result(self.commit_ok);
                }
            }
        }
        String::from_utf8(s.take_output()).unwrap()
    }

    fn last_action(&self) -> &Action {
        self.actions.last().unwrap()
    }
}

fn tls_session() -> Session {
    let mut s = Session::new(cfg(), true);
    s.take_output();
    s
}

/// A session under TLS, logged in as alice with M1, M2, M3.
fn logged_in(f: &mut Fake) -> Session {
    let mut s = tls_session();
    let out = f.run(&mut s, "USER Alice@example.test\r\nPASS pw\r\n");
    assert!(out.ends_with("+OK alice@example.test has 3 messages (157 octets)\r\n"), "{out}");
    assert_eq!(s.state(), State::Transaction);
    s
}

#[test]
fn greeting() {
    let mut s = Session::new(cfg(), false);
    let out = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(out, "+OK pop.example.test facteur POP3 server ready\r\n");
    assert_eq!(s.state(), State::Authorization);
    assert_eq!(s.poll(), Action::NeedInput);
}

#[test]
fn capa_without_tls_offers_stls_but_no_login() {
    let mut f = Fake::new();
    let mut s = Session::new(cfg(), false);
    s.take_output();
    let out = f.run(&mut s, "CAPA\r\n");
    assert_eq!(
        out,
        "+OK capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION facteur\r\n.\r\n"
    );
    // Without a certificate, no STLS either.
    let mut s = Session::new(SessionConfig { stls: false, ..cfg() }, false);
    s.take_output();
    assert!(!f.run(&mut s, "capa\r\n").contains("STLS"));
}

#[test]
fn capa_under_tls_and_in_transaction() {
    let mut f = Fake::new();
    let mut s = tls_session();
    let out = f.run(&mut s, "CAPA\r\n");
    assert!(out.contains("\r\nUSER\r\nSASL PLAIN\r\n"), "{out}");
    assert!(!out.contains("STLS"), "{out}");
    let mut s = logged_in(&mut f);
    let out = f.run(&mut s, "CAPA\r\n");
    assert!(out.starts_with("+OK") && out.ends_with("\r\n.\r\n"), "{out}");
    assert!(!out.contains("USER") && !out.contains("SASL") && !out.contains("STLS"), "{out}");
    assert!(out.contains("\r\nTOP\r\nUIDL\r\n") && out.contains("\r\nPIPELINING\r\n"), "{out}");
}

#[test]
fn capa_with_plaintext_auth_offers_user_without_tls() {
    let mut f = Fake::new();
    let mut s = Session::new(SessionConfig { plaintext_auth: true, ..cfg() }, false);
    s.take_output();
    let out = f.run(&mut s, "CAPA\r\n");
    assert!(out.contains("\r\nUSER\r\nSASL PLAIN\r\nSTLS\r\n"), "{out}");
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\n");
    assert!(out.ends_with("+OK alice@example.test has 3 messages (157 octets)\r\n"), "{out}");
}

#[test]
fn login_refused_without_tls() {
    let mut f = Fake::new();
    let mut s = Session::new(cfg(), false);
    s.take_output();
    for cmd in ["USER alice@example.test", "PASS pw", "AUTH PLAIN", "AUTH PLAIN AGFsaWNlAHB3", "AUTH"] {
        let out = f.run(&mut s, &format!("{cmd}\r\n"));
        assert!(out.starts_with("-ERR [AUTH] ") && out.contains("STLS"), "{cmd}: {out}");
    }
    assert!(!f.actions.iter().any(|a| matches!(a, Action::Authenticate { .. })));
    assert_eq!(s.state(), State::Authorization);
}

#[test]
fn user_pass_ok_and_case_insensitive() {
    let mut f = Fake::new();
    let mut s = tls_session();
    assert_eq!(f.run(&mut s, "user alice@example.test\r\n"), "+OK send PASS\r\n");
    let out = f.run(&mut s, "pAsS pw\r\n");
    assert_eq!(out, "+OK alice@example.test has 3 messages (157 octets)\r\n");
    assert_eq!(s.user(), Some("alice@example.test"));
    assert!(f.actions.contains(&Action::Authenticate { user: "alice@example.test".into(), pass: "pw".into() }));
    assert!(f.actions.contains(&Action::LoadMaildrop { user: "alice@example.test".into() }));
}

#[test]
fn bad_password_then_retry() {
    let mut f = Fake::new();
    let mut s = tls_session();
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS wrong\r\n");
    assert_eq!(out, "+OK send PASS\r\n-ERR [AUTH] invalid user name or password\r\n");
    assert_eq!(s.state(), State::Authorization);
    // The USER is spent: PASS alone is refused.
    assert_eq!(f.run(&mut s, "PASS pw\r\n"), "-ERR PASS must come right after USER\r\n");
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\n");
    assert!(out.ends_with("has 3 messages (157 octets)\r\n"), "{out}");
}

#[test]
fn pass_must_follow_user() {
    let mut f = Fake::new();
    let mut s = tls_session();
    assert_eq!(f.run(&mut s, "PASS pw\r\n"), "-ERR PASS must come right after USER\r\n");
    let out = f.run(&mut s, "USER alice@example.test\r\nCAPA\r\nPASS pw\r\n");
    assert!(out.ends_with("-ERR PASS must come right after USER\r\n"), "{out}");
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS\r\n");
    assert!(out.ends_with("-ERR syntax error: PASS takes the password\r\n"), "{out}");
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS \r\n");
    assert!(out.ends_with("-ERR syntax error: PASS takes the password\r\n"), "{out}");
    assert_eq!(f.run(&mut s, "USER\r\n"), "-ERR syntax error: USER takes 1 argument\r\n");
    assert_eq!(f.run(&mut s, "USER a b\r\n"), "-ERR syntax error: USER takes 1 argument\r\n");
}

#[test]
fn password_with_spaces_is_kept_whole() {
    let mut f = Fake::new();
    f.password = "correct horse  battery";
    let mut s = tls_session();
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS correct horse  battery\r\n");
    assert!(out.ends_with("has 3 messages (157 octets)\r\n"), "{out}");
}

#[test]
fn auth_plain_initial_response() {
    let mut f = Fake::new();
    let mut s = tls_session();
    let token = STANDARD.encode("\0alice@example.test\0pw");
    let out = f.run(&mut s, &format!("AUTH PLAIN {token}\r\n"));
    assert_eq!(out, "+OK alice@example.test has 3 messages (157 octets)\r\n");
    // An authzid equal to the user is fine.
    let mut s = tls_session();
    let token = STANDARD.encode("alice@example.test\0alice@example.test\0pw");
    assert!(f.run(&mut s, &format!("auth plain {token}\r\n")).starts_with("+OK"));
}

#[test]
fn auth_plain_continuation() {
    let mut f = Fake::new();
    let mut s = tls_session();
    assert_eq!(f.run(&mut s, "AUTH PLAIN\r\n"), "+ \r\n");
    let token = STANDARD.encode("\0alice@example.test\0pw");
    let out = f.run(&mut s, &format!("{token}\r\n"));
    assert_eq!(out, "+OK alice@example.test has 3 messages (157 octets)\r\n");
}

#[test]
fn auth_plain_failures() {
    let mut f = Fake::new();
    let mut s = tls_session();
    assert_eq!(f.run(&mut s, "AUTH PLAIN\r\n*\r\n"), "+ \r\n-ERR authentication cancelled\r\n");
    assert_eq!(f.run(&mut s, "AUTH PLAIN\r\n!!!\r\n"), "+ \r\n-ERR malformed base64 in the SASL response\r\n");
    assert!(f.run(&mut s, "AUTH PLAIN =\r\n").starts_with("-ERR malformed PLAIN response"));
    let t = STANDARD.encode("alice@example.test\0pw");
    assert!(f.run(&mut s, &format!("AUTH PLAIN {t}\r\n")).starts_with("-ERR malformed PLAIN response"));
    let t = STANDARD.encode("\0alice@example.test\0");
    assert!(f.run(&mut s, &format!("AUTH PLAIN {t}\r\n")).starts_with("-ERR malformed PLAIN response: empty"));
    let t = STANDARD.encode(b"\0\xff\0pw");
    assert!(f.run(&mut s, &format!("AUTH PLAIN {t}\r\n")).starts_with("-ERR malformed PLAIN response: not UTF-8"));
    let t = STANDARD.encode("bob@example.test\0alice@example.test\0pw");
    assert_eq!(f.run(&mut s, &format!("AUTH PLAIN {t}\r\n")), "-ERR [AUTH] cannot act as another user\r\n");
    let t = STANDARD.encode("\0alice@example.test\0nope");
    assert_eq!(f.run(&mut s, &format!("AUTH PLAIN {t}\r\n")), "-ERR [AUTH] invalid user name or password\r\n");
    assert!(f.run(&mut s, "AUTH CRAM-MD5\r\n").starts_with("-ERR unsupported authentication mechanism"));
    assert_eq!(f.run(&mut s, "AUTH PLAIN a b\r\n"), "-ERR syntax error: AUTH takes 0 to 2 arguments\r\n");
    // After all that, still in AUTHORIZATION, and the session goes on.
    assert_eq!(s.state(), State::Authorization);
    assert_eq!(f.run(&mut s, "AUTH\r\n"), "+OK supported mechanisms follow\r\nPLAIN\r\n.\r\n");
}

#[test]
fn auth_response_line_limit() {
    let mut f = Fake::new();
    let mut s = tls_session();
    f.run(&mut s, "AUTH PLAIN\r\n");
    let long = "A".repeat(MAX_AUTH_LINE + 10);
    let out = f.run(&mut s, &format!("{long}\r\nNOOP\r\n"));
    assert!(out.starts_with("-ERR line too long: at most 4096 octets"), "{out}");
    // Back to commands: NOOP is read as a command (refused in this state).
    assert!(out.ends_with("-ERR NOOP is valid only in the TRANSACTION state: log in first\r\n"), "{out}");
}

#[test]
fn apop_not_supported() {
    let mut f = Fake::new();
    let mut s = tls_session();
    let out = f.run(&mut s, "APOP alice@example.test c4c9334bac560ecc979e58001b3e22fb\r\n");
    assert!(out.starts_with("-ERR APOP is not supported"), "{out}");
}

#[test]
fn maildrop_errors_keep_authorization() {
    for (e, text) in [
        (MaildropError::InUse, "-ERR [IN-USE] the maildrop is open in another POP3 session\r\n"),
        (MaildropError::Temporary, "-ERR [SYS/TEMP] cannot open the maildrop now; try again later\r\n"),
        (MaildropError::Missing, "-ERR [SYS/PERM] this user has no INBOX\r\n"),
    ] {
        let mut f = Fake::new();
        f.maildrop = Err(e);
        let mut s = tls_session();
        let out = f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\n");
        assert!(out.ends_with(text), "{out}");
        assert_eq!(s.state(), State::Authorization);
        assert_eq!(s.user(), None);
        assert!(f.run(&mut s, "STAT\r\n").starts_with("-ERR STAT is valid only in the TRANSACTION state"));
        // It may be tried again.
        f.maildrop = Fake::new().maildrop;
        assert!(f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\n").ends_with("(157 octets)\r\n"));
    }
}

#[test]
fn auth_temporary_failure() {
    let mut f = Fake::new();
    f.auth_error = Some(AuthError::Temporary);
    let mut s = tls_session();
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\n");
    assert!(out.ends_with("-ERR [SYS/TEMP] cannot check credentials now; try again later\r\n"), "{out}");
}

#[test]
fn empty_maildrop() {
    let mut f = Fake::new();
    f.maildrop = Ok(Maildrop { uidvalidity: 1, messages: vec![] });
    let mut s = tls_session();
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n");
    assert_eq!(
        out,
        "+OK send PASS\r\n+OK alice@example.test has 0 messages (0 octets)\r\n+OK 0 0\r\n\
         +OK 0 messages (0 octets)\r\n.\r\n+OK unique-id listing follows\r\n.\r\n-ERR no such message\r\n"
    );
}

#[test]
fn stat_and_list() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    assert_eq!(f.run(&mut s, "STAT\r\n"), "+OK 3 157\r\n");
    let (a, b, c) = (M1.len(), M2.len(), M3.len());
    assert_eq!(f.run(&mut s, "LIST\r\n"), format!("+OK 3 messages (157 octets)\r\n1 {a}\r\n2 {b}\r\n3 {c}\r\n.\r\n"));
    assert_eq!(f.run(&mut s, "LIST 2\r\n"), format!("+OK 2 {b}\r\n"));
    assert_eq!(f.run(&mut s, "list 3\r\n"), format!("+OK 3 {c}\r\n"));
    assert_eq!(f.run(&mut s, "LIST 4\r\n"), "-ERR no such message\r\n");
    assert_eq!(f.run(&mut s, "LIST 0\r\n"), "-ERR no such message\r\n");
    assert_eq!(f.run(&mut s, "LIST 99999999999999999999\r\n"), "-ERR no such message\r\n");
    assert_eq!(f.run(&mut s, "LIST x\r\n"), "-ERR syntax error: a message number is a decimal number\r\n");
    assert_eq!(f.run(&mut s, "LIST -1\r\n"), "-ERR syntax error: a message number is a decimal number\r\n");
    assert_eq!(f.run(&mut s, "LIST 1 2\r\n"), "-ERR syntax error: LIST takes 0 to 1 arguments\r\n");
    assert_eq!(f.run(&mut s, "STAT 1\r\n"), "-ERR syntax error: STAT takes no argument\r\n");
}

#[test]
fn uidl_is_uidvalidity_dot_uid() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    assert_eq!(f.run(&mut s, "UIDL\r\n"), "+OK unique-id listing follows\r\n1 1700.3\r\n2 1700.5\r\n3 1700.9\r\n.\r\n");
    assert_eq!(f.run(&mut s, "UIDL 3\r\n"), "+OK 3 1700.9\r\n");
    assert_eq!(f.run(&mut s, "UIDL 4\r\n"), "-ERR no such message\r\n");
}

#[test]
fn retr_byte_stuffs_and_reports_stored_size() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    let out = f.run(&mut s, "RETR 1\r\n");
    assert_eq!(
        out,
        format!(
            "+OK {} octets\r\nFrom: a@example.test\r\nSubject: one\r\n\r\nline 1\r\n..starts with a dot\r\nline 3\r\n.\r\n",
            M1.len()
        )
    );
    assert!(matches!(f.last_action(), Action::NeedInput));
    assert!(f.actions.contains(&Action::Retrieve { index: 1, uid: 3, top_lines: None }));
    // Bare LF becomes CRLF; a last line without an end gets one.
    let out = f.run(&mut s, "RETR 3\r\n");
    assert_eq!(
        out,
        format!(
            "+OK {} octets\r\nSubject: three\r\n\r\nbare LF body\r\n...two dots\r\nlast line without end\r\n.\r\n",
            M3.len()
        )
    );
    assert_eq!(f.run(&mut s, "RETR\r\n"), "-ERR syntax error: RETR takes 1 argument\r\n");
    assert_eq!(f.run(&mut s, "RETR 1 2\r\n"), "-ERR syntax error: RETR takes 1 argument\r\n");
    assert_eq!(f.run(&mut s, "RETR 7\r\n"), "-ERR no such message\r\n");
}

#[test]
fn retr_of_a_message_removed_meanwhile() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    f.bodies.remove(&5);
    assert_eq!(f.run(&mut s, "RETR 2\r\n"), "-ERR message 2 was removed by another session\r\n");
    let mut s2 = logged_in(&mut f);
    s2.feed(b"TOP 1 0\r\n");
    assert!(matches!(s2.poll(), Action::Retrieve { index: 1, uid: 3, top_lines: Some(0) }));
    s2.retrieve_result(Err(RetrieveError::Temporary));
    assert_eq!(s2.take_output(), b"-ERR [SYS/TEMP] cannot read the message now; try again later\r\n");
    assert_eq!(s2.poll(), Action::NeedInput);
}

#[test]
fn top_headers_blank_line_and_body_lines() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    let head = "+OK top of message follows\r\nFrom: a@example.test\r\nSubject: one\r\n\r\n";
    assert_eq!(f.run(&mut s, "TOP 1 0\r\n"), format!("{head}.\r\n"));
    assert_eq!(f.run(&mut s, "TOP 1 1\r\n"), format!("{head}line 1\r\n.\r\n"));
    assert_eq!(f.run(&mut s, "TOP 1 2\r\n"), format!("{head}line 1\r\n..starts with a dot\r\n.\r\n"));
    let all = format!("{head}line 1\r\n..starts with a dot\r\nline 3\r\n.\r\n");
    assert_eq!(f.run(&mut s, "TOP 1 3\r\n"), all);
    assert_eq!(f.run(&mut s, "TOP 1 99999999999\r\n"), all);
    assert_eq!(
        f.run(&mut s, "TOP 3 1\r\n"),
        "+OK top of message follows\r\nSubject: three\r\n\r\nbare LF body\r\n.\r\n"
    );
    assert_eq!(f.run(&mut s, "TOP 1\r\n"), "-ERR syntax error: TOP takes 2 arguments\r\n");
    assert_eq!(
        f.run(&mut s, "TOP 1 x\r\n"),
        "-ERR syntax error: the number of lines must be a non-negative number\r\n"
    );
    assert_eq!(f.run(&mut s, "TOP 4 1\r\n"), "-ERR no such message\r\n");
    // TOP does not count as reading the message.
    f.run(&mut s, "QUIT\r\n");
    assert_eq!(f.commits, vec![(vec![], vec![])]);
}

#[test]
fn top_of_headers_only_message() {
    assert_eq!(top(b"Subject: x\r\nFrom: y\r\n", 5), b"Subject: x\r\nFrom: y\r\n");
    assert_eq!(top(b"Subject: x\r\n\r\n", 0), b"Subject: x\r\n\r\n");
    assert_eq!(top(b"", 3), b"");
    assert_eq!(top(b"A: b\r\n\r\nx\r\ny", 2), b"A: b\r\n\r\nx\r\ny");
}

#[test]
fn stuffing_edge_cases() {
    let mut out = Vec::new();
    write_stuffed(&mut out, b"");
    assert_eq!(out, b".\r\n");
    let mut out = Vec::new();
    write_stuffed(&mut out, b".\r\n");
    assert_eq!(out, b"..\r\n.\r\n");
    let mut out = Vec::new();
    write_stuffed(&mut out, b"a\r\n\r\n.\r\n\r\n");
    assert_eq!(out, b"a\r\n\r\n..\r\n\r\n.\r\n");
}

#[test]
fn dele_hides_and_rset_restores() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    assert_eq!(f.run(&mut s, "DELE 2\r\n"), "+OK message 2 deleted\r\n");
    assert_eq!(f.run(&mut s, "DELE 2\r\n"), "-ERR message 2 already deleted\r\n");
    let (a, c) = (M1.len(), M3.len());
    assert_eq!(f.run(&mut s, "STAT\r\n"), format!("+OK 2 {}\r\n", a + c));
    assert_eq!(f.run(&mut s, "LIST\r\n"), format!("+OK 2 messages ({} octets)\r\n1 {a}\r\n3 {c}\r\n.\r\n", a + c));
    assert_eq!(f.run(&mut s, "UIDL\r\n"), "+OK unique-id listing follows\r\n1 1700.3\r\n3 1700.9\r\n.\r\n");
    for cmd in ["LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2"] {
        assert_eq!(f.run(&mut s, &format!("{cmd}\r\n")), "-ERR message 2 already deleted\r\n", "{cmd}");
    }
    assert_eq!(f.run(&mut s, "RSET\r\n"), "+OK maildrop has 3 messages (157 octets)\r\n");
    assert_eq!(f.run(&mut s, "LIST 2\r\n"), format!("+OK 2 {}\r\n", M2.len()));
    assert_eq!(f.run(&mut s, "RSET x\r\n"), "-ERR syntax error: RSET takes no argument\r\n");
    assert_eq!(f.run(&mut s, "DELE\r\n"), "-ERR syntax error: DELE takes 1 argument\r\n");
    assert_eq!(f.run(&mut s, "DELE 0\r\n"), "-ERR no such message\r\n");
}

#[test]
fn quit_commits_deletions_and_seen() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    let out = f.run(&mut s, "RETR 1\r\nRETR 2\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n");
    assert!(out.ends_with("+OK pop.example.test facteur POP3 signing off (1 message left)\r\n"), "{out}");
    assert_eq!(f.commits, vec![(vec![5, 9], vec![3])]);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.poll(), Action::Close);
    // Input after QUIT is ignored.
    s.feed(b"STAT\r\n");
    assert_eq!(s.poll(), Action::Close);
    assert!(s.take_output().is_empty());
}

#[test]
fn quit_in_update_state_waits_for_the_commit() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    s.feed(b"DELE 1\r\nQUIT\r\nNOOP\r\n");
    let a = s.poll();
    assert_eq!(a, Action::Commit { deleted_uids: vec![3], seen_uids: vec![] });
    assert_eq!(s.state(), State::Update);
    // Asked again without an answer: the same question.
    assert_eq!(s.poll(), a);
    s.commit_result(false);
    assert_eq!(s.poll(), Action::Close);
    let out = String::from_utf8(s.take_output()).unwrap();
    assert_eq!(out, "+OK message 1 deleted\r\n-ERR [SYS/TEMP] some deleted messages not removed\r\n");
}

#[test]
fn quit_in_authorization_deletes_nothing() {
    let mut f = Fake::new();
    let mut s = tls_session();
    assert_eq!(f.run(&mut s, "QUIT\r\n"), "+OK pop.example.test facteur POP3 signing off\r\n");
    assert_eq!(f.last_action(), &Action::Close);
    assert!(f.commits.is_empty());
    let mut s = tls_session();
    assert_eq!(f.run(&mut s, "QUIT now\r\n"), "-ERR syntax error: QUIT takes no argument\r\n");
}

#[test]
fn timeout_shutdown_and_close_delete_nothing() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    f.run(&mut s, "DELE 1\r\n");
    s.timeout();
    assert_eq!(s.poll(), Action::Close);
    assert_eq!(s.take_output(), b"-ERR autologout: idle for too long; no messages deleted\r\n");
    let mut s = logged_in(&mut f);
    s.shutdown();
    assert_eq!(s.poll(), Action::Close);
    assert!(s.take_output().starts_with(b"-ERR [SYS/TEMP] server shutting down"));
    let mut s = tls_session();
    s.close_with("[AUTH] too many failed logins");
    s.close_with("twice");
    assert_eq!(s.take_output(), b"-ERR [AUTH] too many failed logins\r\n");
    assert!(f.commits.is_empty());
}

#[test]
fn noop() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    assert_eq!(f.run(&mut s, "NOOP\r\n"), "+OK \r\n");
    assert_eq!(f.run(&mut s, "NOOP x\r\n"), "-ERR syntax error: NOOP takes no argument\r\n");
}

#[test]
fn state_errors() {
    let mut f = Fake::new();
    let mut s = tls_session();
    for cmd in ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "UIDL 1"] {
        let kw = cmd.split(' ').next().unwrap();
        assert_eq!(
            f.run(&mut s, &format!("{cmd}\r\n")),
            format!("-ERR {kw} is valid only in the TRANSACTION state: log in first\r\n")
        );
    }
    let mut s = logged_in(&mut f);
    for cmd in ["USER bob@example.test", "PASS pw", "AUTH PLAIN", "STLS"] {
        let kw = cmd.split(' ').next().unwrap();
        assert_eq!(
            f.run(&mut s, &format!("{cmd}\r\n")),
            format!("-ERR {kw} is not valid in the TRANSACTION state: already logged in\r\n")
        );
    }
    assert_eq!(s.state(), State::Transaction);
    assert_eq!(s.user(), Some("alice@example.test"));
}

#[test]
fn bad_syntax_gets_err_and_the_session_goes_on() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    let cases: [(&[u8], &str); 9] = [
        (b"\r\n", "-ERR empty command line\r\n"),
        (b"XYZZY\r\n", "-ERR unknown command\r\n"),
        (b"STATUS\r\n", "-ERR unknown command\r\n"),
        (b"LIST  1\r\n", "-ERR syntax error: arguments are separated by single spaces (RFC 1939 \u{a7}3)\r\n"),
        (b"LIST 1 \r\n", "-ERR syntax error: arguments are separated by single spaces (RFC 1939 \u{a7}3)\r\n"),
        (b"STAT \r\n", "-ERR syntax error: arguments are separated by single spaces (RFC 1939 \u{a7}3)\r\n"),
        (b"LIST\t1\r\n", "-ERR control characters in command line\r\n"),
        (b"LI\0ST\r\n", "-ERR control characters in command line\r\n"),
        (b"LIST \xff\xfe\r\n", "-ERR command line is not valid UTF-8\r\n"),
    ];
    for (input, want) in cases {
        assert_eq!(f.run_bytes(&mut s, input), want, "{input:?}");
    }
    // A bare CR inside the line is a control character too.
    assert_eq!(f.run(&mut s, "STAT\rSTAT\r\n"), "-ERR control characters in command line\r\n");
    assert_eq!(f.run(&mut s, "STAT\r\n"), "+OK 3 157\r\n");
}

#[test]
fn bare_lf_line_ends_are_accepted() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    assert_eq!(f.run(&mut s, "STAT\nUIDL 1\n"), "+OK 3 157\r\n+OK 1 1700.3\r\n");
}

#[test]
fn line_limit_is_255_with_crlf() {
    let mut f = Fake::new();
    let mut s = tls_session();
    // 253 + CRLF = 255: accepted (an unknown command, but read as one).
    let ok = format!("X{}\r\n", "y".repeat(252));
    assert_eq!(ok.len(), 255);
    assert_eq!(f.run(&mut s, &ok), "-ERR unknown command\r\n");
    let long = format!("X{}\r\n", "y".repeat(253));
    assert_eq!(f.run(&mut s, &long), "-ERR line too long: at most 255 octets with CRLF (RFC 2449 \u{a7}4)\r\n");
    // Fed in pieces, far beyond the limit: one -ERR at its end, nothing read as commands.
    assert_eq!(f.run(&mut s, &"QUIT\r".repeat(100)), "");
    assert_eq!(f.run(&mut s, &"Q".repeat(5000)), "");
    assert!(s.input.len() < 2 * MAX_COMMAND_LINE, "the buffer stays small");
    assert_eq!(
        f.run(&mut s, "UIT\r\nCAPA\r\n").lines().next(),
        Some("-ERR line too long: at most 255 octets with CRLF (RFC 2449 \u{a7}4)")
    );
    assert_eq!(s.state(), State::Authorization);
    // A long line spends a pending USER.
    let out = f.run(&mut s, &format!("USER alice@example.test\r\n{long}PASS pw\r\n"));
    assert!(out.ends_with("-ERR PASS must come right after USER\r\n"), "{out}");
}

#[test]
fn partial_lines_wait_for_their_end() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    assert_eq!(f.run(&mut s, "ST"), "");
    assert_eq!(f.last_action(), &Action::NeedInput);
    assert_eq!(f.run(&mut s, "AT\r"), "");
    assert_eq!(f.run(&mut s, "\nLIS"), "+OK 3 157\r\n");
    assert_eq!(f.run(&mut s, "T 1\r\n"), format!("+OK 1 {}\r\n", M1.len()));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut f = Fake::new();
    let mut s = tls_session();
    let out =
        f.run(&mut s, "CAPA\r\nUSER alice@example.test\r\nPASS pw\r\nSTAT\r\nUIDL 2\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n");
    let want = "+OK send PASS\r\n+OK alice@example.test has 3 messages (157 octets)\r\n+OK 3 157\r\n+OK 2 1700.5\r\n\
                +OK top of message follows\r\nSubject: two\r\n\r\n.\r\n+OK message 1 deleted\r\n\
                +OK pop.example.test facteur POP3 signing off (2 messages left)\r\n";
    assert!(out.starts_with("+OK capability list follows\r\n"), "{out}");
    assert!(out.ends_with(want), "{out}");
    assert_eq!(f.commits, vec![(vec![3], vec![])]);
}

#[test]
fn stls_discards_pipelined_input() {
    let mut f = Fake::new();
    let mut s = Session::new(cfg(), false);
    s.take_output();
    let out = f.run(&mut s, "USER alice@example.test\r\n");
    assert!(out.starts_with("-ERR [AUTH]"), "{out}");
    let out = f.run(&mut s, "STLS\r\nUSER alice@example.test\r\nPASS pw\r\n");
    assert_eq!(out, "+OK begin TLS negotiation\r\n");
    assert_eq!(f.last_action(), &Action::StartTls);
    // Until the handshake is done, nothing else happens.
    s.feed(b"STAT\r\n");
    assert_eq!(s.poll(), Action::StartTls);
    s.tls_established();
    assert!(s.tls());
    // What was sent before the handshake is gone: PASS alone is refused.
    assert_eq!(s.poll(), Action::NeedInput);
    assert!(s.take_output().is_empty());
    assert_eq!(f.run(&mut s, "PASS pw\r\n"), "-ERR PASS must come right after USER\r\n");
    assert_eq!(f.run(&mut s, "STLS\r\n"), "-ERR already under TLS\r\n");
    let out = f.run(&mut s, "USER alice@example.test\r\nPASS pw\r\n");
    assert!(out.ends_with("(157 octets)\r\n"), "{out}");
    // tls_established without STLS does nothing.
    s.tls_established();
    assert_eq!(s.state(), State::Transaction);
}

#[test]
fn stls_not_available_without_certificate() {
    let mut f = Fake::new();
    let mut s = Session::new(SessionConfig { stls: false, ..cfg() }, false);
    s.take_output();
    assert_eq!(f.run(&mut s, "STLS\r\n"), "-ERR STLS is not available\r\n");
    assert_eq!(f.run(&mut s, "STLS x\r\n"), "-ERR syntax error: STLS takes no argument\r\n");
}

#[test]
fn answers_without_a_question_are_ignored() {
    let mut f = Fake::new();
    let mut s = logged_in(&mut f);
    s.auth_result(Ok("mallory@example.test".into()));
    s.maildrop_result(Ok(Maildrop::default()));
    s.retrieve_result(Ok(b"x".to_vec()));
    s.commit_result(true);
    assert!(s.take_output().is_empty());
    assert_eq!(s.user(), Some("alice@example.test"));
    assert_eq!(f.run(&mut s, "STAT\r\n"), "+OK 3 157\r\n");
}

#[test]
fn debug_never_shows_the_password() {
    let a = Action::Authenticate { user: "alice@example.test".into(), pass: "hunter2".into() };
    let d = format!("{a:?}");
    assert!(d.contains("alice@example.test") && !d.contains("hunter2"), "{d}");
    let mut s = tls_session();
    s.feed(b"USER alice@example.test\r\nPASS hunter2\r\n");
    let _ = s.poll();
    assert!(!format!("{s:?}").contains("hunter2"));
}
