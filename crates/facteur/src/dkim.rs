//! `facteur dkim`: the DKIM keys our users' mail is signed with
//! (facteur_auth::sign), kept in `DATA/dkim`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use facteur_auth::sign;

#[derive(Subcommand, Debug)]
pub enum DkimCmd {
    /// Make a selector's keys for DOMAIN (ed25519 and RSA) and print the DNS
    /// records to publish; a domain's first selector signs at once
    Generate {
        domain: String,
        /// Selector name [default: s + this year and month, e.g. s202612]
        #[arg(long)]
        selector: Option<String>,
        /// Size of the RSA key (2048 to 4096)
        #[arg(long, default_value_t = 2048)]
        rsa_bits: usize,
    },
    /// Every key: domain, selector, algorithm, whether it signs
    List {
        /// Also print each key's DNS record, in zone-file form
        #[arg(long)]
        dns: bool,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Sign DOMAIN's mail with SELECTOR from now on (publish its records first)
    Activate { domain: String, selector: String },
    /// Delete SELECTOR's keys (not the active one); its DNS records can go
    /// once mail signed with it has been delivered
    Remove { domain: String, selector: String },
}

/// `DATA/dkim`.
pub fn folder(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("dkim")
}

fn default_selector() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let (year, month, _) = facteur_dsn::civil_from_days((secs / 86_400) as i64);
    format!("s{year}{month:02}")
}

/// Tell a running server to read the keys again; say so when none runs.
fn reload_if_running(data_dir: &Path) {
    if data_dir.join("facteur.lock").exists() {
        match crate::reload::ask(data_dir) {
            Ok(_) => {}
            Err(e) => println!("(no server reloaded: {e:#}; the keys are read at its next start or reload)"),
        }
    }
}

pub fn run(data_dir: &Path, cmd: DkimCmd, local_domains: &[String]) -> anyhow::Result<ExitCode> {
    let dir = folder(data_dir);
    match cmd {
        DkimCmd::Generate { domain, selector, rsa_bits } => {
            let selector = selector.unwrap_or_else(default_selector);
            let keys = sign::generate(&dir, &domain, &selector, rsa_bits).map_err(anyhow::Error::msg)?;
            let domain = sign::check_domain(&domain).map_err(anyhow::Error::msg)?;
            if !local_domains.contains(&domain) {
                println!("note: {domain} is not one of this server's domains (facteur domain add {domain})");
            }
            println!("; DKIM keys of {domain}, selector {selector} (in {}). Publish:", dir.join(&domain).display());
            for k in &keys {
                println!("{}", k.zone_line());
            }
            if keys.iter().any(|k| k.active) {
                println!("; {selector} signs {domain}'s mail from now on.");
                reload_if_running(data_dir);
            } else {
                println!("; Once these records are published, switch to it: facteur dkim activate {domain} {selector}");
            }
        }
        DkimCmd::List { dns, json } => {
            let keys = sign::list(&dir).map_err(anyhow::Error::msg)?;
            if json {
                let v: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "domain": k.domain, "selector": k.selector, "algorithm": k.algorithm.suffix(),
                            "active": k.active, "dns_name": k.name(), "dns_txt": k.record,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if keys.is_empty() {
                println!("no DKIM keys; make some with: facteur dkim generate example.com");
            } else {
                println!("{:<32} {:<20} {:<9} ACTIVE", "DOMAIN", "SELECTOR", "ALGORITHM");
                for k in &keys {
                    println!(
                        "{:<32} {:<20} {:<9} {}",
                        k.domain,
                        format!("{}-{}", k.selector, k.algorithm.suffix()),
                        k.algorithm.suffix(),
                        if k.active { "yes" } else { "no" }
                    );
                }
                if dns {
                    println!();
                    for k in &keys {
                        println!("{}", k.zone_line());
                    }
                }
            }
        }
        DkimCmd::Activate { domain, selector } => {
            sign::activate(&dir, &domain, &selector).map_err(anyhow::Error::msg)?;
            println!("{selector} signs {}'s mail from now on", domain.to_lowercase());
            reload_if_running(data_dir);
        }
        DkimCmd::Remove { domain, selector } => {
            let n = sign::remove(&dir, &domain, &selector).map_err(anyhow::Error::msg)?;
            println!("{n} key(s) of {} selector {selector} removed", domain.to_lowercase());
        }
    }
    Ok(ExitCode::SUCCESS)
}
