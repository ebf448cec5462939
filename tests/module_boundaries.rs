//! The import rules of DESIGN.md, checked over src/ with a plain text search, so that a change
//! which couples two layers fails here rather than in a later issue's rewrite:
//!
//! - `delivery` (the vocabulary everyone speaks) imports nothing from the crate;
//! - channels never see the ledger;
//! - the core (`notify`) knows no transport: neither `api` nor tonic;
//! - the ledger knows neither the core nor the gRPC layer;
//! - `config` imports nothing of ours.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every .rs file at or below `path` (a file or a directory under src/).
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Lines of the files under `module` that contain any of `forbidden`, comments left out.
fn offending(module: &str, forbidden: &[&str]) -> Vec<String> {
    let path = src().join(module);
    assert!(path.exists(), "{} does not exist", path.display());
    let mut found = Vec::new();
    for file in rust_files(&path) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn delivery_imports_nothing_from_the_crate() {
    let found = offending("delivery.rs", &["crate::", "super::super"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn channels_do_not_import_the_ledger() {
    let found = offending("channels", &["crate::ledger", "ledger::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_core_imports_neither_the_grpc_layer_nor_tonic() {
    let found = offending("notify", &["crate::api", "tonic"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_ledger_imports_neither_the_core_nor_the_grpc_layer() {
    let found = offending("ledger", &["crate::notify", "crate::api", "tonic"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn config_imports_nothing_of_ours() {
    let found = offending("config.rs", &["crate::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_checks_see_a_violation_when_there_is_one() {
    // The search itself must be able to fail: worker.rs does import the ledger and channels.
    assert!(!offending("worker.rs", &["crate::ledger"]).is_empty());
    assert!(!offending("api", &["tonic"]).is_empty());
}
