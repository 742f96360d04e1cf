//! What Graph POSTs to the receiver: change-notification collections (to
//! `notificationUrl`) and lifecycle-notification collections (to
//! `lifecycleNotificationUrl`), as serde types, and the user each change is
//! about.
//!
//! Reading follows what Microsoft documents and no more: unknown fields are
//! ignored (payloads grow), a lifecycle event this build does not know is
//! kept by name, and every refusal says what is wrong and where.
//!
//! One leniency is deliberate: a comma before a closing `}` or `]`. The
//! presence page's basic example carries one (`"organizationId": "…",` then
//! `}`); Graph itself sends strict JSON, but refusing a batch costs a
//! notification while accepting a trailing comma costs nothing — the
//! clientState and every later check still apply. The comma is dropped only
//! outside strings, so no value changes.

use serde::Deserialize;
use thiserror::Error;

/// A body the receiver cannot take, in words for the admin reading the log
/// (and Graph's delivery report).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("the body is empty; a JSON object with `value` was expected")]
    Empty,
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("`{path}`: {message}")]
    Invalid { path: String, message: String },
    #[error("`value` is empty: a notification batch holds at least one notification")]
    NoNotifications,
    #[error(
        "notification {index} names no user: neither `resourceData.id` nor a `resource` \
         of the form `communications/presences/{{id}}` (found `{resource}`)"
    )]
    NoUser { index: usize, resource: String },
}

/// `{"value":[…], "validationTokens":[…]}` posted to `notificationUrl`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotificationCollection {
    pub value: Vec<ChangeNotification>,
    /// JWTs proving Graph sent the batch; present with resource data.
    #[serde(default)]
    pub validation_tokens: Vec<String>,
}

/// One change notification.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotification {
    /// Set by some resources (not documented for presence).
    #[serde(default)]
    pub id: Option<String>,
    pub subscription_id: String,
    /// The secret the subscription was created with; checked for every item.
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub change_type: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// `communications/presences/{id}`.
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subscription_expiration_date_time: Option<String>,
    #[serde(default)]
    pub resource_data: Option<ResourceData>,
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The presence itself, encrypted, for a subscription with
    /// `includeResourceData`.
    #[serde(default)]
    pub encrypted_content: Option<EncryptedContent>,
    /// Lifecycle notifications may come to `notificationUrl` when a
    /// subscription has no lifecycle URL.
    #[serde(default)]
    pub lifecycle_event: Option<LifecycleEvent>,
}

/// `resourceData`: what the notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ResourceData {
    #[serde(default, rename = "@odata.id")]
    pub odata_id: Option<String>,
    #[serde(default, rename = "@odata.type")]
    pub odata_type: Option<String>,
    /// For presence, the user's Entra object id.
    #[serde(default)]
    pub id: Option<String>,
}

/// `encryptedContent` of a rich notification (see [`super::rich`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedContent {
    /// base64 AES-256-CBC of the resource's JSON.
    pub data: String,
    /// base64 HMAC-SHA256 of the decoded `data`.
    pub data_signature: String,
    /// base64 RSA-OAEP of the 32-byte symmetric key.
    pub data_key: String,
    #[serde(default)]
    pub encryption_certificate_id: Option<String>,
    /// Hex SHA-1 of the certificate's DER.
    #[serde(default)]
    pub encryption_certificate_thumbprint: Option<String>,
}

/// `{"value":[…]}` posted to `lifecycleNotificationUrl`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LifecycleNotificationCollection {
    pub value: Vec<LifecycleNotification>,
}

/// One lifecycle notification.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleNotification {
    pub subscription_id: String,
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub subscription_expiration_date_time: Option<String>,
    pub lifecycle_event: LifecycleEvent,
}

/// What happened to a subscription. `reauthorizationRequired` is documented
/// for presence; the other two for other resources: all three are handled.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum LifecycleEvent {
    /// Renew the access behind it (`POST /subscriptions/{id}/reauthorize`).
    ReauthorizationRequired,
    /// Graph removed it: create it again.
    SubscriptionRemoved,
    /// Notifications were lost: read the users it covers now.
    Missed,
    /// A name this build does not know, kept as sent.
    Other(String),
}

impl From<String> for LifecycleEvent {
    fn from(name: String) -> Self {
        match name.as_str() {
            "reauthorizationRequired" => LifecycleEvent::ReauthorizationRequired,
            "subscriptionRemoved" => LifecycleEvent::SubscriptionRemoved,
            "missed" => LifecycleEvent::Missed,
            _ => LifecycleEvent::Other(name),
        }
    }
}

impl LifecycleEvent {
    /// The name Graph uses.
    pub fn as_str(&self) -> &str {
        match self {
            LifecycleEvent::ReauthorizationRequired => "reauthorizationRequired",
            LifecycleEvent::SubscriptionRemoved => "subscriptionRemoved",
            LifecycleEvent::Missed => "missed",
            LifecycleEvent::Other(name) => name,
        }
    }
}

/// Reads a change-notification collection. At least one notification.
pub fn parse_changes(body: &[u8]) -> Result<ChangeNotificationCollection, PayloadError> {
    let collection: ChangeNotificationCollection = parse(body)?;
    if collection.value.is_empty() {
        return Err(PayloadError::NoNotifications);
    }
    Ok(collection)
}

/// Reads a lifecycle-notification collection. At least one notification.
pub fn parse_lifecycle(body: &[u8]) -> Result<LifecycleNotificationCollection, PayloadError> {
    let collection: LifecycleNotificationCollection = parse(body)?;
    if collection.value.is_empty() {
        return Err(PayloadError::NoNotifications);
    }
    Ok(collection)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let body = without_trailing_commas(body);
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            PayloadError::NotJson(inner.to_string())
        } else {
            PayloadError::Invalid {
                path: if path == "." {
                    "(the body)".into()
                } else {
                    path
                },
                message: inner.to_string(),
            }
        }
    })?;
    de.end()
        .map_err(|e| PayloadError::NotJson(format!("text after the JSON value: {e}")))?;
    Ok(value)
}

/// `body` with every comma that only whitespace separates from a closing
/// `}` or `]` dropped, outside strings. Anything else is left as it is for
/// serde to judge.
pub(crate) fn without_trailing_commas(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let next = body[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                out.get_or_insert_with(|| body[..i].to_vec());
                continue;
            }
        }
        if let Some(out) = out.as_mut() {
            out.push(b);
        }
    }
    match out {
        Some(out) => std::borrow::Cow::Owned(out),
        None => std::borrow::Cow::Borrowed(body),
    }
}

impl ChangeNotification {
    /// The user this notification is about: `resourceData.id`, else the
    /// last segment of `resource` (`communications/presences/{id}`, with or
    /// without a leading `/`, or `communications/presences('{id}')`).
    /// `index` is the item's place in its batch, for the error.
    pub fn user_id(&self, index: usize) -> Result<String, PayloadError> {
        if let Some(id) = self.resource_data.as_ref().and_then(|d| d.id.as_deref())
            && is_plain_id(id)
        {
            return Ok(id.to_owned());
        }
        user_from_resource(&self.resource).ok_or_else(|| PayloadError::NoUser {
            index,
            resource: self.resource.chars().take(200).collect(),
        })
    }
}

fn user_from_resource(resource: &str) -> Option<String> {
    const PREFIX: &str = "communications/presences";
    let rest = resource.trim_start_matches('/');
    let rest = rest
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &rest[PREFIX.len()..])?;
    let id = rest
        .strip_prefix('/')
        .or_else(|| rest.strip_prefix("('")?.strip_suffix("')"))?;
    is_plain_id(id).then(|| id.to_owned())
}

/// An id as Graph gives one: not empty, no path or query characters.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"/?#'\"()".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_fixtures::shared_text;

    const BASIC: &str = r##"{"value":[{"subscriptionId":"s1","clientState":"cs","changeType":"updated",
        "tenantId":"t","resource":"communications/presences/u1",
        "resourceData":{"@odata.id":"users/u1/presence","@odata.type":"#microsoft.graph.presence","id":"u1"}}]}"##;

    #[test]
    fn a_basic_notification_names_its_user() {
        let c = parse_changes(BASIC.as_bytes()).unwrap();
        assert_eq!(c.value[0].user_id(0).unwrap(), "u1");
        assert_eq!(c.value[0].client_state.as_deref(), Some("cs"));
        assert!(c.validation_tokens.is_empty());
    }

    #[test]
    fn the_user_comes_from_the_resource_when_resource_data_has_none() {
        for resource in [
            "communications/presences/u2",
            "/communications/presences/u2",
            "communications/presences('u2')",
        ] {
            let body = format!(r#"{{"value":[{{"subscriptionId":"s","resource":"{resource}"}}]}}"#);
            let c = parse_changes(body.as_bytes()).unwrap();
            assert_eq!(c.value[0].user_id(0).unwrap(), "u2", "{resource}");
        }
        let body = r#"{"value":[{"subscriptionId":"s","resource":"users/u2/messages/1"}]}"#;
        let err = parse_changes(body.as_bytes()).unwrap().value[0]
            .user_id(3)
            .unwrap_err();
        assert!(err.to_string().contains("notification 3"), "{err}");
    }

    #[test]
    fn errors_say_what_is_wrong_and_where() {
        assert_eq!(parse_changes(b"  ").unwrap_err(), PayloadError::Empty);
        assert!(matches!(parse_changes(b"{"), Err(PayloadError::NotJson(_))));
        assert_eq!(
            parse_changes(br#"{"value":[]}"#).unwrap_err(),
            PayloadError::NoNotifications
        );
        let err = parse_changes(br#"{"value":[{"resource":"x"}]}"#).unwrap_err();
        assert!(err.to_string().contains("subscriptionId"), "{err}");
        let err = parse_changes(br#"{"value":[{"subscriptionId":5}]}"#).unwrap_err();
        assert!(err.to_string().contains("value[0].subscriptionId"), "{err}");
        assert!(matches!(
            parse_changes(br#"{"value":[{"subscriptionId":"s"}]} x"#),
            Err(PayloadError::NotJson(_))
        ));
    }

    #[test]
    fn trailing_commas_are_dropped_outside_strings_only() {
        assert_eq!(
            &*without_trailing_commas(br#"{"a":[1,2,],"b":", }",}"#),
            br#"{"a":[1,2],"b":", }"}"#
        );
        assert_eq!(
            &*without_trailing_commas(br#"{"a":"\",}"}"#),
            br#"{"a":"\",}"}"#
        );
        assert!(parse_changes(br#"{"value":[,]}"#).is_err());
    }

    #[test]
    fn lifecycle_events_are_typed_and_unknown_ones_kept() {
        let body = br#"{"value":[
            {"subscriptionId":"a","clientState":"c","lifecycleEvent":"reauthorizationRequired"},
            {"subscriptionId":"b","lifecycleEvent":"subscriptionRemoved"},
            {"subscriptionId":"c","lifecycleEvent":"missed"},
            {"subscriptionId":"d","lifecycleEvent":"somethingNew"}]}"#;
        let events: Vec<_> = parse_lifecycle(body)
            .unwrap()
            .value
            .into_iter()
            .map(|n| n.lifecycle_event)
            .collect();
        assert_eq!(
            events,
            [
                LifecycleEvent::ReauthorizationRequired,
                LifecycleEvent::SubscriptionRemoved,
                LifecycleEvent::Missed,
                LifecycleEvent::Other("somethingNew".into())
            ]
        );
        assert_eq!(events[3].as_str(), "somethingNew");
        let err = parse_lifecycle(br#"{"value":[{"subscriptionId":"a"}]}"#).unwrap_err();
        assert!(err.to_string().contains("lifecycleEvent"), "{err}");
    }

    #[test]
    fn microsofts_documented_examples_read() {
        let Some(normalized) = shared_text(
            "graph/examples/changenotifications-for-presence__basic-notification__normalized.json",
        ) else {
            return;
        };
        let Some(verbatim) = shared_text(
            "graph/examples/changenotifications-for-presence__basic-notification__verbatim.jsonc",
        ) else {
            return;
        };
        let a = parse_changes(normalized.as_bytes()).unwrap();
        let b = parse_changes(verbatim.as_bytes()).unwrap();
        assert_eq!(a, b, "the verbatim example's trailing comma is accepted");
        // The placeholder `{User Id}` has a space, which no id has: the
        // resource path's `{id}` is taken instead.
        assert_eq!(a.value[0].user_id(0).unwrap(), "{id}");
        for name in [
            "changenotifications-for-presence__rich-notification-with-resource-data.json",
            "change-notifications-delivery-webhooks__change-notification-example.json",
        ] {
            let Some(text) = shared_text(&format!("graph/examples/{name}")) else {
                return;
            };
            parse_changes(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let Some(rich) = shared_text(
            "graph/examples/changenotifications-for-presence__rich-notification-with-resource-data.json",
        ) else {
            return;
        };
        let rich = parse_changes(rich.as_bytes()).unwrap();
        assert_eq!(rich.validation_tokens, ["{Validation Tokens}"]);
        assert!(rich.value[0].encrypted_content.is_some());
        let Some(lifecycle) = shared_text(
            "graph/examples/change-notifications-lifecycle-events__lifecycle-notification-structure.json",
        ) else {
            return;
        };
        let lifecycle = parse_lifecycle(lifecycle.as_bytes()).unwrap();
        assert_eq!(lifecycle.value[0].subscription_id, "<subscription_guid>");
    }

    proptest::proptest! {
        #[test]
        fn reading_any_body_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(c) = parse_changes(&body) {
                for (i, n) in c.value.iter().enumerate() {
                    let _ = n.user_id(i);
                }
            }
            let _ = parse_lifecycle(&body);
        }

        #[test]
        fn dropping_trailing_commas_keeps_valid_json_as_it_is(s in "[a-z0-9 ,\\[\\]{}\":]{0,60}") {
            if serde_json::from_str::<serde_json::Value>(&s).is_ok() {
                proptest::prop_assert_eq!(&*without_trailing_commas(s.as_bytes()), s.as_bytes());
            }
        }
    }
}
