//! One stored batch in, typed outcomes out: the checks a notification
//! passes before the daemon acts on it, in order — the `clientState` of
//! every item, the batch's validation tokens (when it carries resource data
//! or tokens), decryption, the user named by the notification matching the
//! decrypted one, then [`Dedupe`]. A batch whose tokens fail is dropped
//! whole: the tokens are what proves Graph sent it.
//!
//! Pure: the key set, the secret and the time are passed in.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::client_state::client_state_matches;
use super::dedupe::{Dedupe, Identity, Verdict};
use super::jwt::{Jwks, TokenExpectations, TokenRejection, validate_token};
use super::payload::{
    ChangeNotificationCollection, LifecycleEvent, LifecycleNotificationCollection, PayloadError,
};
use super::rich::{Decryption, RichError};
use crate::config::Secret;
use crate::graph::model::GraphPresence;

/// What the rest of the daemon is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// A rich notification: the user's presence as it is now.
    Presence(Box<GraphPresence>),
    /// Basic notifications: these users' presence changed; read it.
    ReadNow(Vec<String>),
    /// Something happened to a subscription.
    Lifecycle {
        subscription_id: String,
        event: LifecycleEvent,
    },
}

/// Why a notification was dropped. [`Rejection::reason`] names each for
/// the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Rejection {
    #[error("the clientState is not ours")]
    ClientState,
    #[error("{0}")]
    Payload(#[from] PayloadError),
    #[error("a validation token was refused: {0}")]
    Token(#[from] TokenRejection),
    #[error("the notification carries resource data but the batch no validation token")]
    MissingToken,
    #[error("the notification carries encrypted content, and no decryption key is configured")]
    NoDecryption,
    #[error("{0}")]
    Rich(#[from] RichError),
    #[error("the notification names user `{named}` but its content is user `{content}`")]
    UserMismatch { named: String, content: String },
    #[error(
        "the notification carries no encrypted content, and our subscriptions are rich: it is not from them"
    )]
    NotEncrypted,
}

impl Rejection {
    /// A short, stable name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::ClientState => "client_state",
            Rejection::Payload(_) => "malformed",
            Rejection::Token(t) => t.reason(),
            Rejection::MissingToken => "token_missing",
            Rejection::NoDecryption => "no_decryption",
            Rejection::Rich(r) => r.reason(),
            Rejection::UserMismatch { .. } => "user_mismatch",
            Rejection::NotEncrypted => "not_encrypted",
        }
    }
}

/// What a batch's checks need.
#[derive(Clone, Copy, Debug)]
pub struct Checks<'a> {
    pub client_state: &'a Secret,
    pub decryption: Option<&'a Decryption>,
    pub keys: &'a Jwks,
    pub expected: &'a TokenExpectations,
}

/// The result of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processed {
    pub outcomes: Vec<NotificationOutcome>,
    /// Notifications in the batch.
    pub received: usize,
    /// Notifications that led to an outcome.
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

/// Checks and reads a change-notification batch.
pub fn process_changes(
    batch: &ChangeNotificationCollection,
    checks: Checks<'_>,
    dedupe: &mut Dedupe,
    now: DateTime<Utc>,
) -> Processed {
    let mut out = Processed {
        received: batch.value.len(),
        ..Processed::default()
    };
    let rich = batch.value.iter().any(|n| n.encrypted_content.is_some());
    if rich || !batch.validation_tokens.is_empty() {
        if batch.validation_tokens.is_empty() {
            out.rejected = vec![Rejection::MissingToken; out.received];
            return out;
        }
        for token in &batch.validation_tokens {
            if let Err(e) = validate_token(token, checks.keys, checks.expected, now) {
                out.rejected = vec![Rejection::Token(e); out.received];
                return out;
            }
        }
    }
    let mut read_now = BTreeSet::new();
    for (index, n) in batch.value.iter().enumerate() {
        if !client_state_matches(checks.client_state, n.client_state.as_deref()) {
            out.rejected.push(Rejection::ClientState);
            continue;
        }
        if let Some(event) = &n.lifecycle_event {
            out.outcomes.push(NotificationOutcome::Lifecycle {
                subscription_id: n.subscription_id.clone(),
                event: event.clone(),
            });
            out.applied += 1;
            continue;
        }
        let user = match n.user_id(index) {
            Ok(user) => user,
            Err(e) => {
                out.rejected.push(e.into());
                continue;
            }
        };
        let Some(content) = &n.encrypted_content else {
            // With a key configured every subscription is rich: a change
            // without its data, even with the clientState, is not one of
            // theirs, and is not allowed to make the daemon read.
            if checks.decryption.is_some() {
                out.rejected.push(Rejection::NotEncrypted);
                continue;
            }
            if read_now.insert(user) {
                out.applied += 1;
            } else {
                out.duplicates += 1;
            }
            continue;
        };
        let Some(decryption) = checks.decryption else {
            out.rejected.push(Rejection::NoDecryption);
            continue;
        };
        let presence = match decryption.decrypt(content) {
            Ok(presence) => presence,
            Err(e) => {
                out.rejected.push(e.into());
                continue;
            }
        };
        if !presence.id.eq_ignore_ascii_case(&user) {
            out.rejected.push(Rejection::UserMismatch {
                named: user,
                content: presence.id.chars().take(80).collect(),
            });
            continue;
        }
        let verdict = match &presence.sequence_number {
            Some(seq) => dedupe.sequence(&user.to_ascii_lowercase(), seq),
            None => dedupe.identity(Identity::of(
                &n.subscription_id,
                &user,
                content.data.as_bytes(),
            )),
        };
        match verdict {
            Verdict::New => {
                out.outcomes
                    .push(NotificationOutcome::Presence(Box::new(presence)));
                out.applied += 1;
            }
            Verdict::Duplicate | Verdict::Stale => out.duplicates += 1,
        }
    }
    if !read_now.is_empty() {
        out.outcomes
            .push(NotificationOutcome::ReadNow(read_now.into_iter().collect()));
    }
    out
}

/// Checks and reads a lifecycle-notification batch.
pub fn process_lifecycle(
    batch: &LifecycleNotificationCollection,
    client_state: &Secret,
) -> Processed {
    let mut out = Processed {
        received: batch.value.len(),
        ..Processed::default()
    };
    for n in &batch.value {
        if !client_state_matches(client_state, n.client_state.as_deref()) {
            out.rejected.push(Rejection::ClientState);
            continue;
        }
        out.outcomes.push(NotificationOutcome::Lifecycle {
            subscription_id: n.subscription_id.clone(),
            event: n.lifecycle_event.clone(),
        });
        out.applied += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::payload::{parse_changes, parse_lifecycle};
    use crate::notifications::testing::{expectations, shared_decryption, shared_signer};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_765_000_000, 0).unwrap()
    }

    fn rich_item(user: &str, seq: Option<&str>, client_state: &str) -> serde_json::Value {
        let (_, encryptor) = shared_decryption();
        let mut presence = serde_json::json!({
            "@odata.type": "#microsoft.graph.presence", "@odata.id": format!("users/{user}/presence"),
            "id": user, "availability": "Busy", "activity": "InACall"});
        if let Some(seq) = seq {
            presence["sequenceNumber"] = seq.into();
        }
        let content = encryptor.encrypt(presence.to_string().as_bytes());
        serde_json::json!({
            "subscriptionId": "sub1", "clientState": client_state, "changeType": "updated",
            "resource": format!("communications/presences/{user}"),
            "resourceData": {"id": user},
            "encryptedContent": {
                "data": content.data, "dataSignature": content.data_signature, "dataKey": content.data_key,
                "encryptionCertificateId": content.encryption_certificate_id,
                "encryptionCertificateThumbprint": content.encryption_certificate_thumbprint,
            }
        })
    }

    fn run(body: serde_json::Value, dedupe: &mut Dedupe) -> Processed {
        run_with(body, dedupe, true)
    }

    /// `rich`: a decryption key is configured (every subscription rich).
    fn run_with(body: serde_json::Value, dedupe: &mut Dedupe, rich: bool) -> Processed {
        let secret = Secret::new("cs");
        let keys = shared_signer().jwks();
        let decryption = &shared_decryption().0;
        let checks = Checks {
            client_state: &secret,
            decryption: rich.then_some(&**decryption),
            keys: &keys,
            expected: &expectations(),
        };
        process_changes(
            &parse_changes(body.to_string().as_bytes()).unwrap(),
            checks,
            dedupe,
            now(),
        )
    }

    fn token() -> String {
        shared_signer().token(&shared_signer().claims(now()))
    }

    #[test]
    fn basic_notifications_ask_to_read_each_user_once() {
        let body = serde_json::json!({"value": [
            {"subscriptionId": "s", "clientState": "cs", "resource": "communications/presences/u2"},
            {"subscriptionId": "s", "clientState": "cs", "resource": "communications/presences/u1"},
            {"subscriptionId": "s", "clientState": "cs", "resource": "communications/presences/u2"},
        ]});
        let out = run_with(body.clone(), &mut Dedupe::new(10), false);
        assert_eq!(
            out.outcomes,
            [NotificationOutcome::ReadNow(vec!["u1".into(), "u2".into()])]
        );
        assert_eq!((out.received, out.applied, out.duplicates), (3, 2, 1));
        // With a key configured every subscription is rich: a change
        // without data is not one of theirs, clientState or not.
        let out = run_with(body, &mut Dedupe::new(10), true);
        assert!(out.outcomes.is_empty(), "{out:?}");
        assert_eq!(out.rejected, vec![Rejection::NotEncrypted; 3]);
    }

    #[test]
    fn a_rich_batch_with_a_valid_token_gives_presences() {
        let body = serde_json::json!({"value": [rich_item("u1", Some("C1"), "cs")], "validationTokens": [token()]});
        let out = run(body, &mut Dedupe::new(10));
        let [NotificationOutcome::Presence(p)] = out.outcomes.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(p.id, "u1");
        assert!(out.rejected.is_empty());
    }

    #[test]
    fn rich_content_without_tokens_or_with_a_bad_one_is_dropped_whole() {
        let item = rich_item("u1", Some("C1"), "cs");
        let out = run(
            serde_json::json!({"value": [item.clone()]}),
            &mut Dedupe::new(10),
        );
        assert_eq!(out.rejected, [Rejection::MissingToken]);
        let mut claims = shared_signer().claims(now());
        claims["aud"] = "other".into();
        let bad = shared_signer().token(&claims);
        let basic = serde_json::json!({"subscriptionId": "s", "clientState": "cs", "resource": "communications/presences/u9"});
        let out = run(
            serde_json::json!({"value": [item, basic], "validationTokens": [token(), bad]}),
            &mut Dedupe::new(10),
        );
        assert!(out.outcomes.is_empty());
        assert_eq!(out.rejected.len(), 2);
        assert_eq!(out.rejected[0].reason(), "token_audience");
    }

    #[test]
    fn replays_and_older_sequence_numbers_are_not_applied() {
        let mut dedupe = Dedupe::new(10);
        let newer = rich_item("u1", Some("C2"), "cs");
        let older = rich_item("u1", Some("C1"), "cs");
        let batch = serde_json::json!({"value": [newer], "validationTokens": [token()]});
        assert_eq!(run(batch.clone(), &mut dedupe).applied, 1);
        let again = run(batch, &mut dedupe);
        assert_eq!((again.applied, again.duplicates), (0, 1));
        let late = run(
            serde_json::json!({"value": [older], "validationTokens": [token()]}),
            &mut dedupe,
        );
        assert_eq!((late.applied, late.duplicates), (0, 1));
        // Without a sequence number the content itself is the identity.
        let plain = serde_json::json!({"value": [rich_item("u2", None, "cs")], "validationTokens": [token()]});
        assert_eq!(run(plain.clone(), &mut dedupe).applied, 1);
        assert_eq!(run(plain, &mut dedupe).duplicates, 1);
    }

    #[test]
    fn a_wrong_client_state_or_another_users_content_is_rejected() {
        let out = run(
            serde_json::json!({"value": [rich_item("u1", None, "nope")], "validationTokens": [token()]}),
            &mut Dedupe::new(10),
        );
        assert_eq!(out.rejected, [Rejection::ClientState]);
        let mut item = rich_item("u1", None, "cs");
        item["resourceData"]["id"] = "u7".into();
        let out = run(
            serde_json::json!({"value": [item], "validationTokens": [token()]}),
            &mut Dedupe::new(10),
        );
        assert_eq!(out.rejected[0].reason(), "user_mismatch");
    }

    #[test]
    fn lifecycle_notifications_name_their_subscription() {
        let batch = parse_lifecycle(
            br#"{"value":[{"subscriptionId":"a","clientState":"cs","lifecycleEvent":"missed"},
                          {"subscriptionId":"b","clientState":"x","lifecycleEvent":"missed"}]}"#,
        )
        .unwrap();
        let out = process_lifecycle(&batch, &Secret::new("cs"));
        assert_eq!(
            out.outcomes,
            [NotificationOutcome::Lifecycle {
                subscription_id: "a".into(),
                event: LifecycleEvent::Missed
            }]
        );
        assert_eq!(out.rejected, [Rejection::ClientState]);
    }
}
