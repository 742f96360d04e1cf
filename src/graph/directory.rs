//! The directory: every user with the properties the daemon needs, then
//! changes through `/users/delta`; and the users who are members of a
//! group, for a scope by group membership.
//!
//! A delta link expires (7 days per the docs) and Graph then answers 410 or
//! `syncStateNotFound`: that is not an error to retry but a signal to start
//! over with a full read, and [`DeltaOutcome::ResyncRequired`] says so. A
//! stored link that is not under the configured Graph base (the base
//! changed since it was stored) says the same, without a call.

use std::collections::HashSet;

use reqwest::Method;

use super::GraphClient;
use super::error::GraphError;
use super::model::{USER_SELECT, User, UserPage};
use super::throttle::CallClass;

/// The most users Graph returns in one page.
pub const PAGE_SIZE: u32 = 999;

/// Error codes that mean "this delta link is no good, start over".
const RESYNC_CODES: &[&str] = &["syncStateNotFound", "resyncRequired", "syncStateInvalid"];

/// Changes since a delta link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaChanges {
    /// New or changed users. A changed user carries at least the changed
    /// properties: merge it into what is known ([`User::merge`]).
    pub changed: Vec<User>,
    /// Ids of users deleted or out of scope.
    pub removed: Vec<String>,
    /// The link to store and pass next time.
    pub delta_link: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaOutcome {
    Changes(DeltaChanges),
    /// The delta link expired or is unknown: read every user again and start
    /// a new delta round.
    ResyncRequired {
        reason: String,
    },
}

impl GraphClient {
    /// Every user, following `@odata.nextLink` to the end.
    pub async fn list_users(&self) -> Result<Vec<User>, GraphError> {
        let mut users = Vec::new();
        self.list_users_by_page(|page| users.extend(page)).await?;
        Ok(users)
    }

    /// Every user, following `@odata.nextLink` to the end, handed to
    /// `take` a page at a time as it is read: a full read of a large tenant
    /// is never held whole in Graph's shape.
    pub async fn list_users_by_page<F>(&self, mut take: F) -> Result<(), GraphError>
    where
        F: FnMut(Vec<User>) + Send,
    {
        let mut url = self.url(&["users"]);
        url.query_pairs_mut()
            .append_pair("$select", USER_SELECT)
            .append_pair("$top", &PAGE_SIZE.to_string());
        let mut seen_links = HashSet::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let page = self.user_page(url, "listUsers").await?;
            take(
                page.users
                    .into_iter()
                    .filter(|u| u.removed.is_none())
                    .collect(),
            );
            if let Some(link) = page.next_link {
                next = Some(self.next_page(&link, &mut seen_links)?);
            }
        }
        Ok(())
    }

    /// The ids (lower case) of the users who are members of `group`,
    /// directly or through nested groups, following `@odata.nextLink` to
    /// the end. Needs GroupMember.Read.All; an unknown group is Graph's
    /// 404 (`Request_ResourceNotFound`), returned as is.
    pub async fn list_group_user_ids(&self, group: &str) -> Result<Vec<String>, GraphError> {
        let mut url = self.url(&["groups", group, "transitiveMembers", "microsoft.graph.user"]);
        url.query_pairs_mut()
            .append_pair("$select", "id")
            .append_pair("$top", &PAGE_SIZE.to_string());
        let mut ids = Vec::new();
        let mut seen_links = HashSet::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let page = self.user_page(url, "listGroupMembers").await?;
            ids.extend(
                page.users
                    .into_iter()
                    .filter(|u| u.removed.is_none())
                    .map(|u| u.id.to_ascii_lowercase()),
            );
            if let Some(link) = page.next_link {
                next = Some(self.next_page(&link, &mut seen_links)?);
            }
        }
        Ok(ids)
    }

    /// Changes since `delta_link`; without one, a new delta round (every
    /// user, then the link to keep).
    pub async fn users_delta(&self, delta_link: Option<&str>) -> Result<DeltaOutcome, GraphError> {
        let mut changed = Vec::new();
        let outcome = self
            .users_delta_by_page(delta_link, |page| changed.extend(page))
            .await?;
        Ok(match outcome {
            DeltaOutcome::Changes(changes) => {
                DeltaOutcome::Changes(DeltaChanges { changed, ..changes })
            }
            resync => resync,
        })
    }

    /// As [`GraphClient::users_delta`], but the users new or changed are
    /// handed to `take` a page at a time as they are read (the outcome's
    /// `changed` stays empty): a new round of a large tenant is never held
    /// whole in Graph's shape. A round that ends in
    /// [`DeltaOutcome::ResyncRequired`] may have handed over pages first.
    pub async fn users_delta_by_page<F>(
        &self,
        delta_link: Option<&str>,
        mut take: F,
    ) -> Result<DeltaOutcome, GraphError>
    where
        F: FnMut(Vec<User>) + Send,
    {
        let first = match delta_link {
            Some(link) => match self.stored_delta_link(link) {
                Ok(url) => url,
                Err(error) => {
                    tracing::info!(%error, "the stored users delta link is not for this Graph base");
                    return Ok(DeltaOutcome::ResyncRequired {
                        reason: error.to_string(),
                    });
                }
            },
            None => {
                let mut url = self.url(&["users", "delta"]);
                url.query_pairs_mut().append_pair("$select", USER_SELECT);
                url
            }
        };
        let mut changes = DeltaChanges::default();
        let mut seen_links = HashSet::new();
        let mut next = first;
        loop {
            let page = match self.user_page(next, "usersDelta").await {
                Ok(page) => page,
                Err(error) if is_resync(&error) => {
                    tracing::info!(%error, "the users delta link is no longer valid");
                    return Ok(DeltaOutcome::ResyncRequired {
                        reason: error.to_string(),
                    });
                }
                Err(error) => return Err(error),
            };
            let mut changed = Vec::with_capacity(page.users.len());
            for user in page.users {
                if user.removed.is_some() {
                    changes.removed.push(user.id);
                } else {
                    changed.push(user);
                }
            }
            take(changed);
            match (page.next_link, page.delta_link) {
                (Some(link), _) => next = self.next_page(&link, &mut seen_links)?,
                (None, Some(link)) => {
                    self.link(&link)?;
                    changes.delta_link = link;
                    return Ok(DeltaOutcome::Changes(changes));
                }
                (None, None) => {
                    return Err(GraphError::Decode {
                        what: "usersDelta",
                        message: "a delta page with neither @odata.nextLink nor @odata.deltaLink"
                            .into(),
                        request_id: None,
                        client_request_id: String::new(),
                    });
                }
            }
        }
    }

    /// A delta link kept from an earlier round, if it is under the
    /// configured Graph base. One that is not (`graph_base` changed, the
    /// simulator on another port, a damaged store) cannot be followed, and
    /// the token must not go there: the caller starts over.
    fn stored_delta_link(&self, link: &str) -> Result<reqwest::Url, GraphError> {
        let url = self.link(link)?;
        let prefix = self.base.path().trim_end_matches('/');
        let under = url
            .path()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'));
        if !under {
            return Err(GraphError::Url {
                url: link.to_owned(),
                reason: "not under the configured Graph base",
            });
        }
        Ok(url)
    }

    /// The next page's URL; a link seen before would loop forever.
    fn next_page(
        &self,
        link: &str,
        seen: &mut HashSet<String>,
    ) -> Result<reqwest::Url, GraphError> {
        if !seen.insert(link.to_owned()) {
            return Err(GraphError::Url {
                url: link.to_owned(),
                reason: "Graph returned the same paging link twice",
            });
        }
        self.link(link)
    }

    async fn user_page(
        &self,
        url: reqwest::Url,
        what: &'static str,
    ) -> Result<UserPage, GraphError> {
        // The users directory spends the same budget, after agent reads.
        let response = self
            .call(CallClass::Directory, Method::GET, url, None, what)
            .await?;
        let page = UserPage::parse(&response.body).map_err(|e| GraphError::Decode {
            what,
            message: e.to_string(),
            request_id: response.request_id.clone(),
            client_request_id: response.client_request_id.clone(),
        })?;
        if page.skipped > 0 {
            tracing::warn!(
                skipped = page.skipped,
                request_id = response.request_id.as_deref(),
                "users without an id or with unreadable properties were skipped"
            );
        }
        Ok(page)
    }
}

fn is_resync(error: &GraphError) -> bool {
    error.status() == Some(410)
        || error
            .code()
            .is_some_and(|c| RESYNC_CODES.iter().any(|r| r.eq_ignore_ascii_case(c)))
}
