//! facteur-sim: run a simulated downstream SMTP server from the command line,
//! for manual experiments and benchmark scripts.
//!
//! It prints `listening on ADDR` first, then once a second how many messages
//! were accepted in that second and in all, how many MAIL commands were
//! refused by `--rate` and how many connections are open, and stops after
//! `--duration` seconds or on Ctrl-C with a summary line (refusals, peak of
//! simultaneous connections) and `stopped total=N`. Messages are counted, not
//! kept; with `--log FILE` each accepted one adds a line to FILE.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use facteur_testkit::{Behavior, Downstream};

const USAGE: &str = "\
usage: facteur-sim [--listen ADDR] [--mode MODE] [--rate N] [--tls] [--duration SECS] [--log FILE]

  --listen ADDR     address to listen on (default 127.0.0.1:2526; port 0 picks one)
  --mode MODE       accept | defer | refuse | hang | drop-mid-data (default accept)
                      defer: 451 4.3.0 to every recipient; refuse: 550 5.1.1;
                      hang: no greeting; drop-mid-data: close during the body
  --rate N          accept at most N messages per second, 421 4.7.0 beyond
  --tls             offer STARTTLS with a self-signed certificate
  --duration SECS   stop after this many seconds (default 3600)
  --log FILE        append one line per accepted message to FILE:
                      ARRIVAL_UNIX_MS<TAB>value of its X-Bench header (or -)";

#[derive(Debug, PartialEq)]
struct Options {
    listen: SocketAddr,
    mode: String,
    rate: Option<u32>,
    tls: bool,
    duration: Duration,
    log: Option<PathBuf>,
}

/// Parse the arguments (without the program name). `Ok(None)` is `--help`.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 2526)),
        mode: "accept".into(),
        rate: None,
        tls: false,
        duration: Duration::from_secs(3600),
        log: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value("--listen")?;
                options.listen = v.parse().map_err(|_| format!("--listen: not an address: {v}"))?;
            }
            "--mode" => {
                options.mode = value("--mode")?;
                behavior(&options.mode)?;
            }
            "--rate" => {
                let v = value("--rate")?;
                options.rate = Some(v.parse().map_err(|_| format!("--rate: not a whole number: {v}"))?);
            }
            "--tls" => options.tls = true,
            "--duration" => {
                let v = value("--duration")?;
                let secs: u64 = v.parse().map_err(|_| format!("--duration: not a whole number: {v}"))?;
                options.duration = Duration::from_secs(secs);
            }
            "--log" => options.log = Some(PathBuf::from(value("--log")?)),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(Some(options))
}

fn behavior(mode: &str) -> Result<Behavior, String> {
    match mode {
        "accept" => Ok(Behavior::accept_all()),
        "defer" => Ok(Behavior::defer_all(451)),
        "refuse" => Ok(Behavior::refuse_all()),
        "hang" => Ok(Behavior::hang()),
        "drop-mid-data" => Ok(Behavior::drop_mid_data()),
        other => Err(format!("--mode: unknown mode {other} (accept, defer, refuse, hang, drop-mid-data)")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = parse(std::env::args().skip(1)).and_then(|o| o.map(|o| behavior(&o.mode).map(|b| (o, b))).transpose());
    let (options, base) = match parsed {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("facteur-sim: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let behavior = Behavior { rate: options.rate, tls: options.tls, record: false, ..base };
    let downstream = match Downstream::bind(options.listen, behavior).await {
        Ok(downstream) => downstream,
        Err(e) => {
            eprintln!("facteur-sim: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &options.log {
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => downstream.log_arrivals(Box::new(BufWriter::new(file))),
            Err(e) => {
                eprintln!("facteur-sim: cannot open the log {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("listening on {} mode={}", downstream.addr(), options.mode);

    let start = tokio::time::Instant::now();
    let stop_at = start + options.duration;
    let mut ticks = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut seconds = 0u64;
    let mut before = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                seconds += 1;
                let total = downstream.accepted();
                if let Err(e) = downstream.flush_log() {
                    eprintln!("facteur-sim: cannot write the log: {e}");
                }
                println!(
                    "{seconds}s accepted={} refused={} open={} total={total}",
                    total - before,
                    downstream.rate_refused(),
                    downstream.open_connections(),
                );
                before = total;
            }
            _ = tokio::time::sleep_until(stop_at) => break,
            _ = &mut ctrl_c => break,
        }
    }
    if let Err(e) = downstream.flush_log() {
        eprintln!("facteur-sim: cannot write the log: {e}");
    }
    println!(
        "summary refused={} peak_connections={} connections={}",
        downstream.rate_refused(),
        downstream.peak_connections(),
        downstream.connections()
    );
    println!("stopped total={}", downstream.accepted());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults() {
        let options = parse(args("")).unwrap().unwrap();
        assert_eq!(options.listen, "127.0.0.1:2526".parse().unwrap());
        assert_eq!(options.mode, "accept");
        assert_eq!(options.rate, None);
        assert!(!options.tls);
        assert_eq!(options.duration, Duration::from_secs(3600));
        assert_eq!(options.log, None);
    }

    #[test]
    fn every_option() {
        let options =
            parse(args("--listen 127.0.0.1:0 --mode drop-mid-data --rate 50 --tls --duration 5 --log /tmp/sim.log"));
        let options = options.unwrap().unwrap();
        assert_eq!(options.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(options.mode, "drop-mid-data");
        assert_eq!(options.rate, Some(50));
        assert!(options.tls);
        assert_eq!(options.duration, Duration::from_secs(5));
        assert_eq!(options.log, Some(PathBuf::from("/tmp/sim.log")));
    }

    #[test]
    fn mistakes_are_reported() {
        assert_eq!(parse(args("--help")), Ok(None));
        assert!(parse(args("--mode sometimes")).unwrap_err().contains("unknown mode"));
        assert!(parse(args("--rate -1")).unwrap_err().contains("--rate"));
        assert!(parse(args("--listen")).unwrap_err().contains("needs a value"));
        assert!(parse(args("--listen nowhere")).unwrap_err().contains("not an address"));
        assert!(parse(args("--verbose")).unwrap_err().contains("unknown argument"));
    }
}
