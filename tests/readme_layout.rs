//! README's "Layout of `src/`" table is true to the tree: every entry of
//! `src/` has a row, and every file or folder a row names is there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn layout_rows() -> Vec<(Vec<String>, Vec<String>)> {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Layout of `src/`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a `## Layout of `src/`` section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter(|rest| !rest.starts_with("path |") && !rest.starts_with("---"))
        .filter_map(|rest| rest.split_once(" | "))
        .map(|(paths, what)| (backticked(paths), backticked(what)))
        .collect()
}

/// The backticked words that look like a file or a folder.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            !w.contains(' ')
                && !w.contains('*')
                && (w.ends_with(".rs") || (w.ends_with('/') && !w.starts_with('/')))
        })
        .map(str::to_string)
        .collect()
}

fn all_under(dir: &Path, out: &mut Vec<PathBuf>) {
    // A row naming a folder that is not there is reported on its own.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.clone());
        if path.is_dir() {
            all_under(&path, out);
        }
    }
}

#[test]
fn every_entry_of_src_has_a_row() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rows: BTreeSet<String> = layout_rows().into_iter().flat_map(|(p, _)| p).collect();
    let missing: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .filter(|name| !rows.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "src/ entries without a README row: {missing:?}"
    );
}

#[test]
fn every_file_a_row_names_is_in_the_tree() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (paths, named) in layout_rows() {
        for path in &paths {
            if !src.join(path.trim_end_matches('/')).exists() {
                problems.push(format!("row `{path}`: no such entry in src/"));
            }
        }
        // A name in the description is somewhere under the row's folder.
        let dirs: Vec<PathBuf> = paths
            .iter()
            .filter(|p| p.ends_with('/'))
            .map(|p| src.join(p.trim_end_matches('/')))
            .collect();
        let mut under = Vec::new();
        for dir in &dirs {
            all_under(dir, &mut under);
        }
        for name in named {
            let name = name.trim_end_matches('/');
            let found = under.iter().any(|p| {
                p.ends_with(name)
                    || p.file_name()
                        .is_some_and(|f| f == name.rsplit('/').next().unwrap_or(name))
            });
            if !dirs.is_empty() && !found {
                problems.push(format!("row {paths:?} names `{name}`, not under it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
