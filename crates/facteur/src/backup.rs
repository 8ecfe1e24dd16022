//! `facteur backup DEST` and `facteur restore SRC`, for the embedded
//! SQLite database (PostgreSQL has pg_dump and its own tools).
//!
//! A backup is a folder: `facteur.db`, a consistent copy made while the
//! server runs with SQLite's online backup API in one step (one read
//! transaction: in WAL mode writers go on meanwhile, and the copy is the
//! database as of one commit), then checked (`quick_check`, schema
//! version); beside it the configuration file and the TLS certificate and
//! key, and `backup.txt` saying what and when. A restore checks the copy
//! fully (`integrity_check`, schema version, facteur's own invariants on a
//! scratch copy) before it replaces anything, refuses while a server holds
//! the data folder, and keeps the database it replaces.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

/// What a backup wrote.
pub struct Written {
    pub database: PathBuf,
    pub bytes: u64,
    pub schema: u32,
    pub also: Vec<PathBuf>,
}

/// Copy `db` (the live database) into the new folder `dest` with the
/// files beside it.
pub fn backup(db: &Path, dest: &Path, extra: &[PathBuf], now: i64) -> anyhow::Result<Written> {
    if dest.exists() && std::fs::read_dir(dest).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty: a backup goes into a new folder", dest.display());
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let source = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("cannot open {}", db.display()))?;
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    let database = dest.join("facteur.db");
    let mut target = Connection::open(&database).with_context(|| format!("cannot create {}", database.display()))?;
    {
        let step = rusqlite::backup::Backup::new(&source, &mut target)?;
        // Every page in one step: one read transaction, one consistent copy.
        step.step(-1).context("the online backup did not complete")?;
    }
    drop(target);
    let schema = verify(&database, false)?;
    let mut also = Vec::new();
    for f in extra.iter().filter(|f| f.is_file()) {
        let to = dest.join(f.file_name().unwrap_or_default());
        std::fs::copy(f, &to).with_context(|| format!("cannot copy {}", f.display()))?;
        also.push(to);
    }
    let bytes = std::fs::metadata(&database)?.len();
    std::fs::write(
        dest.join("backup.txt"),
        format!(
            "facteur backup\nmade: {} (unix {now})\nfrom: {}\nschema version: {schema}\nversion: {}\n\
             restore with: facteur --data DIR restore {}\n",
            facteur_smtp::headers::rfc5322_date(now),
            db.display(),
            env!("CARGO_PKG_VERSION"),
            dest.display()
        ),
    )?;
    // The folder's entries are durable too.
    std::fs::File::open(dest)?.sync_all()?;
    Ok(Written { database, bytes, schema, also })
}

/// Open a database copy read-only and check it: `integrity_check` when
/// `full`, else `quick_check`; its schema version, which this binary must
/// know.
pub fn verify(db: &Path, full: bool) -> anyhow::Result<u32> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", db.display()))?;
    let pragma = if full { "PRAGMA integrity_check" } else { "PRAGMA quick_check" };
    let verdict: String =
        c.query_row(pragma, [], |r| r.get(0)).with_context(|| format!("{} is not a database", db.display()))?;
    if verdict != "ok" {
        bail!("{} is damaged: {verdict}", db.display());
    }
    let schema = facteur_store::sqlite::current_version(&c)?;
    let known = facteur_store::sqlite::latest_version();
    if schema == 0 {
        bail!("{} holds no facteur database", db.display());
    }
    if schema > known {
        bail!(
            "{} is schema version {schema}, newer than this facteur knows ({known}): use a newer facteur",
            db.display()
        );
    }
    Ok(schema)
}

/// Where a restore takes the database from: a backup folder or a file.
pub fn source_database(src: &Path) -> PathBuf {
    if src.is_dir() { src.join("facteur.db") } else { src.to_path_buf() }
}
