//! facteur-stub-dns: the tests' stub DNS server from the command line, for
//! benchmark scripts (SPF, DKIM and DMARC records on loopback, so nothing
//! asks a real resolver). Prints `listening on ADDR`, then serves until
//! killed; on SIGTERM or Ctrl-C it prints `queries N` and stops.

use std::net::SocketAddr;
use std::process::ExitCode;

use facteur_testkit::dns::StubDns;

const USAGE: &str = "\
usage: facteur-stub-dns [--listen ADDR] RECORD...

  --listen ADDR        UDP and TCP address (default 127.0.0.1:0: a free port)
  RECORD is one of
    txt:NAME=TEXT      a TXT record (split into 255-octet strings)
    a:NAME=IPV4        an A record
    aaaa:NAME=IPV6     an AAAA record
    mx:NAME=PREF:HOST  an MX record
  Names not given are NXDOMAIN.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let mut records = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--listen" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) => listen = v,
                None => return usage("--listen needs an address such as 127.0.0.1:5353"),
            },
            r => match r.split_once(':').and_then(|(kind, rest)| Some((kind, rest.split_once('=')?))) {
                Some((kind @ ("txt" | "a" | "aaaa" | "mx"), (name, value))) if !name.is_empty() => {
                    records.push((kind.to_string(), name.to_string(), value.to_string()))
                }
                _ => return usage(&format!("not a record: {r:?}")),
            },
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("facteur-stub-dns: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let dns = match StubDns::start_on(listen).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("facteur-stub-dns: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (kind, name, value) in &records {
            match kind.as_str() {
                "txt" => dns.txt(name, value),
                "a" if value.parse::<std::net::Ipv4Addr>().is_ok() => dns.a(name, value),
                "aaaa" if value.parse::<std::net::Ipv6Addr>().is_ok() => dns.aaaa(name, value),
                "mx" => match value.split_once(':').and_then(|(p, h)| Some((p.parse::<u16>().ok()?, h))) {
                    Some((pref, host)) => dns.mx(name, pref, host),
                    None => return usage(&format!("mx:{name}={value}: expected PREF:HOST")),
                },
                _ => return usage(&format!("{kind}:{name}={value}: not an address")),
            };
        }
        println!("listening on {}", dns.addr);
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("facteur-stub-dns: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        println!("queries {}", dns.queries());
        ExitCode::SUCCESS
    })
}

fn usage(why: &str) -> ExitCode {
    eprintln!("facteur-stub-dns: {why}\n{USAGE}");
    ExitCode::from(2)
}
