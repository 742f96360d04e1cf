//! Golden tests: each broken config in `tests/fixtures/config/*.toml` (with
//! the variables of a `.env` file beside it, if any) must produce exactly
//! the diagnostics in its `.expected` file. `UPDATE_GOLDEN=1 cargo test`
//! rewrites the `.expected` files; review the diff before committing.

use std::fs;
use std::path::{Path, PathBuf};

use presence_sync::config::{Config, Environment};

const DIR: &str = "tests/fixtures/config";

fn environment(config: &Path) -> Environment {
    let Ok(text) = fs::read_to_string(config.with_extension("env")) else {
        return Environment::default();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once('=').expect("NAME=value lines");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn render(config: &Path) -> String {
    match Config::load_with(config, &environment(config)) {
        Ok(_) => "(loads without errors)\n".to_owned(),
        Err(error) => error.diagnostics.iter().map(|d| format!("{d}\n")).collect(),
    }
}

#[test]
fn broken_configs_give_the_expected_diagnostics() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut configs: Vec<PathBuf> = fs::read_dir(DIR)
        .expect("fixtures directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(!configs.is_empty(), "no fixtures in {DIR}");
    let mut failures = Vec::new();
    for config in &configs {
        let actual = render(config);
        let expected_path = config.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).expect("write .expected");
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                config.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (run with UPDATE_GOLDEN=1 to create it)",
                config.display(),
                expected_path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
