//! `facteur reload`: ask the server running on a data folder to read its
//! configuration and certificate again (the same as SIGHUP), and print what
//! changed. The server writes what its reload did to `DATA/reload.report`
//! (a first line `NANOS ok|refused`, then one line per change or the
//! reason); the command waits for a report newer than the one before.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

const REPORT: &str = "reload.report";

/// Written by the server after each reload (temporary file, then rename).
pub fn write_report(data_dir: &Path, ok: bool, lines: &[String]) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut text = format!("{nanos} {}\n", if ok { "ok" } else { "refused" });
    for l in lines {
        text.push_str(l.trim_end());
        text.push('\n');
    }
    let tmp = data_dir.join(format!(".{REPORT}"));
    let written = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, data_dir.join(REPORT)));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the reload report for `facteur reload`");
    }
}

fn first_line(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(REPORT)).ok()?.lines().next().map(str::to_string)
}

/// The pid of the server holding the data folder's lock, if one does.
fn running_server(data_dir: &Path) -> anyhow::Result<i32> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join("facteur.lock");
    let Ok(file) = std::fs::File::open(&path) else {
        bail!("no facteur server is running on {} (it has no {})", data_dir.display(), path.display());
    };
    // SAFETY: flock on a descriptor we own; released when `file` closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        bail!("no facteur server is running on {}", data_dir.display());
    }
    let pid = std::fs::read_to_string(&path)?;
    pid.trim().parse().with_context(|| format!("{} does not hold a pid ({:?})", path.display(), pid.trim()))
}

/// Send SIGHUP to the server on `data_dir` and print its report.
pub fn ask(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let pid = running_server(data_dir)?;
    let before = first_line(data_dir);
    // SAFETY: kill(2) with a pid read from the lock its holder wrote.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        bail!("cannot signal the server (pid {pid}): {}", std::io::Error::last_os_error());
    }
    for _ in 0..150 {
        std::thread::sleep(Duration::from_millis(100));
        let now = first_line(data_dir);
        if now.is_some() && now != before {
            let text = std::fs::read_to_string(data_dir.join(REPORT))?;
            let mut lines = text.lines();
            let ok = lines.next().is_some_and(|l| l.ends_with(" ok"));
            let rest: Vec<&str> = lines.collect();
            if ok {
                println!("reloaded (pid {pid})");
                if rest.is_empty() {
                    println!("nothing changed");
                }
            } else {
                println!("reload refused; the running configuration stays (pid {pid})");
            }
            for l in rest {
                println!("  {l}");
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    bail!("the server (pid {pid}) did not report a reload within 15 s; see its log")
}
