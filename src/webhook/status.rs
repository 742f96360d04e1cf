//! What the webhook sink is doing, for `/readyz` and the logs.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// A snapshot of the sink, published on a `watch` channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookStatus {
    #[serde(flatten)]
    pub state: WebhookState,
    /// The last sequence number the receiver acknowledged, as stored (0:
    /// none yet; delivery starts from the oldest event kept).
    pub cursor: u64,
    /// The last sequence number this run delivered.
    pub last_delivered_seq: Option<u64>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// The latest failure, kept after a later success for diagnosis.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// Where the sink is in its loop. Serialized with a `state` tag.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WebhookState {
    /// Reading its cursor from the store.
    Starting,
    /// Everything in the log is delivered; waiting for new events.
    Idle,
    /// A POST of the events `first_seq..=last_seq` is in flight.
    Delivering {
        first_seq: u64,
        last_seq: u64,
        /// 1 for the first try of this batch.
        attempt: u32,
    },
    /// The last attempt failed (see `last_error`); the next is at `next_try`.
    Retrying {
        /// Failed attempts in a row.
        attempt: u32,
        next_try: DateTime<Utc>,
    },
    /// Stopped on an error retrying cannot fix; the daemon must be fixed.
    Failed { error: String },
    /// Stopped on request.
    Stopped,
}

impl WebhookStatus {
    pub(super) fn starting() -> Self {
        WebhookStatus {
            state: WebhookState::Starting,
            cursor: 0,
            last_delivered_seq: None,
            last_delivered_at: None,
            last_error: None,
            last_error_at: None,
        }
    }

    /// The state in `/readyz` task terms: `starting`, `running`, `stopped`
    /// or `failed`. Retrying is running: the sink is doing its job against
    /// a receiver that is down.
    pub fn task_state(&self) -> &'static str {
        match self.state {
            WebhookState::Starting => "starting",
            WebhookState::Idle
            | WebhookState::Delivering { .. }
            | WebhookState::Retrying { .. } => "running",
            WebhookState::Failed { .. } => "failed",
            WebhookState::Stopped => "stopped",
        }
    }
}

/// One line for `/readyz`'s `detail`.
impl fmt::Display for WebhookStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            WebhookState::Starting => f.write_str("reading the cursor")?,
            WebhookState::Idle => write!(f, "idle, delivered up to seq {}", self.cursor)?,
            WebhookState::Delivering {
                first_seq,
                last_seq,
                attempt,
            } => write!(
                f,
                "delivering seq {first_seq}..={last_seq} (attempt {attempt})"
            )?,
            WebhookState::Retrying { attempt, next_try } => write!(
                f,
                "retrying after {attempt} failed attempt{} at {}, delivered up to seq {}",
                if *attempt == 1 { "" } else { "s" },
                next_try.to_rfc3339_opts(SecondsFormat::Secs, true),
                self.cursor
            )?,
            WebhookState::Failed { error } => write!(f, "failed: {error}")?,
            WebhookState::Stopped => write!(f, "stopped, delivered up to seq {}", self.cursor)?,
        }
        if let (Some(error), WebhookState::Retrying { .. }) = (&self.last_error, &self.state) {
            write!(f, "; last error: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_a_state_tag_and_reads_as_one_line() {
        let status = WebhookStatus {
            state: WebhookState::Retrying {
                attempt: 3,
                next_try: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            },
            cursor: 41,
            last_error: Some("the receiver answered 500 Internal Server Error".into()),
            ..WebhookStatus::starting()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "retrying");
        assert_eq!(json["attempt"], 3);
        assert_eq!(json["next_try"], "2023-11-14T22:13:20Z");
        assert_eq!(json["cursor"], 41);
        assert_eq!(
            status.to_string(),
            "retrying after 3 failed attempts at 2023-11-14T22:13:20Z, delivered up to seq 41; \
             last error: the receiver answered 500 Internal Server Error"
        );
        assert_eq!(status.task_state(), "running");
        let failed = WebhookStatus {
            state: WebhookState::Failed {
                error: "bad cursor".into(),
            },
            ..status
        };
        assert_eq!(failed.task_state(), "failed");
        assert_eq!(serde_json::to_value(&failed).unwrap()["state"], "failed");
    }
}
