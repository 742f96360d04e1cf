//! The mapping profiles in force: loaded from the files the config names,
//! and reloaded on SIGHUP or when a file changes, both through [`reload`].
//! A file with errors never replaces the last good set (SPEC §4).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::config::{Config, MappingsConfig, QueueStatus, RoutingConfig};
use crate::diagnostics::Diagnostic;
use crate::mapping::{self, Profile};

use super::sync_loop::Command;

/// Every profile, the default first, and which group uses which.
#[derive(Clone, Debug)]
pub struct MappingSet {
    pub profiles: Vec<Arc<Profile>>,
    /// Agent group → profile name.
    pub groups: HashMap<String, String>,
    /// The files read and their modification times, to notice edits.
    pub files: Vec<(PathBuf, Option<SystemTime>)>,
}

impl MappingSet {
    pub fn default_profile(&self) -> &str {
        self.profiles.first().map_or("", |p| p.name.as_str())
    }

    /// The profile an agent gets: the one asked for, else the first of its
    /// groups that has one, else the default.
    pub fn profile_for<'a>(&'a self, asked: Option<&'a str>, groups: &[String]) -> &'a str {
        if let Some(name) = asked {
            return name;
        }
        groups
            .iter()
            .find_map(|g| self.groups.get(g))
            .map_or_else(|| self.default_profile(), String::as_str)
    }

    pub fn has_profile(&self, name: &str) -> bool {
        self.profiles.iter().any(|p| p.name == name)
    }

    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.iter().map(|p| p.name.clone()).collect()
    }

    /// True when a file changed (or appeared, or went) since it was read.
    pub fn files_changed(&self) -> bool {
        self.files
            .iter()
            .any(|(path, seen)| modified(path) != *seen)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The files with their modification times now.
pub fn modified_times(
    files: &[(PathBuf, Option<SystemTime>)],
) -> Vec<(PathBuf, Option<SystemTime>)> {
    files
        .iter()
        .map(|(p, _)| (p.clone(), modified(p)))
        .collect()
}

/// How a [`reload`] ended.
#[derive(Debug)]
pub enum Reload {
    /// The set read, now in force (the sync loop has it).
    Applied(MappingSet),
    /// The config or a mapping file has errors: the config and mappings in
    /// force stay.
    Refused(Vec<Diagnostic>),
    /// Read, but the sync loop is gone: the daemon is stopping.
    LoopGone,
}

/// The one reload, for SIGHUP and the mapping-file watcher alike: reads the
/// config file and every mapping file it names again (off the async
/// threads) and, when all are good, hands the sync loop the new mappings and
/// routing to put in force.
///
/// `uses` gets what the new config asks of Graph (for the permissions it
/// needs).
pub async fn reload(
    config_file: &Path,
    commands: &mpsc::Sender<Command>,
    uses: &tokio::sync::watch::Sender<crate::graph::permissions::Uses>,
) -> Reload {
    let file = config_file.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        Config::load(&file)
            .map_err(|e| e.diagnostics)
            .and_then(|config| load_for(&config).map(|set| (set, config.routing)))
    })
    .await
    .unwrap_or_else(|e| {
        Err(vec![Diagnostic::whole_file(
            config_file,
            format!("reading the config did not finish: {e}"),
        )])
    });
    match loaded {
        Ok((set, routing)) => {
            // The directory's scope is read at start: keep what it needs.
            let scope_groups = uses.borrow().scope_groups;
            uses.send_replace(crate::graph::permissions::Uses {
                scope_groups,
                ..super::permissions::uses(&set.profiles, &routing)
            });
            match commands
                .send(Command::Reload(set.clone(), Some(routing)))
                .await
            {
                Ok(()) => Reload::Applied(set),
                Err(_) => Reload::LoopGone,
            }
        }
        Err(errors) => Reload::Refused(errors),
    }
}

/// Loads every profile the config names and checks the queues' statuses
/// against them: what the daemon puts in force at start and on a reload.
pub fn load_for(config: &Config) -> Result<MappingSet, Vec<Diagnostic>> {
    let set = load(&config.mappings)?;
    let errors = queue_status_errors(&config.mappings, &config.routing, |name| {
        set.profiles.iter().find(|p| p.name == name).map(|p| &**p)
    });
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Checks each queue's `on_contact_status` and `after_contact_status`
/// against the profiles of the agents who may serve it: the profiles its
/// `groups` use (the default profile for a group no profile lists), and,
/// for a queue without `groups` (agents join it through the API, whatever
/// their profile), every profile. `profile` finds a loaded profile by name;
/// a profile that did not load is skipped (its own errors are reported).
pub fn queue_status_errors<'a>(
    mappings: &MappingsConfig,
    routing: &RoutingConfig,
    profile: impl Fn(&str) -> Option<&'a Profile>,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for queue in &routing.queues {
        let Some(statuses) = routing.statuses.get(&queue.name) else {
            continue;
        };
        // Profile name -> the queue's groups that lead to it.
        let mut serving: Vec<(&str, Vec<&str>)> = Vec::new();
        if queue.groups.is_empty() {
            serving.extend(mappings.profiles.keys().map(|n| (n.as_str(), Vec::new())));
        } else {
            for group in &queue.groups {
                let name = mappings.profile_for_group(group);
                match serving.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, groups)) => groups.push(group),
                    None => serving.push((name, vec![group.as_str()])),
                }
            }
        }
        let checked = [
            ("on_contact_status", &statuses.on_contact),
            ("after_contact_status", &statuses.after_contact),
        ];
        for (key, status) in checked {
            let Some(QueueStatus { name, origin }) = status else {
                continue;
            };
            for (profile_name, groups) in &serving {
                let Some(p) = profile(profile_name) else {
                    continue;
                };
                if p.status_id(name).is_some() {
                    continue;
                }
                let who = if groups.is_empty() {
                    format!(
                        "queue `{}` has no `groups`, so agents of any profile may serve it",
                        queue.name
                    )
                } else {
                    let groups: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
                    format!(
                        "agents in queue `{}`'s group {} use that profile",
                        queue.name,
                        groups.join(", ")
                    )
                };
                let when = if key == "on_contact_status" {
                    "accepts a contact"
                } else {
                    "completes a contact"
                };
                let file = mappings
                    .profiles
                    .get(*profile_name)
                    .map_or_else(String::new, |c| format!(" in {}", c.file.display()));
                errors.push(origin.diagnostic(format!(
                    "`{key}` = \"{name}\": profile `{profile_name}` has no such status{}; {who}, and such an agent would keep its status when it {when}. Statuses are the keys of [statuses]{file}, exact case",
                    crate::diagnostics::did_you_mean(
                        name,
                        p.statuses.iter().map(|s| s.name.as_str())
                    ),
                )));
            }
        }
    }
    errors
}

/// Loads every profile the config names. All errors of all files are returned.
pub fn load(config: &MappingsConfig) -> Result<MappingSet, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut profiles = Vec::new();
    let mut files = Vec::new();
    let mut groups = HashMap::new();
    // The default first: the engine treats `profiles[0]` as the fallback.
    let mut names: Vec<&String> = config.profiles.keys().collect();
    names.sort_by_key(|n| (*n != &config.default_profile, (*n).clone()));
    for name in names {
        let Some(profile_config) = config.profiles.get(name) else {
            continue;
        };
        // The time is read before the file, so an edit while reading is
        // noticed next time rather than missed.
        files.push((profile_config.file.clone(), modified(&profile_config.file)));
        match mapping::load_checked(name, &profile_config.file) {
            Ok(checked) => {
                for warning in &checked.warnings {
                    tracing::warn!(profile = %name, "{warning}");
                }
                profiles.push(Arc::new(checked.profile));
            }
            Err(e) => errors.extend(e),
        }
        for group in &profile_config.groups {
            groups.insert(group.clone(), name.clone());
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if profiles.is_empty() {
        return Err(vec![Diagnostic::whole_file(
            Path::new("[mappings]"),
            "no mapping profile configured",
        )]);
    }
    Ok(MappingSet {
        profiles,
        groups,
        files,
    })
}
