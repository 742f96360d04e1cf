//! `presence-sync check`: validate the config and every mapping file it
//! names, the way the daemon would load them, without starting anything.

use std::path::Path;

use crate::config::{Config, Environment, SecretError};
use crate::daemon::mappings::queue_status_errors;
use crate::diagnostics::Diagnostic;
use crate::mapping;

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Every error, in file order within each file.
    pub errors: Vec<Diagnostic>,
    /// Things not checked and why; not errors.
    pub notes: Vec<String>,
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
            format!("ok: config and {profiles} valid")
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
        match mapping::load_profile(&name, &file) {
            Ok(profile) => profiles.push(profile),
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
}
