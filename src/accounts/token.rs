//! A service account's access token: refreshed from its stored refresh
//! token when near expiry, one refresh at a time, the new refresh token
//! Entra hands out stored on every refresh (rotation). Its status is
//! readable at any time and published on a `watch` channel, so `/readyz`,
//! metrics and the board learn at once when an account fails or recovers.
//!
//! A refusal only an admin can fix (revoked, MFA, consent, ...) is not
//! asked again of Entra until the account's token file changes, which is
//! what `presence-sync login` does; Entra unreachable is retried after a
//! short hold-off. An access token still valid is used while refreshing
//! fails.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::entra::{EntraClient, Refused};
use super::error::{AccountError, AccountFailure};
use super::vault::{StoredAccount, Vault};
use crate::config::Secret;
use crate::graph::SharedClock;
use crate::stop::Stop;

/// The longest an account's refresh token goes unused: the daemon
/// refreshes at least this often even when nothing needs a token, far
/// inside Entra's 90 days of inactivity (and a day of downtime is still
/// covered many times over).
pub const KEEP_ALIVE: Duration = Duration::from_secs(12 * 3600);

/// How often [`AccountTokens::keep_alive`] looks whether a refresh is due.
const KEEP_ALIVE_CHECK: Duration = Duration::from_secs(3600);

/// After Entra could not be reached, not asked again before this.
/// How soon a failed account is tried again.
pub const FAILED_RETRY: Duration = Duration::from_secs(60);

const UNREACHABLE_HOLD_OFF: Duration = Duration::from_secs(30);

/// Whether an account can get tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountState {
    Ok,
    Failed(AccountError),
}

/// An account's status, for `/readyz`, metrics and the board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountStatus {
    pub upn: String,
    pub state: AccountState,
    /// When the access token held now expires (`None`: none held).
    pub token_expires_at: Option<DateTime<Utc>>,
    /// When the refresh token was last refreshed (or signed in).
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl AccountStatus {
    pub fn is_ok(&self) -> bool {
        self.state == AccountState::Ok
    }
}

struct Cached {
    token: Arc<Secret>,
    /// Clock times: start refreshing, and stop using it.
    refresh_at: Duration,
    expires_at: Duration,
    expires_wall: DateTime<Utc>,
}

struct Held {
    error: AccountError,
    /// Clock time before which Entra is not asked again (transient).
    until: Option<Duration>,
    /// The refresh token that was refused (`None`: none was stored): asked
    /// again once the file holds another.
    refused: Option<Secret>,
}

#[derive(Default)]
struct Inner {
    cached: Option<Cached>,
    held: Option<Held>,
}

/// One service account's tokens.
pub struct AccountTokens {
    upn: String,
    login: String,
    entra: Arc<EntraClient>,
    vault: Vault,
    clock: SharedClock,
    /// Short critical sections only, never across an await.
    inner: std::sync::Mutex<Inner>,
    /// Held by the one caller talking to Entra (single flight).
    flight: tokio::sync::Mutex<()>,
    status: watch::Sender<AccountStatus>,
    /// How soon a failed account is tried again.
    retry: Duration,
}

impl std::fmt::Debug for AccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountTokens")
            .field("upn", &self.upn)
            .finish_non_exhaustive()
    }
}

/// Refresh this long before expiry (a quarter of a short lifetime).
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(300))
}

impl AccountTokens {
    /// `login` is the command that signs the account in (see
    /// [`super::login_command`]), quoted by every failure. The status
    /// starts from the vault: not signed in, or ok with its last refresh.
    pub fn new(
        upn: &str,
        login: String,
        entra: Arc<EntraClient>,
        vault: Vault,
        clock: SharedClock,
    ) -> Self {
        let upn = upn.trim().to_owned();
        let (state, refreshed_at) = match vault.load(&upn) {
            Ok(Some(stored)) => (AccountState::Ok, Some(stored.refreshed_at)),
            Ok(None) => (
                AccountState::Failed(AccountError::NotSignedIn(AccountFailure::new(&upn, &login))),
                None,
            ),
            Err(e) => {
                let mut failure = AccountFailure::new(&upn, &login);
                failure.message = Some(e.to_string());
                (AccountState::Failed(AccountError::Vault(failure)), None)
            }
        };
        let status = watch::channel(AccountStatus {
            upn: upn.clone(),
            state,
            token_expires_at: None,
            refreshed_at,
        })
        .0;
        AccountTokens {
            upn,
            login,
            entra,
            vault,
            clock,
            inner: std::sync::Mutex::new(Inner::default()),
            flight: tokio::sync::Mutex::new(()),
            status,
            retry: FAILED_RETRY,
        }
    }

    /// Tries a failed account again every `retry` rather than every
    /// [`FAILED_RETRY`].
    pub fn retry_every(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    pub fn upn(&self) -> &str {
        &self.upn
    }

    /// The status now.
    pub fn status(&self) -> AccountStatus {
        self.status.borrow().clone()
    }

    /// Every change of the status, as it happens.
    pub fn watch(&self) -> watch::Receiver<AccountStatus> {
        self.status.subscribe()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain values, consistent after every statement.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, now: Duration) -> Option<Arc<Secret>> {
        self.inner()
            .cached
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    fn valid(&self, now: Duration) -> Option<Arc<Secret>> {
        self.inner()
            .cached
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.token.clone())
    }

    /// A valid access token: the cached one, or a refreshed one near
    /// expiry. Concurrent callers share one refresh.
    pub async fn token(&self) -> Result<Arc<Secret>, AccountError> {
        if let Some(token) = self.fresh(self.clock.now()) {
            return Ok(token);
        }
        let _flight = self.flight.lock().await;
        let now = self.clock.now();
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        match self.refresh_locked().await {
            Ok(token) => Ok(token),
            // A token still valid is used while refreshing fails.
            Err(error) => self.valid(self.clock.now()).ok_or(error),
        }
    }

    /// Refreshes now, whatever the cached token: the keep-alive.
    pub async fn refresh(&self) -> Result<(), AccountError> {
        let _flight = self.flight.lock().await;
        self.refresh_locked().await.map(|_| ())
    }

    /// Forgets `stale` (Graph refused it with 401).
    pub fn invalidate(&self, stale: &Arc<Secret>) {
        let mut inner = self.inner();
        if inner
            .cached
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.token, stale))
        {
            inner.cached = None;
        }
    }

    /// Whether the keep-alive should refresh at `now`: the last refresh is
    /// [`KEEP_ALIVE`] old, or there was none. (A refusal only an admin can
    /// fix is answered from memory, without asking Entra, until the
    /// account's token file changes.)
    pub fn keep_alive_due(&self, now: DateTime<Utc>) -> bool {
        let status = self.status();
        let keep_alive = chrono::TimeDelta::from_std(KEEP_ALIVE).unwrap_or(chrono::TimeDelta::MAX);
        status
            .refreshed_at
            .is_none_or(|at| now.signed_duration_since(at) >= keep_alive)
    }

    /// Refreshes whenever [`Self::keep_alive_due`], looking every hour,
    /// and while the account has failed tries it every [`FAILED_RETRY`]
    /// (or as set by [`Self::retry_every`]),
    /// until `stop`.
    pub async fn keep_alive(self: Arc<Self>, stop: Stop) {
        let mut changes = self.status.subscribe();
        loop {
            if !self.status().is_ok() {
                // A failed account is tried again soon: Entra back after a
                // blip, or a new sign-in in its token file (a refusal only
                // an admin fixes is not sent to Entra again until then).
                if self.refresh().await.is_ok() {
                    tracing::info!(account = %self.upn, "service account works again");
                }
            } else if self.keep_alive_due(self.clock.wall()) {
                match self.refresh().await {
                    Ok(()) => {
                        tracing::debug!(account = %self.upn, "service account token kept alive")
                    }
                    Err(error) => {
                        tracing::warn!(account = %self.upn, kind = error.kind(), %error, "service account keep-alive refresh failed")
                    }
                }
            }
            let ok = self.status().is_ok();
            changes.borrow_and_update();
            let wait = if ok { KEEP_ALIVE_CHECK } else { self.retry };
            // An account that fails meanwhile (a Graph call found its token
            // refused) is tried again a retry after, not an hour after.
            let failed = async {
                loop {
                    if changes.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    if !changes.borrow_and_update().is_ok() {
                        return;
                    }
                }
            };
            let woke = tokio::select! {
                slept = stop.sleep(wait) => {
                    if !slept {
                        return;
                    }
                    false
                }
                () = failed, if ok => true,
            };
            if woke && !stop.sleep(self.retry).await {
                return;
            }
        }
    }

    async fn load(&self) -> Result<Option<StoredAccount>, AccountError> {
        let vault = self.vault.clone();
        let upn = self.upn.clone();
        let loaded = tokio::task::spawn_blocking(move || vault.load(&upn))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        loaded.map_err(|message| {
            let mut failure = AccountFailure::new(&self.upn, &self.login);
            failure.message = Some(message);
            AccountError::Vault(failure)
        })
    }

    async fn save(&self, account: StoredAccount) -> Result<(), AccountError> {
        let vault = self.vault.clone();
        let saved = tokio::task::spawn_blocking(move || vault.store(&account))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        saved.map_err(|message| {
            let mut failure = AccountFailure::new(&self.upn, &self.login);
            failure.message = Some(message);
            AccountError::Vault(failure)
        })
    }

    /// One refresh, under the flight lock.
    async fn refresh_locked(&self) -> Result<Arc<Secret>, AccountError> {
        let now = self.clock.now();
        let stored = match self.load().await {
            Ok(stored) => stored,
            Err(error) => return Err(self.fail(error, None, None)),
        };
        // A refusal stands until it may have been fixed.
        {
            let inner = self.inner();
            if let Some(held) = &inner.held {
                let same_token = held.refused.as_ref() == stored.as_ref().map(|s| &s.refresh_token);
                let waiting = held.until.is_some_and(|until| now < until);
                if waiting || (held.until.is_none() && same_token) {
                    return Err(held.error.clone());
                }
            }
        }
        let Some(stored) = stored else {
            let error = AccountError::NotSignedIn(AccountFailure::new(&self.upn, &self.login));
            return Err(self.fail(error, None, None));
        };
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", stored.refresh_token.expose().to_owned()),
            ("scope", self.entra.endpoints().scope.clone()),
        ];
        let started = self.clock.now();
        let answer = match self.entra.token(form).await {
            Ok(answer) => answer,
            Err(Refused::Status(status, body)) => {
                let error = AccountError::classify(&self.upn, &self.login, status, body);
                return Err(self.fail(error, None, Some(stored.refresh_token)));
            }
            Err(Refused::Transient(message)) => {
                let mut failure = AccountFailure::new(&self.upn, &self.login);
                failure.message = Some(message);
                let until = self.clock.now().saturating_add(UNREACHABLE_HOLD_OFF);
                return Err(self.fail(AccountError::Unreachable(failure), Some(until), None));
            }
        };
        let wall = self.clock.wall();
        let lifetime = Duration::from_secs(answer.expires_in);
        let token = Arc::new(answer.access_token);
        // Entra's number, bounded: a date past chrono's range is no date.
        let expires_wall = chrono::TimeDelta::from_std(lifetime)
            .ok()
            .and_then(|d| wall.checked_add_signed(d))
            .unwrap_or(wall);
        // Rotation: the newest refresh token replaces the stored one.
        let rotated = StoredAccount {
            refresh_token: answer.refresh_token.unwrap_or(stored.refresh_token.clone()),
            oid: stored.oid.clone().or(answer.id_token.and_then(|c| c.oid)),
            refreshed_at: wall,
            ..stored
        };
        let saved = self.save(rotated).await;
        {
            let mut inner = self.inner();
            inner.cached = Some(Cached {
                token: token.clone(),
                refresh_at: started.saturating_add(lifetime - refresh_margin(lifetime)),
                expires_at: started.saturating_add(lifetime),
                expires_wall,
            });
            inner.held = None;
        }
        let state = match saved {
            Ok(()) => AccountState::Ok,
            Err(error) => {
                tracing::error!(account = %self.upn, %error, "the refreshed token could not be stored");
                AccountState::Failed(error)
            }
        };
        let recovered = !self.status().is_ok() && state == AccountState::Ok;
        self.status.send_replace(AccountStatus {
            upn: self.upn.clone(),
            state,
            token_expires_at: Some(expires_wall),
            refreshed_at: Some(wall),
        });
        if recovered {
            tracing::info!(account = %self.upn, "service account token refreshed again");
        }
        Ok(token)
    }

    /// Records a failure and publishes it (a transient one only when no
    /// valid token is left).
    fn fail(
        &self,
        error: AccountError,
        until: Option<Duration>,
        refused: Option<Secret>,
    ) -> AccountError {
        let now = self.clock.now();
        let still_valid = {
            let mut inner = self.inner();
            inner.held = Some(Held {
                error: error.clone(),
                until,
                refused,
            });
            inner
                .cached
                .as_ref()
                .filter(|c| now < c.expires_at)
                .map(|c| c.expires_wall)
        };
        if error.needs_admin() || still_valid.is_none() {
            let previous = self.status();
            if previous.state != AccountState::Failed(error.clone()) {
                tracing::error!(account = %self.upn, kind = error.kind(), %error, "service account has no token");
            }
            self.status.send_replace(AccountStatus {
                upn: self.upn.clone(),
                state: AccountState::Failed(error.clone()),
                token_expires_at: still_valid,
                refreshed_at: previous.refreshed_at,
            });
        } else {
            tracing::warn!(account = %self.upn, kind = error.kind(), %error, "service account token refresh failed; the current token is used until it expires");
        }
        error
    }
}

impl crate::graph::throttle::TokenSource for AccountTokens {
    fn bearer(
        &self,
    ) -> crate::graph::throttle::TokenFuture<'_, Result<Arc<Secret>, crate::graph::GraphError>>
    {
        Box::pin(async move { self.token().await.map_err(crate::graph::GraphError::from) })
    }

    fn refused<'a>(
        &'a self,
        stale: &'a Arc<Secret>,
    ) -> crate::graph::throttle::TokenFuture<'a, ()> {
        self.invalidate(stale);
        Box::pin(std::future::ready(()))
    }
}
