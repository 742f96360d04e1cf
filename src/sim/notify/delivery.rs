//! Outbound posts to a subscriber: the validation handshake and the
//! delivery of notification batches, each with a timeout, retried a few
//! times with backoff when they fail.
//!
//! Graph retries a failed delivery for up to four hours; the simulator
//! stops after [`MAX_ATTEMPTS`] so a test's dead receiver costs seconds,
//! not hours, and counts the batch as failed.

use std::time::{Duration, Instant};

use serde_json::Value;

/// A receiver must echo the validation token within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A delivery taking longer counts as failed (and is retried).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply slower than this counts as slow (Graph's threshold).
pub const SLOW_AFTER: Duration = Duration::from_millis(2900);
/// Tries per batch, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// The wait before the first retry; doubled for each next one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Why a handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("{url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}, not 200")]
    Status { url: String, status: u16 },
    #[error("{url} did not echo the validation token")]
    WrongEcho { url: String },
}

/// How one batch's delivery went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// A 2xx came back (on some attempt).
    pub ok: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Attempts whose reply took over 2,900 ms.
    pub slow: u32,
}

/// A client for subscribers' endpoints: no proxy (they are on loopback in
/// tests and demos), short connects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default()
}

/// `url` with `validationToken=<token>` added to its query.
pub fn with_token(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}validationToken={}",
        crate::sim::server::form::encode(token)
    )
}

/// `POST {url}?validationToken=...` with an empty body; the receiver must
/// answer 200 with the token as plain text.
pub async fn handshake(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(), HandshakeError> {
    let response = http
        .post(with_token(url, token))
        .timeout(HANDSHAKE_TIMEOUT)
        .header(reqwest::header::CONTENT_LENGTH, "0")
        .send()
        .await
        .map_err(|e| HandshakeError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(HandshakeError::Status {
            url: url.to_string(),
            status,
        });
    }
    let body = response
        .text()
        .await
        .map_err(|e| HandshakeError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if body.trim() != token {
        return Err(HandshakeError::WrongEcho {
            url: url.to_string(),
        });
    }
    Ok(())
}

/// Posts `batch` to `url` until a 2xx or [`MAX_ATTEMPTS`].
pub async fn deliver(http: &reqwest::Client, url: &str, batch: &Value) -> Delivered {
    let mut outcome = Delivered {
        ok: false,
        attempts: 0,
        slow: 0,
    };
    let mut backoff = FIRST_BACKOFF;
    while outcome.attempts < MAX_ATTEMPTS {
        if outcome.attempts > 0 {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        outcome.attempts += 1;
        let started = Instant::now();
        let result = http
            .post(url)
            .timeout(DELIVERY_TIMEOUT)
            .json(batch)
            .send()
            .await;
        if started.elapsed() > SLOW_AFTER {
            outcome.slow += 1;
        }
        if let Ok(response) = result
            && response.status().is_success()
        {
            outcome.ok = true;
            return outcome;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_added_to_any_query() {
        assert_eq!(
            with_token("http://h/n", "a b&c"),
            "http://h/n?validationToken=a%20b%26c"
        );
        assert_eq!(
            with_token("http://h/n?x=1", "t"),
            "http://h/n?x=1&validationToken=t"
        );
    }
}
