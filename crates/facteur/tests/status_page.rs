//! The public status page in a real browser, for each injected fault
//! (tests/browser/status.mjs: destination down, storage failing, IMAP
//! logins failing on one node of two). Needs Debian's `chromium`, `node`
//! and playwright-core (`npm ci --prefix crates/facteur/tests/browser`, as
//! `.ci/run` does) and PostgreSQL; a missing one fails the test, saying
//! what to install. Screenshots and each node's log are kept in
//! `target/tmp/status-page/`.

mod common;

use common::PgSchema;

#[test]
fn faults_show_on_the_status_page_and_clear() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&chromium).exists(), "no {chromium}: apt-get install chromium (see .ci/run)");
    assert!(
        here.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: npm ci --prefix {} (see .ci/run)",
        here.display()
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    let pg = PgSchema::new();
    let out = std::process::Command::new("node")
        .arg(here.join("status.mjs"))
        .env("FACTEUR_BIN", env!("CARGO_BIN_EXE_facteur"))
        .env("FACTEUR_SCREENSHOTS", &shots)
        .env("FACTEUR_PG_URL", &pg.url)
        .env("FACTEUR_PG_SCHEMA", &pg.schema)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node (apt-get install nodejs, see .ci/run)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the status page scenarios failed:\n{text}");
    assert_eq!(text.matches("RESULT ").count(), 3, "{text}");
}
