//! Moving from Dovecot: a Maildir++ tree laid out by hand as Dovecot does
//! and an mbox file, imported into a running server's storage and read
//! back through the store and over IMAP; Dovecot's own password hashes
//! (`doveadm pw`) and a Maildir Dovecot wrote itself (`doveadm save`).
//!
//! The Dovecot tests need `/usr/bin/doveadm` (Debian: `dovecot-core`) and
//! fail without it: they are the check that facteur reads what Dovecot
//! really writes.

mod common;
use facteur::import;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{PASSWORD, TestServer, test_config};
use facteur_store::any::AnyStore;
use facteur_store::password::{accepted_hash, verify};
use facteur_store::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const DOVEADM: &str = "/usr/bin/doveadm";
const ALICE: &str = "alice@example.test";

fn need_doveadm() {
    assert!(
        Path::new(DOVEADM).exists(),
        "{DOVEADM} is missing: install Dovecot (Debian package dovecot-core, in .ci/run's packages); \
         this test checks facteur against what Dovecot itself writes"
    );
}

/// A server whose IMAP takes LOGIN without TLS (loopback).
async fn server() -> TestServer {
    let mut c = test_config();
    c.imap.plaintext_auth = true;
    TestServer::start_with(c).await
}

/// A message file with its mtime (Dovecot's received date).
fn put(path: PathBuf, content: &str, mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime as u64)).unwrap();
}

fn msg(id: &str, subject: &str) -> String {
    format!(
        "From: bob@remote.test\nTo: alice@example.test\nMessage-ID: <{id}@remote.test>\nSubject: {subject}\n\nbody of {subject}\n"
    )
}

/// The CRLF form facteur stores.
fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// (flags, internal date, content) of each message of a mailbox, in UID order.
async fn messages(store: &AnyStore, name: &str) -> Vec<(Vec<String>, i64, String)> {
    let mb = store.mailbox(ALICE, name).await.unwrap().unwrap_or_else(|| panic!("no mailbox {name}"));
    let mut out = Vec::new();
    for m in store.mailbox_messages(mb.id).await.unwrap() {
        let data = store.fetch_message(mb.id, m.uid).await.unwrap().unwrap();
        assert_eq!(m.size, data.len() as u64);
        out.push((m.flags, m.internal_date, String::from_utf8(data).unwrap()));
    }
    out
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A Maildir++ tree as Dovecot lays it out (see the expectations below).
fn dovecot_like_maildir(root: &Path) {
    // INBOX: delivered at 1700000000.., mtimes (the received dates) apart.
    put(root.join("new/1700000000.M1P1.mx,S=100,W=104"), &msg("new", "unseen in new"), 1_600_000_000);
    put(root.join("cur/1700000100.M2P1.mx,S=100,W=104:2,S"), &msg("seen", "seen"), 1_600_000_100);
    put(
        root.join("cur/1700000200.M3P1.mx,S=100,W=104:2,FRac"),
        &msg("kw", "answered, flagged, keywords"),
        1_600_000_200,
    );
    put(root.join("cur/1700000300.M4P1.mx,S=100,W=104:2,DT"), &msg("draft", "draft, deleted"), 1_600_000_300);
    // Sorted by timestamp, not by name: 999 comes before 1700000000.
    put(root.join("cur/999.M0P1.mx:2,"), &msg("old", "oldest"), 1_000_000_000);
    // No Message-ID: stored again by a second import.
    put(root.join("cur/1700000400.M5P1.mx:2,S"), "Subject: no id\r\n\r\nCRLF already\r\n", 1_600_000_400);
    // A file that cannot be read (a link to nothing), and a delivery that
    // never finished: the first is reported, the second left alone.
    std::os::unix::fs::symlink(root.join("gone"), root.join("cur/1700000500.M6P1.mx:2,S")).unwrap();
    put(root.join("tmp/1700000600.M7P1.mx"), &msg("tmp", "unfinished"), 1_600_000_600);
    // Past the limit (a sparse file: nothing is read of it).
    let big = std::fs::File::create(root.join("cur/1700000700.M8P1.mx:2,S")).unwrap();
    big.set_len(import::MAX_MESSAGE + 1).unwrap();
    // A dot folder that is no Maildir folder.
    std::fs::create_dir_all(root.join(".Notes")).unwrap();
    std::fs::write(root.join(".Notes/todo.txt"), "x").unwrap();
    std::fs::write(root.join("dovecot-keywords"), "0 $Forwarded\n1 Work\n2 bad keyword\n").unwrap();
    std::fs::write(root.join("dovecot-uidlist"), "3 V1700000000 N5\n").unwrap();
    std::fs::write(root.join("dovecot.index.log"), [0u8; 16]).unwrap();
    std::fs::write(root.join("subscriptions"), "V\t2\n\nSent\n").unwrap();
    // Folders.
    put(root.join(".Sent/cur/1700001000.M8P1.mx:2,S"), &msg("sent", "sent"), 1_600_001_000);
    std::fs::write(root.join(".Sent/maildirfolder"), "").unwrap();
    put(root.join(".Lists.Rust/cur/1700002000.M9P1.mx:2,Sa"), &msg("rust", "rust list"), 1_600_002_000);
    std::fs::write(root.join(".Lists.Rust/dovecot-keywords"), "0 Lists\n").unwrap();
    put(root.join(".Lists.&AOk-t&AOk-/new/1700003000.M10P1.mx"), &msg("ete", "été"), 1_600_003_000);
    put(root.join(".Spam/cur/1700004000.M11P1.mx:2,S"), &msg("spam", "spam"), 1_600_004_000);
    // A name that is not modified UTF-7: reported, left out.
    put(root.join(".Bad&AOk/cur/1700005000.M12P1.mx:2,S"), &msg("bad", "bad"), 1_600_005_000);
}

#[tokio::test]
async fn a_dovecot_maildir_is_imported_with_flags_dates_and_folders() {
    let s = server().await;
    let store = s.store();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    dovecot_like_maildir(&root);

    let summary = import::maildir(&store, "Alice@Example.test", &root, false).await.unwrap();
    println!("{summary}");
    assert_eq!(summary.mailboxes, 5, "{summary:?}");
    assert_eq!(summary.messages, 10, "{summary:?}");
    assert_eq!(summary.duplicates, 0);
    let skipped = summary.skipped.join("\n");
    assert_eq!(summary.skipped.len(), 5, "{skipped}");
    assert!(skipped.contains("cur/1700000500.M6P1.mx:2,S: cannot be read"), "{skipped}");
    assert!(skipped.contains("cur/1700000700.M8P1.mx:2,S: larger than 268435456 octets"), "{skipped}");
    assert!(skipped.contains(".Notes: no cur/ or new/ folder"), "{skipped}");
    assert!(skipped.contains(".Bad&AOk: folder name \"Bad&AOk\" is not modified UTF-7"), "{skipped}");
    assert!(skipped.contains("keyword \"bad keyword\" is not an IMAP keyword"), "{skipped}");

    let inbox = messages(&store, "INBOX").await;
    let got: Vec<_> = inbox.iter().map(|(f, d, _)| (f.clone(), *d)).collect();
    assert_eq!(
        got,
        [
            (flags(&[]), 1_000_000_000),
            (flags(&[]), 1_600_000_000),
            (flags(&["\\Seen"]), 1_600_000_100),
            // c names "bad keyword", which is no IMAP keyword: left off.
            (flags(&["\\Flagged", "\\Answered", "$Forwarded"]), 1_600_000_200),
            (flags(&["\\Draft", "\\Deleted"]), 1_600_000_300),
            (flags(&["\\Seen"]), 1_600_000_400),
        ]
    );
    assert_eq!(inbox[1].2, crlf(&msg("new", "unseen in new")));
    assert_eq!(inbox[5].2, "Subject: no id\r\n\r\nCRLF already\r\n");
    assert_eq!(summary.bytes, {
        let mut n = 0;
        for name in ["INBOX", "Sent", "Lists/Rust", "Lists/été", "Spam"] {
            n += messages(&store, name).await.iter().map(|m| m.2.len() as u64).sum::<u64>();
        }
        n
    });

    // Folders: the hierarchy, decoded names, the special uses facteur
    // already gave (Spam does not take \Junk: Junk has it).
    assert_eq!(messages(&store, "Sent").await[0].0, flags(&["\\Seen"]));
    assert_eq!(messages(&store, "Lists/Rust").await[0].0, flags(&["\\Seen", "Lists"]));
    let ete = messages(&store, "Lists/été").await;
    assert_eq!((ete[0].0.clone(), ete[0].1), (flags(&[]), 1_600_003_000));
    let boxes = store.list_mailboxes(ALICE).await.unwrap();
    let special = |n: &str| boxes.iter().find(|m| m.name == n).unwrap().special_use.clone();
    assert_eq!(special("Sent").as_deref(), Some("\\Sent"));
    assert_eq!(special("Spam"), None);
    assert!(boxes.iter().any(|m| m.name == "Lists"));
    assert!(store.subscriptions(ALICE).await.unwrap().contains(&"Lists/été".to_string()));

    // Again: only the message without a Message-ID comes in twice.
    let again = import::maildir(&store, ALICE, &root, false).await.unwrap();
    assert_eq!((again.messages, again.duplicates), (1, 9), "{again:?}");
    assert_eq!(messages(&store, "INBOX").await.len(), 7);

    // Over IMAP, as a client sees it after the move.
    let mut imap = Imap::login(&s).await;
    let r = imap.ok("s SELECT \"Lists/&AOk-t&AOk-\"").await;
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    let r = imap.ok("f FETCH 1 (FLAGS INTERNALDATE BODY.PEEK[])").await;
    let fetched = r.join("\n");
    assert!(fetched.contains("FLAGS ()"), "{fetched}");
    assert!(fetched.contains("INTERNALDATE \"13-Sep-2020 13:16:40 +0000\""), "{fetched}");
    assert!(fetched.contains(&crlf(&msg("ete", "été"))), "{fetched}");
    let r = imap.ok("x SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 7 EXISTS"), "{r:?}");
    let r = imap.ok("y FETCH 4 (FLAGS)").await;
    assert!(r[0].starts_with("* 4 FETCH (FLAGS (") && r[0].contains("$Forwarded"), "{r:?}");
}

#[tokio::test]
async fn an_mbox_is_imported_unescaped_with_its_flags_and_dates() {
    let s = server().await;
    let store = s.store();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.mbox");
    std::fs::write(
        &file,
        "From bob@x.test Mon Dec  7 07:13:21 2026\n\
Status: RO\n\
X-Status: AF\n\
Message-ID: <m1@x.test>\n\
Subject: first\n\
\n\
>From the top of a line\n\
>>From quoted\n\
\n\
From carol@x.test Tue Dec  8 09:00:00 2026\n\
Status: O\n\
X-Status: DT\n\
Subject: second\n\
\n\
unread\n\
\n",
    )
    .unwrap();
    let summary = import::mbox(&store, ALICE, &file, "Old/Mail", false).await.unwrap();
    assert_eq!((summary.mailboxes, summary.messages, summary.duplicates), (1, 2, 0), "{summary:?}");
    assert!(summary.skipped.is_empty(), "{summary:?}");
    let got = messages(&store, "Old/Mail").await;
    assert_eq!(
        got,
        [
            (
                flags(&["\\Seen", "\\Answered", "\\Flagged"]),
                1_796_627_601,
                "Message-ID: <m1@x.test>\r\nSubject: first\r\n\r\nFrom the top of a line\r\n>From quoted\r\n"
                    .to_string()
            ),
            (flags(&["\\Draft", "\\Deleted"]), 1_796_720_400, "Subject: second\r\n\r\nunread\r\n".to_string()),
        ]
    );
    assert_eq!(summary.bytes, got.iter().map(|m| m.2.len() as u64).sum::<u64>());

    // Into INBOX, twice: the message with a Message-ID once.
    import::mbox(&store, ALICE, &file, "INBOX", false).await.unwrap();
    let again = import::mbox(&store, ALICE, &file, "inbox", false).await.unwrap();
    assert_eq!((again.messages, again.duplicates), (1, 1), "{again:?}");
    assert_eq!(messages(&store, "INBOX").await.len(), 3);

    // Not an mbox, no such file.
    let text = dir.path().join("note.txt");
    std::fs::write(&text, "Subject: just a message\n\nhi\n").unwrap();
    let e = import::mbox(&store, ALICE, &text, "Never/Made", false).await.unwrap_err();
    assert!(format!("{e:#}").contains("is not an mbox file"), "{e:#}");
    assert!(store.mailbox(ALICE, "Never/Made").await.unwrap().is_none());
    let e = import::mbox(&store, ALICE, &dir.path().join("none"), "INBOX", false).await.unwrap_err();
    assert!(format!("{e:#}").contains("cannot open"), "{e:#}");
}

#[tokio::test]
async fn the_user_must_exist_and_the_folder_be_a_maildir() {
    let s = TestServer::start().await;
    let store = s.store();
    let dir = tempfile::tempdir().unwrap();
    put(dir.path().join("cur/1.M1:2,S"), &msg("a", "a"), 1);
    let e = import::maildir(&store, "carol@example.test", dir.path(), false).await.unwrap_err();
    assert!(e.to_string().contains("no user carol@example.test"), "{e}");
    let e = import::mbox(&store, "carol@example.test", dir.path(), "INBOX", false).await.unwrap_err();
    assert!(e.to_string().contains("no user carol@example.test"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = import::maildir(&store, ALICE, empty.path(), false).await.unwrap_err();
    assert!(e.to_string().contains("is not a Maildir"), "{e}");
    let e = import::maildir(&store, ALICE, &dir.path().join("cur/1.M1:2,S"), false).await.unwrap_err();
    assert!(e.to_string().contains("is not a folder"), "{e}");
    // Nothing was stored along the way.
    assert!(messages(&store, "INBOX").await.is_empty());
}

/// `doveadm pw` of every scheme facteur takes, and of some it refuses.
#[test]
fn dovecot_password_hashes_are_taken() {
    need_doveadm();
    let pw = |scheme: &str, password: &str| {
        let out = Command::new(DOVEADM).args(["pw", "-s", scheme, "-p", password]).output().unwrap();
        assert!(out.status.success(), "doveadm pw -s {scheme}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for scheme in ["SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "ARGON2ID", "ARGON2I", "CRYPT"] {
        let password = "sécret with spaces";
        let h = pw(scheme, password);
        assert!(h.starts_with(&format!("{{{scheme}}}")), "{h}");
        assert_eq!(accepted_hash(&format!("{h}\n")), Ok(h.clone()), "{h}");
        assert!(verify(password, &h), "{h}");
        assert!(!verify("secret", &h), "{h}");
    }
    for (scheme, says) in [
        ("PLAIN", "{PLAIN} refused"),
        ("DES-CRYPT", "{DES-CRYPT} refused"),
        ("MD5-CRYPT", "{MD5-CRYPT} refused"),
        ("SSHA512", "{SSHA512} refused"),
    ] {
        let h = pw(scheme, "secret");
        let e = accepted_hash(&h).unwrap_err();
        assert!(e.contains(says), "{h}: {e}");
        assert!(!verify("secret", &h), "{h}");
    }
}

/// A Maildir that Dovecot wrote itself (`doveadm save`, `flags add`) is
/// imported with its folders, flags and keywords.
#[tokio::test]
async fn a_maildir_written_by_dovecot_is_imported() {
    need_doveadm();
    let dir = tempfile::tempdir().unwrap();
    let dove = Dovecot::new(dir.path());
    dove.run(&["mailbox", "create", "Lists/été", "Archive/2025"], None);
    dove.run(&["save", "-m", "INBOX"], Some(&msg("d1", "first")));
    dove.run(&["save", "-m", "INBOX"], Some(&msg("d2", "second")));
    dove.run(&["save", "-m", "Lists/été"], Some(&msg("d3", "liste")));
    dove.run(&["save", "-m", "Archive/2025"], Some(&msg("d4", "archived")));
    dove.run(&["flags", "add", "\\Seen $Forwarded", "mailbox", "INBOX", "header", "Message-ID", "d1"], None);
    dove.run(&["flags", "add", "\\Answered \\Flagged Work", "mailbox", "Lists/été", "all"], None);

    let s = TestServer::start().await;
    let store = s.store();
    let summary = import::maildir(&store, ALICE, &dove.mail, false).await.unwrap();
    assert_eq!((summary.mailboxes, summary.messages), (3, 4), "{summary:?}");
    assert!(summary.skipped.is_empty(), "{summary:?}");
    let inbox = messages(&store, "INBOX").await;
    assert_eq!(inbox.iter().map(|m| m.0.clone()).collect::<Vec<_>>(), [flags(&["\\Seen", "$Forwarded"]), flags(&[])]);
    assert_eq!(inbox[0].2, crlf(&msg("d1", "first")));
    let mtime = |f: &str| {
        let meta = std::fs::metadata(find_file(&dove.mail, f)).unwrap();
        meta.modified().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
    };
    assert_eq!(inbox[0].1, mtime("<d1@remote.test>"));
    let mut liste = messages(&store, "Lists/été").await.remove(0).0;
    liste.sort();
    assert_eq!(liste, flags(&["Work", "\\Answered", "\\Flagged"]));
    assert_eq!(messages(&store, "Archive/2025").await[0].2, crlf(&msg("d4", "archived")));
}

/// A Dovecot of its own: a configuration in a temporary folder, run as
/// `doveadm -c` for the user in $USER (no auth service).
struct Dovecot {
    conf: PathBuf,
    home: PathBuf,
    mail: PathBuf,
}

impl Dovecot {
    fn new(dir: &Path) -> Dovecot {
        use std::os::unix::fs::PermissionsExt;
        let (home, mail) = (dir.join("home"), dir.join("Maildir"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&mail).unwrap();
        // Dovecot refuses mail access as root: as root, the mail belongs
        // to nobody (and the folder must let it in).
        let (uid, gid) = if unsafe { libc::geteuid() } == 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let (uid, gid) = nobody();
            for p in [&home, &mail] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
            (uid, gid)
        } else {
            unsafe { (libc::geteuid(), libc::getegid()) }
        };
        let conf = dir.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "mail_location = maildir:{mail}\nmail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = 1\nfirst_valid_gid = 1\n\
                 base_dir = {base}/run\nstate_dir = {base}/state\nlog_path = /dev/stderr\nssl = no\n\
                 namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n",
                mail = mail.display(),
                base = dir.display(),
            ),
        )
        .unwrap();
        Dovecot { conf, home, mail }
    }

    fn run(&self, args: &[&str], input: Option<&str>) {
        let mut child = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .env("USER", "alice")
            .env("HOME", &self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "doveadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// nobody's uid and gid, from /etc/passwd (65534 on Debian).
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"nobody")).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .and_then(|(u, g)| Some((u?, g?)))
        .unwrap_or((65534, 65534))
}

/// The message file under `root` whose content holds `needle`.
/// The message file (in a `cur` or `new` folder) holding `needle`: not
/// Dovecot's index cache, which holds headers too and changes later.
fn find_file(root: &Path, needle: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let in_maildir = d.file_name().is_some_and(|n| n == "cur" || n == "new");
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if in_maildir && std::fs::read(&p).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)) {
                return p;
            }
        }
    }
    panic!("no file with {needle} under {}", root.display())
}

/// Just enough IMAP to look at what was imported.
struct Imap {
    io: BufReader<tokio::net::TcpStream>,
}

impl Imap {
    async fn login(s: &TestServer) -> Imap {
        let mut c = Imap { io: BufReader::new(tokio::net::TcpStream::connect(s.imap).await.unwrap()) };
        assert!(c.line().await.starts_with("* OK"));
        c.ok(&format!("l LOGIN {ALICE} {PASSWORD}")).await;
        c
    }

    /// A line, with the literal it announces inlined.
    async fn line(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut l = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut l)).await.unwrap().unwrap();
            assert!(n > 0, "connection closed after {out:?}");
            let l = l.trim_end_matches("\r\n");
            out.push_str(l);
            match l.strip_suffix('}').and_then(|x| x.rsplit_once('{')).and_then(|(_, n)| n.parse::<usize>().ok()) {
                Some(len) => {
                    let mut data = vec![0; len];
                    self.io.read_exact(&mut data).await.unwrap();
                    out.push_str("\r\n");
                    out.push_str(&String::from_utf8_lossy(&data));
                }
                None => return out,
            }
        }
    }

    async fn ok(&mut self, command: &str) -> Vec<String> {
        self.io.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        let tag = command.split(' ').next().unwrap();
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l.starts_with(&format!("{tag} ")) {
                assert!(l.starts_with(&format!("{tag} OK")), "{command} -> {lines:?} {l}");
                return lines;
            }
            lines.push(l);
        }
    }
}

/// Through the binary: a user added with the hash Dovecot made keeps their
/// password (an IMAP LOGIN with it works, a wrong one does not), and
/// `facteur import maildir` brings their mail in with a summary.
#[tokio::test]
async fn the_cli_takes_a_dovecot_hash_and_imports_a_maildir() {
    need_doveadm();
    let s = server().await;
    let out = Command::new(DOVEADM).args(["pw", "-s", "SHA512-CRYPT", "-p", "old dovecot password"]).output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let facteur = |args: &[&str]| {
        let o =
            Command::new(env!("CARGO_BIN_EXE_facteur")).arg("--data").arg(s.dir.path()).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = facteur(&["user", "add", "carol@example.test", "--password-hash", &hash]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("password:"), "nothing generated: {out}");
    let (code, _, err) = facteur(&["user", "add", "dave@example.test", "--password-hash", "{PLAIN}secret"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--password-hash") && err.contains("{PLAIN}"), "{err}");
    for (password, ok) in [("old dovecot password", true), ("wrong", false)] {
        let mut imap = common::Lines::connect(s.imap).await;
        imap.line().await;
        imap.send(format!("a LOGIN carol@example.test \"{password}\"\r\n").as_bytes()).await;
        let reply = imap.until("a ").await.pop().unwrap();
        assert_eq!(reply.starts_with("a OK"), ok, "{password}: {reply}");
    }
    let dir = tempfile::tempdir().unwrap();
    put(dir.path().join("cur/1700000000.M1P1.host:2,S"), &msg("one", "first"), 1_700_000_000);
    put(dir.path().join(".Sent/cur/1700000001.M2P1.host:2,S"), &msg("two", "sent"), 1_700_000_001);
    let (code, out, err) = facteur(&["import", "maildir", "carol@example.test", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 message"), "{out}");
    let boxes = s.store().list_mailboxes("carol@example.test").await.unwrap();
    let count = |name: &str| boxes.iter().find(|b| b.name == name).map(|b| b.messages);
    assert_eq!((count("INBOX"), count("Sent")), (Some(1), Some(1)));
}
