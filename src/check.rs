//! `presence-sync check`: validate the config and every mapping file it
//! names, the way the daemon would load them, without starting anything.

use std::path::Path;

use crate::config::{Config, Environment, SecretError};
use crate::daemon::mappings::queue_status_errors;
use crate::diagnostics::Diagnostic;
use crate::mapping::{self, Profile};
use crate::store::{SledStore, StoreError};

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Every error, in file order within each file.
    pub errors: Vec<Diagnostic>,
    /// Things not checked and why; not errors.
    pub notes: Vec<String>,
    /// Not errors, each a line starting or located with `warning:`: what
    /// loads but will not behave as the file seems to say (a Teams target
    /// Graph's aggregation hides, in file order), then agents in the store
    /// holding a CC status their profile (as configured now) lacks.
    pub warnings: Vec<String>,
    /// Mapping profiles that loaded without error.
    pub valid_profiles: usize,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// One line for the end of the output.
    pub fn summary(&self) -> String {
        if self.is_ok() {
            let profiles = match self.valid_profiles {
                1 => "1 profile".to_owned(),
                n => format!("{n} profiles"),
            };
            match self.warnings.len() {
                0 => format!("ok: config and {profiles} valid"),
                1 => format!("ok: config and {profiles} valid, 1 warning"),
                n => format!("ok: config and {profiles} valid, {n} warnings"),
            }
        } else {
            let errors = match self.errors.len() {
                1 => "1 error".to_owned(),
                n => format!("{n} errors"),
            };
            format!("failed: {errors} in the config and its mapping files")
        }
    }
}

/// Checks the config at `path` with the environment `env`: the config
/// itself, the secrets it points at (read, never shown), and each mapping
/// profile.
pub fn check(path: &Path, env: &Environment) -> CheckReport {
    let mut report = CheckReport::default();
    let (config, profile_files) = match Config::load_with(path, env) {
        Ok(config) => {
            check_secrets(&config, &mut report);
            let files = config
                .mappings
                .profiles
                .iter()
                .map(|(name, profile)| (name.clone(), profile.file.clone()))
                .collect();
            (Some(config), files)
        }
        Err(error) => {
            report.errors.extend(error.diagnostics);
            (None, error.profile_files)
        }
    };
    let mut profiles = Vec::new();
    for (name, file) in profile_files {
        match mapping::load_checked(&name, &file) {
            Ok(checked) => {
                report
                    .warnings
                    .extend(checked.warnings.iter().map(ToString::to_string));
                profiles.push(checked.profile);
            }
            Err(errors) => report.errors.extend(errors),
        }
    }
    report.valid_profiles = profiles.len();
    if let Some(config) = &config {
        // As the daemon does at start and on every reload.
        report.errors.extend(queue_status_errors(
            &config.mappings,
            &config.routing,
            |name| profiles.iter().find(|p| p.name == name),
        ));
        check_held_statuses(config, &profiles, &mut report);
        let (notes, warnings) = crate::accounts::login::check_accounts(config);
        report.notes.extend(notes);
        report.warnings.extend(warnings);
    }
    report
}

fn check_secrets(config: &Config, report: &mut CheckReport) {
    if let crate::config::GraphAuth::Certificate {
        certificate_file, ..
    } = &config.graph.auth
        && let Err(error) = std::fs::read(certificate_file)
    {
        report.errors.push(Diagnostic::whole_file(
            certificate_file,
            format!("cannot read the Graph client certificate: {error}"),
        ));
    }
    // The CA file is read (and its certificates parsed) as the daemon's
    // HTTP client will; the certificate credential's end date is said.
    if let Some(ca_file) = &config.graph.outbound.ca_file
        && let Err(error) =
            crate::http::client_with(config.graph.request_timeout, &config.graph.outbound)
    {
        report
            .errors
            .push(Diagnostic::whole_file(ca_file, error.to_string()));
    }
    if let crate::config::GraphAuth::Certificate {
        certificate_file, ..
    } = &config.graph.auth
        && let Ok(pem) = std::fs::read_to_string(certificate_file)
        && let Some(not_after) = crate::graph::auth::pem_certificate_not_after(&pem)
    {
        let (usable, text) =
            crate::daemon::permissions::certificate_check(not_after, chrono::Utc::now());
        if !usable {
            report
                .errors
                .push(Diagnostic::whole_file(certificate_file, text));
        } else if text.starts_with("warning") {
            report
                .warnings
                .push(format!("{}: {text}", certificate_file.display()));
        }
    }
    for source in config.secrets() {
        match source.read() {
            Ok(_) => {}
            // Outside systemd (an admin running `check` by hand) there is no
            // credentials directory; the daemon itself will insist on it.
            Err(SecretError::NoCredentialsDirectory { purpose, name }) => report.notes.push(
                format!("{purpose} comes from the systemd credential `{name}`; not checked: $CREDENTIALS_DIRECTORY is not set"),
            ),
            Err(error) => report.errors.push(source.diagnostic(&error)),
        }
    }
    // Each readable on its own; the viewer token must not be the API token.
    if let (Some(viewer), Err(error @ SecretError::SameAs { .. })) =
        (&config.api.viewer_token, config.api.read_tokens())
    {
        report.errors.push(viewer.diagnostic(&error));
    }
}

/// Warns about agents in the store whose CC status the profile they would
/// be on does not have: the daemon keeps such a status, not routable, with
/// the profile's `default_teams` in Teams. The store is read from a scratch
/// copy; while the daemon runs it is its own, and a note says so.
fn check_held_statuses(config: &Config, profiles: &[Profile], report: &mut CheckReport) {
    let dir = &config.store.state_dir;
    let agents = match SledStore::read_agents(dir) {
        Ok(Some(agents)) => agents,
        Ok(None) => return,
        Err(StoreError::Locked { .. }) => {
            report.notes.push(format!(
                "the store in {} is in use (the daemon runs): agents' CC statuses not checked against the profiles; a reload lists agents holding a status their profile lacks (`statuses_not_in_profile`)",
                dir.display()
            ));
            return;
        }
        Err(error) => {
            report.notes.push(format!(
                "agents' CC statuses not checked against the profiles: {error}"
            ));
            return;
        }
    };
    for agent in agents {
        let profile_name = agent.profile.clone().unwrap_or_else(|| {
            agent
                .groups
                .iter()
                .find_map(|g| {
                    config
                        .mappings
                        .profiles
                        .iter()
                        .find(|(_, p)| p.groups.contains(g))
                        .map(|(name, _)| name.clone())
                })
                .unwrap_or_else(|| config.mappings.default_profile.clone())
        });
        let held = agent
            .sync
            .as_ref()
            .and_then(|s| s.cc.as_ref())
            .map(|c| c.status.clone())
            .or_else(|| agent.cc_status.as_ref().map(|c| c.status.clone()));
        let (Some(status), Some(profile)) =
            (held, profiles.iter().find(|p| p.name == profile_name))
        else {
            continue;
        };
        if profile.status_id(&status).is_none() {
            let file = config
                .mappings
                .profiles
                .get(&profile_name)
                .map_or_else(String::new, |p| format!(" ({})", p.file.display()));
            report.warnings.push(format!(
                "warning: agent `{}` holds CC status `{status}`, which profile `{profile_name}`{file} does not have: the daemon keeps it, not routable, and Teams shows the profile's default_teams until the profile has it again or the CC reports another status",
                agent.id
            ));
        }
    }
}

/// What `check --store` found: the lines to print and whether the store
/// passed.
#[derive(Debug)]
pub enum StoreCheck {
    /// The store passed its deep check.
    Passed(String),
    /// The directory holds no store (missing or empty).
    NoStore(String),
    /// Refused: in use, damaged, newer, or unreadable.
    Refused(StoreError),
}

/// The deep check of the store in `dir` (what an open runs after an
/// unclean shutdown), on a scratch copy: the store is left as it was. A
/// store the running daemon holds is refused, not read.
pub fn check_store(dir: &Path) -> StoreCheck {
    // `presence-sync demo --state-dir DIR` keeps its store in DIR/store:
    // name the folder that holds it rather than refuse DIR as damaged.
    let inner = dir.join("store");
    if !dir.join("db").exists() && inner.join("db").is_file() {
        return StoreCheck::NoStore(format!(
            "{} holds no store itself, but {} does (a demo's state directory keeps its store there; `[store] state_dir` in its config names it): presence-sync check --store {}",
            dir.display(),
            inner.display(),
            inner.display()
        ));
    }
    match SledStore::check_dir(dir) {
        Ok(Some(s)) => {
            let plural = |n: usize, one: &str, many: &str| {
                if n == 1 {
                    format!("1 {one}")
                } else {
                    format!("{n} {many}")
                }
            };
            let events = match s.first_seq {
                Some(first) => format!(
                    "{} (seqs {first} to {})",
                    plural(s.events, "event", "events"),
                    s.next_seq - 1
                ),
                None => "no events kept".to_owned(),
            };
            StoreCheck::Passed(format!(
                "ok: the store in {} passed its check: store id {}, {}, {}, {}, {}, {}, next seq {}; {}",
                dir.display(),
                s.store_id,
                plural(s.agents, "agent", "agents"),
                plural(s.outbox, "owed Teams write", "owed Teams writes"),
                plural(s.contacts, "contact", "contacts"),
                events,
                plural(s.meta, "metadata record", "metadata records"),
                s.next_seq,
                if s.closed_cleanly {
                    "it was closed cleanly"
                } else {
                    "it was not closed cleanly: the daemon's next start checks it again"
                }
            ))
        }
        Ok(None) => StoreCheck::NoStore(format!(
            "{} holds no store (missing or empty)",
            dir.display()
        )),
        Err(error) => StoreCheck::Refused(error),
    }
}
