//! Errors in files admins write, located as `path:line:column: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config or mapping file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (e.g. it cannot be read).
    pub line: usize,
    /// 1-based; 0 when the problem has no place in the file.
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at a byte offset of `source`.
    pub fn at(path: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, offset);
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A diagnostic about the file as a whole (line 0, column 0 are not printed).
    pub fn whole_file(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// 1-based line and column (in characters) of a byte offset; offsets past the
/// end point just after the last character.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// The candidate closest to `input` by edit distance (case-insensitive), when
/// it is close enough to be a plausible typo.
pub fn nearest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = input.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&lowered, &candidate.to_lowercase());
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    let (distance, candidate) = best?;
    let limit = (input.chars().count().max(candidate.chars().count()) / 2).max(2);
    (distance <= limit).then_some(candidate)
}

/// `" (did you mean `X`?)"` or nothing.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(input, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Damerau–Levenshtein: a swapped pair of letters (`Avialable`) is one edit,
/// as an admin would count it.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::damerau_levenshtein(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        assert_eq!(line_column(src, 9), (2, 3));
        assert_eq!(line_column(src, 999), (3, 1));
    }

    #[test]
    fn a_swapped_pair_of_letters_is_one_edit() {
        assert_eq!(edit_distance("avialable", "available"), 1);
        assert_eq!(edit_distance("lnuch", "lunch"), 1);
        // So a short name with a swap and one more slip is still found.
        assert_eq!(nearest("Bsuyy", ["Busy", "Lunch"]), Some("Busy"));
    }

    #[test]
    fn suggests_only_plausible_typos() {
        let options = ["Available", "Busy", "DoNotDisturb"];
        assert_eq!(nearest("Avialable", options), Some("Available"));
        assert_eq!(nearest("busy", options), Some("Busy"));
        assert_eq!(nearest("Lunch", options), None);
        assert_eq!(did_you_mean("Bussy", options), " (did you mean `Busy`?)");
    }

    #[test]
    fn prints_like_a_compiler() {
        let d = Diagnostic::at(Path::new("m.toml"), "x\ny", 2, "bad");
        assert_eq!(d.to_string(), "m.toml:2:1: bad");
        assert_eq!(
            Diagnostic::whole_file(Path::new("m.toml"), "gone").to_string(),
            "m.toml: gone"
        );
    }
}
