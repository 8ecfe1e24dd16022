//! IMAP QUOTA (RFC 9208) over real TCP: the capabilities, GETQUOTAROOT and
//! GETQUOTA with their units (STORAGE in KiB, usage rounded up, limits
//! down), a user without limits (no quota root), SETQUOTA refused, and
//! OVERQUOTA for an APPEND or a COPY that would not fit (nothing stored),
//! while a MOVE, which adds nothing, goes through.

mod common;

use common::{Lines, PASSWORD, TestServer, test_config};
use facteur_store::prelude::*;

const ALICE: &str = "alice@example.test";

/// A server whose IMAP accepts LOGIN without TLS (loopback development).
async fn server() -> TestServer {
    let mut c = test_config();
    c.imap.plaintext_auth = true;
    TestServer::start_with(c).await
}

/// A logged-in IMAP session, one command at a time.
struct Imap(Lines);

impl Imap {
    async fn login(s: &TestServer, user: &str) -> Imap {
        let mut c = Imap(Lines::connect(s.imap).await);
        let greeting = c.0.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c.ok(&format!("l LOGIN {user} {PASSWORD}")).await;
        c
    }

    /// The lines answering `line`, the tagged one last.
    async fn cmd(&mut self, line: &str) -> Vec<String> {
        self.0.send(format!("{line}\r\n").as_bytes()).await;
        let tag = line.split(' ').next().unwrap();
        self.0.until(&format!("{tag} ")).await
    }

    async fn ok(&mut self, line: &str) -> Vec<String> {
        let r = self.cmd(line).await;
        let tag = line.split(' ').next().unwrap();
        assert!(r.last().unwrap().starts_with(&format!("{tag} OK")), "{line} -> {r:?}");
        r
    }

    /// APPEND `message` to `mailbox` with a non-synchronizing literal.
    async fn append(&mut self, tag: &str, mailbox: &str, message: &[u8]) -> Vec<String> {
        let mut bytes = format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).into_bytes();
        bytes.extend_from_slice(message);
        bytes.extend_from_slice(b"\r\n");
        self.0.send(&bytes).await;
        self.0.until(&format!("{tag} ")).await
    }

    /// The MESSAGES count of a mailbox, from STATUS.
    async fn messages(&mut self, mailbox: &str) -> u64 {
        let r = self.ok(&format!("st STATUS {mailbox} (MESSAGES)")).await;
        let n = r[0].rsplit_once("MESSAGES ").and_then(|(_, n)| n.strip_suffix(')')).expect("STATUS line");
        n.parse().unwrap()
    }
}

/// A message of exactly `octets` octets.
fn message(octets: usize) -> Vec<u8> {
    let head = b"Subject: quota\r\n\r\n";
    assert!(octets >= head.len());
    let mut m = head.to_vec();
    m.resize(octets, b'x');
    m
}

async fn quota(s: &TestServer) -> facteur_store::Quota {
    s.store().quota(ALICE).await.unwrap().expect("alice exists")
}

#[tokio::test]
async fn capabilities_quota_roots_and_units() {
    let s = server().await;
    let mut c = Imap::login(&s, ALICE).await;
    // RFC 9208 §1, §3.1.1: QUOTA and a QUOTA=RES- capability per resource;
    // no QUOTASET, since SETQUOTA is refused.
    let caps = c.ok("a CAPABILITY").await;
    let words: Vec<&str> = caps[0].split(' ').collect();
    for cap in ["QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"] {
        assert!(words.contains(&cap), "{cap} missing: {caps:?}");
    }
    assert!(!words.contains(&"QUOTASET"), "{caps:?}");

    // No limit at all: the mailbox has no quota root, and "" is no root.
    s.store().set_quota(ALICE, None, None).await.unwrap();
    let r = c.ok("b GETQUOTAROOT INBOX").await;
    assert_eq!(r, ["* QUOTAROOT \"INBOX\"", "b OK GETQUOTAROOT completed"]);
    let r = c.cmd("c GETQUOTA \"\"").await;
    assert_eq!(r, ["c NO no such quota root"]);

    // 1500 octets stored: 2 units of 1024 used (rounded up); a limit of
    // 10 KiB and 1023 octets shows as 10 (rounded down).
    assert!(c.append("d", "INBOX", &message(1500)).await[0].starts_with("d OK [APPENDUID "));
    let q = quota(&s).await;
    assert_eq!((q.used_bytes, q.used_messages), (1500, 1));
    s.store().set_quota(ALICE, Some(10 * 1024 + 1023), Some(50)).await.unwrap();
    let r = c.ok("e GETQUOTAROOT INBOX").await;
    assert_eq!(r[0], "* QUOTAROOT \"INBOX\" \"\"");
    assert_eq!(r[1], "* QUOTA \"\" (STORAGE 2 10 MESSAGE 1 50)");
    assert_eq!(r.len(), 3, "{r:?}");
    // The root covers every mailbox of the user.
    let r = c.ok("f GETQUOTAROOT Archive").await;
    assert_eq!(r[..2], ["* QUOTAROOT \"Archive\" \"\"", "* QUOTA \"\" (STORAGE 2 10 MESSAGE 1 50)"]);
    let r = c.ok("g GETQUOTA \"\"").await;
    assert_eq!(r, ["* QUOTA \"\" (STORAGE 2 10 MESSAGE 1 50)", "g OK GETQUOTA completed"]);
    let r = c.cmd("h GETQUOTA \"User quota\"").await;
    assert_eq!(r, ["h NO no such quota root"]);
    let r = c.cmd("i GETQUOTAROOT Nowhere").await;
    assert!(r[0].starts_with("i NO [NONEXISTENT]"), "{r:?}");

    // RFC 9208 §4.2.1: a resource without a limit is not listed.
    s.store().set_quota(ALICE, None, Some(5)).await.unwrap();
    let r = c.ok("j GETQUOTA \"\"").await;
    assert_eq!(r[0], "* QUOTA \"\" (MESSAGE 1 5)");
    s.store().set_quota(ALICE, Some(4096), None).await.unwrap();
    let r = c.ok("k GETQUOTA \"\"").await;
    assert_eq!(r[0], "* QUOTA \"\" (STORAGE 2 4)");

    // RFC 9208 §4.1.3: SETQUOTA is the operator's, not the client's.
    let r = c.cmd("l SETQUOTA \"\" (STORAGE 100000)").await;
    assert!(r[0].starts_with("l NO [NOPERM]"), "{r:?}");
    assert_eq!(quota(&s).await.limit_bytes, Some(4096));

    // RFC 9208 §5.1, §5.2: DELETED-STORAGE and DELETED in STATUS.
    c.ok("m SELECT INBOX").await;
    c.ok("n STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("o STATUS INBOX (DELETED DELETED-STORAGE)").await;
    assert_eq!(r[0], "* STATUS \"INBOX\" (DELETED 1 DELETED-STORAGE 1500)");
}

#[tokio::test]
async fn append_up_to_the_limit_and_not_past_it() {
    let s = server().await;
    let mut c = Imap::login(&s, ALICE).await;
    let before = quota(&s).await;
    // Room for exactly 2000 octets more.
    s.store().set_quota(ALICE, Some(before.used_bytes + 2000), None).await.unwrap();
    let r = c.append("a", "INBOX", &message(2000)).await;
    assert!(r[0].starts_with("a OK [APPENDUID "), "{r:?}");
    // Full to the octet: one more octet is refused, and nothing is stored.
    let r = c.append("b", "INBOX", b"x").await;
    assert!(r[0].starts_with("b NO [OVERQUOTA]"), "{r:?}");
    let q = quota(&s).await;
    assert_eq!((q.used_bytes, q.used_messages), (before.used_bytes + 2000, before.used_messages + 1));
    assert_eq!(c.messages("INBOX").await, 1);
    // A missing mailbox is still TRYCREATE, whatever the quota.
    let r = c.append("c", "Nowhere", &message(100)).await;
    assert!(r[0].starts_with("c NO [TRYCREATE]"), "{r:?}");

    // The message count: room for one more, whatever its size.
    s.store().set_quota(ALICE, None, Some(q.used_messages + 1)).await.unwrap();
    let r = c.append("d", "Drafts", &message(50_000)).await;
    assert!(r[0].starts_with("d OK [APPENDUID "), "{r:?}");
    let r = c.append("e", "Drafts", &message(20)).await;
    assert!(r[0].starts_with("e NO [OVERQUOTA]"), "{r:?}");
    assert_eq!(c.messages("Drafts").await, 1);
    assert_eq!(quota(&s).await.used_messages, q.used_messages + 1);
    // The selected mailbox hears of nothing that was refused.
    let r = c.ok("f SELECT Drafts").await;
    assert!(r.contains(&"* 1 EXISTS".to_string()), "{r:?}");
}

#[tokio::test]
async fn copy_past_the_limit_copies_nothing_and_move_goes_through() {
    let s = server().await;
    let mut c = Imap::login(&s, ALICE).await;
    for tag in ["a1", "a2"] {
        assert!(c.append(tag, "INBOX", &message(1000)).await[0].starts_with(&format!("{tag} OK")));
    }
    let before = quota(&s).await;
    // Room for one more copy of a message, not two.
    s.store().set_quota(ALICE, Some(before.used_bytes + 1500), None).await.unwrap();
    c.ok("b SELECT INBOX").await;
    let r = c.cmd("c COPY 1:2 Archive").await;
    assert!(r[0].starts_with("c NO [OVERQUOTA]"), "{r:?}");
    let r = c.cmd("c2 UID COPY 1:* Archive").await;
    assert!(r.last().unwrap().starts_with("c2 NO [OVERQUOTA]"), "{r:?}");
    assert_eq!(c.messages("Archive").await, 0);
    let q = quota(&s).await;
    assert_eq!((q.used_bytes, q.used_messages), (before.used_bytes, before.used_messages));

    // One fits; then 500 octets are left.
    let r = c.ok("d COPY 1 Archive").await;
    assert!(r[0].starts_with("d OK [COPYUID "), "{r:?}");
    assert_eq!(quota(&s).await.used_bytes, before.used_bytes + 1000);
    // A MOVE of 1000 octets adds nothing to the user's usage: allowed.
    let r = c.ok("e MOVE 2 Archive").await;
    assert!(r.iter().any(|l| l == "* 2 EXPUNGE"), "{r:?}");
    assert_eq!(c.messages("Archive").await, 2);
    let q = quota(&s).await;
    assert_eq!((q.used_bytes, q.used_messages), (before.used_bytes + 1000, before.used_messages + 1));

    // The message count counts copies too.
    s.store().set_quota(ALICE, None, Some(q.used_messages)).await.unwrap();
    let r = c.cmd("f COPY 1 Trash").await;
    assert!(r[0].starts_with("f NO [OVERQUOTA]"), "{r:?}");
    assert_eq!(c.messages("Trash").await, 0);
    // Over the limit (the operator lowered it), a MOVE still goes through.
    s.store().set_quota(ALICE, None, Some(1)).await.unwrap();
    c.ok("g SELECT Archive").await;
    c.ok("h MOVE 1 Trash").await;
    assert_eq!(c.messages("Trash").await, 1);
    assert_eq!(quota(&s).await.used_messages, q.used_messages);
}
