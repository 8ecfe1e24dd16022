//! POP3 over real TCP: CAPA, TLS (STLS and implicit), USER/PASS and AUTH
//! PLAIN, every transaction command on mail delivered over SMTP, deletions
//! at QUIT (and only then), the IMAP view of them, pipelining, bad syntax,
//! the maildrop lock, and each limit.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Client, PASSWORD, Stream, TestServer, test_config, tls_connector};
use facteur_store::{FlagOp, prelude::*};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ALICE: &str = "alice@example.test";

struct Pop {
    io: BufReader<Box<dyn Stream>>,
}

impl Pop {
    async fn connect(addr: std::net::SocketAddr) -> Pop {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut p = Pop { io: BufReader::new(Box::new(s)) };
        let greeting = p.line().await;
        assert_eq!(greeting, "+OK mx.example.test facteur POP3 server ready");
        p
    }

    async fn connect_tls(addr: std::net::SocketAddr) -> Pop {
        let s = TcpStream::connect(addr).await.unwrap();
        let tls = tls_connector().connect("localhost".try_into().unwrap(), s).await.unwrap();
        let mut p = Pop { io: BufReader::new(Box::new(tls)) };
        assert!(p.line().await.starts_with("+OK "));
        p
    }

    /// STLS, then the TLS handshake on the same connection.
    async fn stls(mut self) -> Pop {
        assert_eq!(self.cmd("STLS").await, "+OK begin TLS negotiation");
        assert!(self.io.buffer().is_empty());
        let raw = self.io.into_inner();
        let tls = tls_connector().connect("localhost".try_into().unwrap(), raw).await.unwrap();
        Pop { io: BufReader::new(Box::new(tls)) }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// One reply line without its CRLF; panics on EOF or 10 s of silence.
    async fn line(&mut self) -> String {
        self.try_line().await.expect("connection closed while waiting for a reply")
    }

    async fn try_line(&mut self) -> Option<String> {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut l))
            .await
            .expect("no reply within 10 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        assert!(l.ends_with("\r\n"), "reply line without CRLF: {l:?}");
        l.truncate(l.len() - 2);
        Some(l)
    }

    /// A command with a one-line reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.line().await
    }

    /// The lines of a multi-line body after its +OK, as sent (still stuffed).
    async fn body(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            if l == "." {
                return out;
            }
            out.push(l);
        }
    }

    /// A command with a multi-line reply: the status line and the body lines.
    async fn multi(&mut self, line: &str) -> (String, Vec<String>) {
        let status = self.cmd(line).await;
        assert!(status.starts_with("+OK"), "{line} -> {status}");
        (status, self.body().await)
    }

    async fn login(&mut self, user: &str) -> String {
        assert_eq!(self.cmd(&format!("USER {user}")).await, "+OK send PASS");
        let r = self.cmd(&format!("PASS {PASSWORD}")).await;
        assert!(r.starts_with(&format!("+OK {user} has ")), "{r}");
        r
    }

    /// True once the server has closed the connection (EOF within 5 s).
    async fn closed(&mut self) -> bool {
        let mut buf = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.io.read_line(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Unstuff a multi-line body (RFC 1939 §3) and join it with CRLF.
fn unstuff(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{}\r\n", l.strip_prefix('.').unwrap_or(l))).collect()
}

fn plain(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// `n` messages to alice over SMTP; the second holds body lines starting
/// with "." (sent dot-stuffed over SMTP: stored with one dot less).
async fn deliver(s: &TestServer, n: usize) {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for i in 1..=n {
        let body = if i == 2 { "first line\r\n..leading dot\r\n...two dots\r\nlast line" } else { "hello" };
        let data = format!("From: <sender@remote.test>\r\nTo: <{ALICE}>\r\nSubject: message {i}\r\n\r\n{body}");
        let r = c.send_mail("sender@remote.test", &[ALICE], &data).await;
        assert_eq!(r.code, 250, "{r:?}");
    }
}

/// alice's INBOX: its id, UIDVALIDITY and (uid, size, flags) per message.
async fn inbox(s: &TestServer) -> (i64, u32, Vec<(u32, u64, Vec<String>)>) {
    let store = s.store();
    let mb = store.mailbox(ALICE, "INBOX").await.unwrap().unwrap();
    let msgs = store.mailbox_messages(mb.id).await.unwrap();
    (mb.id, mb.uidvalidity, msgs.into_iter().map(|m| (m.uid, m.size, m.flags)).collect())
}

/// Log in, retrying while the previous session's lock is being released.
async fn login_when_free(addr: std::net::SocketAddr) -> (Pop, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut p = Pop::connect_tls(addr).await;
        p.cmd(&format!("USER {ALICE}")).await;
        let r = p.cmd(&format!("PASS {PASSWORD}")).await;
        if r.starts_with("+OK") {
            return (p, r);
        }
        assert!(r.starts_with("-ERR [IN-USE]") && Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn capa_and_login_refused_without_tls() {
    let s = TestServer::start().await;
    let mut p = Pop::connect(s.pop3).await;
    let (_, caps) = p.multi("CAPA").await;
    for c in ["TOP", "UIDL", "STLS", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION facteur"] {
        assert!(caps.iter().any(|l| l == c), "{c} missing: {caps:?}");
    }
    assert!(!caps.iter().any(|l| l == "USER" || l.starts_with("SASL")), "{caps:?}");
    let r = p.cmd(&format!("USER {ALICE}")).await;
    assert!(r.starts_with("-ERR [AUTH] ") && r.contains("STLS"), "{r}");
    let r = p.cmd(&format!("PASS {PASSWORD}")).await;
    assert!(r.starts_with("-ERR [AUTH] "), "{r}");
    let r = p.cmd(&format!("AUTH PLAIN {}", plain(ALICE, PASSWORD))).await;
    assert!(r.starts_with("-ERR [AUTH] "), "{r}");
    assert!(p.cmd("STAT").await.starts_with("-ERR STAT is valid only in the TRANSACTION state"));
    assert!(p.cmd("APOP alice@example.test 0123456789abcdef").await.starts_with("-ERR APOP is not supported"));
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off");
    assert!(p.closed().await);
}

#[tokio::test]
async fn plaintext_auth_when_configured() {
    let mut c = test_config();
    c.pop3.plaintext_auth = true;
    let s = TestServer::start_with(c).await;
    deliver(&s, 1).await;
    let mut p = Pop::connect(s.pop3).await;
    let (_, caps) = p.multi("CAPA").await;
    assert!(caps.iter().any(|l| l == "USER") && caps.iter().any(|l| l == "SASL PLAIN"), "{caps:?}");
    let r = p.login(ALICE).await;
    assert!(r.starts_with("+OK alice@example.test has 1 message ("), "{r}");
}

#[tokio::test]
async fn stls_then_user_pass() {
    let s = TestServer::start().await;
    deliver(&s, 3).await;
    let mut p = Pop::connect(s.pop3).await;
    // USER pipelined behind STLS is discarded at the handshake (RFC 2595 §4).
    p.send(format!("STLS\r\nUSER {ALICE}\r\n").as_bytes()).await;
    assert_eq!(p.line().await, "+OK begin TLS negotiation");
    let raw = p.io.into_inner();
    let tls = tls_connector().connect("localhost".try_into().unwrap(), raw).await.unwrap();
    let mut p = Pop { io: BufReader::new(Box::new(tls)) };
    assert_eq!(p.cmd(&format!("PASS {PASSWORD}")).await, "-ERR PASS must come right after USER");
    let (_, caps) = p.multi("CAPA").await;
    assert!(caps.iter().any(|l| l == "USER") && caps.iter().any(|l| l == "SASL PLAIN"), "{caps:?}");
    assert!(!caps.iter().any(|l| l == "STLS"), "{caps:?}");
    assert_eq!(p.cmd("STLS").await, "-ERR already under TLS");
    // A wrong password, then the right one.
    p.cmd(&format!("USER {ALICE}")).await;
    assert_eq!(p.cmd("PASS wrong").await, "-ERR [AUTH] invalid user name or password");
    let (_, _, msgs) = inbox(&s).await;
    let octets: u64 = msgs.iter().map(|m| m.1).sum();
    let r = p.login(ALICE).await;
    assert_eq!(r, format!("+OK alice@example.test has 3 messages ({octets} octets)"));
    // Still in TRANSACTION: no second login, no STLS.
    assert!(p.cmd("STLS").await.starts_with("-ERR STLS is not valid in the TRANSACTION state"));
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off (3 messages left)");
    assert!(p.closed().await);

    // Via the helper, too.
    let p = Pop::connect(s.pop3).await;
    let mut p = p.stls().await;
    p.login(ALICE).await;
}

#[tokio::test]
async fn implicit_tls_auth_plain() {
    let s = TestServer::start().await;
    deliver(&s, 2).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    let (_, caps) = p.multi("CAPA").await;
    assert!(caps.iter().any(|l| l == "SASL PLAIN") && !caps.iter().any(|l| l == "STLS"), "{caps:?}");
    let r = p.cmd(&format!("AUTH PLAIN {}", plain(ALICE, PASSWORD))).await;
    assert!(r.starts_with("+OK alice@example.test has 2 messages ("), "{r}");
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off (2 messages left)");

    // Without an initial response: "+ ", then the response line.
    let mut p = Pop::connect_tls(s.pop3s).await;
    assert_eq!(p.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(p.cmd(&plain(ALICE, "wrong")).await, "-ERR [AUTH] invalid user name or password");
    assert_eq!(p.cmd("AUTH PLAIN").await, "+ ");
    assert_eq!(p.cmd("*").await, "-ERR authentication cancelled");
    assert_eq!(p.cmd("AUTH PLAIN").await, "+ ");
    let r = p.cmd(&plain("Alice@Example.test", PASSWORD)).await;
    assert!(r.starts_with("+OK alice@example.test has 2 messages"), "{r}");
}

#[tokio::test]
async fn stat_list_uidl_top_retr() {
    let s = TestServer::start().await;
    deliver(&s, 3).await;
    let (mb, uidvalidity, msgs) = inbox(&s).await;
    let octets: u64 = msgs.iter().map(|m| m.1).sum();
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    assert_eq!(p.cmd("STAT").await, format!("+OK 3 {octets}"));

    let (status, list) = p.multi("LIST").await;
    assert_eq!(status, format!("+OK 3 messages ({octets} octets)"));
    let want: Vec<String> = msgs.iter().enumerate().map(|(i, m)| format!("{} {}", i + 1, m.1)).collect();
    assert_eq!(list, want);
    assert_eq!(p.cmd("LIST 2").await, format!("+OK 2 {}", msgs[1].1));
    assert_eq!(p.cmd("LIST 4").await, "-ERR no such message");

    let (_, uidl) = p.multi("UIDL").await;
    let want: Vec<String> = msgs.iter().enumerate().map(|(i, m)| format!("{} {uidvalidity}.{}", i + 1, m.0)).collect();
    assert_eq!(uidl, want);
    assert_eq!(p.cmd("UIDL 3").await, format!("+OK 3 {uidvalidity}.{}", msgs[2].0));

    // TOP: the header section, the blank line, then n body lines.
    let (status, top) = p.multi("TOP 2 0").await;
    assert_eq!(status, "+OK top of message follows");
    assert!(top.iter().any(|l| l == "Subject: message 2"), "{top:?}");
    assert!(top.iter().any(|l| l.starts_with("Received: from ")), "{top:?}");
    assert_eq!(top.last().unwrap(), "");
    let (_, top2) = p.multi("TOP 2 2").await;
    assert_eq!(top2[..top.len()], top[..]);
    assert_eq!(top2[top.len()..], ["first line".to_string(), "..leading dot".to_string()]);

    // RETR: the stored message, byte-stuffed, with its stored size.
    let (status, lines) = p.multi("RETR 2").await;
    assert_eq!(status, format!("+OK {} octets", msgs[1].1));
    let tail = &lines[lines.len() - 4..];
    assert_eq!(tail, ["first line", "..leading dot", "...two dots", "last line"]);
    let stored = s.store().fetch_message(mb, msgs[1].0).await.unwrap().unwrap();
    assert_eq!(unstuff(&lines).as_bytes(), &stored[..]);
    assert_eq!(stored.len() as u64, msgs[1].1);
    let (_, first) = p.multi("RETR 1").await;
    assert!(first.iter().any(|l| l == "Subject: message 1") && first.last().unwrap() == "hello", "{first:?}");
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off (3 messages left)");
    assert!(p.closed().await);
    // Retrieved messages are \Seen for IMAP now; TOP does not count.
    let (_, _, after) = inbox(&s).await;
    let seen: Vec<bool> = after.iter().map(|m| m.2.iter().any(|f| f == "\\Seen")).collect();
    assert_eq!(seen, [true, true, false]);
}

#[tokio::test]
async fn dele_and_rset() {
    let s = TestServer::start().await;
    deliver(&s, 3).await;
    let (_, _, msgs) = inbox(&s).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    assert_eq!(p.cmd("DELE 1").await, "+OK message 1 deleted");
    assert_eq!(p.cmd("DELE 1").await, "-ERR message 1 already deleted");
    assert_eq!(p.cmd("RETR 1").await, "-ERR message 1 already deleted");
    assert_eq!(p.cmd("STAT").await, format!("+OK 2 {}", msgs[1].1 + msgs[2].1));
    let (_, list) = p.multi("LIST").await;
    assert_eq!(list, [format!("2 {}", msgs[1].1), format!("3 {}", msgs[2].1)]);
    let octets: u64 = msgs.iter().map(|m| m.1).sum();
    assert_eq!(p.cmd("RSET").await, format!("+OK maildrop has 3 messages ({octets} octets)"));
    assert_eq!(p.cmd("STAT").await, format!("+OK 3 {octets}"));
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off (3 messages left)");
    assert!(p.closed().await);
    assert_eq!(inbox(&s).await.2.len(), 3);
}

#[tokio::test]
async fn dele_quit_removes_exactly_those_and_imap_sees_it() {
    let s = TestServer::start().await;
    deliver(&s, 4).await;
    let (mb, _, msgs) = inbox(&s).await;
    let uids: Vec<u32> = msgs.iter().map(|m| m.0).collect();
    // An IMAP client flagged message 3 \Deleted without expunging: POP3's
    // QUIT must not take it along.
    s.store().store_flags(mb, vec![uids[2]], FlagOp::Add, vec!["\\Deleted".into()], None).await.unwrap();

    // An IMAP session watching the INBOX (IDLE) sees the EXPUNGEs.
    let raw = TcpStream::connect(s.imaps).await.unwrap();
    let tls = tls_connector().connect("localhost".try_into().unwrap(), raw).await.unwrap();
    let mut imap = Pop { io: BufReader::new(Box::new(tls)) };
    assert!(imap.line().await.starts_with("* OK"));
    imap.send(format!("a LOGIN {ALICE} {PASSWORD}\r\nb SELECT INBOX\r\n").as_bytes()).await;
    loop {
        let l = imap.line().await;
        assert!(!l.starts_with("a NO") && !l.starts_with("b NO"), "{l}");
        if l.starts_with("b OK") {
            break;
        }
    }
    assert_eq!(imap.cmd("c IDLE").await, "+ idling");

    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    assert_eq!(p.cmd("DELE 2").await, "+OK message 2 deleted");
    assert_eq!(p.cmd("DELE 4").await, "+OK message 4 deleted");
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off (2 messages left)");
    assert!(p.closed().await);

    let (_, _, after) = inbox(&s).await;
    let left: Vec<u32> = after.iter().map(|m| m.0).collect();
    assert_eq!(left, [uids[0], uids[2]]);
    // Expunging 4 then 2 (or 2 then 3, after renumbering): two EXPUNGEs.
    let mut expunges = Vec::new();
    while expunges.len() < 2 {
        let l = imap.line().await;
        if l.ends_with(" EXPUNGE") {
            expunges.push(l);
        }
    }
    let mut nums: Vec<u32> = expunges.iter().map(|l| l.split(' ').nth(1).unwrap().parse().unwrap()).collect();
    nums.sort();
    assert!(nums == [2, 3] || nums == [2, 4], "{expunges:?}");
    imap.send(b"DONE\r\n").await;
    assert!(imap.line().await.starts_with("c OK"));
}

#[tokio::test]
async fn a_dropped_connection_deletes_nothing() {
    let s = TestServer::start().await;
    deliver(&s, 3).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    for i in 1..=3 {
        assert_eq!(p.cmd(&format!("DELE {i}")).await, format!("+OK message {i} deleted"));
    }
    assert_eq!(p.cmd("STAT").await, "+OK 0 0");
    drop(p);
    // The lock goes with the connection; the maildrop is whole.
    let (mut p, r) = login_when_free(s.pop3s).await;
    assert!(r.starts_with("+OK alice@example.test has 3 messages"), "{r}");
    assert_eq!(p.cmd("QUIT").await, "+OK mx.example.test facteur POP3 signing off (3 messages left)");
    assert_eq!(inbox(&s).await.2.len(), 3);
}

#[tokio::test]
async fn pipelined_commands() {
    let s = TestServer::start().await;
    deliver(&s, 2).await;
    let (_, uidvalidity, msgs) = inbox(&s).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.send(format!("CAPA\r\nUSER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST 1\r\nUIDL 2\r\nTOP 1 0\r\nNOOP\r\nDELE 1\r\nQUIT\r\n").as_bytes())
        .await;
    assert_eq!(p.line().await, "+OK capability list follows");
    p.body().await;
    assert_eq!(p.line().await, "+OK send PASS");
    assert!(p.line().await.starts_with("+OK alice@example.test has 2 messages"));
    assert_eq!(p.line().await, format!("+OK 2 {}", msgs[0].1 + msgs[1].1));
    assert_eq!(p.line().await, format!("+OK 1 {}", msgs[0].1));
    assert_eq!(p.line().await, format!("+OK 2 {uidvalidity}.{}", msgs[1].0));
    assert_eq!(p.line().await, "+OK top of message follows");
    assert!(p.body().await.iter().any(|l| l == "Subject: message 1"));
    assert_eq!(p.line().await, "+OK ");
    assert_eq!(p.line().await, "+OK message 1 deleted");
    assert_eq!(p.line().await, "+OK mx.example.test facteur POP3 signing off (1 message left)");
    assert!(p.closed().await);
    assert_eq!(inbox(&s).await.2.iter().map(|m| m.0).collect::<Vec<_>>(), [msgs[1].0]);
}

#[tokio::test]
async fn bad_syntax_gets_err_and_the_session_goes_on() {
    let s = TestServer::start().await;
    deliver(&s, 1).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    assert_eq!(p.cmd("XYZZY").await, "-ERR unknown command");
    assert_eq!(p.cmd("").await, "-ERR empty command line");
    assert!(p.cmd("LIST  1").await.starts_with("-ERR syntax error: arguments are separated by single spaces"));
    assert_eq!(p.cmd("RETR x").await, "-ERR syntax error: a message number is a decimal number");
    assert_eq!(p.cmd("RETR 99").await, "-ERR no such message");
    assert_eq!(p.cmd("RETR 0").await, "-ERR no such message");
    assert_eq!(p.cmd("TOP 1").await, "-ERR syntax error: TOP takes 2 arguments");
    assert_eq!(p.cmd("STAT 1").await, "-ERR syntax error: STAT takes no argument");
    p.send(b"LI\x00ST\r\n").await;
    assert_eq!(p.line().await, "-ERR control characters in command line");
    p.send(b"LIST \xff\r\n").await;
    assert_eq!(p.line().await, "-ERR command line is not valid UTF-8");
    assert!(p.cmd("USER bob@example.test").await.starts_with("-ERR USER is not valid in the TRANSACTION state"));
    assert!(p.cmd("stat").await.starts_with("+OK 1 "));
}

#[tokio::test]
async fn the_maildrop_is_locked_while_in_use() {
    let s = TestServer::start().await;
    deliver(&s, 1).await;
    let mut a = Pop::connect_tls(s.pop3s).await;
    a.login(ALICE).await;
    let mut b = Pop::connect_tls(s.pop3s).await;
    b.cmd(&format!("USER {ALICE}")).await;
    assert_eq!(b.cmd(&format!("PASS {PASSWORD}")).await, "-ERR [IN-USE] the maildrop is open in another POP3 session");
    // Still in AUTHORIZATION; another user is not locked out.
    assert!(b.cmd("STAT").await.starts_with("-ERR STAT is valid only in the TRANSACTION state"));
    let mut c = Pop::connect_tls(s.pop3s).await;
    c.login("bob@example.test").await;
    assert!(a.cmd("QUIT").await.starts_with("+OK"));
    assert!(a.closed().await);
    b.cmd(&format!("USER {ALICE}")).await;
    let r = b.cmd(&format!("PASS {PASSWORD}")).await;
    assert!(r.starts_with("+OK alice@example.test has 1 message ("), "{r}");
}

#[tokio::test]
async fn line_too_long() {
    let s = TestServer::start().await;
    let mut p = Pop::connect(s.pop3).await;
    let long = format!("NOOP {}", "x".repeat(300));
    assert_eq!(p.cmd(&long).await, "-ERR line too long: at most 255 octets with CRLF (RFC 2449 \u{a7}4)");
    // Far longer, in several writes: one -ERR, nothing of it read as commands.
    p.send("QUIT ".repeat(10_000).as_bytes()).await;
    p.send(b"\r\n").await;
    assert!(p.line().await.starts_with("-ERR line too long"));
    let (status, _) = p.multi("CAPA").await;
    assert_eq!(status, "+OK capability list follows");
}

#[tokio::test]
async fn idle_timeout() {
    let mut c = test_config();
    c.pop3.idle_timeout_secs = 1;
    let s = TestServer::start_with(c).await;
    deliver(&s, 1).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    assert_eq!(p.cmd("DELE 1").await, "+OK message 1 deleted");
    let t = Instant::now();
    assert_eq!(p.line().await, "-ERR autologout: idle for too long; no messages deleted");
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
    assert!(p.closed().await);
    assert_eq!(inbox(&s).await.2.len(), 1);
}

/// USER and a wrong PASS: the reply and how long PASS took.
async fn wrong_password(p: &mut Pop) -> (String, Duration) {
    p.cmd(&format!("USER {ALICE}")).await;
    let t = Instant::now();
    let r = p.cmd("PASS wrong").await;
    (r, t.elapsed())
}

#[tokio::test]
async fn failed_logins_are_slowed_then_the_address_banned() {
    let mut c = test_config();
    c.auth.free_failures = 1;
    c.auth.ban_after = 3;
    let s = TestServer::start_with(c).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    let (r, d) = wrong_password(&mut p).await;
    assert_eq!(r, "-ERR [AUTH] invalid user name or password");
    assert!(d < Duration::from_millis(900), "first failure is not slowed: {d:?}");
    for want in [1, 2] {
        let (r, d) = wrong_password(&mut p).await;
        assert_eq!(r, "-ERR [AUTH] invalid user name or password");
        assert!(d >= Duration::from_millis(want * 1000 - 100), "slowed {want} s: {d:?}");
    }
    // Banned: the right password is not even checked, and the connection ends.
    p.cmd(&format!("USER {ALICE}")).await;
    let r = p.cmd(&format!("PASS {PASSWORD}")).await;
    assert_eq!(r, "-ERR [AUTH] too many failed logins from your address");
    assert!(p.closed().await);
    // AUTH PLAIN, on a new connection, the same.
    let mut p = Pop::connect_tls(s.pop3s).await;
    let r = p.cmd(&format!("AUTH PLAIN {}", plain(ALICE, PASSWORD))).await;
    assert!(r.contains("too many failed logins"), "{r}");
    assert!(p.closed().await);
}

#[tokio::test]
async fn shutdown_tells_open_sessions_and_deletes_nothing() {
    let mut s = TestServer::start().await;
    deliver(&s, 1).await;
    let mut p = Pop::connect_tls(s.pop3s).await;
    p.login(ALICE).await;
    p.cmd("DELE 1").await;
    s.stop().await;
    assert_eq!(p.line().await, "-ERR [SYS/TEMP] server shutting down; no messages deleted");
    assert!(p.closed().await);
    assert_eq!(inbox(&s).await.2.len(), 1);
}
