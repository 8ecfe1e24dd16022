//! `facteur domain check DOMAIN`: what the domain's DNS should hold for
//! this server (MX, the server's address and reverse name, SPF, DKIM,
//! DMARC, and the optional MTA-STS and TLS-RPT), next to what it holds,
//! and the records to add or change, in zone-file form. Asked of the
//! resolver delivery uses (`delivery.dns_servers`).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use facteur_auth::dns::{Dns, DnsFailure};
use facteur_auth::spf::{self, Check, Identity};
use serde::Serialize;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Needed and missing or wrong: mail is refused or junked elsewhere.
    Fix,
    /// Recommended, or worth a look.
    Advice,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub check: &'static str,
    pub status: Status,
    /// What the DNS holds (or the lookup's failure).
    pub found: String,
    /// What to publish or change, zone-file lines; empty when nothing.
    pub change: Vec<String>,
}

fn row(check: &'static str, status: Status, found: impl Into<String>, change: Vec<String>) -> Row {
    Row { check, status, found: found.into(), change }
}

fn shown<T>(answer: &Result<Vec<T>, DnsFailure>, f: impl Fn(&T) -> String) -> String {
    match answer {
        Ok(v) => v.iter().map(f).collect::<Vec<_>>().join(", "),
        Err(e) => e.to_string(),
    }
}

/// The TXT records of `name` that start with `prefix` (any case).
async fn txt_with<D: Dns>(dns: &D, name: &str, prefix: &str) -> Result<Vec<String>, DnsFailure> {
    let all = dns.txt(name).await?;
    Ok(all
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .filter(|t| t.len() >= prefix.len() && t[..prefix.len()].eq_ignore_ascii_case(prefix))
        .collect())
}

/// The value of `tag` in a `tag=value; ...` record.
fn tag<'a>(record: &'a str, tag: &str) -> Option<&'a str> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(tag).then(|| v.trim())
    })
}

/// Every check for `domain`, served by `hostname`, signing with `keys`.
pub async fn check<D: Dns>(dns: &D, domain: &str, hostname: &str, keys: &[facteur_auth::sign::KeyInfo]) -> Vec<Row> {
    let mut rows = Vec::new();
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let host = hostname.trim_end_matches('.').to_ascii_lowercase();

    // MX (RFC 5321 §5.1): mail for the domain comes here.
    let mx = dns.mx(&d).await;
    let ours = mx.as_ref().is_ok_and(|v| v.iter().any(|(_, h)| *h == host));
    rows.push(if ours {
        row("MX", Status::Ok, shown(&mx, |(p, h)| format!("{p} {h}")), vec![])
    } else {
        row("MX", Status::Fix, shown(&mx, |(p, h)| format!("{p} {h}")), vec![format!("{d}. IN MX 10 {host}.")])
    });

    // The server's own name: its addresses, and each address's reverse
    // name pointing back (receivers check both, RFC 8601 iprev).
    let a = dns.a(&host).await;
    let aaaa = dns.aaaa(&host).await;
    let mut addresses: Vec<IpAddr> = a.iter().flatten().map(|ip| IpAddr::V4(*ip)).collect();
    addresses.extend(aaaa.iter().flatten().map(|ip| IpAddr::V6(*ip)));
    if addresses.is_empty() {
        rows.push(row(
            "A/AAAA",
            Status::Fix,
            format!("{host}: {}", shown(&a, |ip| ip.to_string())),
            vec![format!("{host}. IN A <this server's public IPv4 address>")],
        ));
    } else {
        let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
        rows.push(row("A/AAAA", Status::Ok, format!("{host}: {list}"), vec![]));
    }
    for ip in &addresses {
        let ptr = dns.ptr(*ip).await;
        let back = ptr.as_ref().is_ok_and(|v| v.contains(&host));
        rows.push(if back {
            row("PTR", Status::Ok, format!("{ip}: {}", shown(&ptr, String::clone)), vec![])
        } else {
            row(
                "PTR",
                Status::Fix,
                format!("{ip}: {}", shown(&ptr, String::clone)),
                vec![format!(
                    "{}. IN PTR {host}.   (ask whoever owns the address: your hosting provider)",
                    facteur_auth::dns::reverse_name(*ip)
                )],
            )
        });
    }

    // SPF (RFC 7208): this server's addresses may send for the domain.
    let records = txt_with(dns, &d, "v=spf1").await;
    let want_spf = format!("{d}. IN TXT \"v=spf1 mx -all\"");
    match &records {
        Ok(r) if r.len() == 1 => {
            let mut failing = Vec::new();
            for ip in &addresses {
                let input = Check { ip: *ip, helo: &host, receiver: "domain-check.invalid" };
                let v = spf::check(dns, &input, Identity::MailFrom(&format!("postmaster@{d}"))).await;
                if v.result != facteur_auth::SpfResult::Pass {
                    failing.push(format!("{ip} gets {}", facteur_auth::verify::spf_name(v.result)));
                }
            }
            rows.push(if failing.is_empty() {
                row("SPF", Status::Ok, r[0].clone(), vec![])
            } else {
                row(
                    "SPF",
                    Status::Fix,
                    format!("{} ({})", r[0], failing.join(", ")),
                    vec![format!(
                        "{d}. IN TXT: add this server (\"mx\", \"a:{host}\" or its ip4:/ip6:) to \"{}\"",
                        r[0]
                    )],
                )
            });
        }
        Ok(r) if r.len() > 1 => rows.push(row(
            "SPF",
            Status::Fix,
            r.join(" | "),
            vec![format!("keep one SPF record (RFC 7208 §4.5): {want_spf}")],
        )),
        other => rows.push(row("SPF", Status::Fix, shown(other, String::clone), vec![want_spf])),
    }

    // DKIM (RFC 6376): each active key's record, as `facteur dkim list` has it.
    let active: Vec<_> = keys.iter().filter(|k| k.active && k.domain == d).collect();
    if active.is_empty() {
        rows.push(row(
            "DKIM",
            Status::Fix,
            "no signing key",
            vec![format!("facteur dkim generate {d}   (then publish the records it prints)")],
        ));
    }
    for k in active {
        let name = k.name();
        let published = txt_with(dns, &name, "v=DKIM1").await;
        let p = |r: &str| tag(r, "p").map(|p| p.replace(char::is_whitespace, ""));
        let ours = p(&k.record);
        rows.push(match &published {
            Ok(r) if r.iter().any(|r| p(r) == ours) => row("DKIM", Status::Ok, format!("{name} published"), vec![]),
            Ok(r) => row("DKIM", Status::Fix, format!("{name}: another key ({})", r.join(" | ")), vec![k.zone_line()]),
            Err(e) => row("DKIM", Status::Fix, format!("{name}: {e}"), vec![k.zone_line()]),
        });
    }

    // DMARC (RFC 7489): a policy; start at p=none, with reports.
    let dmarc = txt_with(dns, &format!("_dmarc.{d}"), "v=DMARC1").await;
    match &dmarc {
        Ok(r) if r.len() == 1 => {
            let p = tag(&r[0], "p").unwrap_or("").to_ascii_lowercase();
            let status = if p == "none" { Status::Advice } else { Status::Ok };
            let change = if p == "none" {
                vec!["once the reports show your mail passing: p=quarantine, then p=reject".to_string()]
            } else {
                vec![]
            };
            rows.push(row("DMARC", status, r[0].clone(), change));
        }
        other => rows.push(row(
            "DMARC",
            Status::Fix,
            shown(other, String::clone),
            vec![format!("_dmarc.{d}. IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@{d}\"")],
        )),
    }

    // MTA-STS (RFC 8461) and TLS-RPT (RFC 8460): optional.
    let sts = txt_with(dns, &format!("_mta-sts.{d}"), "v=STSv1").await;
    rows.push(match &sts {
        Ok(r) if !r.is_empty() => row("MTA-STS", Status::Ok, r.join(" | "), vec![]),
        other => row("MTA-STS", Status::Advice, shown(other, String::clone), vec![format!(
            "_mta-sts.{d}. IN TXT \"v=STSv1; id=1\"   (optional; with a policy at https://mta-sts.{d}/.well-known/mta-sts.txt)"
        )]),
    });
    let rpt = txt_with(dns, &format!("_smtp._tls.{d}"), "v=TLSRPTv1").await;
    rows.push(match &rpt {
        Ok(r) if !r.is_empty() => row("TLS-RPT", Status::Ok, r.join(" | "), vec![]),
        other => row(
            "TLS-RPT",
            Status::Advice,
            shown(other, String::clone),
            vec![format!("_smtp._tls.{d}. IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@{d}\"   (optional)")],
        ),
    });
    rows
}

/// An announced MTA-STS policy, fetched as senders will (RFC 8461 §3.3):
/// served, valid, and naming this server among its MX hosts.
async fn sts_policy_row(config: &crate::config::Config, domain: &str, txt: String) -> Row {
    use facteur_queue::mta_sts::{Fetcher, Mode};
    let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
    let d = &config.delivery;
    let fetcher = Fetcher {
        port: d.mta_sts_port,
        ca_file: d.tls_ca_file.clone(),
        timeout: facteur_queue::mta_sts::FETCH_TIMEOUT,
    };
    let fetched = match facteur_queue::DnsResolver::new(&d.dns_servers) {
        Ok(r) => facteur_queue::mta_sts::fetch(&r, &Default::default(), &fetcher, domain).await,
        Err(e) => Err(e),
    };
    let host = &config.server.hostname;
    match fetched {
        Err(e) => row(
            "MTA-STS",
            Status::Fix,
            format!("{txt}; policy not served: {e}"),
            vec![format!(
                "serve the policy at {url} (HTTPS with a certificate for mta-sts.{domain}, text/plain, no redirect), or remove _mta-sts.{domain}"
            )],
        ),
        Ok((_, p)) if p.mode != Mode::None && !p.allows(host) => row(
            "MTA-STS",
            Status::Fix,
            format!("{txt}; policy mode {} allows mx {}", p.mode.as_str(), p.mx.join(", ")),
            vec![format!("add \"mx: {host}\" to {url}, then change the id in _mta-sts.{domain}")],
        ),
        Ok((_, p)) if p.mode == Mode::Enforce => row(
            "MTA-STS",
            Status::Ok,
            format!("{txt}; policy enforce, mx {}, max_age {}", p.mx.join(", "), p.max_age),
            vec![],
        ),
        Ok((_, p)) => row(
            "MTA-STS",
            Status::Advice,
            format!("{txt}; policy mode {}", p.mode.as_str()),
            vec![format!("once TLS reports show no failures, set \"mode: enforce\" at {url} and change the id")],
        ),
    }
}

/// The command: print the rows (or JSON); exit 1 when something must change.
pub async fn run(
    config: &crate::config::Config,
    data_dir: &std::path::Path,
    domain: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let domain = facteur_auth::sign::check_domain(domain).map_err(anyhow::Error::msg)?;
    let resolver = facteur_auth::dns::resolver(&config.delivery.dns_servers, Some(Duration::from_secs(5)), 1024)
        .map_err(anyhow::Error::msg)?;
    let keys = facteur_auth::sign::list(&crate::dkim::folder(data_dir)).map_err(anyhow::Error::msg)?;
    let mut rows = check(&resolver, &domain, &config.server.hostname, &keys).await;
    if let Some(sts) = rows.iter_mut().find(|r| r.check == "MTA-STS" && r.status == Status::Ok) {
        *sts = sts_policy_row(config, &domain, std::mem::take(&mut sts.found)).await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("DNS of {domain} for mail served by {}:", config.server.hostname);
        for r in &rows {
            let mark = match r.status {
                Status::Ok => "ok    ",
                Status::Fix => "FIX   ",
                Status::Advice => "advice",
            };
            println!("{mark} {:<8} {}", r.check, r.found);
            for c in &r.change {
                println!("         -> {c}");
            }
        }
    }
    let must_fix = rows.iter().any(|r| r.status == Status::Fix);
    Ok(if must_fix { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
