//! `sendmail` for local programs, through the real binary run under the
//! names cron and PHP call (`sendmail`, `mailq`, `newaliases` symlinks):
//! the maildrop, its pickup by a running server (and by one started later),
//! `-t` with Bcc, bounces to the local sender, exit codes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestServer, test_config};
use facteur_store::prelude::*;

/// The binary under `name` (a symlink in `dir`).
fn as_named(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_facteur"), &link).unwrap();
    }
    link
}

/// Run `sendmail ARGS` with `input` on stdin against `data`: (exit code, stderr).
fn sendmail(data: &Path, args: &[&str], input: &str) -> (i32, String) {
    let bin = tempfile::tempdir().unwrap();
    let mut child = Command::new(as_named(bin.path(), "sendmail"))
        .args(args)
        .env("FACTEUR_DATA", data)
        .env_remove("FACTEUR_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn wait_inbox(s: &TestServer, user: &str, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let inbox = s.inbox(user).await;
        if inbox.len() >= n {
            return inbox;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{user} never got {n} message(s): {:?}", s.inbox(user).await);
}

fn login() -> String {
    // SAFETY: getpwuid of our own uid; the name is copied out at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
    }
}

#[tokio::test]
async fn a_local_program_mails_a_user_by_name_and_the_sender_is_its_unix_user() {
    let s = TestServer::start().await;
    let data = s.dir.path();
    let (code, err) = sendmail(data, &["alice"], "Subject: cron output\n\nall is well\n.\nnot part of it\n");
    assert_eq!(code, 0, "{err}");
    let inbox = wait_inbox(&s, "alice@example.test", 1).await;
    let m = &inbox[0];
    let me = login();
    assert!(m.starts_with(&format!("Return-Path: <{me}@example.test>\r\nDelivered-To: alice@example.test\r\n")), "{m}");
    assert!(m.contains(&format!("(facteur, from userid {})", unsafe { libc::getuid() })), "{m}");
    let from = m.lines().find(|l| l.starts_with("From: ")).expect("a From: is added");
    assert!(from.ends_with(&format!("<{me}@example.test>")), "{from}");
    assert!(m.contains("\r\nDate: ") && m.contains("\r\nMessage-ID: <"), "completed like submission: {m}");
    assert!(m.ends_with("\r\n\r\nall is well\r\n"), "a lone dot ends the message, lines end in CRLF: {m:?}");
    assert!(std::fs::read_dir(data.join("maildrop")).unwrap().next().is_none(), "the drop is gone once stored");
}

#[tokio::test]
async fn t_reads_the_header_and_bcc_is_removed_and_options_are_taken() {
    let s = TestServer::start().await;
    let data = s.dir.path();
    let msg = "To: Alice <alice@example.test>\nBcc: bob@example.test\nSubject: t\n\n.\nbody after a dot\n";
    let (code, err) = sendmail(data, &["-t", "-oi", "-f", "app@example.test", "-F", "The App", "-odi"], msg);
    assert_eq!(code, 0, "{err}");
    for user in ["alice@example.test", "bob@example.test"] {
        let m = &wait_inbox(&s, user, 1).await[0];
        assert!(!m.contains("Bcc:") && !m.contains("bob@example.test>\r\nSubject"), "Bcc removed: {m}");
        assert!(m.contains("Return-Path: <app@example.test>"), "{m}");
        assert!(m.contains("From: \"The App\" <app@example.test>"), "{m}");
        assert!(m.ends_with("\r\n\r\n.\r\nbody after a dot\r\n"), "-oi keeps the dot line: {m:?}");
    }
}

#[tokio::test]
async fn unknown_recipients_bounce_to_the_local_sender_and_others_are_queued() {
    let s = TestServer::start().await;
    let store = s.store();
    let me = login();
    store.add_alias(&format!("{me}@example.test"), "alice@example.test").await.unwrap();
    let (code, err) = sendmail(s.dir.path(), &["nobody", "someone@far.test"], "Subject: x\n\nhello\n");
    assert_eq!(code, 0, "{err}");
    let inbox = wait_inbox(&s, "alice@example.test", 1).await;
    let dsn = &inbox[0];
    assert!(dsn.contains("Content-Type: multipart/report") && dsn.contains("nobody@example.test"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    let q = store.queue_list().await.unwrap();
    assert_eq!(q.len(), 1, "local programs may send anywhere");
    assert_eq!(q[0].recipients[0].address, "someone@far.test");
    assert_eq!(q[0].envelope.mail_from, format!("{me}@example.test"));

    // mailq (the symlink) lists it as Postfix's does.
    let bin = tempfile::tempdir().unwrap();
    let out = Command::new(as_named(bin.path(), "mailq")).env("FACTEUR_DATA", s.dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("-Queue ID-") && text.contains(&q[0].id.to_string()), "{text}");
    assert!(text.contains("someone@far.test") && text.trim_end().ends_with("Kbytes in 1 Request."), "{text}");
    let out = Command::new(as_named(bin.path(), "newaliases")).output().unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn mail_dropped_while_the_server_is_down_is_taken_when_it_starts() {
    let mut s = TestServer::start_with(test_config()).await;
    s.stop().await;
    let data = s.dir.path().to_path_buf();
    let (code, err) = sendmail(&data, &["bob@example.test"], "Subject: while down\n\nwaited\n");
    assert_eq!(code, 0, "{err}");
    // Junk and a link in the maildrop are put aside, never followed.
    std::fs::write(data.join("maildrop/junk"), b"not a drop").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("maildrop/link")).unwrap();
    let running = facteur::serve::start(test_config(), &data).await.unwrap();
    let store = running.store.clone();
    let inbox =
        store.list_mailboxes("bob@example.test").await.unwrap().into_iter().find(|m| m.name == "INBOX").unwrap();
    let mut got = None;
    for _ in 0..100 {
        if let Some(m) = store.fetch_message(inbox.id, 1).await.unwrap() {
            got = Some(String::from_utf8_lossy(&m).into_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got.expect("picked up at start").ends_with("\r\n\r\nwaited\r\n"));
    for _ in 0..50 {
        if std::fs::read_dir(data.join("maildrop")).unwrap().next().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<_> = std::fs::read_dir(data.join("maildrop")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let aside: Vec<String> = std::fs::read_dir(data.join("maildrop-corrupt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(aside.contains(&"junk".to_string()) && aside.contains(&"link".to_string()), "{aside:?}");
    running.shutdown().await;
}

#[test]
fn exit_codes_are_sendmails() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = sendmail(dir.path(), &[], "x");
    assert_eq!(code, 64, "EX_USAGE: {err}");
    assert!(err.contains("no recipient"), "{err}");
    let (code, err) = sendmail(dir.path(), &["-Z", "root"], "x");
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("-Z"), "{err}");
    let (code, err) = sendmail(&dir.path().join("nowhere"), &["root"], "x");
    assert_eq!(code, 72, "EX_OSFILE: {err}");
    assert!(err.contains("maildrop"), "{err}");
    // The subcommand says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_facteur"))
        .args(["--data"])
        .arg(dir.path().join("nowhere"))
        .args(["sendmail", "-f", "x@y.test", "root"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(72), "{}", String::from_utf8_lossy(&out.stderr));
}
