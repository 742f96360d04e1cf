//! Mapping profiles: the TOML files admins write (`mappings/*.toml`).
//!
//! Loading goes through three layers, each reporting every problem it finds:
//! `file` reads the TOML shape (keys, types), `validate` gives the values
//! their meaning and builds the [`Profile`], and [`cycles`] checks that the
//! two directions together always settle. The format is documented for
//! admins in `mappings/README.md`.

pub mod cycles;
pub(crate) mod file;
pub mod profile;
pub(crate) mod validate;
pub(crate) mod warnings;

use std::path::Path;

use crate::diagnostics::Diagnostic;

pub use profile::*;
pub use validate::DEFAULT_DEBOUNCE;

/// A problem at a byte offset of the file being loaded; it becomes a
/// [`Diagnostic`] once the path is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub at: usize,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(at: usize, message: impl Into<String>) -> Self {
        Problem {
            at,
            message: message.into(),
        }
    }
}

/// Reads, parses and validates one profile file. The profile's name is the
/// one the daemon config gives it. Every problem found is returned, each with
/// its file, line and column.
pub fn load_profile(name: &str, path: &Path) -> Result<Profile, Vec<Diagnostic>> {
    load_checked(name, path).map(|checked| checked.profile)
}

/// A profile that loaded, with what it loaded with: things that are not
/// errors but that an admin should hear about (see [`warnings`]).
#[derive(Clone, Debug)]
pub struct Checked {
    pub profile: Profile,
    /// In file order.
    pub warnings: Vec<Diagnostic>,
}

/// [`load_profile`], keeping the warnings.
pub fn load_checked(name: &str, path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    match std::fs::read_to_string(path) {
        Ok(source) => parse_checked(name, path, &source),
        Err(err) => Err(vec![Diagnostic::whole_file(
            path,
            format!("cannot read mapping file: {err}"),
        )]),
    }
}

/// Parses and validates a profile from its text; `path` is only used in the
/// diagnostics. Problems come in file order.
pub fn parse_profile(name: &str, path: &Path, source: &str) -> Result<Profile, Vec<Diagnostic>> {
    parse_checked(name, path, source).map(|checked| checked.profile)
}

/// [`parse_profile`], keeping the warnings.
pub fn parse_checked(name: &str, path: &Path, source: &str) -> Result<Checked, Vec<Diagnostic>> {
    let (raw, mut problems) = file::read(source);
    let profile = raw.map(|raw| {
        let (profile, origins, found) = validate::validate(name, source, &raw);
        problems.extend(found);
        (profile, origins)
    });
    if let Some((profile, origins)) = profile {
        // Cycles in a profile that is wrong elsewhere would be guesses about
        // what the admin meant, so they are only looked for once the rest holds.
        if problems.is_empty() {
            for cycle in cycles::find_cycles(&profile) {
                let at = match cycle.start {
                    cycles::Start::Cc(id) => origins.statuses.get(usize::from(id.0)).copied(),
                    cycles::Start::Teams { .. } => {
                        cycle.first_rule.and_then(|r| origins.rules.get(r).copied())
                    }
                };
                problems.push(Problem::new(
                    at.unwrap_or(origins.statuses_table),
                    cycle.message(&profile),
                ));
            }
        }
        if problems.is_empty() {
            let warnings = warnings::find(&profile, &origins)
                .into_iter()
                .map(|p| Diagnostic::at(path, source, p.at, p.message))
                .collect();
            return Ok(Checked { profile, warnings });
        }
    }
    // Stable: problems at one place keep the order they were found in.
    problems.sort_by_key(|p| p.at);
    Err(problems
        .into_iter()
        .map(|p| Diagnostic::at(path, source, p.at, p.message))
        .collect())
}
