//! Golden files: the exact bytes of each kind of report. On a mismatch (or a
//! missing file) the new rendering is written beside the golden file as
//! `NAME.eml.new` and the test fails; review it, then rename it over
//! `NAME.eml` to accept the change.

mod common;

use std::path::PathBuf;

use facteur_dsn::{DsnInput, build};

fn check(name: &str, input: &DsnInput<'_>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let golden = dir.join(format!("{name}.eml"));
    let fresh = dir.join(format!("{name}.eml.new"));
    let built = build(input);
    match std::fs::read(&golden) {
        Ok(expected) if expected == built => {
            let _ = std::fs::remove_file(&fresh);
        }
        found => {
            std::fs::write(&fresh, &built).expect("write the .new file");
            match found {
                Ok(_) => panic!("{name}: output differs from {}; see {}", golden.display(), fresh.display()),
                Err(error) => panic!("{name}: cannot read {} ({error}); see {}", golden.display(), fresh.display()),
            }
        }
    }
}

#[test]
fn failure() {
    check("failure", &common::failure());
}

#[test]
fn delay() {
    check("delay", &common::delay());
}

#[test]
fn success() {
    check("success", &common::success());
}
