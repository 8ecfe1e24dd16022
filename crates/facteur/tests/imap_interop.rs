//! IMAP interop with real clients from Debian packages: Python's imaplib,
//! Mail::IMAPClient (SORT, THREAD),
//! mbsync (isync) and offlineimap (offlineimap3), against a facteur holding
//! a few hundred messages delivered over SMTP. Each asserts on what the
//! client ended up with.
//! A missing tool fails its test and names the package to install.

mod common;

use std::process::Command;

use common::{Client, PASSWORD, TestServer, require, run};
use facteur_store::{FlagOp, prelude::*};

/// `n` messages to `to` over one SMTP session, subjects "message 1".."message n".
async fn deliver_many(s: &TestServer, to: &str, n: usize) {
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for i in 1..=n {
        let body =
            format!("From: <sender@remote.test>\r\nTo: <{to}>\r\nSubject: message {i}\r\n\r\nThis is message {i}.\r\n");
        assert_eq!(c.send_mail("sender@remote.test", &[to], &body).await.code, 250);
    }
}

const IMAPLIB: &str = r#"
import imaplib, ssl, sys
host, port, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
m.login("alice@example.test", pw)
typ, boxes = m.list()
assert typ == "OK", boxes
names = [b.decode() for b in boxes]
assert any('\\Sent' in n and '"Sent"' in n for n in names), names
typ, data = m.select("INBOX")
assert typ == "OK" and int(data[0]) == 300, data
typ, data = m.search(None, "ALL")
assert len(data[0].split()) == 300, data
typ, data = m.fetch("150", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"Subject: message 150" in data[0][1], data
typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
assert len(data) == 300, len(data)
typ, data = m.fetch("42", "(RFC822)")
assert b"This is message 42." in data[0][1], data
m.store("1:10", "+FLAGS", "\\Seen")
typ, data = m.search(None, "SEEN")
assert len(data[0].split()) == 11, data
typ, data = m.search(None, 'SUBJECT "message 299"')
assert data[0].split() == [b"299"], data
typ, data = m.search(None, 'BODY "This is message 280."')
assert data[0].split() == [b"280"], data
typ, data = m.copy("1:5", "Archive")
assert typ == "OK", data
typ, data = m.status("Archive", "(MESSAGES)")
assert b"MESSAGES 5" in data[0], data
m.store("1", "+FLAGS", "\\Deleted")
typ, data = m.expunge()
assert data == [b"1"], data
typ, data = m.select("INBOX", readonly=True)
assert int(data[0]) == 299, data
typ, data = m.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nunfinished\r\n")
assert typ == "OK", data
m.logout()
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_reads_a_mailbox() {
    require("python3");
    let s = TestServer::start().await;
    deliver_many(&s, "alice@example.test", 300).await;
    let port = s.imaps.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args(["-c", IMAPLIB, "127.0.0.1", &port, PASSWORD]))
    })
    .await
    .unwrap();
    assert!(out.trim_end().ends_with("ok"), "{out}");
    let store = s.store();
    let drafts = store.mailbox("alice@example.test", "Drafts").await.unwrap().unwrap();
    let d = store.mailbox_messages(drafts.id).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].flags, ["\\Draft"]);
}

/// A Maildir file's text with LF line ends (mbsync writes them so).
fn text(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap().replace("\r\n", "\n")
}

/// Files of a Maildir folder (cur and new).
fn maildir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            files.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_syncs_an_account_both_ways() {
    require("mbsync");
    let s = TestServer::start().await;
    deliver_many(&s, "bob@example.test", 200).await;
    let work = tempfile::tempdir().unwrap();
    let cert = s.dir.path().join("tls/cert.pem");
    let local = work.path().join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let rc = work.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount facteur\nHost 127.0.0.1\nPort {port}\nUser bob@example.test\nPass {PASSWORD}\nSSLType IMAPS\n\
             CertificateFile {cert}\n\nIMAPStore remote\nAccount facteur\n\nMaildirStore local\nPath {local}/\n\
             Inbox {local}/INBOX\nSubFolders Verbatim\n\nChannel sync\nFar :remote:\nNear :local:\nPatterns *\n\
             Create Both\nExpunge Both\nSyncState *\nSync All\n",
            port = s.imaps.port(),
            cert = cert.display(),
            local = local.display()
        ),
    )
    .unwrap();
    let sync = {
        let rc = rc.clone();
        move || run(Command::new("mbsync").args(["-c", rc.to_str().unwrap(), "-a"]))
    };
    let out = tokio::task::spawn_blocking(sync.clone()).await.unwrap();
    let inbox = maildir(&local.join("INBOX"));
    assert_eq!(inbox.len(), 200, "{out}");
    for folder in ["Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(local.join(folder).join("cur").is_dir(), "{folder} not created locally: {out}");
    }
    let one = inbox.iter().find(|p| text(p).contains("Subject: message 7\n")).unwrap();
    assert!(text(one).contains("This is message 7."));

    // Locally: flag message 7, move message 8 to Archive, then sync back.
    let eight = inbox.iter().find(|p| text(p).contains("Subject: message 8\n")).unwrap();
    let flagged = {
        let name = one.file_name().unwrap().to_str().unwrap().to_string();
        let base = name.split(":2,").next().unwrap().to_string();
        let new = local.join("INBOX/cur").join(format!("{base}:2,F"));
        std::fs::rename(one, &new).unwrap();
        new
    };
    let name = eight.file_name().unwrap().to_str().unwrap();
    // Without its ",U=<uid>" the file is a new message in Archive.
    let moved: String = name.split(',').filter(|p| !p.starts_with("U=")).collect::<Vec<_>>().join(",");
    std::fs::rename(eight, local.join("Archive/cur").join(moved)).unwrap();
    let out = tokio::task::spawn_blocking(sync).await.unwrap();
    assert!(flagged.exists());

    let store = s.store();
    let inbox_box = store.mailbox("bob@example.test", "INBOX").await.unwrap().unwrap();
    let msgs = store.mailbox_messages(inbox_box.id).await.unwrap();
    assert_eq!(msgs.len(), 199, "message 8 left INBOX on the server: {out}");
    let mut flagged_subjects = Vec::new();
    for m in msgs.iter().filter(|m| m.flags.iter().any(|f| f == "\\Flagged")) {
        let raw = store.fetch_message(inbox_box.id, m.uid).await.unwrap().unwrap();
        flagged_subjects
            .push(String::from_utf8_lossy(&raw).lines().find(|l| l.starts_with("Subject:")).unwrap().to_string());
    }
    assert_eq!(flagged_subjects, ["Subject: message 7"], "{out}");
    let archive = store.mailbox("bob@example.test", "Archive").await.unwrap().unwrap();
    let a = store.mailbox_messages(archive.id).await.unwrap();
    assert_eq!(a.len(), 1, "{out}");
    let raw = store.fetch_message(archive.id, a[0].uid).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("Subject: message 8"));
}

/// The Maildir flags of a file named `<prefix>:2,<flags>`.
fn maildir_flags(p: &std::path::Path) -> String {
    let name = p.file_name().unwrap().to_str().unwrap();
    name.rsplit_once(":2,").map_or("", |(_, f)| f).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offlineimap_syncs_an_account_both_ways() {
    require("offlineimap");
    let s = TestServer::start().await;
    deliver_many(&s, "bob@example.test", 200).await;
    // Flag message 17 on the server before the first sync.
    let store = s.store();
    let inbox_box = store.mailbox("bob@example.test", "INBOX").await.unwrap().unwrap();
    let msgs = store.mailbox_messages(inbox_box.id).await.unwrap();
    assert_eq!(msgs.len(), 200);
    let uid17 = msgs[16].uid;
    let raw = store.fetch_message(inbox_box.id, uid17).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("Subject: message 17\r\n"));
    store.store_flags(inbox_box.id, vec![uid17], FlagOp::Add, vec!["\\Flagged".into()], None).await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let cert = s.dir.path().join("tls/cert.pem");
    let local = work.path().join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let rc = work.path().join("offlineimaprc");
    // Implicit TLS as for mbsync. offlineimap checks the certificate's names
    // against remotehost, and the test certificate names mx.example.test and
    // localhost: "localhost" over IPv4 only, that is 127.0.0.1.
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = facteur\nmetadata = {meta}\nfsync = false\n\n\
             [Account facteur]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\nipv6 = no\n\
             ssl = yes\nsslcacertfile = {cert}\nremoteuser = bob@example.test\nremotepass = {PASSWORD}\n\
             maxconnections = 1\nfolderfilter = lambda f: f in ['INBOX', 'Archive']\n",
            meta = work.path().join("meta").display(),
            local = local.display(),
            port = s.imaps.port(),
            cert = cert.display(),
        ),
    )
    .unwrap();
    let sync = {
        let rc = rc.clone();
        move || run(Command::new("offlineimap").args(["-o", "-u", "quiet", "-c", rc.to_str().unwrap()]))
    };
    let out = tokio::task::spawn_blocking(sync.clone()).await.unwrap();
    let inbox = maildir(&local.join("INBOX"));
    assert_eq!(inbox.len(), 200, "{out}");
    assert!(local.join("Archive").is_dir(), "Archive not synced: {out}");
    let subject = |p: &std::path::Path| text(p).lines().find(|l| l.starts_with("Subject:")).unwrap().to_string();
    let mut subjects: Vec<String> = inbox.iter().map(|p| subject(p)).collect();
    subjects.sort();
    let mut expected: Vec<String> = (1..=200).map(|i| format!("Subject: message {i}")).collect();
    expected.sort();
    assert_eq!(subjects, expected, "{out}");
    let one = inbox.iter().find(|p| subject(p) == "Subject: message 42").unwrap();
    assert!(text(one).contains("\n\nThis is message 42.\n"), "{}", text(one));
    let flagged: Vec<String> = inbox.iter().filter(|p| maildir_flags(p).contains('F')).map(|p| subject(p)).collect();
    assert_eq!(flagged, ["Subject: message 17"], "{out}");
    // Fetched with BODY.PEEK: nothing is seen yet, on either side.
    assert!(inbox.iter().all(|p| !maildir_flags(p).contains('S')), "{out}");

    // Locally: read message 42 (a Maildir client moves it to cur with S).
    let name = one.file_name().unwrap().to_str().unwrap();
    let (prefix, flags) = name.rsplit_once(":2,").unwrap();
    std::fs::rename(one, local.join("INBOX/cur").join(format!("{prefix}:2,{flags}S"))).unwrap();
    let out = tokio::task::spawn_blocking(sync).await.unwrap();

    let msgs = store.mailbox_messages(inbox_box.id).await.unwrap();
    assert_eq!(msgs.len(), 200, "{out}");
    let mut seen = Vec::new();
    for m in msgs.iter().filter(|m| m.flags.iter().any(|f| f == "\\Seen")) {
        let raw = store.fetch_message(inbox_box.id, m.uid).await.unwrap().unwrap();
        seen.push(String::from_utf8_lossy(&raw).lines().find(|l| l.starts_with("Subject:")).unwrap().to_string());
    }
    assert_eq!(seen, ["Subject: message 42"], "{out}");
    let flagged: Vec<u32> = msgs.iter().filter(|m| m.flags.iter().any(|f| f == "\\Flagged")).map(|m| m.uid).collect();
    assert_eq!(flagged, [uid17], "{out}");
}

/// Mail::IMAPClient (Debian's libmail-imapclient-perl), a client with its
/// own SORT and THREAD parsers (RFC 5256): a discussion delivered over SMTP
/// with Message-ID/References, sorted and threaded, by UID too.
const IMAPCLIENT: &str = r#"
use strict; use warnings;
use Mail::IMAPClient;
my ($port, $pw) = @ARGV;
my $imap = Mail::IMAPClient->new(Server => '127.0.0.1', Port => $port, Ssl => [SSL_verify_mode => 0],
    User => 'alice@example.test', Password => $pw) or die "connect: $@";
$imap->has_capability('SORT') or die 'no SORT';
$imap->has_capability('THREAD=REFERENCES') or die 'no THREAD=REFERENCES';
$imap->select('INBOX') or die $imap->LastError;
my @by_date = $imap->sort('REVERSE DATE', 'UTF-8', 'ALL');
print "date @by_date\n";
my @by_subject = $imap->sort('SUBJECT', 'UTF-8', 'ALL');
print "subject @by_subject\n";
sub flat { my $t = shift; ref $t ? '(' . join(' ', map { flat($_) } @$t) . ')' : $t }
my $threads = $imap->thread('REFERENCES', 'UTF-8', 'ALL') or die $imap->LastError;
print 'references ', join(' ', map { flat($_) } @$threads), "\n";
$threads = $imap->thread('ORDEREDSUBJECT', 'UTF-8', 'ALL') or die $imap->LastError;
print 'orderedsubject ', join(' ', map { flat($_) } @$threads), "\n";
$imap->Uid(1);
my @uids = $imap->sort('SUBJECT', 'UTF-8', 'SUBJECT', 'plan');
print "uids @uids\n";
$imap->logout;
print "ok\n";
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_imapclient_sorts_and_threads() {
    require("perl");
    let module = Command::new("perl").args(["-MMail::IMAPClient::Thread", "-e1"]).status().unwrap();
    assert!(module.success(), "missing Perl module Mail::IMAPClient (package libmail-imapclient-perl)");
    let s = TestServer::start().await;
    // 1 "Plan" (Jan 1), 2 "Re: Plan" replying to 1 (Jan 3), 3 "Lunch"
    // (Jan 2), 4 "Re: Re: Plan" replying to 2 (Jan 4), 5 "Re: Lunch"
    // replying to 3 (Jan 5): delivered in that order.
    let mails = [
        ("Plan", "Wed, 01 Jan 2020 10:00:00 +0000", "<p1@remote.test>", ""),
        ("Re: Plan", "Fri, 03 Jan 2020 10:00:00 +0000", "<p2@remote.test>", "<p1@remote.test>"),
        ("Lunch", "Thu, 02 Jan 2020 10:00:00 +0000", "<l1@remote.test>", ""),
        ("Re: Re: Plan", "Sat, 04 Jan 2020 10:00:00 +0000", "<p3@remote.test>", "<p1@remote.test> <p2@remote.test>"),
        ("Re: Lunch", "Sun, 05 Jan 2020 10:00:00 +0000", "<l2@remote.test>", "<l1@remote.test>"),
    ];
    let mut c = Client::connect(s.smtp).await;
    c.ehlo().await;
    for (subject, date, id, refs) in mails {
        let refs = if refs.is_empty() { String::new() } else { format!("References: {refs}\r\n") };
        let body = format!(
            "From: <sender@remote.test>\r\nTo: <alice@example.test>\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {id}\r\n{refs}\r\nx\r\n"
        );
        assert_eq!(c.send_mail("sender@remote.test", &["alice@example.test"], &body).await.code, 250);
    }
    let port = s.imaps.port().to_string();
    let out = tokio::task::spawn_blocking(move || run(Command::new("perl").args(["-e", IMAPCLIENT, &port, PASSWORD])))
        .await
        .unwrap();
    assert!(out.trim_end().ends_with("ok"), "{out}");
    for line in [
        "date 5 4 2 3 1",
        "subject 3 5 1 2 4",
        "references (1 2 4) (3 5)",
        "orderedsubject (1 (2) (4)) (3 5)",
        "uids 1 2 4",
    ] {
        assert!(out.lines().any(|l| l == line), "want {line:?} in:\n{out}");
    }
}
