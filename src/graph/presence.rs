//! Presence reads and writes.
//!
//! Reads use `getPresencesByUserId`, at most 650 ids a call. Graph has been
//! seen to answer a large batch with a bare 400 (microsoft-graph-docs#9333),
//! so a 400 splits the batch in halves down to single ids; a single id that
//! is still refused is reported, never retried again. A bad id costs about
//! 2·log2(n) calls. A 400 that is systematic (Graph refuses whatever we
//! ask, single ids included) must not cost 2n - 1 calls: once
//! [`SYSTEMATIC_AFTER`] single ids of a batch were refused before any call
//! for that batch succeeded, the batch's remaining ids are reported refused
//! with that error, unasked (about 13 calls for 650 ids).
//!
//! Every call names its class in the budget: the poller's reads are
//! [`CallClass::AgentRead`] (the directory's slower tier
//! [`CallClass::Directory`]), every write [`CallClass::Write`] (served first).
//!
//! Writes use our app id as the session id, so `clearPresence` only ever
//! removes our own session.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;

use super::GraphClient;
use super::error::GraphError;
use super::model::{
    ClearPresenceRequest, GraphPresence, PresenceList, PresencesByUserIdRequest,
    SetPreferredRequest, SetPresenceRequest,
};
use super::throttle::CallClass;
use crate::presence::Presence;
use crate::sync::TeamsWrite;

/// The most ids one `getPresencesByUserId` call may carry.
pub const MAX_IDS_PER_CALL: usize = 650;

/// The bounds Graph puts on `setPresence`'s `expirationDuration`.
pub const SESSION_EXPIRY_MIN: Duration = Duration::from_secs(5 * 60);
pub const SESSION_EXPIRY_MAX: Duration = Duration::from_secs(4 * 3600);

/// Single ids refused, before any call of their batch succeeded, that make
/// a batch's 400 systematic. One or two bad ids side by side are not (the
/// ids around them are read); three refusals with nothing read are.
pub const SYSTEMATIC_AFTER: usize = 3;

/// What a presence read returned.
#[derive(Debug, Default)]
pub struct PresenceRead {
    pub presences: Vec<GraphPresence>,
    /// Ids Graph refused (400) even when asked for alone, or left unasked
    /// once the 400s were seen to be systematic (with the same error).
    pub refused: Vec<(String, GraphError)>,
    /// Items of Graph's answers that were not a readable presence.
    pub skipped: usize,
    /// Calls made, splits included.
    pub calls: usize,
    /// Set when a call failed for a reason that is not about the ids (Graph
    /// down, token refused, throttled too long) after other calls of the
    /// read had succeeded: what was read is kept, and these ids were not.
    pub unread: Option<Unread>,
}

/// Ids a read did not get to, and why.
#[derive(Debug)]
pub struct Unread {
    /// The failed call's ids and every id not asked for after it: the read
    /// stops at such a failure, as the next calls would most likely fail
    /// the same way (and each after the throttle's own retries).
    pub ids: Vec<String>,
    pub error: GraphError,
}

impl GraphClient {
    /// The presence of every id, in calls of at most 650 ids.
    ///
    /// An error that is not about the ids (after the throttle's retries:
    /// Graph down, token refused, throttled too long) ends the read: it
    /// fails as a whole when nothing had been read yet, and otherwise
    /// returns what was read with the ids it did not get to in
    /// [`PresenceRead::unread`].
    pub async fn get_presences(&self, ids: &[String]) -> Result<PresenceRead, GraphError> {
        self.get_presences_as(CallClass::AgentRead, ids).await
    }

    /// [`GraphClient::get_presences`] spending the budget as `class`: the
    /// directory's slower tier reads as [`CallClass::Directory`], after
    /// every agent read.
    pub async fn get_presences_as(
        &self,
        class: CallClass,
        ids: &[String],
    ) -> Result<PresenceRead, GraphError> {
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| !id.is_empty() && seen.insert(id.as_str()))
            .cloned()
            .collect();
        let mut read = PresenceRead::default();
        // A systematic 400 seen in an earlier batch of this read: a later
        // batch refused whole is taken to be the same, and not split.
        let mut systematic: Option<GraphError> = None;
        let chunks: Vec<&[String]> = ids.chunks(MAX_IDS_PER_CALL).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            // Parts of this batch still to ask for, the next one last.
            let mut pending: Vec<&[String]> = vec![chunk];
            let mut any_read = false;
            let mut lone_refusals = 0;
            while let Some(batch) = pending.pop() {
                read.calls += 1;
                let error = match self.presences_by_user_id(class, batch).await {
                    Ok(list) => {
                        any_read = true;
                        read.presences.extend(list.presences);
                        read.skipped += list.skipped;
                        continue;
                    }
                    Err(error) => error,
                };
                if error.status() != Some(400) {
                    if read.presences.is_empty() && read.refused.is_empty() {
                        return Err(error);
                    }
                    let ids = std::iter::once(batch)
                        .chain(pending.iter().rev().copied())
                        .chain(chunks[n + 1..].iter().copied())
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>();
                    tracing::warn!(unread = ids.len(), %error, "presence read stopped early; returning what was read");
                    read.unread = Some(Unread { ids, error });
                    return Ok(read);
                }
                let whole = batch.len() == chunk.len();
                let known = systematic.is_some() && whole;
                if let [id] = batch {
                    read.refused.push((id.clone(), error.clone()));
                    if !any_read {
                        lone_refusals += 1;
                    }
                }
                if known || (!any_read && lone_refusals >= SYSTEMATIC_AFTER) {
                    // A single id is in `refused` already.
                    let rest = pending
                        .iter()
                        .copied()
                        .chain((batch.len() > 1).then_some(batch))
                        .flatten();
                    read.refused
                        .extend(rest.map(|id| (id.clone(), error.clone())));
                    tracing::warn!(
                        ids = chunk.len(),
                        %error,
                        "getPresencesByUserId refuses even single ids; the batch is reported refused, not split further"
                    );
                    systematic = Some(error);
                    break;
                }
                if batch.len() > 1 {
                    let (left, right) = batch.split_at(batch.len() / 2);
                    tracing::debug!(
                        ids = batch.len(),
                        "getPresencesByUserId refused a batch; splitting it"
                    );
                    pending.push(right);
                    pending.push(left);
                }
            }
        }
        Ok(read)
    }

    async fn presences_by_user_id(
        &self,
        class: CallClass,
        ids: &[String],
    ) -> Result<PresenceList, GraphError> {
        let body = json(&PresencesByUserIdRequest { ids });
        let url = self.url(&["communications", "getPresencesByUserId"]);
        let response = self
            .call(class, Method::POST, url, Some(body), "getPresencesByUserId")
            .await?;
        PresenceList::parse(&response.body).map_err(|e| GraphError::Decode {
            what: "getPresencesByUserId",
            message: e.to_string(),
            request_id: response.request_id,
            client_request_id: response.client_request_id,
        })
    }

    /// One user's presence (`GET /users/{id}/presence`).
    pub async fn get_presence(&self, user: &str) -> Result<GraphPresence, GraphError> {
        let url = self.url(&["users", user, "presence"]);
        let response = self
            .call(CallClass::AgentRead, Method::GET, url, None, "getPresence")
            .await?;
        let decode = |message: String| GraphError::Decode {
            what: "getPresence",
            message,
            request_id: response.request_id.clone(),
            client_request_id: response.client_request_id.clone(),
        };
        PresenceList::parse(&response.body)
            .map_err(|e| decode(e.to_string()))?
            .presences
            .into_iter()
            .next()
            .ok_or_else(|| decode("no presence in the answer".into()))
    }

    /// `setPresence` in our session (session id = our client id). The expiry
    /// is kept inside Graph's PT5M..PT4H.
    pub async fn set_presence(
        &self,
        user: &str,
        presence: &Presence,
        expiry: Duration,
    ) -> Result<(), GraphError> {
        let expiry = expiry.clamp(SESSION_EXPIRY_MIN, SESSION_EXPIRY_MAX);
        let body = json(&SetPresenceRequest {
            session_id: self.client_id.clone(),
            availability: presence.availability.to_string(),
            activity: presence.activity.to_string(),
            expiration_duration: iso8601_duration(expiry),
        });
        let url = self.url(&["users", user, "presence", "setPresence"]);
        self.call(
            CallClass::Write,
            Method::POST,
            url,
            Some(body),
            "setPresence",
        )
        .await
        .map(drop)
    }

    /// `clearPresence` of our session. A 404 means there is no session of
    /// ours: already clear, which is what was asked.
    pub async fn clear_presence(&self, user: &str) -> Result<(), GraphError> {
        let body = json(&ClearPresenceRequest {
            session_id: self.client_id.clone(),
        });
        let url = self.url(&["users", user, "presence", "clearPresence"]);
        match self
            .call(
                CallClass::Write,
                Method::POST,
                url,
                Some(body),
                "clearPresence",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(404) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `setUserPreferredPresence`; without an expiry Graph applies its own
    /// default (1 day for DoNotDisturb and Busy, 7 days otherwise).
    pub async fn set_preferred(
        &self,
        user: &str,
        presence: &Presence,
        expiry: Option<Duration>,
    ) -> Result<(), GraphError> {
        let body = json(&SetPreferredRequest {
            availability: presence.availability.to_string(),
            activity: presence.activity.to_string(),
            expiration_duration: expiry.map(iso8601_duration),
        });
        let url = self.url(&["users", user, "presence", "setUserPreferredPresence"]);
        self.call(
            CallClass::Write,
            Method::POST,
            url,
            Some(body),
            "setUserPreferredPresence",
        )
        .await
        .map(drop)
    }

    /// `clearUserPreferredPresence` (its body is `{}`).
    pub async fn clear_preferred(&self, user: &str) -> Result<(), GraphError> {
        let url = self.url(&["users", user, "presence", "clearUserPreferredPresence"]);
        self.call(
            CallClass::Write,
            Method::POST,
            url,
            Some(b"{}".to_vec()),
            "clearUserPreferredPresence",
        )
        .await
        .map(drop)
    }

    /// Carries out one of the sync engine's Teams writes for `user`.
    pub async fn execute(&self, user: &str, write: &TeamsWrite) -> Result<(), GraphError> {
        match write {
            TeamsWrite::SetSession { presence, expiry } => {
                self.set_presence(user, presence, *expiry).await
            }
            TeamsWrite::ClearSession => self.clear_presence(user).await,
            TeamsWrite::SetPreferred { presence } => self.set_preferred(user, presence, None).await,
            TeamsWrite::ClearPreferred => self.clear_preferred(user).await,
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our request types are plain strings and lists: they always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}

/// An ISO 8601 duration as Graph takes it (`PT1H`, `PT1H30M`, `PT5M`),
/// in whole seconds rounded up.
pub fn iso8601_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut text = String::from("PT");
    if h > 0 {
        text.push_str(&format!("{h}H"));
    }
    if m > 0 {
        text.push_str(&format!("{m}M"));
    }
    if s > 0 || secs == 0 {
        text.push_str(&format!("{s}S"));
    }
    text
}
