//! Golden tests for mapping diagnostics, and the shipped profiles.
//!
//! Each `tests/fixtures/mappings/NAME.toml` is a broken profile; `NAME.expected`
//! holds the exact diagnostics, one per line. After an intended change to a
//! message, regenerate them with `UPDATE_GOLDEN=1 cargo test --test check_mappings`
//! and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use presence_sync::mapping::{load_profile, parse_profile};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn broken_profiles_report_exactly_the_expected_diagnostics() {
    let root = manifest_dir();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let fixtures = toml_files(&root.join("tests/fixtures/mappings"));
    assert!(!fixtures.is_empty(), "no fixtures found");
    let mut failures = Vec::new();
    for absolute in fixtures {
        let relative = absolute.strip_prefix(&root).unwrap_or(&absolute);
        let source = fs::read_to_string(&absolute).unwrap_or_default();
        let name = relative.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let got = match parse_profile(name, relative, &source) {
            Ok(_) => String::new(),
            Err(diagnostics) => diagnostics.iter().map(|d| format!("{d}\n")).collect(),
        };
        assert!(!got.is_empty(), "{} should not load", relative.display());
        let expected_path = absolute.with_extension("expected");
        if update {
            fs::write(&expected_path, &got).unwrap_or_else(|e| panic!("cannot write: {e}"));
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}+++ got\n{got}",
                relative.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "diagnostics differ (UPDATE_GOLDEN=1 regenerates):\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shipped_profile_loads_without_errors() {
    let files = toml_files(&manifest_dir().join("mappings"));
    assert!(files.len() >= 3, "expected the shipped profiles");
    for path in files {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        if let Err(diagnostics) = load_profile(name, &path) {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("{} does not load:\n{}", path.display(), text.join("\n"));
        }
    }
}

#[test]
fn an_unreadable_file_is_reported_without_a_position() {
    let missing = manifest_dir().join("mappings/does-not-exist.toml");
    let errors = load_profile("x", &missing).err().unwrap_or_default();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 0);
    assert!(errors[0].message.starts_with("cannot read mapping file"));
}
