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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::directory::{DirectoryRecord, DirectoryView};
use crate::graph::model::User;
use crate::graph::{DeltaOutcome, GraphClient};
use crate::stop::Stop;
use crate::store::{DirectoryBatch, Store};

use super::tasks::{Problem, TaskState, TaskStatus};

/// What the directory task tells the sync loop once the shared view
/// ([`DirectoryView`]) holds a change: the loop looks users up in the view
/// itself ([`DirectoryView::record`], [`DirectoryView::find`]), so only
/// who changed travels.
#[derive(Debug)]
pub enum DirectoryUpdate {
    /// The view now holds every user there is (a full read, or the stored
    /// directory at start).
    Replace { delta_link: Option<String> },
    /// Changes since the last delta link: the lower-case ids of users
    /// added or changed, and of users removed.
    Changes {
        changed: Vec<String>,
        removed: Vec<String>,
        delta_link: String,
    },
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
    // The view holds users before the first read only when they were
    // restored from the store, which then holds the same.
    let mut stored = reader.view.loaded();
    let mut failures: u32 = 0;
    loop {
        // A call can wait long in a throttled Graph; stopping must not.
        let result = tokio::select! {
            () = stop.stopped() => return Ok(()),
            result = async {
                if loaded {
                    poll_delta(graph, &mut delta_link, &mut stored, &updates).await
                } else {
                    full_read(graph, &mut delta_link, &mut stored, &updates).await
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

/// Reads every user and hands them to the view. When the store holds what
/// the view held (`stored`: restored from it, or the last full read was
/// stored), only the users new or changed and those gone are written, so a
/// start does not rewrite every stored user; otherwise all of them, as the
/// store's whole directory.
async fn full_read(
    reader: &DirectoryReader,
    delta_link: &mut Option<String>,
    stored: &mut bool,
    updates: &mpsc::Sender<DirectoryUpdate>,
) -> Result<(), Problem> {
    let graph = &reader.graph;
    let view = &reader.view;
    // Each page becomes records as it comes (Graph's shape of 50,000 users
    // at once would be several times the directory itself), sharing those
    // the view already holds the same.
    let mut records = Vec::new();
    let take = |users: Vec<User>| records.extend(view.records_as_read(&users));
    let link = match delta_link.as_deref() {
        // A stored link still says where the changes continue from; the
        // users themselves are read in full to know them all.
        Some(_) => {
            graph
                .list_users_by_page(take)
                .await
                .map_err(|e| Problem::graph(&e))?;
            None
        }
        None => match graph
            .users_delta_by_page(None, take)
            .await
            .map_err(|e| Problem::graph(&e))?
        {
            DeltaOutcome::Changes(changes) => {
                *delta_link = Some(changes.delta_link.clone());
                Some(changes.delta_link)
            }
            DeltaOutcome::ResyncRequired { reason } => {
                return Err(Problem::new(
                    "a new delta round was refused",
                    format!("a new delta round was refused: {reason}"),
                ));
            }
        },
    };
    let replaced = view.replace_records(records);
    let written = if *stored {
        reader
            .store(
                &replaced.changed,
                &replaced.removed,
                false,
                delta_link.clone(),
            )
            .await
    } else {
        reader
            .store(&replaced.records, &[], true, delta_link.clone())
            .await
    };
    // A failed write leaves the store behind the view: the next full read
    // writes every user.
    *stored = written.is_ok();
    written?;
    tracing::debug!(
        users = replaced.records.len(),
        written = if *stored {
            replaced.changed.len()
        } else {
            replaced.records.len()
        },
        "the directory was read whole"
    );
    drop(replaced);
    updates
        .send(DirectoryUpdate::Replace { delta_link: link })
        .await
        .map_err(|_| Problem::plain("the sync loop is gone"))
}

async fn poll_delta(
    reader: &DirectoryReader,
    delta_link: &mut Option<String>,
    stored: &mut bool,
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
            let written = reader
                .store(
                    records.as_slice(),
                    &removed,
                    false,
                    Some(changes.delta_link.clone()),
                )
                .await;
            if written.is_err() {
                // The same changes come again from the same link, but what
                // the view has merged no longer tells a full read what the
                // store lacks.
                *stored = false;
            }
            written?;
            *delta_link = Some(changes.delta_link.clone());
            let changed = records.iter().map(|r| r.key().to_string()).collect();
            updates
                .send(DirectoryUpdate::Changes {
                    changed,
                    removed,
                    delta_link: changes.delta_link,
                })
                .await
                .map_err(|_| Problem::plain("the sync loop is gone"))
        }
        DeltaOutcome::ResyncRequired { reason } => {
            tracing::info!(%reason, "starting a new directory delta round");
            *delta_link = None;
            full_read(reader, delta_link, stored, updates).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{
        DirectoryScope, GraphAuth, GraphConfig, Origin, Secret, SecretLocation, SecretSource,
    };
    use crate::graph::Credential;
    use crate::sim::{SimOptions, spawn};
    use crate::store::{MemoryStore, StoredDirectory};

    fn stored(store: &MemoryStore) -> StoredDirectory {
        store.directory().unwrap().unwrap()
    }

    /// A start over a stored directory Graph still agrees with writes no
    /// user: a record changed in the store behind the daemon's back stays
    /// as it is, and every other user stays stored. A full read over a
    /// store that may lag behind the view writes them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_read_over_the_stored_directory_writes_only_what_changed() {
        let sim = spawn(SimOptions {
            users: 5,
            ..SimOptions::default()
        })
        .await
        .unwrap();
        let config = GraphConfig {
            tenant_id: sim.tenant_id.clone(),
            client_id: sim.client_id.clone(),
            auth: GraphAuth::ClientSecret(SecretSource {
                purpose: "the Graph client secret",
                location: SecretLocation::File("/nonexistent".into()),
                origin: Origin::whole_file(std::path::Path::new("test.toml")),
            }),
            login_base: sim.base_url.clone(),
            graph_base: sim.base_url.clone(),
            requests_per_30s: 1_500,
            request_timeout: Duration::from_secs(10),
            session_expiry: Duration::from_secs(3600),
            outbound: Default::default(),
        };
        let secret = Credential::Secret(Secret::new(sim.client_secret.clone()));
        let graph = GraphClient::new(&config, secret).unwrap();
        let store = Arc::new(MemoryStore::new());
        let reader = |view: &Arc<DirectoryView>| DirectoryReader {
            graph: graph.clone(),
            view: Arc::clone(view),
            store: Arc::clone(&store) as Arc<dyn Store>,
            groups: Vec::new(),
        };
        let (updates, mut told) = mpsc::channel(8);

        // The first start: every user is written.
        let view = Arc::new(DirectoryView::new(&DirectoryScope::All, None));
        let (mut link, mut in_store) = (None, view.loaded());
        full_read(&reader(&view), &mut link, &mut in_store, &updates)
            .await
            .unwrap();
        assert!(in_store);
        assert!(matches!(
            told.try_recv(),
            Ok(DirectoryUpdate::Replace {
                delta_link: Some(_)
            })
        ));
        let first = stored(&store);
        assert_eq!(first.users.len(), 5);

        // A restart: the view from the store, then a record changed in
        // the store alone.
        let view = Arc::new(DirectoryView::new(&DirectoryScope::All, None));
        view.restore(
            first
                .users
                .iter()
                .map(DirectoryRecord::from_stored)
                .collect(),
        );
        let mut tampered = first.users[2].clone();
        tampered.mobile_phone = Some("+1 555 0100".into());
        store
            .commit_directory(DirectoryBatch {
                replace: false,
                upserts: vec![tampered.clone()],
                removes: Vec::new(),
                delta_link: None,
            })
            .unwrap();
        let mut in_store = view.loaded();
        full_read(&reader(&view), &mut link, &mut in_store, &updates)
            .await
            .unwrap();
        let after = stored(&store);
        assert_eq!(after.users.len(), 5);
        assert!(after.users.contains(&tampered), "a user was rewritten");

        // A store that may lag behind the view gets every user again.
        let mut in_store = false;
        full_read(&reader(&view), &mut link, &mut in_store, &updates)
            .await
            .unwrap();
        assert!(in_store);
        assert_eq!(stored(&store).users, first.users);
        sim.shutdown().await.unwrap();
    }

    #[test]
    fn object_ids_are_guids() {
        assert!(is_object_id("8b081ef6-4792-4def-b2c9-c363a1bf41d5"));
        assert!(!is_object_id("ann@contoso.com"));
        assert!(!is_object_id("8b081ef6-4792-4def-b2c9-c363a1bf41dz"));
        assert!(!is_object_id(""));
    }
}
