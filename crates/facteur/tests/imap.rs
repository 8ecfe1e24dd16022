//! IMAP over real TCP: every command of the first slice, pipelining,
//! literals split across packets, bad syntax, limits, and IDLE push of an
//! SMTP delivery.

mod common;

use std::time::Duration;

use common::{Client, PASSWORD, TestServer, test_config, tls_connector};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Imap {
    io: BufReader<Box<dyn Io>>,
}

impl Imap {
    async fn connect(addr: std::net::SocketAddr) -> Imap {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Imap { io: BufReader::new(Box::new(s)) };
        let greeting = c.line().await;
        assert!(greeting.starts_with("* OK [CAPABILITY IMAP4rev2 IMAP4rev1"), "{greeting}");
        c
    }

    async fn connect_tls(addr: std::net::SocketAddr) -> Imap {
        let s = TcpStream::connect(addr).await.unwrap();
        let tls = tls_connector().connect("localhost".try_into().unwrap(), s).await.unwrap();
        let mut c = Imap { io: BufReader::new(Box::new(tls)) };
        assert!(c.line().await.starts_with("* OK"));
        c
    }

    async fn starttls(mut self) -> Imap {
        let r = self.cmd("s1 STARTTLS").await;
        assert!(r.last().unwrap().starts_with("s1 OK"), "{r:?}");
        let raw = self.io.into_inner();
        let tls = tls_connector().connect("localhost".try_into().unwrap(), raw).await.unwrap();
        Imap { io: BufReader::new(Box::new(tls)) }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// One response line, with any literal it announces inlined.
    async fn line(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut l))
                .await
                .expect("no answer within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed; so far: {out:?}");
            let l = l.trim_end_matches("\r\n").to_string();
            out.push_str(&l);
            // A literal: {n} at the end of the line, then n octets.
            if let Some(len) =
                l.strip_suffix('}').and_then(|x| x.rsplit_once('{')).and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut data = vec![0; len];
                self.io.read_exact(&mut data).await.unwrap();
                out.push_str("\r\n");
                out.push_str(&String::from_utf8_lossy(&data));
                continue;
            }
            return out;
        }
    }

    /// Lines up to and including the tagged one.
    async fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let tag = line.split(' ').next().unwrap().to_string();
        self.until_tagged(&tag).await
    }

    async fn ok(&mut self, line: &str) -> Vec<String> {
        let r = self.cmd(line).await;
        let tag = line.split(' ').next().unwrap();
        assert!(r.last().unwrap().starts_with(&format!("{tag} OK")), "{line} -> {r:?}");
        r
    }

    /// The next line if one comes within `ms` milliseconds.
    async fn line_within(&mut self, ms: u64) -> Option<String> {
        let mut l = String::new();
        match tokio::time::timeout(Duration::from_millis(ms), self.io.read_line(&mut l)).await {
            Ok(Ok(n)) if n > 0 => Some(l.trim_end_matches("\r\n").to_string()),
            _ => None,
        }
    }

    async fn login(&mut self, user: &str) {
        self.ok(&format!("l1 LOGIN {user} {PASSWORD}")).await;
    }
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

/// A server whose IMAP accepts LOGIN without TLS (loopback development).
async fn server() -> TestServer {
    let mut c = test_config();
    c.imap.plaintext_auth = true;
    TestServer::start_with(c).await
}

async fn deliver(s: &TestServer, to: &str, subject: &str, body: &str) {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    let r = c
        .send_mail(
            "sender@remote.test",
            &[to],
            &format!("From: Sender <sender@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
}

#[tokio::test]
async fn login_needs_tls_unless_configured() {
    let s = TestServer::start().await;
    let mut c = Imap::connect(s.imap).await;
    // RFC 2971: ID in any state, before login too.
    let r = c.ok("i0 ID NIL").await;
    assert!(r[0].starts_with("* ID (\"name\" \"facteur\""), "{r:?}");
    let caps = c.ok("a CAPABILITY").await;
    assert!(has(&caps, "STARTTLS") && has(&caps, "LOGINDISABLED"), "{caps:?}");
    // CHECK belongs to the selected state (RFC 3501 §6.4.1), as Dovecot answers.
    let r = c.cmd("a1 CHECK").await;
    assert_eq!(r, ["a1 BAD log in first"], "{r:?}");
    let r = c.cmd(&format!("b LOGIN alice@example.test {PASSWORD}")).await;
    assert!(r[0].starts_with("b NO [PRIVACYREQUIRED]"), "{r:?}");
    let mut c = c.starttls().await;
    let caps = c.ok("c CAPABILITY").await;
    assert!(has(&caps, "AUTH=PLAIN") && !has(&caps, "STARTTLS"), "{caps:?}");
    c.login("alice@example.test").await;
    // Implicit TLS, AUTHENTICATE PLAIN with an initial response (SASL-IR).
    let mut t = Imap::connect_tls(s.imaps).await;
    use base64::Engine;
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0bob@example.test\0{PASSWORD}"));
    t.ok(&format!("a AUTHENTICATE PLAIN {ir}")).await;
    // And without: a continuation, then the data line.
    let mut t = Imap::connect_tls(s.imaps).await;
    t.send(b"a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(t.line().await, "+ ");
    let bad = base64::engine::general_purpose::STANDARD.encode("\0bob@example.test\0wrong");
    t.send(format!("{bad}\r\n").as_bytes()).await;
    let r = t.until_tagged("a").await;
    assert!(r[0].starts_with("a NO [AUTHENTICATIONFAILED]"), "{r:?}");
}

#[tokio::test]
async fn select_fetch_store_search_expunge() {
    let s = server().await;
    deliver(&s, "alice@example.test", "first", "Hello one\r\n").await;
    deliver(&s, "alice@example.test", "second", "Hello two, with a WORD\r\n").await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let r = c.ok("a SELECT INBOX").await;
    assert!(has(&r, "* 2 EXISTS") && has(&r, "[UIDNEXT 3]") && has(&r, "[UIDVALIDITY "), "{r:?}");
    assert!(r.last().unwrap().starts_with("a OK [READ-WRITE]"), "{r:?}");

    let r = c.ok("b FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert!(has(&r, "* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE "), "first to see it (RFC 3501 §2.3.2): {r:?}");
    assert!(has(&r, "ENVELOPE (NIL \"first\" ((\"Sender\" NIL \"sender\" \"remote.test\"))"), "envelope: {r:?}");
    assert!(has(&r, "BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 13 2"), "{r:?}");
    assert!(has(&r, "Subject: second"), "{r:?}");
    // BODY[] without PEEK sets \Seen and says so.
    let r = c.ok("c FETCH 2 BODY[TEXT]").await;
    assert!(has(&r, "Hello two") && has(&r, "\\Seen"), "{r:?}");
    let r = c.ok("d FETCH 1 (BODY.PEEK[]<0.5>)").await;
    assert!(has(&r, "BODY[]<0> {5}"), "partial fetch: {r:?}");

    let r = c.ok("e SEARCH UNSEEN").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = c.ok("f UID SEARCH BODY word").await;
    assert!(r[0] == "* SEARCH 2", "{r:?}");
    let r = c.ok("f2 SEARCH CHARSET utf-8 BODY word").await;
    assert!(r[0] == "* SEARCH 2", "{r:?}");
    let r = c.cmd("f3 SEARCH CHARSET ISO-8859-1 BODY word").await;
    assert!(r[0].starts_with("f3 NO [BADCHARSET (UTF-8 US-ASCII)]"), "{r:?}");
    // A sequence number past the last message is a BAD (RFC 9051 §9); a UID is not.
    for cmd in ["p1 FETCH 9 (UID)", "p2 STORE 1,9 +FLAGS (\\Seen)", "p3 COPY 9 Archive"] {
        let r = c.cmd(cmd).await;
        let tag = cmd.split(' ').next().unwrap();
        assert!(r[0].starts_with(&format!("{tag} BAD message sequence number past the last")), "{r:?}");
    }
    assert_eq!(c.ok("p4 UID FETCH 9 (UID)").await.len(), 1);
    let r = c.ok("f2 CHECK").await;
    assert_eq!(r, ["f2 OK CHECK completed"], "{r:?}");
    let r = c.ok("g SEARCH OR SUBJECT first SUBJECT nothing").await;
    assert!(r[0] == "* SEARCH 1", "{r:?}");
    // ESEARCH (RFC 4731, RFC 9051 §6.4.4) with RETURN, and for IMAP4rev2 clients always.
    let r = c.ok("g1 UID SEARCH RETURN (MIN MAX COUNT ALL) ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"g1\") UID MIN 1 MAX 2 ALL 1:2 COUNT 2");
    let r = c.ok("g2 SEARCH RETURN (COUNT) SUBJECT nothing").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"g2\") COUNT 0");
    c.ok("g3 ENABLE IMAP4rev2").await;
    let r = c.ok("g4 SEARCH SUBJECT second").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"g4\") ALL 2");

    let r = c.ok("h STORE 1 +FLAGS (\\Deleted $Later)").await;
    assert!(has(&r, "* 1 FETCH (FLAGS (\\Seen \\Deleted $Later)") || has(&r, "\\Deleted $Later"), "{r:?}");
    let r = c.ok("i UID STORE 2 -FLAGS.SILENT (\\Seen)").await;
    assert_eq!(r.len(), 1, "silent: {r:?}");
    let r = c.ok("j EXPUNGE").await;
    assert!(r[0] == "* 1 EXPUNGE", "{r:?}");
    let r = c.ok("k FETCH 1 (UID FLAGS)").await;
    assert!(r[0].starts_with("* 1 FETCH (UID 2 FLAGS ()"), "{r:?}");
    // Bad syntax: BAD with the tag, the session goes on.
    let r = c.cmd("l FETCH x:y (FLAGS)").await;
    assert!(r[0].starts_with("l BAD"), "{r:?}");
    let r = c.cmd("m FROBNICATE").await;
    assert!(r[0].starts_with("m BAD"), "{r:?}");
    c.ok("n NOOP").await;
    let r = c.ok("o LOGOUT").await;
    assert!(r[0].starts_with("* BYE"), "{r:?}");
}

#[tokio::test]
async fn mailboxes_append_copy_move_and_status() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let r = c.ok("a LIST \"\" *").await;
    assert!(has(&r, "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\""), "{r:?}");
    assert!(has(&r, "\"INBOX\"") && has(&r, "\\Trash") && has(&r, "\\Junk") && has(&r, "\\Archive"), "{r:?}");
    let r = c.ok("b LIST \"\" \"\"").await;
    assert_eq!(r[0], "* LIST (\\Noselect) \"/\" \"\"");
    c.ok("c CREATE Projects/Facteur").await;
    let r = c.ok("d LIST \"\" Projects/%").await;
    assert!(has(&r, "\"Projects/Facteur\""), "{r:?}");
    let r = c.ok("e LIST \"\" %").await;
    assert!(has(&r, "(\\HasChildren) \"/\" \"Projects\""), "a parent made for the child is not subscribed: {r:?}");
    let r = c.cmd("f CREATE INBOX").await;
    assert!(r[0].starts_with("f NO [ALREADYEXISTS]"), "{r:?}");
    c.ok("g RENAME Projects Work").await;
    let r = c.cmd("h DELETE Projects").await;
    assert!(r[0].starts_with("h NO [NONEXISTENT]"), "{r:?}");
    let r = c.cmd("h2 DELETE Work").await;
    assert!(r[0].starts_with("h2 NO [HASCHILDREN]"), "a parent stays while it has children: {r:?}");
    c.ok("h3 CREATE Later/").await;
    let r = c.ok("h4 LIST \"\" Later*").await;
    assert!(has(&r, "\"/\" \"Later\"") && !has(&r, "Later/"), "the trailing separator is dropped: {r:?}");
    c.ok("h5 DELETE Later").await;
    c.ok("i UNSUBSCRIBE Work").await;
    let r = c.ok("j LSUB \"\" Work*").await;
    assert!(!has(&r, "\"Work\"") && has(&r, "\"Work/Facteur\""), "{r:?}");

    // APPEND with a synchronising literal split across packets...
    let msg = "From: me@example.test\r\nSubject: appended\r\n\r\nbody\r\n";
    c.send(format!("k APPEND Work (\\Flagged) {{{}}}\r\n", msg.len()).as_bytes()).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(&msg.as_bytes()[..10]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&msg.as_bytes()[10..]).await;
    c.send(b"\r\n").await;
    let r = c.until_tagged("k").await;
    assert!(r[0].starts_with("k OK [APPENDUID ") && r[0].ends_with(" 1] APPEND completed"), "{r:?}");
    // ...and a non-synchronising one (LITERAL+), pipelined with two more commands.
    c.send(
        format!("l APPEND Work {{{}+}}\r\n{msg}\r\nm NOOP\r\nn STATUS Work (MESSAGES UIDNEXT UNSEEN)\r\n", msg.len())
            .as_bytes(),
    )
    .await;
    let r = c.until_tagged("n").await;
    assert!(r[0].starts_with("l OK [APPENDUID ") && r[1].starts_with("m OK"), "{r:?}");
    assert!(has(&r, "* STATUS \"Work\" (MESSAGES 2 UIDNEXT 3 UNSEEN 2)"), "{r:?}");

    c.ok("o SELECT Work").await;
    let r = c.ok("p COPY 1:2 Archive").await;
    assert!(r[0].starts_with("p OK [COPYUID ") && r[0].contains(" 1:2 1:2]"), "{r:?}");
    let r = c.ok("q UID MOVE 2 Trash").await;
    assert!(r[0].starts_with("* OK [COPYUID ") && r[1] == "* 2 EXPUNGE", "{r:?}");
    let r = c.ok("r STATUS Trash (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 1)"), "{r:?}");
    let r = c.cmd("s COPY 1 Nowhere").await;
    assert!(r[0].starts_with("s NO [TRYCREATE]"), "{r:?}");
    c.ok("t EXAMINE Archive").await;
    let r = c.cmd("u STORE 1 +FLAGS (\\Seen)").await;
    assert!(r[0].starts_with("u NO [READ-ONLY]"), "{r:?}");
    c.ok("v UNSELECT").await;
    let r = c.cmd("w FETCH 1 FLAGS").await;
    assert!(r[0].starts_with("w BAD"), "not selected: {r:?}");
    let r = c.cmd("w2 CHECK").await;
    assert_eq!(r, ["w2 BAD select a mailbox first"], "{r:?}");
    // LIST-EXTENDED (RFC 5258) and SPECIAL-USE selection (RFC 6154).
    let r = c.ok("x1 LIST (SPECIAL-USE) \"\" *").await;
    assert_eq!(r.len(), 6, "the five special-use mailboxes: {r:?}");
    assert!(!has(&r, "\"INBOX\"") && has(&r, "\\Junk"), "{r:?}");
    let r = c.ok("x2 LIST (SUBSCRIBED) \"\" Work* RETURN (CHILDREN)").await;
    assert!(has(&r, "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Work/Facteur\"") && !has(&r, "\"Work\""), "{r:?}");
    let r = c.ok("x3 LIST \"\" Archive RETURN (STATUS (MESSAGES UIDNEXT))").await;
    assert!(r[1].starts_with("* STATUS \"Archive\" (MESSAGES 2 UIDNEXT 3)"), "LIST-STATUS: {r:?}");
    let r = c.ok("x4 STATUS Archive (SIZE DELETED)").await;
    let size = r[0].strip_prefix("* STATUS \"Archive\" (SIZE ").and_then(|x| x.strip_suffix(" DELETED 0)"));
    let size = size.and_then(|n| n.parse::<u64>().ok()).expect("SIZE and DELETED");
    assert!(size > 0, "{r:?}");
    let r = c.ok("x5 LIST \"\" Archive RETURN (STATUS (SIZE DELETED))").await;
    assert_eq!(r[1], format!("* STATUS \"Archive\" (SIZE {size} DELETED 0)"), "the same from LIST-STATUS");
    // Several patterns in one LIST (RFC 5258 §3), each name once.
    let r = c.ok("x6 LIST \"\" (Archive \"Work*\" Arch%)").await;
    let listed: Vec<&String> = r.iter().filter(|l| l.starts_with("* LIST ")).collect();
    assert_eq!(listed.len(), 3, "Archive, Work, Work/Facteur: {r:?}");
    assert!(has(&r, "\"Archive\"") && has(&r, "\"Work\"") && has(&r, "\"Work/Facteur\""), "{r:?}");
    let r = c.ok("x7 LIST (SUBSCRIBED) \"\" (INBOX Work/*) RETURN (CHILDREN)").await;
    assert!(has(&r, "\"Work/Facteur\"") && !has(&r, "\"Archive\""), "{r:?}");
    // RECURSIVEMATCH alone and unknown RETURN options are BAD (RFC 5258 §3, §3.1).
    for bad in ["x8 LIST (RECURSIVEMATCH) \"\" *", "x9 LIST \"\" * RETURN (NONSENSE)", "xa LIST \"\" ()"] {
        let r = c.cmd(bad).await;
        let tag = bad.split(' ').next().unwrap();
        assert!(r.last().unwrap().starts_with(&format!("{tag} BAD")), "{bad}: {r:?}");
    }
    // LSUB with %: Work is not subscribed but Work/Facteur is (RFC 3501 §6.3.9).
    let r = c.ok("xb LSUB \"\" %").await;
    assert!(has(&r, "* LSUB (\\Noselect) \"/\" \"Work\""), "{r:?}");
    let r = c.ok("xc LSUB \"\" *").await;
    assert!(has(&r, "\"Work/Facteur\"") && !has(&r, "\"Work\""), "* matches the child itself: {r:?}");
    // CREATE-SPECIAL-USE (RFC 6154 §3).
    let r = c.ok("xu1 CREATE Receipts (USE (\\Archive))").await;
    assert_eq!(r, ["xu1 OK CREATE completed"], "{r:?}");
    let r = c.ok("xu2 LIST \"\" Receipts").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren \\Archive) \"/\" \"Receipts\"", "{r:?}");
    for (tag, bad) in [("xu3", "(USE (\\Bogus))"), ("xu4", "(USE (\\Sent \\Junk))")] {
        let r = c.cmd(&format!("{tag} CREATE Other {bad}")).await;
        assert!(r[0].starts_with(&format!("{tag} NO [USEATTR]")), "{r:?}");
    }
    let r = c.cmd("xu5 LIST \"\" Other").await;
    assert_eq!(r.len(), 1, "nothing was created: {r:?}");
    c.ok("xu6 DELETE Receipts").await;
    // RECURSIVEMATCH: Work is listed for its subscribed child with
    // CHILDINFO (RFC 5258 §3.5), but not when * lists the child itself.
    let r = c.ok("xd LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN)").await;
    assert!(has(&r, "* LIST (\\HasChildren) \"/\" \"Work\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"), "{r:?}");
    assert!(has(&r, "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"") && !has(&r, "\"Work/Facteur\""), "{r:?}");
    let r = c.ok("xe LIST (SUBSCRIBED RECURSIVEMATCH) \"\" *").await;
    assert!(has(&r, "\"Work/Facteur\"") && !has(&r, "\"Work\"") && !has(&r, "CHILDINFO"), "{r:?}");
    let r = c.ok("xf LIST (SUBSCRIBED) \"\" %").await;
    assert!(!has(&r, "\"Work\"") && !has(&r, "CHILDINFO"), "no CHILDINFO without RECURSIVEMATCH: {r:?}");
    // A subscribed name under parents that do not exist (RFC 9051 §6.3.9.5).
    c.ok("xg1 CREATE Gone/Deep/Box").await;
    c.ok("xg2 SUBSCRIBE Gone/Deep/Box").await;
    for (tag, name) in [("xg3", "Gone/Deep/Box"), ("xg4", "Gone/Deep"), ("xg5", "Gone")] {
        c.ok(&format!("{tag} DELETE {name}")).await;
    }
    let r = c.ok("xh LIST (SUBSCRIBED RECURSIVEMATCH) \"\" Gone/%").await;
    assert_eq!(r[0], "* LIST (\\NonExistent) \"/\" \"Gone/Deep\" (\"CHILDINFO\" (\"SUBSCRIBED\"))", "{r:?}");
    c.ok("xi UNSUBSCRIBE Gone/Deep/Box").await;
    let r = c.ok("x NAMESPACE").await;
    assert_eq!(r[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
    let r = c.ok("y ID (\"name\" \"test\")").await;
    assert!(r[0].starts_with("* ID ("), "{r:?}");
}

#[tokio::test]
async fn condstore_modseq_and_unchangedsince() {
    let s = server().await;
    deliver(&s, "alice@example.test", "one", "x\r\n").await;
    deliver(&s, "alice@example.test", "two", "y\r\n").await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let r = c.ok("a ENABLE CONDSTORE").await;
    assert_eq!(r[0], "* ENABLED CONDSTORE");
    let r = c.ok("a2 ENABLE CONDSTORE").await;
    assert_eq!(r[0], "* ENABLED", "only what this command enabled (RFC 5161 §3.2)");
    let r = c.ok("b SELECT INBOX").await;
    let highest: u64 = r
        .iter()
        .find_map(|l| {
            l.strip_prefix("* OK [HIGHESTMODSEQ ").and_then(|x| x.split(']').next()).and_then(|n| n.parse().ok())
        })
        .expect("HIGHESTMODSEQ");
    let r = c.ok("c FETCH 1:2 (MODSEQ)").await;
    assert!(has(&r, "* 1 FETCH (MODSEQ (") && has(&r, "* 2 FETCH (MODSEQ ("), "{r:?}");
    let r = c.ok("d STORE 1 +FLAGS (\\Flagged)").await;
    assert!(has(&r, "MODSEQ ("), "{r:?}");
    // 1 changed after `highest`: a conditional store on both refuses it.
    let r = c.ok(&format!("e STORE 1:2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Answered)")).await;
    assert!(r.last().unwrap().starts_with("e OK [MODIFIED 1]"), "{r:?}");
    let r = c.ok(&format!("f FETCH 1:2 (FLAGS) (CHANGEDSINCE {highest})")).await;
    assert_eq!(r.len(), 3, "both changed since: {r:?}");
    // .SILENT under CONDSTORE: MODSEQ alone (no UID in a plain STORE).
    let r = c.ok("g STORE 2 +FLAGS.SILENT (\\Seen)").await;
    assert!(r[0].starts_with("* 2 FETCH (MODSEQ (") && r[0].ends_with("))"), "{r:?}");
    let r = c.ok("h UID STORE 2 -FLAGS.SILENT (\\Seen)").await;
    assert!(r[0].starts_with("* 2 FETCH (UID 2 MODSEQ ("), "{r:?}");
    // Each message a STORE changes gets a MODSEQ of its own (RFC 7162 §3.1.3).
    let r = c.ok("h2 STORE 1:2 +FLAGS.SILENT ($Both)").await;
    let modseq =
        |l: &str| l.split("MODSEQ (").nth(1).and_then(|x| x.split(')').next()).unwrap().parse::<u64>().unwrap();
    let fetched: Vec<&String> = r.iter().filter(|l| l.contains(" FETCH ")).collect();
    assert_eq!(modseq(fetched[1]), modseq(fetched[0]) + 1, "{r:?}");
    // MODSEQ in the answer only for a MODSEQ search key, not for the word.
    let r = c.ok("i SEARCH OR SUBJECT ModSequence ALL").await;
    assert_eq!(r[0], "* SEARCH 1 2", "{r:?}");
    let r = c.ok("j SEARCH MODSEQ 1").await;
    assert!(r[0].starts_with("* SEARCH 1 2 (MODSEQ "), "{r:?}");
    // RFC 7162 §3.1.5: with RETURN (MIN) or (MAX) alone, the MODSEQ of the
    // message returned; otherwise the highest of all that match.
    let r = c.ok("j1 FETCH 1:2 (MODSEQ)").await;
    let modseq = |n: usize| -> u64 {
        let l = r.iter().find(|l| l.starts_with(&format!("* {n} FETCH"))).unwrap();
        l.split("MODSEQ (").nth(1).and_then(|x| x.split(')').next()).unwrap().parse().unwrap()
    };
    let (m1, m2) = (modseq(1), modseq(2));
    assert!(m1 < m2, "message 2 changed last: {r:?}");
    let r = c.ok("j2 SEARCH RETURN (MIN) MODSEQ 1").await;
    assert_eq!(r[0], format!("* ESEARCH (TAG \"j2\") MIN 1 MODSEQ {m1}"));
    let r = c.ok("j3 SEARCH RETURN (MAX) MODSEQ 1").await;
    assert_eq!(r[0], format!("* ESEARCH (TAG \"j3\") MAX 2 MODSEQ {m2}"));
    let r = c.ok("j4 SEARCH RETURN (MIN COUNT) MODSEQ 1").await;
    assert_eq!(r[0], format!("* ESEARCH (TAG \"j4\") MIN 1 COUNT 2 MODSEQ {m2}"));
    // RFC 7162 §3.1: CONDSTORE turned on by a command while a mailbox is
    // selected sends HIGHESTMODSEQ at once (once).
    let mut c2 = Imap::connect(s.imap).await;
    c2.login("alice@example.test").await;
    c2.ok("s1 SELECT INBOX").await;
    let r = c2.ok("s2 FETCH 1 (MODSEQ)").await;
    assert_eq!(r[0], format!("* OK [HIGHESTMODSEQ {m2}] highest"), "{r:?}");
    let r = c2.ok("s3 FETCH 2 (MODSEQ)").await;
    assert!(r[0].starts_with("* 2 FETCH"), "only the first time: {r:?}");
    let mut c3 = Imap::connect(s.imap).await;
    c3.login("alice@example.test").await;
    c3.ok("t1 SELECT INBOX").await;
    // RFC 5161 §3.1 lets a server take ENABLE with a mailbox selected (as
    // Dovecot does), and RFC 7162 §3.1 says what CONDSTORE does then.
    let r = c3.ok("t2 ENABLE CONDSTORE").await;
    assert_eq!(r[..2], [format!("* OK [HIGHESTMODSEQ {m2}] highest"), "* ENABLED CONDSTORE".to_string()], "{r:?}");
    // Selecting again closes the mailbox first, and says so.
    let r = c.ok("k EXAMINE INBOX").await;
    assert_eq!(r[0], "* OK [CLOSED] previous mailbox closed", "{r:?}");
}

/// Two sessions on one mailbox: each learns the other's changes at the
/// next command that may tell them, and only then (RFC 9051 §7.4.1: no
/// EXPUNGE during FETCH, STORE or SEARCH), even right after its own STORE.
#[tokio::test]
async fn sessions_on_one_mailbox_tell_each_others_changes() {
    let s = server().await;
    for subject in ["one", "two", "three"] {
        deliver(&s, "bob@example.test", subject, "x\r\n").await;
    }
    let mut a = Imap::connect(s.imap).await;
    a.login("bob@example.test").await;
    a.ok("a1 SELECT INBOX").await;
    let mut b = Imap::connect(s.imap).await;
    b.login("bob@example.test").await;
    b.ok("b1 SELECT INBOX").await;

    // Nothing changed: a NOOP says nothing.
    assert_eq!(a.ok("a2 NOOP").await.len(), 1);
    // A's own STORE, then B's: A's next NOOP tells B's change, not its own again.
    a.ok("a3 STORE 1 +FLAGS.SILENT (\\Seen)").await;
    b.ok("b2 STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    let r = a.ok("a4 NOOP").await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].starts_with("* 2 FETCH (FLAGS (\\Flagged \\Recent)"), "A selected first: {r:?}");
    // A STORE first tells what changed before it (FLAGS, not EXPUNGE).
    b.ok("b3 STORE 3 +FLAGS.SILENT (\\Answered)").await;
    let r = a.ok("a5 STORE 1 -FLAGS.SILENT (\\Seen)").await;
    assert!(has(&r, "* 3 FETCH (FLAGS (\\Answered \\Recent)"), "{r:?}");
    assert_eq!(a.ok("a6 NOOP").await.len(), 1);

    // B expunges message 1: A's FETCH does not say so, its NOOP does, once.
    b.ok("b4 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("b5 EXPUNGE").await;
    let r = a.ok("a7 FETCH 1:* (UID)").await;
    assert!(!has(&r, "EXPUNGE") && has(&r, "* 3 FETCH"), "{r:?}");
    let r = a.ok("a8 NOOP").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    let r = a.ok("a9 NOOP").await;
    assert_eq!(r.len(), 1, "told once: {r:?}");
    let r = a.ok("a10 FETCH 1:* (UID)").await;
    assert_eq!(r.len(), 3, "{r:?}");

    // A new keyword: FLAGS and PERMANENTFLAGS again before the message that
    // carries it, in both sessions (RFC 9051 §7.3.5); once, whatever its case.
    const SYSTEM: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
    let r = a.ok("a11 STORE 1 +FLAGS ($Work)").await;
    assert_eq!(r[0], format!("* FLAGS ({SYSTEM} $Work)"), "{r:?}");
    assert_eq!(r[1], format!("* OK [PERMANENTFLAGS ({SYSTEM} $Work \\*)] flags are kept"), "{r:?}");
    assert!(r[2].starts_with("* 1 FETCH (FLAGS (\\Flagged $Work \\Recent)"), "{r:?}");
    let r = b.ok("b6 NOOP").await;
    assert_eq!(r[0], format!("* FLAGS ({SYSTEM} $Work)"), "{r:?}");
    assert!(
        r[1].starts_with("* OK [PERMANENTFLAGS (") && r[2].starts_with("* 1 FETCH (FLAGS (\\Flagged $Work)"),
        "{r:?}"
    );
    let r = a.ok("a12 STORE 2 +FLAGS ($work)").await;
    assert!(!has(&r, "* FLAGS") && r[0].starts_with("* 2 FETCH"), "a keyword's case is not a new one: {r:?}");
    let r = b.ok("b7 EXAMINE INBOX").await;
    assert!(has(&r, &format!("* FLAGS ({SYSTEM} $Work)")) && has(&r, "* OK [PERMANENTFLAGS ()]"), "{r:?}");
}

/// Mailbox names: modified UTF-7 for IMAP4rev1 clients (RFC 3501 §5.1.3),
/// UTF-8 once a client has enabled IMAP4rev2 (RFC 9051 §5.1); the same
/// mailbox either way.
#[tokio::test]
async fn mailbox_names_in_utf7_or_utf8() {
    let s = server().await;
    let mut old = Imap::connect(s.imap).await;
    old.login("alice@example.test").await;
    old.ok("a CREATE Caf&AOk-").await;
    let r = old.ok("b LIST \"\" Caf*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" \"Caf&AOk-\"", "{r:?}");
    let mut new = Imap::connect(s.imap).await;
    new.login("alice@example.test").await;
    new.ok("c ENABLE IMAP4rev2").await;
    let r = new.ok("d LIST \"\" Caf*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" {5}\r\nCaf\u{e9}", "{r:?}");
    let name = "Caf\u{e9}/\u{e9}t\u{e9}";
    new.send(format!("e CREATE {{{}}}\r\n", name.len()).as_bytes()).await;
    assert!(new.line().await.starts_with("+ "));
    new.send(format!("{name}\r\n").as_bytes()).await;
    assert!(new.until_tagged("e").await.last().unwrap().starts_with("e OK"));
    let r = old.ok("f LIST \"\" Caf&AOk-/*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \"/\" \"Caf&AOk-/&AOk-t&AOk-\"", "{r:?}");
}

/// SEARCHRES (RFC 5182, in IMAP4rev2): RETURN (SAVE) keeps the result as
/// `$` for FETCH, STORE, COPY/MOVE, UID EXPUNGE and a later SEARCH; SAVE
/// with MIN keeps only the minimum; a new SELECT forgets it.
#[tokio::test]
async fn the_saved_search_result() {
    let s = server().await;
    for subject in ["one", "two", "three"] {
        deliver(&s, "bob@example.test", subject, "x\r\n").await;
    }
    let mut c = Imap::connect(s.imap).await;
    c.login("bob@example.test").await;
    let r = c.ok("a CAPABILITY").await;
    assert!(has(&r, " SEARCHRES"), "{r:?}");
    c.ok("b SELECT INBOX").await;
    let r = c.ok("c SEARCH RETURN (SAVE) SUBJECT t").await;
    assert_eq!(r.len(), 1, "SAVE alone answers only OK: {r:?}");
    let r = c.ok("d FETCH $ (UID)").await;
    assert_eq!(r[..2], ["* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)"], "{r:?}");
    c.ok("e UID STORE $ +FLAGS.SILENT (\\Flagged)").await;
    let r = c.ok("f SEARCH FLAGGED").await;
    assert_eq!(r[0], "* SEARCH 2 3", "{r:?}");
    let r = c.ok("g SEARCH $ SUBJECT three").await;
    assert_eq!(r[0], "* SEARCH 3", "{r:?}");
    let r = c.ok("h SEARCH RETURN (SAVE MIN) ALL").await;
    assert!(r[0].starts_with("* ESEARCH (TAG \"h\") MIN 1"), "{r:?}");
    let r = c.ok("i UID FETCH $ (FLAGS)").await;
    assert_eq!(r.len(), 2, "only the minimum was saved: {r:?}");
    assert!(r[0].starts_with("* 1 FETCH"), "{r:?}");
    c.ok("j EXAMINE INBOX").await;
    let r = c.ok("k FETCH $ (UID)").await;
    assert_eq!(r.len(), 1, "a new SELECT starts with nothing saved: {r:?}");
}

/// A FETCH bigger than one piece (4 MiB of messages) goes out in pieces,
/// all of it, in order, before the next pipelined command is answered.
#[tokio::test]
async fn a_large_fetch_goes_out_whole_and_in_order() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let bodies: Vec<String> = (0..3).map(|i| format!("{i}").repeat(2 << 20)).collect();
    for (i, body) in bodies.iter().enumerate() {
        let msg = format!("Subject: big {i}\r\n\r\n{body}");
        c.send(format!("a{i} APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes()).await;
        let r = c.until_tagged(&format!("a{i}")).await;
        assert!(r.last().unwrap().starts_with(&format!("a{i} OK")), "{r:?}");
    }
    c.ok("b SELECT INBOX").await;
    c.send(b"f FETCH 1:* (BODY.PEEK[])\r\ng NOOP\r\n").await;
    let r = c.until_tagged("f").await;
    assert_eq!(r.len(), 4, "three FETCH responses and the tagged OK");
    for (i, body) in bodies.iter().enumerate() {
        let expected = format!("* {} FETCH (BODY[] {{{}}}\r\nSubject: big {i}\r\n\r\n{body})", i + 1, body.len() + 18);
        assert!(r[i] == expected, "response {i} differs (length {} vs {})", r[i].len(), expected.len());
    }
    assert!(r[3].starts_with("f OK"), "{}", r[3]);
    let r = c.until_tagged("g").await;
    assert!(r.last().unwrap().starts_with("g OK"), "{r:?}");
}

/// BINARY (RFC 9051 §6.4.5, RFC 3516): APPEND with a literal8, decoded
/// parts in literal8 answers, BINARY.SIZE, partial, \Seen without PEEK,
/// and NO [UNKNOWN-CTE] for an encoding facteur cannot undo.
#[tokio::test]
async fn binary_fetches_decoded_parts() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let r = c.ok("a CAPABILITY").await;
    assert!(has(&r, " BINARY"), "{r:?}");
    // Part 1: base64 of "A\0B\r\n" (a NUL); part 2: x-uuencode.
    let msg = "Subject: bin\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nQQBCDQo=\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n\
--b--\r\n";
    c.send(format!("b APPEND INBOX ~{{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes()).await;
    let r = c.until_tagged("b").await;
    assert!(r.last().unwrap().starts_with("b OK [APPENDUID "), "{r:?}");
    c.ok("c SELECT INBOX").await;
    // A partial answer names its origin (RFC 3516 §4.2, RFC 9051 §7.5.2).
    let r = c.ok("d FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1]<1.1> ENVELOPE BINARY.PEEK[1]<0.3>)").await;
    assert!(
        r[0].starts_with("* 1 FETCH (BINARY[1] ~{5}\r\nA\0B\r\n BINARY.SIZE[1] 5 BINARY[1]<1> ~{1}\r\n\0 ENVELOPE ("),
        "{r:?}"
    );
    assert!(r[0].ends_with(" BINARY[1]<0> ~{3}\r\nA\0B)"), "{r:?}");
    let r = c.ok("e FETCH 1 (FLAGS)").await;
    assert!(!has(&r, "\\Seen"), "PEEK leaves \\Seen alone: {r:?}");
    let r = c.ok("f FETCH 1 (BINARY[1])").await;
    assert!(has(&r, "\\Seen"), "without PEEK the message is seen: {r:?}");
    let r = c.cmd("g FETCH 1 (BINARY.PEEK[2])").await;
    assert!(r.last().unwrap().starts_with("g NO [UNKNOWN-CTE]"), "{r:?}");
    let r = c.cmd("h FETCH 1 (BINARY.SIZE[2])").await;
    assert!(r.last().unwrap().starts_with("h NO [UNKNOWN-CTE]"), "{r:?}");
}

#[tokio::test]
async fn idle_sees_an_smtp_delivery_within_a_second() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("bob@example.test").await;
    c.ok("a SELECT INBOX").await;
    c.send(b"b IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    let started = std::time::Instant::now();
    deliver(&s, "bob@example.test", "pushed", "now\r\n").await;
    let l = tokio::time::timeout(Duration::from_secs(1), c.line()).await.expect("no EXISTS within a second");
    assert_eq!(l, "* 1 EXISTS");
    eprintln!("EXISTS {} ms after the SMTP transaction began", started.elapsed().as_millis());
    c.send(b"DONE\r\n").await;
    let r = c.until_tagged("b").await;
    assert!(r.last().unwrap().starts_with("b OK"), "{r:?}");
    // Another session's flag change reaches an idling one too.
    let mut other = Imap::connect(s.imap).await;
    other.login("bob@example.test").await;
    other.ok("x SELECT INBOX").await;
    c.send(b"c IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    other.ok("y STORE 1 +FLAGS (\\Flagged)").await;
    let l = tokio::time::timeout(Duration::from_secs(1), c.line()).await.expect("no FETCH within a second");
    assert!(l.starts_with("* 1 FETCH (FLAGS (\\Flagged \\Recent)"), "{l}");
    c.send(b"DONE\r\n").await;
    c.until_tagged("c").await;
}

/// The autologout counts from the client's last bytes: updates pushed
/// during IDLE do not keep a silent client alive (RFC 9051 §5.4).
#[tokio::test]
async fn idle_autologout_counts_from_the_clients_last_bytes() {
    let mut cfg = test_config();
    cfg.imap.plaintext_auth = true;
    cfg.imap.idle_timeout_secs = 1;
    let s = TestServer::start_with(cfg).await;
    deliver(&s, "bob@example.test", "one", "x\r\n").await;
    let mut c = Imap::connect(s.imap).await;
    c.login("bob@example.test").await;
    c.ok("a SELECT INBOX").await;
    c.send(b"b IDLE\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    let mut other = Imap::connect(s.imap).await;
    other.login("bob@example.test").await;
    other.ok("x SELECT INBOX").await;
    // Changes every 300 ms for up to 5 s; the idler must be logged out.
    let pusher = tokio::spawn(async move {
        for i in 0..16 {
            let op = if i % 2 == 0 { '+' } else { '-' };
            other.ok(&format!("y{i} STORE 1 {op}FLAGS.SILENT (\\Flagged)")).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let bye = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let l = c.line().await;
            if l.starts_with("* BYE") {
                return l;
            }
            assert!(l.starts_with("* 1 FETCH"), "{l}");
        }
    })
    .await
    .expect("no autologout while updates kept coming");
    assert!(bye.starts_with("* BYE idle for too long"), "{bye}");
    pusher.abort();
}

#[tokio::test]
async fn limits_answer_with_standard_replies() {
    let mut cfg = test_config();
    cfg.imap.plaintext_auth = true;
    cfg.imap.max_literal = 1000;
    cfg.imap.max_line = 200;
    cfg.imap.max_connections_per_user = 2;
    cfg.imap.max_preauth_command = 250;
    cfg.auth.free_failures = 2;
    cfg.auth.ban_after = 3;
    cfg.imap.idle_timeout_secs = 1;
    let s = TestServer::start_with(cfg).await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    // A literal at the limit is taken, one octet more is refused before it is sent.
    let body = "x".repeat(1000);
    c.send(b"a APPEND INBOX {1000}\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    c.send(format!("{body}\r\n").as_bytes()).await;
    assert!(c.until_tagged("a").await[0].starts_with("a OK"));
    c.ok("a2 SELECT INBOX").await;
    // The limit is announced (RFC 7889 §2); an APPEND past it is a NO
    // (§4), another command's literal a BAD.
    let caps = c.ok("a3 CAPABILITY").await;
    assert!(caps[0].ends_with(" APPENDLIMIT=1000"), "{caps:?}");
    c.send(b"b APPEND INBOX {1001}\r\n").await;
    let r = c.line().await;
    assert!(r.starts_with("b NO [TOOBIG]"), "{r}");
    c.send(b"b2 SEARCH SUBJECT {1001}\r\n").await;
    let r = c.line().await;
    assert!(r.starts_with("b2 BAD [TOOBIG]"), "{r}");
    // A non-synchronising one over the limit: its octets are read and dropped.
    c.send(format!("c APPEND INBOX {{1001+}}\r\n{}x\r\nd NOOP\r\n", body).as_bytes()).await;
    let r = c.until_tagged("d").await;
    assert!(r[0].starts_with("c NO [TOOBIG]") && r[1].starts_with("d OK"), "{r:?}");
    // Before login a whole command, literals included, may be no longer
    // than max_preauth_command (250 here): 18 + 229 + 3 octets.
    let mut pre = Imap::connect(s.imap).await;
    pre.send(b"p1 ID (\"x\" {229}\r\n").await;
    assert!(pre.line().await.starts_with("+ "), "at the limit");
    pre.send(format!("{})\r\n", "u".repeat(229)).as_bytes()).await;
    assert!(pre.until_tagged("p1").await.last().unwrap().starts_with("p1 OK"));
    // A synchronising literal that cannot fit is refused before it is sent...
    pre.send(b"p2 LOGIN {236}\r\n").await;
    let r = pre.line().await;
    assert!(r.starts_with("p2 BAD [TOOBIG] literal over 234 octets"), "{r}");
    // ...a LITERAL+ over it ends the connection...
    pre.send(format!("p3 LOGIN {{236+}}\r\n{} x\r\n", "u".repeat(236)).as_bytes()).await;
    let r = pre.until_tagged("p3").await;
    assert!(r[0].starts_with("p3 BAD [TOOBIG]"), "{r:?}");
    assert!(pre.line().await.starts_with("* BYE literal too large before login"));
    // ...and so does a command whose literal fits but whose whole does not.
    let mut pre = Imap::connect(s.imap).await;
    pre.send(format!("p4 ID (\"x\" {{229}}\r\n{}) \r\n", "u".repeat(229)).as_bytes()).await;
    let r = pre.until_tagged("p4").await;
    assert!(r.last().unwrap().starts_with("p4 BAD [TOOBIG] command over 250 octets before login"), "{r:?}");
    assert!(pre.line().await.starts_with("* BYE command too large before login"));
    // A line that passes 200 octets without its end is not buffered on.
    let mut long = Imap::connect(s.imap).await;
    long.send(format!("z1 NOOP {}", "w".repeat(240)).as_bytes()).await;
    let r = long.line().await;
    assert_eq!(r, "* BYE command line over 200 octets");
    // A command line at 200 octets is read, at 201 refused.
    let at = format!("e SEARCH SUBJECT {}", "y".repeat(200 - "e SEARCH SUBJECT ".len() - 2));
    assert_eq!(at.len() + 2, 200);
    c.ok(&at).await;
    let r = c.cmd(&format!("{at}y")).await;
    assert!(r[0].starts_with("e BAD") && r[0].contains("200"), "{r:?}");
    // Two sessions for alice at most.
    let mut c2 = Imap::connect(s.imap).await;
    c2.login("alice@example.test").await;
    let mut c3 = Imap::connect(s.imap).await;
    let r = c3.cmd(&format!("l LOGIN alice@example.test {PASSWORD}")).await;
    assert!(r[0].starts_with("l NO [LIMIT]"), "{r:?}");
    drop(c2);
    // Failed logins: two answered at once, the third after a second, and it
    // bans the address: the next attempt is not checked, BYE.
    let mut f = Imap::connect(s.imap).await;
    let t = std::time::Instant::now();
    for i in 0..3 {
        let r = f.cmd(&format!("f{i} LOGIN alice@example.test wrong")).await;
        assert!(r[0].starts_with(&format!("f{i} NO [AUTHENTICATIONFAILED]")), "{r:?}");
    }
    assert!(t.elapsed() >= Duration::from_millis(900), "the third failure was not delayed");
    f.send(format!("f9 LOGIN alice@example.test {PASSWORD}\r\n").as_bytes()).await;
    let r = f.until_tagged("f9").await;
    assert!(r.last().unwrap().starts_with("f9 NO [UNAVAILABLE]"), "even the right password: {r:?}");
    let bye = f.line().await;
    assert!(bye.starts_with("* BYE too many failed logins"), "{bye}");
    // Idle for longer than the timeout: BYE.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let l = c.line().await;
    assert!(l.starts_with("* BYE idle for too long"), "{l}");
}

/// Message structure as Dovecot 2.3 shows it (compared by hand): comments
/// in addresses are neither names nor addresses, a group with only a
/// comment is empty, a source route is the address's adl (RFC 9051
/// §7.5.2, RFC 5322 §3.4, §4.4); SEARCH finds an address written with
/// comments; TEXT of an encapsulated multipart keeps its epilogue.
#[tokio::test]
async fn envelope_addresses_and_nested_text_as_written() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let msg = "From: Joe <@relay.example,@hub.example:joe@b.example>\r\n\
To: x@y.example (Comment), \"Q (not) \" (c) <q@r.example>, (c1) k (c2) @ (c3) l.example (c4)\r\n\
Cc: undisclosed-recipients: (none);\r\n\
Bcc: g: a@b.example (A), c@d.example;, (only comment)\r\n\
Subject: t\r\n\
Content-Type: message/rfc822\r\n\r\n\
Subject: inner\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n\
--YY\r\n\r\nplain\r\n--YY--\r\ninner epilogue\r\n";
    c.send(format!("a APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes()).await;
    c.until_tagged("a").await;
    c.ok("b SELECT INBOX").await;
    let r = c.ok("c FETCH 1 ENVELOPE").await;
    let route = "((\"Joe\" \"@relay.example,@hub.example\" \"joe\" \"b.example\"))";
    assert_eq!(
        r[0],
        format!(
            "* 1 FETCH (ENVELOPE (NIL \"t\" {route} {route} {route} \
((\"Comment\" NIL \"x\" \"y.example\")(\"Q (not)\" NIL \"q\" \"r.example\")(\"c4\" NIL \"k\" \"l.example\")) \
((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
((NIL NIL \"g\" NIL)(\"A\" NIL \"a\" \"b.example\")(NIL NIL \"c\" \"d.example\")(NIL NIL NIL NIL)) NIL NIL))"
        ),
        "{r:?}"
    );
    for (tag, key, hit) in [
        ("d", "FROM joe@b.example", true),
        ("e", "TO \"k@l.example\"", true),
        ("f", "TO c4", true),
        ("g", "TO Comment", true),
        ("h", "TO nobody@l.example", false),
    ] {
        let r = c.ok(&format!("{tag} SEARCH {key}")).await;
        assert_eq!(r[0], if hit { "* SEARCH 1" } else { "* SEARCH" }, "{key}: {r:?}");
    }
    let r = c.ok("i FETCH 1 BODY.PEEK[1.TEXT]").await;
    assert!(r[0].ends_with("--YY--\r\ninner epilogue\r\n)"), "{r:?}");
}

/// `\Recent` for IMAP4rev1 sessions (RFC 3501 §2.3.2): a message is recent
/// in exactly one session, the first told of it; EXAMINE and STATUS see
/// what nobody claimed without claiming it; NEW, OLD and RECENT search it;
/// an IMAP4rev2 session has none and leaves the messages to others.
#[tokio::test]
async fn recent_belongs_to_the_first_session_told() {
    let s = server().await;
    for subject in ["one", "two"] {
        deliver(&s, "bob@example.test", subject, "x\r\n").await;
    }
    let mut rev2 = Imap::connect(s.imap).await;
    rev2.login("bob@example.test").await;
    rev2.ok("r1 ENABLE IMAP4rev2").await;
    let r = rev2.ok("r2 SELECT INBOX").await;
    assert!(has(&r, "* 0 RECENT"), "{r:?}");
    let mut peek = Imap::connect(s.imap).await;
    peek.login("bob@example.test").await;
    let r = peek.ok("p1 STATUS INBOX (MESSAGES RECENT)").await;
    assert!(has(&r, "(MESSAGES 2 RECENT 2)"), "the rev2 session claimed nothing: {r:?}");
    let r = peek.ok("p2 EXAMINE INBOX").await;
    assert!(has(&r, "* 2 RECENT"), "{r:?}");
    let r = peek.ok("p3 FETCH 1:* FLAGS").await;
    assert!(r[0].contains("(FLAGS (\\Recent))") && r[1].contains("(FLAGS (\\Recent))"), "{r:?}");

    let mut a = Imap::connect(s.imap).await;
    a.login("bob@example.test").await;
    let r = a.ok("a1 SELECT INBOX").await;
    assert!(has(&r, "* 2 RECENT"), "EXAMINE claimed nothing: {r:?}");
    let r = a.ok("a2 FETCH 1 (FLAGS)").await;
    assert!(r[0].starts_with("* 1 FETCH (FLAGS (\\Recent))"), "{r:?}");
    let r = a.ok("a3 FETCH 1 (BODY[])").await;
    assert!(has(&r, "FLAGS (\\Seen \\Recent)"), "{r:?}");
    let r = a.ok("a4 SEARCH NEW").await;
    assert_eq!(r[0], "* SEARCH 2", "NEW is RECENT UNSEEN: {r:?}");
    let r = a.ok("a5 SEARCH RECENT").await;
    assert_eq!(r[0], "* SEARCH 1 2", "{r:?}");

    let mut b = Imap::connect(s.imap).await;
    b.login("bob@example.test").await;
    let r = b.ok("b1 SELECT INBOX").await;
    assert!(has(&r, "* 0 RECENT"), "A was told first: {r:?}");
    let r = b.ok("b2 SEARCH OLD").await;
    assert_eq!(r[0], "* SEARCH 1 2", "{r:?}");
    let r = peek.ok("p4 STATUS INBOX (RECENT)").await;
    assert!(has(&r, "(RECENT 0)"), "{r:?}");

    // A new message: recent for whichever session hears of it first.
    deliver(&s, "bob@example.test", "three", "x\r\n").await;
    let r = b.ok("b3 NOOP").await;
    assert!(has(&r, "* 3 EXISTS") && has(&r, "* 1 RECENT"), "{r:?}");
    let r = a.ok("a6 NOOP").await;
    assert!(has(&r, "* 3 EXISTS") && has(&r, "* 2 RECENT"), "A keeps its own two: {r:?}");
    let r = b.ok("b4 FETCH 3 FLAGS").await;
    assert!(r[0].contains("\\Recent"), "{r:?}");
    let r = rev2.ok("r3 FETCH 1:* FLAGS").await;
    assert!(!has(&r, "\\Recent"), "{r:?}");
}

/// SORT and THREAD (RFC 5256, RFC 5957 SORT=DISPLAY): the answers Dovecot
/// 2.3 gave for the same seven messages, appended the same way (compared
/// by hand over Python's imaplib).
#[tokio::test]
async fn sort_and_thread_answer_as_dovecot_does() {
    const MESSAGES: [(&str, &str); 7] = [
        (
            "03-Jan-2020 10:00:00 +0000",
            "From: Zed <z@x.test>\r\nSubject: Re: Hello\r\nDate: Fri, 03 Jan 2020 10:00:00 +0000\r\nMessage-ID: <a3@x.test>\r\nIn-Reply-To: <a1@x.test>\r\n\r\nbody one\r\n",
        ),
        (
            "01-Jan-2020 10:00:00 +0000",
            "From: alice <a@x.test>\r\nTo: Team <t@x.test>\r\nSubject: Hello\r\nDate: Wed, 01 Jan 2020 10:00:00 +0000\r\nMessage-ID: <a1@x.test>\r\n\r\nb\r\n",
        ),
        (
            "02-Jan-2020 10:00:00 +0000",
            "From: bob@x.test\r\nCc: c@x.test\r\nSubject: [list] Other topic (fwd)\r\nDate: Thu, 02 Jan 2020 10:00:00 +0000\r\nMessage-ID: <b1@x.test>\r\n\r\nbody three is longer\r\n",
        ),
        (
            "04-Jan-2020 10:00:00 +0000",
            "From: =?UTF-8?Q?=C3=89mile?= <e@x.test>\r\nSubject: Fwd: hello\r\nDate: Sat, 04 Jan 2020 10:00:00 +0000\r\nMessage-ID: <a4@x.test>\r\nReferences: <a1@x.test> <a3@x.test>\r\n\r\nb4\r\n",
        ),
        (
            "05-Jan-2020 10:00:00 +0000",
            "From: dave@x.test\r\nSubject: other topic\r\nMessage-ID: <b2@x.test>\r\nIn-Reply-To: <b1@x.test>\r\n\r\nb5\r\n",
        ),
        (
            "06-Jan-2020 10:00:00 +0000",
            "From: (c) k@x.test\r\nTo: alice <a@x.test>\r\nSubject: Unrelated\r\nDate: Tue, 31 Dec 2019 10:00:00 +0000\r\nMessage-ID: <c1@x.test>\r\nReferences: <missing@x.test>\r\n\r\nb6\r\n",
        ),
        (
            "07-Jan-2020 10:00:00 +0000",
            "From: Carl <carl@x.test>\r\nSubject: Re: Unrelated\r\nDate: Tue, 07 Jan 2020 10:00:00 +0000\r\nMessage-ID: <c2@x.test>\r\nReferences: <missing@x.test>\r\n\r\nb7\r\n",
        ),
    ];
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let caps = c.ok("a CAPABILITY").await;
    assert!(
        has(&caps, " SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES "),
        "{caps:?}"
    );
    c.ok("b CREATE S").await;
    for (date, msg) in MESSAGES {
        c.send(format!("c APPEND S \"{date}\" {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes()).await;
        let r = c.until_tagged("c").await;
        assert!(r.last().unwrap().starts_with("c OK"), "{r:?}");
    }
    c.ok("d SELECT S").await;
    for (command, answer) in [
        ("SORT (SUBJECT) UTF-8 ALL", "* SORT 1 2 4 3 5 6 7"),
        ("SORT (REVERSE DATE) UTF-8 ALL", "* SORT 7 5 4 1 3 2 6"),
        ("SORT (FROM) UTF-8 ALL", "* SORT 2 3 7 5 4 6 1"),
        ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 2 3 7 5 4 6 1"),
        ("SORT (TO) UTF-8 ALL", "* SORT 1 3 4 5 7 6 2"),
        ("SORT (CC) UTF-8 ALL", "* SORT 1 2 4 5 6 7 3"),
        ("SORT (REVERSE ARRIVAL) UTF-8 ALL", "* SORT 7 6 5 4 1 3 2"),
        ("SORT (SIZE) UTF-8 ALL", "* SORT 5 2 1 7 3 6 4"),
        ("SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "* SORT 4 1 2 5 3 7 6"),
        ("SORT (DATE) UTF-8 FROM x.test NOT SUBJECT unrelated", "* SORT 2 3 1 4 5"),
        ("THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (6 7)(2 (1)(4))(3 5)"),
        ("THREAD REFERENCES UTF-8 ALL", "* THREAD ((6)(7))(2 1 4)(3 5)"),
        ("UID SORT (SUBJECT) US-ASCII SUBJECT nothing", "* SORT"),
        // ESORT (RFC 5267 §3).
        (
            "SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL",
            "* ESEARCH (TAG \"e\") MIN 1 MAX 7 ALL 1:2,4,3,5:7 COUNT 7",
        ),
        ("UID SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing", "* ESEARCH (TAG \"e\") UID COUNT 0"),
        ("SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL", "* ESEARCH (TAG \"e\") ALL 7,6,5,4,1,3,2"),
    ] {
        let r = c.ok(&format!("e {command}")).await;
        assert_eq!(r[0], answer, "{command}: {r:?}");
    }
    // UIDs after an expunge; an unknown charset and algorithm.
    c.ok("f STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    c.ok("g EXPUNGE").await;
    let r = c.ok("h UID THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(r[0], "* THREAD ((6)(7))(3 5)(1 4)", "Dovecot gives the same: {r:?}");
    let r = c.cmd("i SORT (SUBJECT) ISO-8859-99 ALL").await;
    assert!(r[0].starts_with("i NO [BADCHARSET (UTF-8 US-ASCII)]"), "{r:?}");
    let r = c.cmd("j THREAD REFS UTF-8 ALL").await;
    assert!(r[0].starts_with("j BAD"), "{r:?}");
}

/// QRESYNC (RFC 7162 §3.2): a client that knew the mailbox at some MODSEQ
/// reconnects and gets exactly what vanished (VANISHED (EARLIER)) and what
/// changed (FETCH) since; once enabled, expunges are told as VANISHED.
#[tokio::test]
async fn qresync_resynchronizes_and_reports_vanished() {
    let s = server().await;
    for n in 1..=6 {
        deliver(&s, "bob@example.test", &format!("m{n}"), "x\r\n").await;
    }
    let number = |lines: &[String], code: &str| -> u64 {
        let line = lines.iter().find(|l| l.contains(&format!("[{code} "))).expect(code);
        line.split(&format!("[{code} ")).nth(1).unwrap().split(']').next().unwrap().parse().unwrap()
    };
    let mut a = Imap::connect(s.imap).await;
    a.login("bob@example.test").await;
    let r = a.cmd("a0 SELECT INBOX (QRESYNC (1 1))").await;
    assert!(r.last().unwrap().starts_with("a0 BAD"), "QRESYNC needs ENABLE first: {r:?}");
    let r = a.ok("a1 ENABLE QRESYNC").await;
    assert_eq!(r[0], "* ENABLED QRESYNC", "{r:?}");
    let r = a.ok("a2 SELECT INBOX").await;
    let (validity, known) = (number(&r, "UIDVALIDITY"), number(&r, "HIGHESTMODSEQ"));
    a.ok("a3 LOGOUT").await;

    // Meanwhile: a flag, two expunges, an arrival.
    let mut b = Imap::connect(s.imap).await;
    b.login("bob@example.test").await;
    b.ok("b1 SELECT INBOX").await;
    b.ok("b2 STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    b.ok("b3 STORE 3,5 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("b4 EXPUNGE").await;
    deliver(&s, "bob@example.test", "m7", "x\r\n").await;

    let mut a = Imap::connect(s.imap).await;
    a.login("bob@example.test").await;
    a.ok("a4 ENABLE QRESYNC").await;
    let r = a.ok(&format!("a5 SELECT INBOX (QRESYNC ({validity} {known}))")).await;
    let vanished = r.iter().position(|l| l == "* VANISHED (EARLIER) 3,5").expect("VANISHED (EARLIER)");
    let fetches: Vec<&String> = r.iter().filter(|l| l.contains(" FETCH ")).collect();
    assert_eq!(fetches.len(), 2, "the flagged message and the new one: {r:?}");
    assert!(fetches[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("), "{r:?}");
    assert!(fetches[1].starts_with("* 5 FETCH (UID 7 FLAGS ("), "{r:?}");
    assert!(r.iter().position(|l| l == fetches[0]).unwrap() > vanished, "VANISHED first (§3.2.5.1): {r:?}");
    assert!(!has(&r, "EXPUNGE"), "{r:?}");
    // Known UIDs narrow VANISHED; another UIDVALIDITY gets no resync at all.
    let r = a.ok(&format!("a6 EXAMINE INBOX (QRESYNC ({validity} {known} 1:4))")).await;
    assert!(has(&r, "* VANISHED (EARLIER) 3") && !has(&r, "3,5"), "{r:?}");
    let r = a.ok(&format!("a7 SELECT INBOX (QRESYNC ({} {known}))", validity + 1)).await;
    assert!(!has(&r, "VANISHED") && !has(&r, " FETCH "), "{r:?}");

    // Selected under QRESYNC: another session's expunge and its own are VANISHED.
    b.ok("b5 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("b6 EXPUNGE").await;
    let r = a.ok("a8 NOOP").await;
    assert_eq!(r[0], "* VANISHED 1", "{r:?}");
    a.ok("a9 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.ok("a10 EXPUNGE").await;
    assert_eq!(r[0], "* VANISHED 2", "{r:?}");
    // UID FETCH … (CHANGEDSINCE n VANISHED) (§3.2.6).
    let r = a.ok(&format!("a11 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")).await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 1:3,5", "{r:?}");
    assert!(r[1].starts_with("* 3 FETCH (UID 7 FLAGS ("), "{r:?}");
    let r = a.cmd("a12 UID FETCH 1:* (FLAGS) (VANISHED)").await;
    assert!(r.last().unwrap().starts_with("a12 BAD"), "VANISHED without CHANGEDSINCE: {r:?}");
}

/// MULTIAPPEND (RFC 3502): several messages in one APPEND, each with its
/// flags and date, stored together with APPENDUID naming them all; one bad
/// message refuses the whole command and stores nothing.
#[tokio::test]
async fn multiappend_stores_all_or_nothing() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let caps = c.ok("a CAPABILITY").await;
    assert!(has(&caps, " MULTIAPPEND "), "{caps:?}");
    c.ok("b SELECT Drafts").await;
    let (one, two, three) = ("Subject: one\r\n\r\n1\r\n", "Subject: two\r\n\r\n2\r\n", "Subject: three\r\n\r\n3\r\n");
    // Synchronising literals: a continuation for each.
    c.send(format!("c APPEND Drafts (\\Seen) {{{}}}\r\n", one.len()).as_bytes()).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(format!("{one} (\\Draft $Todo) \" 2-Jan-2020 10:00:00 +0000\" {{{}}}\r\n", two.len()).as_bytes()).await;
    assert!(c.line().await.starts_with("+ "));
    c.send(format!("{two} {{{}+}}\r\n{three}\r\n", three.len()).as_bytes()).await;
    let r = c.until_tagged("c").await;
    assert!(r.last().unwrap().starts_with("c OK [APPENDUID ") && r.last().unwrap().contains(" 1:3]"), "{r:?}");
    assert!(has(&r, "* 3 EXISTS"), "{r:?}");
    let r = c.ok("d FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert!(r[0].starts_with("* 1 FETCH (FLAGS (\\Seen \\Recent)") && r[0].contains("Subject: one"), "{r:?}");
    assert!(
        r[1].contains("FLAGS (\\Draft $Todo \\Recent)") && r[1].contains("\"02-Jan-2020 10:00:00 +0000\""),
        "{r:?}"
    );
    assert!(r[2].contains("Subject: three"), "{r:?}");
    // A bad date in the second message: nothing at all is stored.
    let r =
        c.cmd(&format!("e APPEND Drafts {{{}+}}\r\n{one} \"yesterday\" {{{}+}}\r\n{two}", one.len(), two.len())).await;
    assert!(r.last().unwrap().starts_with("e BAD"), "{r:?}");
    let r = c.ok("f STATUS Drafts (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 3)"), "{r:?}");
}

/// NUL octets (RFC 9051 §4.3.1: binary strings only in literal8, and only
/// in APPEND and BINARY answers): a `{n}` literal holding one is a syntax
/// error; a literal8 APPEND keeps it; BINARY gives it back as it is, in a
/// literal8; BODY[] cannot carry it and shows it as a space.
#[tokio::test]
async fn nul_octets_only_travel_in_literal8() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let msg = "Subject: nul\r\n\r\nA\0B\r\n";
    c.send(format!("a APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes()).await;
    let r = c.until_tagged("a").await;
    assert!(r.last().unwrap().starts_with("a BAD"), "{r:?}");
    c.send(format!("b APPEND INBOX ~{{{}+}}\r\n{msg}\r\n", msg.len()).as_bytes()).await;
    let r = c.until_tagged("b").await;
    assert!(r.last().unwrap().starts_with("b OK [APPENDUID "), "{r:?}");
    c.ok("c SELECT INBOX").await;
    let r = c.ok("d FETCH 1 (RFC822.SIZE BINARY.PEEK[1] BODY.PEEK[TEXT])").await;
    assert_eq!(r[0], "* 1 FETCH (RFC822.SIZE 21 BINARY[1] ~{5}\r\nA\0B\r\n BODY[TEXT] {5}\r\nA B\r\n)", "{r:?}");
}

/// CATENATE (RFC 4469): a message made of text sent and parts of stored
/// messages named by IMAP URLs, relative or naming this server and user;
/// a URL that cannot be followed is `NO [BADURL url]` and stores nothing.
#[tokio::test]
async fn catenate_joins_text_and_stored_parts() {
    let mut cfg = test_config();
    cfg.imap.plaintext_auth = true;
    cfg.imap.max_literal = 4096;
    let s = TestServer::start_with(cfg).await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let caps = c.ok("a CAPABILITY").await;
    assert!(has(&caps, " CATENATE "), "{caps:?}");
    let draft = "Subject: draft\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                 Content-Type: text/plain\r\n\r\nfirst part\r\n--b\r\nContent-Type: text/x-two\r\n\r\nsecond\r\n--b--\r\n";
    c.send(format!("b APPEND Drafts {{{}+}}\r\n{draft}\r\n", draft.len()).as_bytes()).await;
    let r = c.until_tagged("b").await;
    let uidvalidity = r.last().unwrap().split(' ').nth(3).unwrap().to_string();
    assert!(r.last().unwrap().starts_with("b OK [APPENDUID "), "{r:?}");

    // The header of the draft, new text, its second part's MIME header and
    // body, and a slice of its first part, in order.
    let text = "\r\n--b\r\n";
    let tail = "\r\n--b--\r\n";
    let cmd = format!(
        "c APPEND INBOX (\\Seen) CATENATE (URL \"/Drafts;UIDVALIDITY={uidvalidity}/;UID=1/;SECTION=HEADER\" \
         TEXT {{{}+}}\r\n{text} URL \"imap://alice%40example.test@mx.example.test/Drafts/;UID=1/;SECTION=2.MIME\" \
         URL /Drafts/;UID=1/;SECTION=2 TEXT {{{}+}}\r\n{tail} URL \"/Drafts/;UID=1/;SECTION=1/;PARTIAL=6.4\")",
        text.len(),
        tail.len()
    );
    let r = c.cmd(&cmd).await;
    assert!(r.last().unwrap().starts_with("c OK [APPENDUID "), "{r:?}");
    c.ok("d SELECT INBOX").await;
    let r = c.ok("e FETCH 1 (FLAGS BODY.PEEK[])").await;
    let expected = "Subject: draft\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                    \r\n--b\r\nContent-Type: text/x-two\r\n\r\nsecond\r\n--b--\r\npart";
    assert_eq!(r[0], format!("* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[] {{{}}}\r\n{expected})", expected.len()));

    // Synchronising literals inside CATENATE get their continuations.
    c.send(b"f APPEND INBOX CATENATE (TEXT {14}\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    c.send(b"Subject: two\r\n URL \"/Drafts/;UID=1/;SECTION=TEXT\")\r\n").await;
    let r = c.until_tagged("f").await;
    assert!(r.last().unwrap().starts_with("f OK [APPENDUID "), "{r:?}");

    // URLs that cannot be followed: BADURL with the URL, nothing stored.
    for (url, why) in [
        ("/Drafts;UIDVALIDITY=1/;UID=1".to_string(), "UIDVALIDITY"),
        ("/Drafts/;UID=9".into(), "no message with UID 9"),
        ("/Nowhere/;UID=1".into(), "no mailbox"),
        ("imap://bob%40example.test@mx.example.test/INBOX/;UID=1".into(), "another user"),
        ("imap://alice@elsewhere.test/INBOX/;UID=1".into(), "another server"),
        ("/Drafts/;UID=1/;SECTION=NOPE".into(), "not a message section"),
        ("/Drafts/;UID=1;URLAUTH=anonymous:internal:0123".into(), "URLAUTH"),
        ("/Drafts".into(), "no UID"),
    ] {
        let r = c.cmd(&format!("g APPEND INBOX CATENATE (TEXT {{2+}}\r\nhi URL \"{url}\")")).await;
        let last = r.last().unwrap();
        assert!(last.starts_with(&format!("g NO [BADURL {url}] ")) && last.contains(why), "{url}: {r:?}");
    }
    // Past APPENDLIMIT once joined: TOOBIG. Syntax errors: BAD.
    let big = "x".repeat(4096 / 2 + 1);
    let r =
        c.cmd(&format!("h APPEND INBOX CATENATE (TEXT {{{n}+}}\r\n{big} TEXT {{{n}+}}\r\n{big})", n = big.len())).await;
    assert!(r.last().unwrap().starts_with("h NO [TOOBIG]"), "{:?}", r.last());
    for bad in ["i APPEND INBOX CATENATE ()", "i APPEND INBOX CATENATE (URL)", "i APPEND INBOX CATENATE (BODY x)"] {
        let r = c.cmd(bad).await;
        assert!(r.last().unwrap().starts_with("i BAD"), "{bad}: {r:?}");
    }
    let r = c.ok("j STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 2)"), "{r:?}");
    // The destination is checked first.
    let r = c.cmd("k APPEND Nowhere CATENATE (URL /Drafts/;UID=1)").await;
    assert!(r.last().unwrap().starts_with("k NO [TRYCREATE]"), "{r:?}");
}

/// RFC 9051 §2.3.1.1: a client that knew a name with a UIDVALIDITY sees a
/// greater one there after a RENAME onto it, never an older one.
#[tokio::test]
async fn rename_onto_a_former_name_raises_uidvalidity() {
    let s = server().await;
    let mut c = Imap::connect(s.imap).await;
    c.login("alice@example.test").await;
    let uidvalidity = |r: &[String]| -> u64 {
        let l = r.iter().find(|l| l.contains("[UIDVALIDITY ")).unwrap();
        l.split("[UIDVALIDITY ").nth(1).unwrap().split(']').next().unwrap().parse().unwrap()
    };
    c.ok("a CREATE Old").await;
    c.ok("b CREATE Reports").await;
    let old = uidvalidity(&c.ok("c EXAMINE Old").await);
    let reports = uidvalidity(&c.ok("d EXAMINE Reports").await);
    assert!(reports > old);
    c.ok("e UNSELECT").await;
    c.ok("f DELETE Reports").await;
    c.ok("g RENAME Old Reports").await;
    let now = uidvalidity(&c.ok("h EXAMINE Reports").await);
    assert!(now > reports, "{now} after {reports}");
    // A rename onto a name never used keeps the UIDVALIDITY.
    c.ok("i UNSELECT").await;
    c.ok("j RENAME Reports Fresh").await;
    assert_eq!(uidvalidity(&c.ok("k EXAMINE Fresh").await), now);
}

/// CONTEXT=SEARCH (RFC 5267 §4): PARTIAL windows of SEARCH and SORT
/// results, and searches kept up to date with ADDTO and REMOVEFROM as
/// another session and this one change the mailbox; the lines are those
/// Dovecot 2.3 sends for the same steps.
#[tokio::test]
async fn search_contexts_update_and_partial() {
    let s = server().await;
    let (mut a, mut b) = (Imap::connect(s.imap).await, Imap::connect(s.imap).await);
    a.login("alice@example.test").await;
    b.login("alice@example.test").await;
    let caps = a.ok("c CAPABILITY").await;
    assert!(has(&caps, " CONTEXT=SEARCH "), "{caps:?}");
    a.ok("c CREATE Ctx").await;
    for i in 0..6 {
        let m = format!("Subject: m{i}\r\n\r\nbody {i}\r\n");
        a.send(format!("a{i} APPEND Ctx {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
        a.until_tagged(&format!("a{i}")).await;
    }
    a.ok("s SELECT Ctx").await;
    b.ok("s SELECT Ctx").await;
    a.ok("f STORE 2,4 +FLAGS.SILENT (\\Flagged)").await;
    let esearch = |r: &[String]| -> Vec<String> {
        r.iter().filter(|l| l.starts_with("* ESEARCH") || l.ends_with(" EXPUNGE")).cloned().collect()
    };
    for (cmd, want) in [
        ("p1 SEARCH RETURN (PARTIAL 1:2) ALL", "* ESEARCH (TAG \"p1\") PARTIAL (1:2 1:2)"),
        ("p2 UID SEARCH RETURN (PARTIAL 2:10 COUNT) ALL", "* ESEARCH (TAG \"p2\") UID PARTIAL (2:10 2:6) COUNT 6"),
        ("p3 SEARCH RETURN (PARTIAL 7:9) ALL", "* ESEARCH (TAG \"p3\") PARTIAL (7:9 NIL)"),
        ("p5 SEARCH RETURN (PARTIAL 3:1) ALL", "* ESEARCH (TAG \"p5\") PARTIAL (1:3 1:3)"),
        ("p8 SEARCH RETURN (MIN PARTIAL 2:3 MAX) ALL", "* ESEARCH (TAG \"p8\") MIN 1 MAX 6 PARTIAL (2:3 2:3)"),
        // Positions in the sort order.
        ("p7 SORT RETURN (PARTIAL 1:2) (REVERSE SUBJECT) UTF-8 ALL", "* ESEARCH (TAG \"p7\") PARTIAL (1:2 6,5)"),
        ("u1 UID SEARCH RETURN (UPDATE) FLAGGED", "* ESEARCH (TAG \"u1\") UID"),
        ("u2 SEARCH RETURN (UPDATE COUNT) UNFLAGGED", "* ESEARCH (TAG \"u2\") COUNT 4"),
        ("u3 SEARCH RETURN (CONTEXT) ALL", "* ESEARCH (TAG \"u3\") ALL 1:6"),
        ("u4 SEARCH RETURN (UPDATE SAVE) ALL", "* ESEARCH (TAG \"u4\")"),
    ] {
        assert_eq!(esearch(&a.ok(cmd).await), [want], "{cmd}");
    }
    for bad in ["p4 SEARCH RETURN (PARTIAL 1:2 ALL) ALL", "p6 SEARCH RETURN (PARTIAL -1:-2) ALL"] {
        assert!(a.cmd(bad).await.last().unwrap().starts_with(&bad[..3]), "{bad}");
        assert!(a.cmd(bad).await.last().unwrap().contains(" BAD "), "{bad}");
    }
    let r = a.cmd("u2 SEARCH RETURN (UPDATE) ALL").await;
    assert!(r.last().unwrap().starts_with("u2 BAD"), "a tag names one context: {r:?}");

    b.ok("b1 STORE 1 +FLAGS (\\Flagged)").await;
    let r = a.ok("n1 NOOP").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"u1\") UID ADDTO (0 1)", "* ESEARCH (TAG \"u2\") REMOVEFROM (0 1)"]);
    b.ok("b2 STORE 2 -FLAGS (\\Flagged)").await;
    b.ok("b3 STORE 3 +FLAGS (\\Deleted)").await;
    b.ok("b4 EXPUNGE").await;
    let r = a.ok("n2 NOOP").await;
    assert_eq!(
        esearch(&r),
        [
            "* ESEARCH (TAG \"u2\") REMOVEFROM (0 3)",
            "* ESEARCH (TAG \"u4\") REMOVEFROM (0 3)",
            "* 3 EXPUNGE",
            "* ESEARCH (TAG \"u1\") UID REMOVEFROM (0 2)",
            "* ESEARCH (TAG \"u2\") ADDTO (0 2)",
        ],
        "{r:?}"
    );
    let m = "Subject: new\r\n\r\nnew\r\n";
    b.send(format!("b5 APPEND Ctx (\\Flagged) {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
    b.until_tagged("b5").await;
    let r = a.ok("n3 NOOP").await;
    let exists = r.iter().position(|l| l == "* 6 EXISTS").expect("EXISTS");
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"u1\") UID ADDTO (0 7)", "* ESEARCH (TAG \"u4\") ADDTO (0 6)"]);
    assert!(r.iter().position(|l| l.contains("ADDTO")).unwrap() > exists, "ADDTO after EXISTS: {r:?}");
    a.ok("x1 CANCELUPDATE \"u1\"").await;
    assert!(a.cmd("x2 CANCELUPDATE \"nope\"").await.last().unwrap().starts_with("x2 NO"));
    b.ok("b6 STORE 1:* +FLAGS (\\Flagged)").await;
    let r = a.ok("n4 NOOP").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"u2\") REMOVEFROM (0 2,4:5)"], "{r:?}");
    // This session's own STORE tells it in the STORE's answer.
    let r = a.ok("f2 STORE 5 -FLAGS (\\Flagged)").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"u2\") ADDTO (0 5)"], "{r:?}");
    // A SORT is kept too (CONTEXT=SORT; positions in its own test).
    let r = a.ok("u5 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"u5\") UID"]);
    // At most 8 contexts (u2, u4, u5 and five more): the ninth is
    // answered, not kept.
    for i in 0..5 {
        a.ok(&format!("k{i} SEARCH RETURN (UPDATE) ALL")).await;
    }
    let r = a.ok("k9 SEARCH RETURN (UPDATE COUNT) ALL").await;
    assert!(has(&r, "* NO [NOUPDATE \"k9\"]") && has(&r, "COUNT 6"), "{r:?}");
    // Contexts end with the selection.
    a.ok("s2 SELECT Ctx").await;
    b.ok("b7 STORE 1:* -FLAGS (\\Flagged)").await;
    let r = a.ok("n5 NOOP").await;
    assert!(esearch(&r).is_empty(), "{r:?}");
    assert!(a.cmd("x3 CANCELUPDATE \"u2\"").await.last().unwrap().starts_with("x3 NO"));
}

/// CONTEXT=SORT (RFC 5267 §4.3): a SORT kept up to date gives positions in
/// its order, each pair applying to the result as the pairs before it
/// left it; REMOVEFROM before the EXPUNGE, ADDTO after the EXISTS.
#[tokio::test]
async fn sort_contexts_name_positions() {
    let s = server().await;
    let (mut a, mut b) = (Imap::connect(s.imap).await, Imap::connect(s.imap).await);
    a.login("alice@example.test").await;
    b.login("alice@example.test").await;
    let caps = a.ok("c CAPABILITY").await;
    assert!(has(&caps, " CONTEXT=SORT "), "{caps:?}");
    let msg = |subject: &str| format!("Subject: {subject}\r\n\r\nx\r\n");
    let append = |subjects: &[&str]| {
        let parts: Vec<String> = subjects.iter().map(|s| format!("{{{}+}}\r\n{}", msg(s).len(), msg(s))).collect();
        format!("ap APPEND Srt {}\r\n", parts.join(" "))
    };
    a.ok("c CREATE Srt").await;
    a.send(append(&["c", "a", "e"]).as_bytes()).await;
    a.until_tagged("ap").await;
    a.ok("s SELECT Srt").await;
    b.ok("s SELECT Srt").await;
    let esearch = |r: &[String]| -> Vec<String> {
        r.iter()
            .filter(|l| l.starts_with("* ESEARCH") || l.ends_with(" EXPUNGE") || l.ends_with(" EXISTS"))
            .cloned()
            .collect()
    };
    let r = a.ok("s1 UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 ALL").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"s1\") UID ALL 2,1,3"]);
    let r = a.ok("s2 SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNFLAGGED").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"s2\")"]);

    b.send(append(&["b"]).as_bytes()).await;
    b.until_tagged("ap").await;
    let r = a.ok("n1 NOOP").await;
    assert_eq!(
        esearch(&r),
        ["* 4 EXISTS", "* ESEARCH (TAG \"s1\") UID ADDTO (2 4)", "* ESEARCH (TAG \"s2\") ADDTO (3 4)"]
    );
    b.ok("b1 STORE 2 +FLAGS (\\Flagged)").await;
    let r = a.ok("n2 NOOP").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"s2\") REMOVEFROM (4 2)"]);
    b.ok("b2 STORE 1 +FLAGS (\\Deleted)").await;
    b.ok("b3 EXPUNGE").await;
    let r = a.ok("n3 NOOP").await;
    assert_eq!(
        esearch(&r),
        ["* ESEARCH (TAG \"s1\") UID REMOVEFROM (3 1)", "* ESEARCH (TAG \"s2\") REMOVEFROM (2 1)", "* 1 EXPUNGE"]
    );
    b.send(append(&["d", "0"]).as_bytes()).await;
    b.until_tagged("ap").await;
    let r = a.ok("n4 NOOP").await;
    assert_eq!(
        esearch(&r),
        ["* 5 EXISTS", "* ESEARCH (TAG \"s1\") UID ADDTO (3 5 1 6)", "* ESEARCH (TAG \"s2\") ADDTO (2 4 4 5)"]
    );
    // The kept order is the order a new SORT gives.
    let r = a.ok("s3 UID SORT RETURN (ALL) (SUBJECT) UTF-8 ALL").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"s3\") UID ALL 6,2,4:5,3"]);
    let r = a.ok("s4 SORT RETURN (PARTIAL 1:9) (REVERSE SUBJECT) UTF-8 UNFLAGGED").await;
    assert_eq!(esearch(&r), ["* ESEARCH (TAG \"s4\") PARTIAL (1:9 2,4,3,5)"]);
    a.ok("x CANCELUPDATE \"s1\" \"s2\"").await;
}

/// NOTIFY (RFC 5465): what the client asked for is pushed between
/// commands, without IDLE: the selected mailbox's EXISTS (with the FETCH
/// items MessageNew names), flag changes and EXPUNGE (held for a command
/// with selected-delayed), and a STATUS for other mailboxes; NOTIFY NONE
/// stops it. Refusals as RFC 5465 §3.1 and §5 say.
#[tokio::test]
async fn notify_pushes_what_was_asked() {
    let s = server().await;
    let (mut a, mut b) = (Imap::connect(s.imap).await, Imap::connect(s.imap).await);
    a.login("alice@example.test").await;
    b.login("alice@example.test").await;
    let caps = a.ok("c CAPABILITY").await;
    assert!(has(&caps, " NOTIFY "), "{caps:?}");
    b.ok("c CREATE Other").await;
    a.ok("s SELECT INBOX").await;
    // b keeps INBOX unselected while appending, so \\Recent is a's.
    b.ok("s SELECT Other").await;
    for (cmd, answer) in [
        ("n SET (selected (MessageNew))", "n BAD"),
        ("n SET (selected (FlagChange))", "n BAD"),
        ("n SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))", "n BAD"),
        ("n SET (selected (MessageNew MessageExpunge MailboxName))", "n BAD"),
        ("n SET ()", "n BAD"),
        (
            "n SET (selected (MessageNew MessageExpunge AnnotationChange))",
            "n NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]",
        ),
        (
            "n SET (personal (MailboxMetadataChange))",
            "n NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]",
        ),
    ] {
        let r = a.cmd(&cmd.replacen("n ", "n NOTIFY ", 1)).await;
        assert!(r.last().unwrap().starts_with(answer), "{cmd}: {r:?}");
    }
    let r = a
        .ok("n1 NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge FlagChange)) \
             (personal (MessageNew MessageExpunge FlagChange))")
        .await;
    let uv = |r: &[String], name: &str| -> String {
        let l = r.iter().find(|l| l.starts_with(&format!("* STATUS {name} "))).unwrap_or_else(|| panic!("{r:?}"));
        l.split("UIDVALIDITY ").nth(1).unwrap().split(' ').next().unwrap().to_string()
    };
    let other = uv(&r, "\"Other\"");
    assert!(has(&r, &format!("* STATUS \"Other\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY {other} UNSEEN 0)")), "{r:?}");
    assert!(has(&r, "* STATUS \"Drafts\" ") && !has(&r, "* STATUS \"INBOX\""), "the selected one has none: {r:?}");

    // Pushed without a command: the new message and the items asked for.
    let m = "Subject: pushed\r\n\r\nx\r\n";
    b.send(format!("b1 APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
    b.until_tagged("b1").await;
    assert_eq!(a.line().await, "* 1 EXISTS");
    assert_eq!(a.line().await, "* 1 RECENT");
    let fetch = a.line().await;
    assert!(
        fetch.starts_with("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {") && fetch.contains("Subject: pushed"),
        "{fetch}"
    );
    b.send(format!("b2 APPEND Other {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
    b.until_tagged("b2").await;
    assert_eq!(a.line().await, format!("* STATUS \"Other\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY {other} UNSEEN 1)"));
    b.ok("s SELECT INBOX").await;
    b.ok("b3 STORE 1 +FLAGS (\\Flagged)").await;
    assert_eq!(a.line().await, "* 1 FETCH (FLAGS (\\Flagged \\Recent) UID 1)");
    b.ok("b4 STORE 1 +FLAGS (\\Deleted)").await;
    assert_eq!(a.line().await, "* 1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent) UID 1)");
    b.ok("b5 EXPUNGE").await;
    assert_eq!(a.line().await, "* 1 EXPUNGE");
    // Nothing else was pushed; a command still works in between.
    assert_eq!(a.line_within(300).await, None);
    a.ok("a1 NOOP").await;

    // selected-delayed: arrivals pushed, expunges wait for a command.
    a.ok("n2 NOTIFY SET (selected-delayed (MessageNew MessageExpunge))").await;
    b.ok("s SELECT Other").await;
    b.send(format!("b6 APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
    b.until_tagged("b6").await;
    assert_eq!(a.line().await, "* 1 EXISTS");
    assert_eq!(a.line().await, "* 1 RECENT");
    b.ok("s SELECT INBOX").await;
    b.ok("b7 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.ok("b8 EXPUNGE").await;
    let pushed = a.line_within(500).await;
    assert!(pushed.as_deref().is_none_or(|l| !l.contains("EXPUNGE")), "{pushed:?}");
    let r = a.ok("a2 NOOP").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");

    // NOTIFY NONE: nothing is pushed; NOOP tells.
    a.ok("n3 NOTIFY NONE").await;
    b.send(format!("b9 APPEND INBOX {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
    b.until_tagged("b9").await;
    assert_eq!(a.line_within(500).await, None);
    let r = a.ok("a3 NOOP").await;
    assert!(has(&r, "* 1 EXISTS"), "{r:?}");
}

/// NOTIFY's MailboxName and SubscriptionChange (RFC 5465 §5.4–5.5): another
/// session's CREATE, RENAME, UNSUBSCRIBE and DELETE come as LIST responses;
/// a mailbox created after NOTIFY SET is watched too; this session's own
/// changes are not pushed back.
#[tokio::test]
async fn notify_pushes_mailbox_names_and_subscriptions() {
    let s = server().await;
    let (mut a, mut b) = (Imap::connect(s.imap).await, Imap::connect(s.imap).await);
    a.login("alice@example.test").await;
    b.login("alice@example.test").await;
    a.ok("n1 NOTIFY SET (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))").await;
    b.ok("c1 CREATE Neu").await;
    // CREATE subscribes the new mailbox too.
    assert_eq!(a.line().await, "* LIST () \"/\" \"Neu\"");
    assert_eq!(a.line().await, "* LIST (\\Subscribed) \"/\" \"Neu\"");
    b.ok("c2 RENAME Neu Neuer").await;
    assert_eq!(a.line().await, "* LIST () \"/\" \"Neuer\" (\"OLDNAME\" (\"Neu\"))");
    assert_eq!(a.line().await, "* LIST (\\NonExistent) \"/\" \"Neu\"");
    assert_eq!(a.line().await, "* LIST (\\Subscribed) \"/\" \"Neuer\"");
    b.ok("c3 UNSUBSCRIBE Neuer").await;
    assert_eq!(a.line().await, "* LIST () \"/\" \"Neuer\"");
    // A mailbox made after NOTIFY SET is watched.
    let m = "Subject: x\r\n\r\nx\r\n";
    b.send(format!("b1 APPEND Neuer {{{}+}}\r\n{m}\r\n", m.len()).as_bytes()).await;
    b.until_tagged("b1").await;
    let status = a.line().await;
    assert!(status.starts_with("* STATUS \"Neuer\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "), "{status}");
    b.ok("c4 DELETE Neuer").await;
    assert_eq!(a.line().await, "* LIST (\\NonExistent) \"/\" \"Neuer\"");
    assert_eq!(a.line_within(300).await, None);
    // This session's own changes are not pushed back.
    a.ok("c5 CREATE Mine").await;
    a.ok("c6 UNSUBSCRIBE Mine").await;
    assert_eq!(a.line_within(500).await, None);
    // Another user's changes are not this session's business.
    let mut bob = Imap::connect(s.imap).await;
    bob.login("bob@example.test").await;
    bob.ok("c7 CREATE Bobs").await;
    assert_eq!(a.line_within(500).await, None);
}
