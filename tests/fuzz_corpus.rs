//! Replays the fuzz corpus (`tests/fuzz/corpus/<target>/`) and every minimized crash
//! (`tests/fuzz/regressions/<target>/`) through the same checks the fuzz targets run, on stable
//! and without libFuzzer. See tests/fuzz/ for the fuzz targets themselves.

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The input files of `target`: every non-hidden file in its corpus and regressions directories.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_file() && !hidden {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no inputs for the {target} target in tests/fuzz/corpus/{target}/ or tests/fuzz/regressions/{target}/"
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| checks::run(target, &data));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            failed.push(format!("{}: {message}", file.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "the {target} check failed on {} of {} inputs:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// A corpus directory without a test here would never be replayed.
#[test]
fn every_corpus_directory_is_a_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    for kind in ["corpus", "regressions"] {
        for entry in std::fs::read_dir(root.join(kind)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    checks::TARGETS.contains(&name.as_str()),
                    "{} is not one of {:?}",
                    path.display(),
                    checks::TARGETS
                );
            }
        }
    }
}

#[test]
fn template_corpus() {
    replay("template");
}

#[test]
fn filters_corpus() {
    replay("filters");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn payload_corpus() {
    replay("payload");
}

#[test]
fn enqueue_corpus() {
    replay("enqueue");
}
