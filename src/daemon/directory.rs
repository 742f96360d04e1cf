//! The Teams directory as the daemon knows it: every user read once, then
//! kept current through the users delta link, polled every minute so a new
//! user can be linked within one poll (SPEC §2.2, scenario *new-user*).
//!
//! The directory task merges what Graph sends into the shared view
//! ([`DirectoryView`], which the API searches), stores the compact records
//! with the delta link they are current to, and then hands the sync loop
//! the users' whole records for linking. A restart starts from the stored
//! records (linking, overflow and `/readyz` work before Graph answers) and
//! the full read refreshes them behind.
//!
//! With a scope by group membership the groups' users are read after each
//! full read and delta poll and handed to the view, which moves who joined
//! or left a group in or out of scope.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::directory::{DirectoryRecord, DirectoryView};
use crate::graph::{DeltaOutcome, GraphClient};
use crate::stop::Stop;
use crate::store::{DirectoryBatch, Store};

use super::tasks::{Problem, TaskState, TaskStatus};

/// What the directory task hands the sync loop: whole records.
#[derive(Debug)]
pub enum DirectoryUpdate {
    /// Every user there is; replaces what was known.
    Replace {
        users: Vec<Arc<DirectoryRecord>>,
        delta_link: Option<String>,
    },
    /// Changes since the last delta link: users added or changed, as they
    /// are now, and ids removed.
    Changes {
        changed: Vec<Arc<DirectoryRecord>>,
        removed: Vec<String>,
        delta_link: String,
    },
}

/// The users, by id, with their UPN and mail for linking.
#[derive(Debug, Default)]
pub struct DirectoryIndex {
    /// By lower-case id, the key shared with the record when it can be.
    users: HashMap<Arc<str>, Arc<DirectoryRecord>>,
    /// Lower-case UPN and mail → the id.
    by_name: HashMap<Box<str>, Arc<str>>,
    loaded: bool,
}

impl DirectoryIndex {
    /// True once a full read (or the stored directory) has come in.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&DirectoryRecord> {
        self.users
            .get(id.to_ascii_lowercase().as_str())
            .map(|u| &**u)
    }

    /// The user whose UPN or mail is `name` (case-insensitive).
    pub fn find(&self, name: &str) -> Option<&DirectoryRecord> {
        self.by_name
            .get(name.to_lowercase().as_str())
            .and_then(|id| self.users.get(id))
            .map(|u| &**u)
    }

    /// Applies an update; returns the ids of users added or changed, and of
    /// users removed.
    pub fn apply(&mut self, update: DirectoryUpdate) -> (Vec<String>, Vec<String>) {
        match update {
            DirectoryUpdate::Replace { users, .. } => {
                let old: Vec<Arc<str>> = self.users.keys().cloned().collect();
                self.users.clear();
                let mut changed = Vec::new();
                for user in users {
                    let id = user.key();
                    changed.push(id.to_string());
                    self.users.insert(id, user);
                }
                self.loaded = true;
                self.reindex();
                let removed = old
                    .into_iter()
                    .filter(|id| !self.users.contains_key(id))
                    .map(|id| id.to_string())
                    .collect();
                (changed, removed)
            }
            DirectoryUpdate::Changes {
                changed, removed, ..
            } => {
                let mut ids = Vec::new();
                for user in changed {
                    let id = user.key();
                    ids.push(id.to_string());
                    self.users.insert(id, user);
                }
                // Every id reported removed, known here or not: a user
                // deleted while the daemon was down is only known to its
                // agent's link.
                let mut gone = Vec::new();
                for id in removed {
                    let id = id.to_ascii_lowercase();
                    self.users.remove(id.as_str());
                    gone.push(id);
                }
                self.reindex();
                (ids, gone)
            }
        }
    }

    fn reindex(&mut self) {
        self.by_name.clear();
        for (id, user) in &self.users {
            for name in [user.user_principal_name(), user.mail()]
                .into_iter()
                .flatten()
            {
                self.by_name
                    .insert(name.to_lowercase().into(), Arc::clone(id));
            }
        }
    }
}

/// The number to dial a user directly: the directory's one rule
/// ([`DirectoryRecord::direct_dial`]), for overflows, agents' phones and
/// `GET /v1/directory` alike.
pub fn phone_of(user: &DirectoryRecord) -> Option<String> {
    user.direct_dial()
}

/// Whether an id looks like a Graph object id (a GUID), not a UPN.
pub fn is_object_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// What the directory task reads from and writes to.
pub struct DirectoryReader {
    pub graph: GraphClient,
    /// The shared view: merged first, so the sync loop gets whole records.
    pub view: Arc<DirectoryView>,
    pub store: Arc<dyn Store>,
    /// The groups of a scope by group membership (object ids): their
    /// members are read again after each full read and delta poll.
    pub groups: Vec<String>,
}

impl DirectoryReader {
    /// Stores the records (all of them when `replace`) and the link they
    /// are current to, as one batch, before the sync loop hears of them.
    async fn store(
        &self,
        records: &[Arc<DirectoryRecord>],
        removed: &[String],
        replace: bool,
        delta_link: Option<String>,
    ) -> Result<(), Problem> {
        let batch = DirectoryBatch {
            replace,
            upserts: records.iter().map(|r| r.stored()).collect(),
            removes: removed.to_vec(),
            delta_link,
        };
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.commit_directory(batch)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Problem::plain(format!("storing the directory failed: {e}"))),
            Err(e) => Err(Problem::plain(format!("storing the directory failed: {e}"))),
        }
    }
}

/// Reads the directory and follows its delta link until stopped.
pub async fn run(
    reader: DirectoryReader,
    mut delta_link: Option<String>,
    interval: Duration,
    updates: mpsc::Sender<DirectoryUpdate>,
    status: TaskStatus,
    stop: Stop,
) -> Result<(), String> {
    let graph = &reader;
    let mut loaded = false;
    let mut failures: u32 = 0;
    loop {
        // A call can wait long in a throttled Graph; stopping must not.
        let result = tokio::select! {
            () = stop.stopped() => return Ok(()),
            result = async {
                if loaded {
                    poll_delta(graph, &mut delta_link, &updates).await
                } else {
                    full_read(graph, &mut delta_link, &updates).await
                }?;
                // The users are in: a failure of the groups' read below
                // does not read them all again.
                loaded = true;
                refresh_members(graph).await
            } => result,
        };
        let wait = match result {
            Ok(()) => {
                failures = 0;
                status.set(TaskState::Running);
                interval
            }
            Err(problem) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %problem.detail, "reading the Teams directory failed");
                status.set(TaskState::Degraded(problem));
                // Quick retries at start, so a daemon started before Graph
                // is reachable becomes ready soon after it is.
                let backoff = Duration::from_secs(1u64 << failures.min(6));
                backoff.min(interval)
            }
        };
        if updates.is_closed() {
            return Ok(());
        }
        if !stop.sleep(wait).await {
            return Ok(());
        }
    }
}

/// Reads the members of the scope's groups and hands them to the view:
/// who joined or left a group is in or out of scope from now on.
async fn refresh_members(reader: &DirectoryReader) -> Result<(), Problem> {
    if reader.groups.is_empty() {
        return Ok(());
    }
    let mut members = Vec::new();
    for group in &reader.groups {
        match reader.graph.list_group_user_ids(group).await {
            Ok(ids) => members.extend(ids),
            Err(e) if e.status() == Some(404) => {
                // `/readyz` names no object of the tenant: the id is in
                // the detail (`/v1/health`, the log).
                return Err(Problem::new(
                    "a group named in `[directory] scope` does not exist in the tenant (Graph answered 404)",
                    format!(
                        "the group {group} named in `[directory] scope` does not exist in the tenant \
                         (Graph answered 404): give the group's object id as Entra shows it, or remove it"
                    ),
                ));
            }
            Err(e) => {
                use crate::graph::permissions::{Permission, Refusal, classify_refusal};
                return Err(match classify_refusal(e.status().unwrap_or(0), e.code()) {
                    Some(Refusal::PermissionMissing { code }) => {
                        Problem::plain(crate::graph::permissions::refusal_message(
                            Permission::GroupMemberReadAll,
                            &code,
                        ))
                    }
                    None => Problem::graph(&e),
                });
            }
        }
    }
    let listed = reader.view.set_members(members);
    tracing::debug!(
        groups = reader.groups.len(),
        listed,
        "read the members of the directory scope's groups"
    );
    Ok(())
}

async fn full_read(
    reader: &DirectoryReader,
    delta_link: &mut Option<String>,
    updates: &mpsc::Sender<DirectoryUpdate>,
) -> Result<(), Problem> {
    let graph = &reader.graph;
    let update = match delta_link.as_deref() {
        // A stored link still says where the changes continue from; the
        // users themselves are read in full to know them all.
        Some(_) => {
            let users = graph.list_users().await.map_err(|e| Problem::graph(&e))?;
            let (records, _) = reader.view.replace(&users);
            reader
                .store(records.as_slice(), &[], true, delta_link.clone())
                .await?;
            DirectoryUpdate::Replace {
                users: records,
                delta_link: None,
            }
        }
        None => match graph
            .users_delta(None)
            .await
            .map_err(|e| Problem::graph(&e))?
        {
            DeltaOutcome::Changes(changes) => {
                *delta_link = Some(changes.delta_link.clone());
                let (records, _) = reader.view.replace(&changes.changed);
                reader
                    .store(records.as_slice(), &[], true, delta_link.clone())
                    .await?;
                DirectoryUpdate::Replace {
                    users: records,
                    delta_link: Some(changes.delta_link),
                }
            }
            DeltaOutcome::ResyncRequired { reason } => {
                return Err(Problem::new(
                    "a new delta round was refused",
                    format!("a new delta round was refused: {reason}"),
                ));
            }
        },
    };
    updates
        .send(update)
        .await
        .map_err(|_| Problem::plain("the sync loop is gone"))
}

async fn poll_delta(
    reader: &DirectoryReader,
    delta_link: &mut Option<String>,
    updates: &mpsc::Sender<DirectoryUpdate>,
) -> Result<(), Problem> {
    match reader
        .graph
        .users_delta(delta_link.as_deref())
        .await
        .map_err(|e| Problem::graph(&e))?
    {
        DeltaOutcome::Changes(changes) => {
            let (records, removed) = reader.view.change(&changes.changed, &changes.removed);
            reader
                .store(
                    records.as_slice(),
                    &removed,
                    false,
                    Some(changes.delta_link.clone()),
                )
                .await?;
            *delta_link = Some(changes.delta_link.clone());
            updates
                .send(DirectoryUpdate::Changes {
                    changed: records,
                    removed,
                    delta_link: changes.delta_link,
                })
                .await
                .map_err(|_| Problem::plain("the sync loop is gone"))
        }
        DeltaOutcome::ResyncRequired { reason } => {
            tracing::info!(%reason, "starting a new directory delta round");
            *delta_link = None;
            full_read(reader, delta_link, updates).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, upn: &str) -> Arc<DirectoryRecord> {
        let user: crate::graph::model::User = serde_json::from_value(serde_json::json!({
            "id": id, "userPrincipalName": upn, "mail": upn.replace("@", ".mail@"),
        }))
        .unwrap();
        Arc::new(DirectoryRecord::from_user(&user))
    }

    #[test]
    fn finds_users_by_upn_or_mail_in_any_case_and_forgets_removed_ones() {
        let mut index = DirectoryIndex::default();
        index.apply(DirectoryUpdate::Replace {
            users: vec![user("ID-1", "Ann@Contoso.com")],
            delta_link: None,
        });
        assert_eq!(index.find("ann@contoso.com").map(|u| &*u.id), Some("ID-1"));
        assert_eq!(
            index.find("ANN.mail@contoso.com").map(|u| &*u.id),
            Some("ID-1")
        );
        assert!(index.get("id-1").is_some());
        let (changed, removed) = index.apply(DirectoryUpdate::Changes {
            changed: vec![user("id-2", "bo@contoso.com")],
            removed: vec!["id-1".into()],
            delta_link: "x".into(),
        });
        assert_eq!(changed, vec!["id-2"]);
        assert_eq!(removed, vec!["id-1"]);
        // An id never seen is still reported: an agent may be linked to it.
        let (_, removed) = index.apply(DirectoryUpdate::Changes {
            changed: vec![],
            removed: vec!["ID-9".into()],
            delta_link: "y".into(),
        });
        assert_eq!(removed, vec!["id-9"]);
        assert!(index.find("ann@contoso.com").is_none());
        assert!(index.find("bo@contoso.com").is_some());
    }

    #[test]
    fn object_ids_are_guids() {
        assert!(is_object_id("8b081ef6-4792-4def-b2c9-c363a1bf41d5"));
        assert!(!is_object_id("ann@contoso.com"));
        assert!(!is_object_id("8b081ef6-4792-4def-b2c9-c363a1bf41dz"));
        assert!(!is_object_id(""));
    }
}
