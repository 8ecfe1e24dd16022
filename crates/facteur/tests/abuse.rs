//! facteur attacked from outside, over real TCP: each test replays one of
//! the attacks of the hardening issue and checks that it no longer works,
//! and that a legitimate client is still served.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Lines, PASSWORD, TestServer, test_config};
use facteur_store::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// RFC 2920 §3.1: one write holding a transaction whose DATA is refused
/// and, behind it, a "body" that reads as a second transaction from a
/// forged sender. The body must never become a message.
#[tokio::test]
async fn a_body_pipelined_behind_a_refused_data_is_never_a_message() {
    let s = TestServer::start().await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    c.send_raw(
        b"MAIL FROM:<a@x.example>\r\nRCPT TO:<nosuch@example.test>\r\nDATA\r\n\
          MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
          Subject: evil\r\n\r\nevil\r\n.\r\n",
    )
    .await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.reply().await.code, 550);
    let r = c.reply().await;
    assert_eq!(r.code, 554, "{r:?}");
    assert!(r.text().starts_with("5.5.0") && r.text().contains("synchronization"), "{r:?}");
    assert!(c.closed().await);
    assert!(s.inbox("alice@example.test").await.is_empty(), "the forged message was stored");
}

/// RFC 5321 §4.3.1: a client waits for the greeting. On the MX port a
/// stranger that talks first is a bot that does not read replies.
#[tokio::test]
async fn talking_before_the_greeting_is_refused_on_the_mx_port() {
    let mut config = test_config();
    config.smtp.greet_pause_ms = 400;
    let s = TestServer::start_with(config).await;
    let mut bot = Lines::connect(s.smtp).await;
    bot.send(b"EHLO bot.example\r\nMAIL FROM:<spam@bot.example>\r\n").await;
    let l = bot.line().await;
    assert!(l.starts_with("554 5.5.0 ") && l.contains("before the greeting"), "{l}");
    assert!(bot.closed().await);
    // Just inside the pause: still too early.
    let mut early = Lines::connect(s.smtp).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    early.send(b"EHLO early.example\r\n").await;
    assert!(early.line().await.starts_with("554 5.5.0"));
    // A client that waits gets the greeting after the pause, and is served.
    let t = Instant::now();
    let mut c = Client::connect(s.smtp).await;
    assert!(t.elapsed() >= Duration::from_millis(380), "{:?}", t.elapsed());
    c.ehlo().await;
    let r = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: hi\r\n\r\nhi").await;
    assert_eq!(r.code, 250);
    // The submission port has no pause.
    let t = Instant::now();
    let _ = Client::connect(s.submission).await;
    assert!(t.elapsed() < Duration::from_millis(300));
}

/// A command trickled one octet at a time is cut at its deadline
/// (request_timeout_secs plus one second per min_data_rate octets), not
/// kept alive by each octet.
#[tokio::test]
async fn a_trickled_command_is_cut_at_its_deadline() {
    let mut config = test_config();
    config.smtp.request_timeout_secs = 2;
    config.smtp.min_data_rate = 500;
    let s = TestServer::start_with(config).await;
    let stream = tokio::net::TcpStream::connect(s.smtp).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut greeting = String::new();
    read.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("220 "));
    let t = Instant::now();
    // One octet every 250 ms, for up to 8 s: far below 500 octets a second.
    let trickle = tokio::spawn(async move {
        for b in b"EHLO trickle.example.that.never.ends.with.a.line.end.of.any.kind" {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut l = String::new();
    tokio::time::timeout(Duration::from_secs(8), read.read_line(&mut l)).await.expect("never cut").unwrap();
    assert!(l.starts_with("421 4.4.2"), "{l}");
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "cut after {took:?}");
    trickle.abort();
    // A client at normal speed on a new connection is fine.
    let mut ok = Client::connect(s.smtp).await;
    ok.ehlo().await;
}

/// At the cap, a connection stalled for a fifth of stress_timeout_secs
/// makes room for a newcomer; while everyone made progress recently, the
/// newcomer is told 421.
#[tokio::test]
async fn at_the_connection_cap_a_stalled_session_makes_room() {
    let mut config = test_config();
    config.smtp.max_connections = 3;
    config.smtp.stress_timeout_secs = 5;
    let s = TestServer::start_with(config).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut l = Lines::connect(s.smtp).await;
        assert!(l.line().await.starts_with("220 "));
        idle.push(l);
    }
    let mut refused = Lines::connect(s.smtp).await;
    let l = refused.line().await;
    assert!(l.starts_with("421 4.7.0") && l.contains("too many connections"), "{l}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c.send_mail("a@remote.test", &["alice@example.test"], "Subject: in\r\n\r\nin").await;
    assert_eq!(r.code, 250);
    let mut evicted = 0;
    for mut l in idle {
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(500), l.line_within(1)).await {
            assert!(line.starts_with("421 4.7.0") && line.contains("stalled"), "{line}");
            evicted += 1;
        }
    }
    assert_eq!(evicted, 1, "exactly one stalled session made room");
}

/// IMAP and POP3 cap connections per address (1,100 idle IMAP connections
/// from one address took every listener down).
#[tokio::test]
async fn imap_and_pop3_cap_connections_per_address() {
    let mut config = test_config();
    config.imap.max_connections_per_ip = 2;
    config.pop3.max_connections_per_ip = 2;
    let s = TestServer::start_with(config).await;
    let mut keep = Vec::new();
    for _ in 0..2 {
        let mut l = Lines::connect(s.imap).await;
        assert!(l.line().await.starts_with("* OK "));
        keep.push(l);
    }
    let mut third = Lines::connect(s.imap).await;
    let l = third.line().await;
    assert_eq!(l, "* BYE [UNAVAILABLE] too many connections from this address, try again later");
    assert!(third.closed().await);
    for _ in 0..2 {
        let mut l = Lines::connect(s.pop3).await;
        assert!(l.line().await.starts_with("+OK "));
        keep.push(l);
    }
    let mut third = Lines::connect(s.pop3).await;
    let l = third.line().await;
    assert_eq!(l, "-ERR [SYS/TEMP] too many connections from this address, try again later");
    // SMTP is not affected by IMAP's and POP3's share.
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    drop(keep);
}

/// Before login, silence is allowed for preauth_timeout_secs only; after
/// login the idle timeout applies.
#[tokio::test]
async fn imap_pre_login_timeout() {
    let mut config = test_config();
    config.imap.preauth_timeout_secs = 1;
    config.imap.plaintext_auth = true;
    let s = TestServer::start_with(config).await;
    let mut stranger = Lines::connect(s.imap).await;
    stranger.line().await;
    let mut user = Lines::connect(s.imap).await;
    user.line().await;
    user.send(format!("a LOGIN alice@example.test {PASSWORD}\r\n").as_bytes()).await;
    assert!(user.until("a ").await.last().unwrap().starts_with("a OK"));
    let t = Instant::now();
    let l = stranger.line_within(5).await.unwrap();
    assert!(l.starts_with("* BYE idle for too long"), "{l}");
    assert!(t.elapsed() < Duration::from_secs(3));
    user.send(b"b NOOP\r\n").await;
    assert!(user.until("b ").await.last().unwrap().starts_with("b OK"), "the logged-in session lives on");
    // NOOPs before login do not keep a stranger's connection alive.
    let mut noops = Lines::connect(s.imap).await;
    noops.line().await;
    let t = Instant::now();
    let bye = loop {
        noops.send(b"n NOOP\r\n").await;
        let l = noops.line_within(5).await.unwrap();
        if l.starts_with("* BYE") {
            break l;
        }
        assert!(t.elapsed() < Duration::from_secs(4), "NOOPs kept the connection past the pre-login timeout");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(bye.contains("idle for too long"), "{bye}");
}

/// A POP3 client that RETRs a large message and stops reading loses its
/// session (and the maildrop lock) after write_timeout_secs.
#[tokio::test]
async fn pop3_output_left_unread_ends_the_session_and_frees_the_maildrop() {
    let mut config = test_config();
    config.pop3.write_timeout_secs = 1;
    config.pop3.plaintext_auth = true;
    let s = TestServer::start_with(config).await;
    let store = s.store();
    let inbox = store.mailbox("alice@example.test", "INBOX").await.unwrap().unwrap();
    let big = format!("Subject: big\r\n\r\n{}", "0123456789abcdef0123456789abcdef012345678\r\n".repeat(500_000));
    store.append_message(inbox.id, big.into_bytes(), vec![], 0).await.unwrap();
    let mut stuck = Lines::connect(s.pop3).await;
    stuck.line().await;
    stuck.send(format!("USER alice@example.test\r\nPASS {PASSWORD}\r\n").as_bytes()).await;
    stuck.line().await;
    assert!(stuck.line().await.starts_with("+OK"), "logged in");
    stuck.send(b"RETR 1\r\n").await;
    // Never read again. Within a few seconds the maildrop is free.
    let t = Instant::now();
    loop {
        let mut p = Lines::connect(s.pop3).await;
        p.line().await;
        p.send(format!("USER alice@example.test\r\nPASS {PASSWORD}\r\n").as_bytes()).await;
        p.line().await;
        let r = p.line().await;
        if r.starts_with("+OK") {
            break;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(10), "the stuck session still holds the maildrop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stuck);
}

/// Failed logins count across protocols: guesses over IMAP ban the
/// address from POP3 and SMTP AUTH too, before any password is checked.
#[tokio::test]
async fn failed_logins_are_counted_across_protocols() {
    let mut config = test_config();
    config.imap.plaintext_auth = true;
    config.pop3.plaintext_auth = true;
    config.auth.free_failures = 3;
    config.auth.ban_after = 3;
    let s = TestServer::start_with(config).await;
    let mut imap = Lines::connect(s.imap).await;
    imap.line().await;
    for i in 0..3 {
        imap.send(format!("g{i} LOGIN alice@example.test guess{i}\r\n").as_bytes()).await;
        let r = imap.until(&format!("g{i} ")).await;
        assert!(r.last().unwrap().contains("NO [AUTHENTICATIONFAILED]"), "{r:?}");
    }
    // POP3 with the right password: refused unchecked, connection closed.
    let mut pop = Lines::connect(s.pop3).await;
    pop.line().await;
    pop.send(format!("USER alice@example.test\r\nPASS {PASSWORD}\r\n").as_bytes()).await;
    pop.line().await;
    assert_eq!(pop.line().await, "-ERR [AUTH] too many failed logins from your address");
    assert!(pop.closed().await);
    // SMTP AUTH on the submissions port, also with the right password.
    let mut c = Client::connect_tls(s.submissions).await;
    c.ehlo().await;
    let r = c.auth_plain("alice@example.test", PASSWORD).await;
    assert_eq!(r.code, 454, "{r:?}");
    let r = c.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.closed().await);
}

/// An unknown user costs the same hash check as a wrong password: IMAP no
/// longer tells which users exist by the time it takes to answer.
#[tokio::test]
async fn unknown_users_take_as_long_as_wrong_passwords() {
    let mut config = test_config();
    config.imap.plaintext_auth = true;
    config.auth.free_failures = 1000;
    config.auth.ban_after = 0;
    config.auth.account_free_failures = 1000;
    let s = TestServer::start_with(config).await;
    let mut c = Lines::connect(s.imap).await;
    c.line().await;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..7 {
        for (user, times) in [("nobody@example.test", &mut unknown), ("alice@example.test", &mut wrong)] {
            let t = Instant::now();
            c.send(format!("t{i} LOGIN {user} wrong\r\n").as_bytes()).await;
            c.until(&format!("t{i} ")).await;
            times.push(t.elapsed());
        }
    }
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[3], wrong[3]);
    // Before the fix the unknown user answered 15 times faster.
    assert!(u * 10 >= w * 4, "unknown user {u:?} vs wrong password {w:?}");
}

/// `LIST "" "****…x"` took exponential time (60 stars in two sessions: no
/// SMTP banner for 15 s). Now two such sessions answer at once and SMTP
/// greets as usual meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_pattern_cannot_starve_the_server() {
    let mut config = test_config();
    config.imap.plaintext_auth = true;
    let s = TestServer::start_with(config).await;
    let store = s.store();
    for n in 0..50 {
        store.create_mailbox("alice@example.test", &format!("Folder{n}/{}", "a".repeat(60)), None).await.unwrap();
    }
    let pattern = format!("{}x", "*".repeat(60));
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let mut c = Lines::connect(s.imap).await;
        c.line().await;
        c.send(format!("a LOGIN alice@example.test {PASSWORD}\r\n").as_bytes()).await;
        c.until("a ").await;
        sessions.push(c);
    }
    let t = Instant::now();
    for c in &mut sessions {
        c.send(format!("l LIST \"\" \"{pattern}\"\r\n").as_bytes()).await;
    }
    let greeted = Client::connect(s.smtp).await;
    let banner = t.elapsed();
    for c in &mut sessions {
        let r = c.until("l ").await;
        assert_eq!(r, ["l OK LIST completed"], "nothing matches");
    }
    assert!(banner < Duration::from_secs(2), "SMTP greeting took {banner:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "LIST took {:?}", t.elapsed());
    drop(greeted);
    // A pattern longer than any name could match is refused, not worked on.
    let c = &mut sessions[0];
    c.send(format!("m LIST \"\" \"{}\"\r\n", "*a".repeat(1100)).as_bytes()).await;
    let r = c.until("m ").await;
    assert!(r[0].starts_with("m NO [LIMIT]"), "{r:?}");
}

/// CREATE refuses invalid modified UTF-7, empty, `.`/`..` and `~` levels,
/// controls and U+2028 (NO [CANNOT]); `Café` in NFC and NFD is one mailbox.
#[tokio::test]
async fn mailbox_names_are_validated_and_normalised() {
    let mut config = test_config();
    config.imap.plaintext_auth = true;
    let s = TestServer::start_with(config).await;
    let mut c = Lines::connect(s.imap).await;
    c.line().await;
    c.send(format!("a LOGIN alice@example.test {PASSWORD}\r\n").as_bytes()).await;
    c.until("a ").await;
    let bad: [&[u8]; 9] = [
        b"\"&Jjo\"",
        b"\"&2D0-\"",
        b"\"a/../b\"",
        b"\"..\"",
        b"\"~root\"",
        b"\"a//b\"",
        b"{3}\r\na\x01b",
        b"{4}\r\na\xc2\x85b",
        b"{4}\r\na\xe2\x80\xa8",
    ];
    for (i, name) in bad.iter().enumerate() {
        let mut cmd = format!("c{i} CREATE ").into_bytes();
        cmd.extend_from_slice(name);
        cmd.extend_from_slice(b"\r\n");
        c.send(&cmd).await;
        let r = c.until(&format!("c{i} ")).await;
        assert!(
            r.last().unwrap().starts_with(&format!("c{i} NO [CANNOT]")),
            "{:?}: {r:?}",
            String::from_utf8_lossy(name)
        );
    }
    // After ENABLE IMAP4rev2 names are UTF-8 (the C0/C1/U+2028 cases above
    // were refused as not modified UTF-7; here as controls).
    c.send(b"e ENABLE IMAP4rev2\r\n").await;
    c.until("e ").await;
    c.send(b"u CREATE {4}\r\na\xe2\x80\xa8\r\n").await;
    let r = c.until("u ").await;
    assert!(r.last().unwrap().starts_with("u NO [CANNOT]") && r.last().unwrap().contains("control"), "{r:?}");
    c.send("n1 CREATE {5+}\r\nCafé\r\n".as_bytes()).await;
    let r = c.until("n1 ").await;
    assert!(r.last().unwrap().starts_with("n1 OK"), "{r:?}");
    c.send("n2 CREATE {6+}\r\nCafe\u{301}\r\n".as_bytes()).await;
    let r = c.until("n2 ").await;
    assert!(r.last().unwrap().starts_with("n2 NO"), "the NFD spelling is the same mailbox: {r:?}");
    c.send("n3 SELECT {6+}\r\nCafe\u{301}\r\n".as_bytes()).await;
    let r = c.until("n3 ").await;
    assert!(r.last().unwrap().starts_with("n3 OK"), "found under either spelling: {r:?}");
    let names: Vec<String> =
        s.store().list_mailboxes("alice@example.test").await.unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("Caf")).count(), 1, "{names:?}");
    assert!(names.iter().all(|n| !n.contains("..") && !n.contains('~') && !n.contains('&')), "{names:?}");
}

/// Names stored before normalisation (here made through storage directly,
/// in NFD) are brought to NFC at start, children along; a name whose NFC
/// spelling is taken is left and reported.
#[tokio::test]
async fn stored_names_are_brought_to_nfc_at_start() {
    let mut config = test_config();
    config.imap.plaintext_auth = true;
    let dir = tempfile::tempdir().unwrap();
    common::provision(dir.path(), &config).await;
    let store = facteur_store::sqlite::SqliteStore::open(&dir.path().join("facteur.db")).unwrap();
    store.create_mailbox("alice@example.test", "Cafe\u{301}/Menus", None).await.unwrap();
    store.create_mailbox("alice@example.test", "Re\u{301}sume\u{301}", None).await.unwrap();
    store.create_mailbox("alice@example.test", "R\u{e9}sum\u{e9}", None).await.unwrap();
    drop(store);
    let running = facteur::serve::start(config, dir.path()).await.unwrap();
    let notes = running.notes.join("\n");
    assert!(notes.contains("renamed to its NFC spelling") && notes.contains("left as it is"), "{notes}");
    let store = facteur_store::sqlite::SqliteStore::open(&dir.path().join("facteur.db")).unwrap();
    let names: Vec<String> =
        store.list_mailboxes("alice@example.test").await.unwrap().into_iter().map(|m| m.name).collect();
    assert!(names.contains(&"Caf\u{e9}".to_string()) && names.contains(&"Caf\u{e9}/Menus".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("Cafe\u{301}")), "{names:?}");
    running.shutdown().await;
}
