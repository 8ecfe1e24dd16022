//! `sendmail` for local programs: `facteur sendmail [-t] [-i] [-f SENDER]
//! [-F NAME] [RCPT…]`, and the same binary run as `sendmail` (a symlink),
//! so cron, PHP `mail()`, logwatch, mdadm and smartd work unchanged.
//!
//! The message is read from standard input and written into the data
//! folder's maildrop (`facteur_smtp::pickup`), which the server takes
//! from; no password, no network, and it waits there while the server is
//! down. The options are sendmail's (as Postfix reads them: `-t` adds the
//! header's recipients to those given); the ones that only tuned
//! sendmail's own delivery (`-o…`, `-od…`, `-v`, `-N`, `-R`, `-V`, `-B`) are
//! accepted and ignored. Exit codes are sendmail's (`sysexits.h`).
//!
//! The argument syntax is sendmail's (`-fSENDER` or `-f SENDER`, `-oi`),
//! which an argument parser for modern options does not read: hand-parsed.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facteur_smtp::pickup::{self, Drop};

/// `sysexits.h`.
pub mod sysexits {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const NOINPUT: u8 = 66;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const OSFILE: u8 = 72;
    pub const IOERR: u8 = 74;
    pub const TEMPFAIL: u8 = 75;
    pub const NOPERM: u8 = 77;
}

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub drop: Drop,
    /// `-i`/`-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-bp`: list the queue (as `mailq`).
    pub list_queue: bool,
}

/// Read sendmail's options. `Err` is the usage message.
pub fn parse(args: &[String]) -> Result<Request, String> {
    let mut r = Request::default();
    let mut i = 0;
    let value = |i: &mut usize, arg: &str, flag: &str| -> Result<String, String> {
        let rest = &arg[flag.len()..];
        if !rest.is_empty() {
            return Ok(rest.to_string());
        }
        *i += 1;
        args.get(*i).cloned().ok_or_else(|| format!("option {flag} needs a value"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "--" => {
                r.drop.recipients.extend(args[i + 1..].iter().cloned());
                break;
            }
            "-t" => r.drop.extract = true,
            "-i" | "-oi" => r.ignore_dots = true,
            "-bm" => {}
            "-bp" => r.list_queue = true,
            "-bs" | "-bd" | "-bD" | "-bi" | "-bv" | "-bt" | "-bh" | "-bH" => {
                return Err(format!(
                    "{a} is not supported by facteur's sendmail (use the SMTP listeners, or facteur alias)"
                ));
            }
            "-v" | "-n" | "-m" | "-U" | "-G" => {}
            _ if a.starts_with("-f") || a.starts_with("-r") => {
                r.drop.sender = Some(value(&mut i, a, &a[..2])?);
            }
            _ if a.starts_with("-F") => r.drop.full_name = Some(value(&mut i, a, "-F")?),
            // Values that only tuned sendmail's own delivery.
            _ if a.starts_with("-N") || a.starts_with("-R") || a.starts_with("-V") || a.starts_with("-B") => {
                if a.len() == 2 {
                    i += 1;
                }
            }
            _ if a.starts_with("-O") && a.len() == 2 => i += 1,
            _ if a.starts_with("-o") || a.starts_with("-O") || a.starts_with("-L") || a.starts_with("-X") => {
                if a == "-L" || a == "-X" {
                    i += 1;
                }
            }
            _ if a.starts_with('-') && a.len() > 1 => return Err(format!("unknown option {a}")),
            _ => r.drop.recipients.push(a.to_string()),
        }
        i += 1;
    }
    // Several recipients in one argument, comma-separated, as sendmail takes them.
    r.drop.recipients = r
        .drop
        .recipients
        .iter()
        .flat_map(|x| x.split(','))
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if r.drop.recipients.is_empty() && !r.drop.extract && !r.list_queue {
        return Err("no recipient given (name them, or use -t to read To:, Cc: and Bcc:)".into());
    }
    Ok(r)
}

/// The message from `input`: without `-i`, a line with a single dot ends it
/// (the rest is not read); a leading `From ` line (mbox) is dropped.
pub fn read_message(input: &mut impl Read, ignore_dots: bool, limit: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut all = Vec::new();
    input.take(limit + 1).read_to_end(&mut all)?;
    let too_big = all.len() as u64 > limit;
    if !ignore_dots {
        let mut at = 0;
        for line in all.split_inclusive(|&b| b == b'\n') {
            let bare = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(line);
            if bare == b"." {
                all.truncate(at);
                break;
            }
            at += line.len();
        }
    }
    if all.starts_with(b"From ") {
        let end = all.iter().position(|&b| b == b'\n').map(|p| p + 1).unwrap_or(all.len());
        all.drain(..end);
    }
    Ok((all, too_big))
}

/// Where the data folder is when nobody said: FACTEUR_DATA, else the
/// system's configuration (`/etc/facteur/facteur.toml` or FACTEUR_CONFIG,
/// if readable: its `data_dir`), else `/var/lib/facteur` if it exists, else
/// `./facteur-data`; with the configuration file if it could be read.
pub fn default_data_dir() -> (PathBuf, Option<PathBuf>) {
    let config = std::env::var_os("FACTEUR_CONFIG").map(PathBuf::from).unwrap_or_else(|| SYSTEM_CONFIG.into());
    let readable = crate::config::Config::load(&config).ok();
    let config = readable.as_ref().map(|_| config);
    if let Some(d) = std::env::var_os("FACTEUR_DATA") {
        return (d.into(), config);
    }
    if let Some(d) = readable.and_then(|c| c.server.data_dir) {
        return (d, config);
    }
    let system = Path::new(SYSTEM_DATA);
    (if system.is_dir() { system.into() } else { "./facteur-data".into() }, config)
}

/// Where the Debian package puts them.
pub const SYSTEM_CONFIG: &str = "/etc/facteur/facteur.toml";
pub const SYSTEM_DATA: &str = "/var/lib/facteur";

/// `sendmail ARGS…`: queue the message from standard input.
pub fn run(data_dir: &Path, args: &[String], max_message_size: u64) -> ExitCode {
    let fail = |code: u8, what: String| {
        eprintln!("sendmail: {what}");
        ExitCode::from(code)
    };
    let request = match parse(args) {
        Ok(r) => r,
        Err(why) => {
            return fail(
                sysexits::USAGE,
                format!("{why}\nusage: sendmail [-t] [-i] [-f SENDER] [-F NAME] [RECIPIENT...] < message"),
            );
        }
    };
    if request.list_queue {
        return fail(sysexits::USAGE, "-bp: use mailq (or facteur queue list)".into());
    }
    let (message, too_big) = match read_message(&mut std::io::stdin().lock(), request.ignore_dots, max_message_size) {
        Ok(m) => m,
        Err(e) => return fail(sysexits::NOINPUT, format!("cannot read the message from standard input: {e}")),
    };
    if too_big {
        return fail(sysexits::DATAERR, format!("message larger than the server's limit ({max_message_size} octets)"));
    }
    let maildrop = data_dir.join(pickup::MAILDROP);
    if !maildrop.is_dir() {
        return fail(
            sysexits::OSFILE,
            format!(
                "no maildrop at {} (start facteur once, or run facteur --data {} init)",
                maildrop.display(),
                data_dir.display()
            ),
        );
    }
    match pickup::write_drop(&maildrop, &request.drop, &message) {
        Ok(_) => ExitCode::from(sysexits::OK),
        Err(e) => {
            let code = match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => sysexits::NOPERM,
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => sysexits::TEMPFAIL,
                Some(_) => sysexits::IOERR,
                None => sysexits::SOFTWARE,
            };
            fail(code, format!("cannot queue the message in {}: {e}", maildrop.display()))
        }
    }
}

/// The name the binary was run under, when it is `sendmail`, `mailq` or
/// `newaliases`.
pub fn personality(arg0: Option<&OsString>) -> Option<&'static str> {
    let name = Path::new(arg0?).file_name()?.to_str()?;
    ["sendmail", "mailq", "newaliases"].into_iter().find(|p| *p == name)
}

/// `newaliases`: aliases live in the database, there is nothing to rebuild.
pub fn newaliases() -> ExitCode {
    println!("newaliases: facteur keeps aliases in its database (facteur alias add|list|remove); nothing to rebuild");
    ExitCode::from(sysexits::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_as_sendmail_reads_them() {
        let r = parse(&args("-t -oi -fcron@x.test -F Cron -odi -oem root,admin bob")).unwrap();
        assert!(r.drop.extract && r.ignore_dots);
        assert_eq!(r.drop.sender.as_deref(), Some("cron@x.test"));
        assert_eq!(r.drop.full_name.as_deref(), Some("Cron"));
        assert_eq!(r.drop.recipients, ["root", "admin", "bob"]);
        let r = parse(&args("-f bounce@x.test -N never -- -odd@x.test")).unwrap();
        assert_eq!(r.drop.sender.as_deref(), Some("bounce@x.test"));
        assert_eq!(r.drop.recipients, ["-odd@x.test"]);
        assert_eq!(parse(&args("-t")).unwrap().drop.recipients, Vec::<String>::new());
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        assert!(parse(&args("")).unwrap_err().contains("no recipient"));
        assert!(parse(&args("-f")).unwrap_err().contains("-f needs a value"));
        assert!(parse(&args("-Z root")).unwrap_err().contains("unknown option -Z"));
        assert!(parse(&args("-bs")).unwrap_err().contains("not supported"));
    }

    #[test]
    fn a_lone_dot_ends_the_message_unless_i() {
        let input = b"Subject: s\n\nline\n.\nafter\n";
        let (m, _) = read_message(&mut &input[..], false, 1000).unwrap();
        assert_eq!(m, b"Subject: s\n\nline\n");
        let (m, _) = read_message(&mut &input[..], true, 1000).unwrap();
        assert_eq!(m, input);
        let (m, big) = read_message(&mut &b"From x Mon\nSubject: s\n\nb\n"[..], true, 5).unwrap();
        assert!(big);
        assert!(!m.starts_with(b"From "));
    }

    #[test]
    fn the_name_it_runs_under() {
        assert_eq!(personality(Some(&"/usr/sbin/sendmail".into())), Some("sendmail"));
        assert_eq!(personality(Some(&"mailq".into())), Some("mailq"));
        assert_eq!(personality(Some(&"/usr/bin/facteur".into())), None);
    }
}
