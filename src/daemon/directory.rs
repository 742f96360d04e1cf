//! The Teams directory as the daemon knows it: every user read once, then
//! kept current through the users delta link, polled every minute so a new
//! user can be linked within one poll (SPEC §2.2, scenario *new-user*).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::graph::model::User;
use crate::graph::{DeltaOutcome, GraphClient};
use crate::stop::Stop;

use super::tasks::{Problem, TaskState, TaskStatus};

/// What the directory task hands the sync loop.
#[derive(Debug)]
pub enum DirectoryUpdate {
    /// Every user there is; replaces what was known.
    Replace {
        users: Vec<User>,
        delta_link: Option<String>,
    },
    /// Changes since the last delta link.
    Changes {
        changed: Vec<User>,
        removed: Vec<String>,
        delta_link: String,
    },
}

/// The users, by id, with their UPN and mail for linking.
#[derive(Debug, Default)]
pub struct DirectoryIndex {
    users: HashMap<String, User>,
    by_name: HashMap<String, String>,
    loaded: bool,
}

impl DirectoryIndex {
    /// True once a full read has come in.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&User> {
        self.users.get(&id.to_ascii_lowercase())
    }

    /// The user whose UPN or mail is `name` (case-insensitive).
    pub fn find(&self, name: &str) -> Option<&User> {
        self.by_name
            .get(&name.to_lowercase())
            .and_then(|id| self.users.get(id))
    }

    /// Applies an update; returns the ids of users added or changed, and of
    /// users removed.
    pub fn apply(&mut self, update: DirectoryUpdate) -> (Vec<String>, Vec<String>) {
        match update {
            DirectoryUpdate::Replace { users, .. } => {
                let old: Vec<String> = self.users.keys().cloned().collect();
                self.users.clear();
                let mut changed = Vec::new();
                for user in users {
                    let id = user.id.to_ascii_lowercase();
                    changed.push(id.clone());
                    self.users.insert(id, user);
                }
                self.loaded = true;
                self.reindex();
                let removed = old
                    .into_iter()
                    .filter(|id| !self.users.contains_key(id))
                    .collect();
                (changed, removed)
            }
            DirectoryUpdate::Changes {
                changed, removed, ..
            } => {
                let mut ids = Vec::new();
                for user in changed {
                    let id = user.id.to_ascii_lowercase();
                    match self.users.get_mut(&id) {
                        Some(known) => known.merge(user),
                        None => {
                            self.users.insert(id.clone(), user);
                        }
                    }
                    ids.push(id);
                }
                // Every id reported removed, known here or not: a user
                // deleted while the daemon was down is only known to its
                // agent's link.
                let mut gone = Vec::new();
                for id in removed {
                    let id = id.to_ascii_lowercase();
                    self.users.remove(&id);
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
                self.by_name.insert(name.to_lowercase(), id.clone());
            }
        }
    }
}

/// The phone number to dial a user directly: business first, then mobile.
pub fn phone_of(user: &User) -> Option<String> {
    user.business_phones()
        .first()
        .cloned()
        .or_else(|| user.mobile_phone().map(str::to_string))
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

/// Reads the directory and follows its delta link until stopped.
pub async fn run(
    graph: GraphClient,
    mut delta_link: Option<String>,
    interval: Duration,
    updates: mpsc::Sender<DirectoryUpdate>,
    status: TaskStatus,
    stop: Stop,
) -> Result<(), String> {
    let mut loaded = false;
    let mut failures: u32 = 0;
    loop {
        // A call can wait long in a throttled Graph; stopping must not.
        let result = tokio::select! {
            () = stop.stopped() => return Ok(()),
            result = async {
                if loaded {
                    poll_delta(&graph, &mut delta_link, &updates).await
                } else {
                    full_read(&graph, &mut delta_link, &updates).await
                }
            } => result,
        };
        let wait = match result {
            Ok(()) => {
                loaded = true;
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

async fn full_read(
    graph: &GraphClient,
    delta_link: &mut Option<String>,
    updates: &mpsc::Sender<DirectoryUpdate>,
) -> Result<(), Problem> {
    let update = match delta_link.as_deref() {
        // A stored link still says where the changes continue from; the
        // users themselves are read in full to know them all.
        Some(_) => DirectoryUpdate::Replace {
            users: graph.list_users().await.map_err(|e| Problem::graph(&e))?,
            delta_link: None,
        },
        None => match graph
            .users_delta(None)
            .await
            .map_err(|e| Problem::graph(&e))?
        {
            DeltaOutcome::Changes(changes) => {
                *delta_link = Some(changes.delta_link.clone());
                DirectoryUpdate::Replace {
                    users: changes.changed,
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
    graph: &GraphClient,
    delta_link: &mut Option<String>,
    updates: &mpsc::Sender<DirectoryUpdate>,
) -> Result<(), Problem> {
    match graph
        .users_delta(delta_link.as_deref())
        .await
        .map_err(|e| Problem::graph(&e))?
    {
        DeltaOutcome::Changes(changes) => {
            *delta_link = Some(changes.delta_link.clone());
            updates
                .send(DirectoryUpdate::Changes {
                    changed: changes.changed,
                    removed: changes.removed,
                    delta_link: changes.delta_link,
                })
                .await
                .map_err(|_| Problem::plain("the sync loop is gone"))
        }
        DeltaOutcome::ResyncRequired { reason } => {
            tracing::info!(%reason, "starting a new directory delta round");
            *delta_link = None;
            full_read(graph, delta_link, updates).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, upn: &str) -> User {
        serde_json::from_value(serde_json::json!({
            "id": id, "userPrincipalName": upn, "mail": upn.replace("@", ".mail@"),
        }))
        .unwrap()
    }

    #[test]
    fn finds_users_by_upn_or_mail_in_any_case_and_forgets_removed_ones() {
        let mut index = DirectoryIndex::default();
        index.apply(DirectoryUpdate::Replace {
            users: vec![user("ID-1", "Ann@Contoso.com")],
            delta_link: None,
        });
        assert_eq!(
            index.find("ann@contoso.com").map(|u| u.id.as_str()),
            Some("ID-1")
        );
        assert_eq!(
            index.find("ANN.mail@contoso.com").map(|u| u.id.as_str()),
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
