//! Where a config value came from: a key in the file or an environment
//! variable. Every config error is reported there.

use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, line_column};

use super::env::Override;
use super::source_map::SourceMap;

/// A place to report a config problem at. Kept in the loaded config where
/// later steps (reading secrets) may need to report against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file, or `env NAME` for an environment variable.
    path: PathBuf,
    line: usize,
    column: usize,
}

impl Origin {
    pub fn whole_file(path: &Path) -> Self {
        Origin {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
        }
    }

    pub fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: self.path.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// Maps key paths to origins for one load.
pub(super) struct Locator<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub map: &'a SourceMap,
    pub overrides: &'a [Override],
}

impl Locator<'_> {
    /// The origin of the value at `key`: the variable that set it (or the
    /// table around it), else the deepest part of the key the file has.
    pub fn origin(&self, key: &[&str]) -> Origin {
        let (file_depth, offset) = self.map.locate(key);
        let mut best: Option<(usize, &Override)> = None;
        for var in self.overrides {
            let shared = var
                .path
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == *b)
                .count();
            // A variable that sets `key` or a table around it wins outright:
            // its value replaced the file's. A variable beside `key` wins
            // only if it made the table `key` is missing from.
            let replaces = shared == var.path.len();
            let made_table = shared + 1 >= key.len() && shared > file_depth;
            if replaces || made_table && best.is_none_or(|(s, _)| shared > s) {
                best = Some((if replaces { usize::MAX } else { shared }, var));
            }
        }
        if let Some((_, var)) = best {
            return Origin::whole_file(Path::new(&format!("env {}", var.var)));
        }
        match offset {
            Some(offset) => {
                let (line, column) = line_column(self.source, offset);
                Origin {
                    path: self.file.to_path_buf(),
                    line,
                    column,
                }
            }
            None => Origin::whole_file(self.file),
        }
    }

    pub fn error(&self, key: &[&str], message: impl Into<String>) -> Diagnostic {
        self.origin(key).diagnostic(message)
    }
}
