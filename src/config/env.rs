//! Environment overrides: `PRESENCE_SYNC_<SECTION>__<KEY>=value`.
//!
//! The environment is passed in rather than read here, so the daemon reads
//! the process environment once and tests never race on it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use crate::diagnostics::Diagnostic;

/// Prefix of every override variable.
pub const PREFIX: &str = "PRESENCE_SYNC_";

/// A snapshot of environment variables.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    /// The daemon's own environment.
    pub fn from_process() -> Self {
        std::env::vars_os().collect()
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    fn iter(&self) -> impl Iterator<Item = (&OsString, &OsString)> {
        self.vars.iter()
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Environment {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// Names only: values may hold anything, secrets included.
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

/// One override variable, as a figment provider of its own so that every
/// value keeps which variable it came from.
#[derive(Clone, Debug)]
pub(super) struct Override {
    pub var: String,
    /// Lowercased key path, e.g. `["sync", "echo_window"]`.
    pub path: Vec<String>,
    value: Value,
}

/// The override variables in `env`, and diagnostics for variables that look
/// like overrides but cannot be one.
///
/// Variables under the prefix without a `__` are left alone unless they look
/// like a mistyped override (`PRESENCE_SYNC_SYNC_ECHO_WINDOW`): every config
/// key sits in a section, so they cannot set anything, and the prefix is also
/// used by variables that are not config (e.g. the test harness's
/// `PRESENCE_SYNC_REQUIRE_SHARED`).
pub(super) fn overrides(env: &Environment, sections: &[&str]) -> (Vec<Override>, Vec<Diagnostic>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in env.iter() {
        let Some(var) = name.to_str() else { continue };
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let lowered = rest.to_ascii_lowercase();
        if !rest.contains("__") {
            let section = sections
                .iter()
                .find(|s| lowered == **s || lowered.starts_with(&format!("{s}_")));
            if let Some(section) = section {
                let key = lowered[section.len()..].trim_start_matches('_');
                let example = if key.is_empty() {
                    format!("{PREFIX}{}__KEY", section.to_ascii_uppercase())
                } else {
                    format!(
                        "{PREFIX}{}__{}",
                        section.to_ascii_uppercase(),
                        key.to_ascii_uppercase()
                    )
                };
                errors.push(env_error(
                    var,
                    format!("not a config key: separate the section from the key with a double underscore, e.g. {example}"),
                ));
            }
            continue;
        }
        let path: Vec<String> = lowered.split("__").map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            errors.push(env_error(
                var,
                "not a config key: a key segment is empty (write PRESENCE_SYNC_SECTION__KEY)",
            ));
            continue;
        }
        let Some(text) = value.to_str() else {
            errors.push(env_error(var, "the value is not valid UTF-8"));
            continue;
        };
        let Ok(value) = text.parse::<Value>();
        found.push(Override {
            var: var.to_owned(),
            path,
            value,
        });
    }
    (found, errors)
}

/// An error caused by an environment variable, printed as `env NAME: message`.
pub(super) fn env_error(var: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic::whole_file(std::path::Path::new(&format!("env {var}")), message)
}

impl Provider for Override {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("env {}", self.var))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut value = self.value.clone();
        for key in self.path.iter().skip(1).rev() {
            value = Value::from(Dict::from([(key.clone(), value)]));
        }
        let root = self.path.first().cloned().unwrap_or_default();
        Ok(Profile::Default.collect(Dict::from([(root, value)])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vars: &[(&str, &str)]) -> (Vec<Override>, Vec<String>) {
        let env: Environment = vars.iter().copied().collect();
        let (found, errors) = overrides(&env, &["graph", "sync"]);
        (found, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn nests_on_double_underscores_and_lowercases() {
        let (found, errors) = run(&[("PRESENCE_SYNC_SYNC__ECHO_WINDOW", "2m"), ("PATH", "/bin")]);
        assert!(errors.is_empty());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, ["sync", "echo_window"]);
        assert_eq!(found[0].value.as_str(), Some("2m"));
    }

    #[test]
    fn single_underscore_typos_are_errors_other_names_are_ignored() {
        let (found, errors) = run(&[
            ("PRESENCE_SYNC_SYNC_ECHO_WINDOW", "2m"),
            ("PRESENCE_SYNC_REQUIRE_SHARED", "1"),
            ("PRESENCE_SYNC_GRAPH____X", "1"),
        ]);
        assert!(found.is_empty());
        assert_eq!(
            errors,
            [
                "env PRESENCE_SYNC_GRAPH____X: not a config key: a key segment is empty (write PRESENCE_SYNC_SECTION__KEY)",
                "env PRESENCE_SYNC_SYNC_ECHO_WINDOW: not a config key: separate the section from the key with a double underscore, e.g. PRESENCE_SYNC_SYNC__ECHO_WINDOW",
            ]
        );
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env: Environment = [("API_TOKEN", "hunter2")].into_iter().collect();
        assert_eq!(format!("{env:?}"), "{\"API_TOKEN\"}");
    }
}
