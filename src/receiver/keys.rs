//! Entra's signing keys, which validation tokens are checked against:
//! fetched from the login host with a timeout, cached, and fetched again
//! when a token names a key the cache does not hold (Entra rolls its keys)
//! — at most once per [`KeySet::MIN_REFETCH`], so tokens naming made-up keys
//! cannot make the daemon hammer Entra — and once a day regardless.
//!
//! A fetch that fails keeps the keys already cached; tokens naming a key
//! not among them are refused, and polling reconciles what they carried.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::http::transport_message;
use crate::notifications::Jwks;

/// The cached key set and when to fetch it again.
pub struct KeySet {
    url: String,
    client: reqwest::Client,
    keys: Arc<Jwks>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
    min_refetch: Duration,
    fetches: u64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("url", &self.url)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// The least time between two fetches for unknown keys.
    pub const MIN_REFETCH: Duration = Duration::from_secs(300);
    /// How long a fetched set is used before it is fetched again anyway.
    pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
    /// The timeout of one fetch.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// Keys from `url`, fetched with `client` (give it the daemon's way out:
    /// proxy and CA file). Nothing is fetched until a token needs a key.
    pub fn new(url: impl Into<String>, client: reqwest::Client) -> Self {
        KeySet {
            url: url.into(),
            client,
            keys: Arc::new(Jwks::default()),
            fetched: None,
            last_attempt: None,
            min_refetch: Self::MIN_REFETCH,
            fetches: 0,
        }
    }

    /// Another least time between fetches for unknown keys (tests).
    pub fn with_min_refetch(mut self, min_refetch: Duration) -> Self {
        self.min_refetch = min_refetch;
        self
    }

    /// Fetches made so far, successful or not.
    pub fn fetches(&self) -> u64 {
        self.fetches
    }

    /// The key set, fetched first when nothing is cached, when it is older
    /// than a day, or when one of `kids` is not in it (rate-limited).
    pub async fn keys_for(&mut self, kids: &[String]) -> Arc<Jwks> {
        let now = Instant::now();
        let stale = self
            .fetched
            .is_none_or(|at| now.duration_since(at) >= Self::MAX_AGE);
        let unknown = kids.iter().any(|kid| !self.keys.contains(kid));
        let may_retry = self
            .last_attempt
            .is_none_or(|at| now.duration_since(at) >= self.min_refetch);
        if (stale || unknown) && may_retry {
            self.last_attempt = Some(now);
            self.fetches += 1;
            match self.fetch().await {
                Ok(keys) => {
                    self.keys = Arc::new(keys);
                    self.fetched = Some(now);
                }
                Err(why) => tracing::warn!(
                    url = %self.url,
                    "cannot fetch Entra's signing keys ({why}); validation tokens naming keys not cached are refused"
                ),
            }
        }
        Arc::clone(&self.keys)
    }

    async fn fetch(&self) -> Result<Jwks, String> {
        let response = self
            .client
            .get(&self.url)
            .timeout(Self::TIMEOUT)
            .send()
            .await
            .map_err(|e| transport_message(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the login host answered {status}"));
        }
        let body = response.bytes().await.map_err(|e| transport_message(&e))?;
        Jwks::parse(&body).map_err(|e| e.to_string())
    }
}
