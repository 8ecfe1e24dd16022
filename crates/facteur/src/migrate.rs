//! `facteur migrate --to URL [--schema NAME]`: the data folder's SQLite
//! database copied into a PostgreSQL schema. The copy, its resumption and
//! its verification are `facteur_store::migrate`'s; here are the data
//! folder's lock (no server starts meanwhile), the version check with its
//! way out, the progress shown (a bar on a terminal, a line per chunk
//! otherwise) and the summary with the configuration to switch to.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use facteur_store::migrate::{self, Progress, Report, TableReport};
use facteur_store::postgres::PgConfig;

use crate::config::Config;
use crate::serve;

/// What `facteur migrate` was asked.
pub struct Request<'a> {
    pub config: &'a Config,
    /// The configuration file in force, if any.
    pub config_file: Option<&'a Path>,
    pub data_dir: &'a Path,
    pub to: &'a str,
    pub schema: Option<String>,
    pub chunk_rows: usize,
}

pub async fn run(req: Request<'_>) -> anyhow::Result<ExitCode> {
    let d = req.data_dir.display();
    let db = req.data_dir.join(&req.config.storage.path);
    if !db.is_file() {
        bail!("no SQLite database at {}: nothing to migrate (is {d} the server's data folder?)", db.display());
    }
    // No server on this folder now, and none starting until we are done.
    let _lock = serve::lock_data_dir(req.data_dir).map_err(|e| anyhow!("cannot migrate now: {e:#}"))?;
    let found = migrate::source_version(&db).map_err(|e| anyhow!("{e}"))?;
    let known = facteur_store::sqlite::latest_version();
    if found < known {
        bail!(
            "{} is at schema version {found}; this facteur copies version {known} only. Upgrade it first: start this \
             version's `facteur --data {d} serve` once (and stop it), or run `facteur --data {d} check`, which \
             upgrades the schema; then migrate again",
            db.display()
        );
    }
    if found > known {
        bail!(
            "{} is at schema version {found}, newer than this facteur knows ({known}): run `migrate` of the facteur \
             that wrote it",
            db.display()
        );
    }
    let target = PgConfig {
        url: req.to.to_string(),
        pool_size: 2,
        statement_timeout_ms: 0,
        schema: req.schema.clone(),
        node: "migrate".into(),
    };
    let mut options = migrate::Options::new(db.clone(), target);
    options.chunk_rows = req.chunk_rows;
    let mut progress: Box<dyn Progress> =
        if std::io::stderr().is_terminal() { Box::new(Bars::default()) } else { Box::new(Lines) };
    let report = migrate::run(&options, progress.as_mut())
        .await
        .map_err(|e| anyhow!("cannot migrate into {}: {e}", migrate::redact(req.to)))?;
    drop(progress);
    Ok(summarise(&report, &db, &req))
}

/// The summary on standard output; the exit code.
fn summarise(report: &Report, db: &Path, req: &Request<'_>) -> ExitCode {
    let place = format!("PostgreSQL {} (schema {})", report.location, report.schema);
    if report.already_done {
        println!("facteur: {} was already migrated and verified into {place}; nothing to do", db.display());
        print_switch(report, req);
        return ExitCode::SUCCESS;
    }
    println!(
        "facteur: copied {} into {place}{}",
        db.display(),
        if report.resumed { ", continuing an interrupted run" } else { "" }
    );
    println!("{:<20} {:>10} {:>12} {:>10}  VERIFIED", "TABLE", "ROWS", "COPIED NOW", "MB NOW");
    for t in &report.tables {
        println!(
            "{:<20} {:>10} {:>12} {:>10.1}  {}",
            t.table,
            t.target_rows,
            t.copied_rows,
            mb(t.copied_bytes),
            verdict(t)
        );
    }
    let (rows, secs) = (report.copied_rows(), report.copy_secs.max(0.001));
    println!(
        "copied {rows} rows ({:.1} MB) in {:.1} s: {:.0} rows/s, {:.1} MB/s; verified in {:.1} s",
        mb(report.copied_bytes()),
        report.copy_secs,
        rows as f64 / secs,
        mb(report.copied_bytes()) / secs,
        report.verify_secs
    );
    for n in &report.notes {
        println!("note: {n}");
    }
    if !report.verified() {
        eprintln!(
            "facteur: error: verification failed for table(s) {}: the PostgreSQL copy differs from {} (was the \
             database changed between runs?). Drop schema {} and migrate again",
            report.mismatches().join(", "),
            db.display(),
            report.schema
        );
        return ExitCode::FAILURE;
    }
    println!("facteur: every table verified (row counts and SHA-256 digests equal); the SQLite database is unchanged");
    print_switch(report, req);
    ExitCode::SUCCESS
}

/// The lines that move this data folder onto PostgreSQL.
fn print_switch(report: &Report, req: &Request<'_>) {
    let file = req.config_file.map(Path::to_path_buf).unwrap_or_else(|| req.data_dir.join("facteur.toml"));
    println!("To serve from PostgreSQL, put in the [storage] section of {}:", file.display());
    println!();
    println!("[storage]");
    println!("backend = \"postgres\"");
    let toml_string = |s: &str| toml::Value::String(s.to_string()).to_string();
    println!("url = {}", toml_string(req.to));
    println!("schema = {}", toml_string(&report.schema));
    println!();
    println!("then start `facteur serve`; other nodes join with the same [storage] and their own [node] name.");
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn verdict(t: &TableReport) -> String {
    if t.matches() {
        "ok".into()
    } else {
        format!("MISMATCH (PostgreSQL {} rows, SQLite {})", t.target_rows, t.source_rows)
    }
}

/// Without a terminal: a line per table and per chunk on standard error.
struct Lines;

impl Progress for Lines {
    fn copying(&mut self, table: &str, done: u64, total: u64) {
        eprintln!("migrate: copying {table}: {done}/{total} rows");
    }
    fn copied(&mut self, table: &str, rows: u64) {
        eprintln!("migrate: copied {table}: {rows} rows");
    }
    fn verified(&mut self, t: &TableReport) {
        eprintln!("migrate: verified {}: {} rows, {}", t.table, t.target_rows, verdict(t));
    }
}

/// On a terminal: a bar per table.
#[derive(Default)]
struct Bars {
    current: Option<(String, indicatif::ProgressBar)>,
}

impl Bars {
    fn bar(&mut self, table: &str, total: u64, verify: bool) -> &indicatif::ProgressBar {
        if self.current.as_ref().is_none_or(|(t, _)| t != table) {
            let template = if verify {
                "{prefix:>20} {spinner} verifying {msg}"
            } else {
                "{prefix:>20} [{bar:30}] {human_pos}/{human_len} rows, {eta} left {msg}"
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = indicatif::ProgressBar::new(total).with_style(style).with_prefix(table.to_string());
            if verify {
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            if let Some((_, old)) = self.current.replace((table.to_string(), bar)) {
                old.finish();
            }
        }
        &self.current.as_ref().expect("set above").1
    }
}

impl Progress for Bars {
    fn copying(&mut self, table: &str, done: u64, total: u64) {
        let bar = self.bar(table, total, false);
        bar.set_length(total);
        bar.set_position(done);
    }
    fn copied(&mut self, table: &str, rows: u64) {
        let bar = self.bar(table, rows, false);
        bar.set_position(rows);
        bar.finish_with_message("copied");
        self.current = None;
    }
    fn verifying(&mut self, table: &str, rows: u64) {
        self.bar(table, rows, true).set_message(format!("{rows} rows"));
    }
    fn verified(&mut self, t: &TableReport) {
        if let Some((_, bar)) = self.current.take() {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>20} verified {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.finish_with_message(format!("{} rows, {}", t.target_rows, verdict(t)));
        }
    }
}
