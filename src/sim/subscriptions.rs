//! Presence subscriptions with Graph's rules (FACTS.md "Change
//! notifications"): delegated callers only, at most 650 users, each a user
//! of the tenant, an expiry in the future and at most an hour away, one
//! presence subscription per signed-in user per app, rich ones only with an
//! RSA certificate, and the `/subscriptions` write quota of 1,000 per 20 s
//! per app.
//!
//! Pure: no I/O and no clock. The validation handshake to the notification
//! URLs is the adapter's (it happens between [`Subscriptions::check_new`]
//! and [`Subscriptions::insert`], with no lock held), as is delivery.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::time::Timestamp;

/// Users one presence subscription may watch.
pub const MAX_IDS: usize = 650;
/// The longest a presence subscription may live.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// `/subscriptions` writes per app per window.
pub const WRITE_QUOTA: usize = 1000;
pub const WRITE_WINDOW: Duration = Duration::from_secs(20);

/// A rich subscription's certificate: what notifications are encrypted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    pub certificate_der: Vec<u8>,
    /// The caller's name for it (`encryptionCertificateId`).
    pub certificate_id: String,
}

/// A create request, read from its JSON by the adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSubscription {
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub resource: String,
    pub expires_at: Option<Timestamp>,
    pub client_state: Option<String>,
    pub include_resource_data: bool,
    /// Base64 DER, as sent.
    pub encryption_certificate: Option<String>,
    pub encryption_certificate_id: Option<String>,
}

/// A live subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub user_ids: Vec<String>,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: Option<String>,
    pub expires_at: Timestamp,
    /// The signed-in user who created it (`creatorId`, their object id).
    pub creator_id: String,
    pub application_id: String,
    pub encryption: Option<Encryption>,
}

/// Who calls: the app, and the signed-in user of a delegated token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub application_id: String,
    /// `None` for an app-only token.
    pub user_oid: Option<String>,
}

/// Why a subscription call was refused; the adapter maps each to Graph's
/// status and error body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error(
        "Operation: Create; Exception: [Status Code: Forbidden; Reason: presence subscriptions need a delegated token (a signed-in user); an application-only token cannot create them]"
    )]
    AppOnly,
    #[error("{0}")]
    BadRequest(String),
    #[error("These ids are not users of the tenant: {}", .0.join(", "))]
    UnknownUsers(Vec<String>),
    #[error(
        "A presence subscription already exists for this user and application ({0}); renew it or delete it first."
    )]
    Conflict(String),
    #[error(
        "Operation: Create; Exception: [Status Code: Forbidden; Reason: the /subscriptions write quota of {WRITE_QUOTA} per {}s for this application is used up]",
        WRITE_WINDOW.as_secs()
    )]
    Quota,
    #[error("The object was not found: subscription '{0}'.")]
    NotFound(String),
}

fn bad(text: impl Into<String>) -> SubscriptionError {
    SubscriptionError::BadRequest(text.into())
}

/// Reads a presence resource: `/communications/presences/{id}` or
/// `/communications/presences?$filter=id in ('id1','id2',...)`, with or
/// without the leading slash. Returns the ids in order, without repeats.
pub fn parse_resource(resource: &str) -> Result<Vec<String>, SubscriptionError> {
    let text = resource.trim().trim_start_matches('/');
    let unsupported = || {
        bad(format!(
            "Resource '{resource}' is not supported; use /communications/presences?$filter=id in ('id1','id2') or /communications/presences/{{id}}."
        ))
    };
    let rest = text
        .strip_prefix("communications/presences")
        .ok_or_else(unsupported)?;
    let ids: Vec<String> = if let Some(id) = rest.strip_prefix('/') {
        if id.is_empty() || id.contains(['/', '?', '\'', ' ']) {
            return Err(unsupported());
        }
        vec![id.to_string()]
    } else if let Some(query) = rest.strip_prefix('?') {
        let filter = query.strip_prefix("$filter=").ok_or_else(unsupported)?;
        let list = filter
            .trim()
            .strip_prefix("id")
            .map(str::trim_start)
            .and_then(|f| f.strip_prefix("in"))
            .map(str::trim)
            .and_then(|f| f.strip_prefix('('))
            .and_then(|f| f.strip_suffix(')'))
            .ok_or_else(unsupported)?;
        let mut ids = Vec::new();
        for item in list.split(',') {
            let id = item
                .trim()
                .strip_prefix('\'')
                .and_then(|i| i.strip_suffix('\''))
                .filter(|i| !i.is_empty() && !i.contains('\''))
                .ok_or_else(unsupported)?;
            ids.push(id.to_string());
        }
        ids
    } else {
        return Err(unsupported());
    };
    let mut unique: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.iter().any(|u| u.eq_ignore_ascii_case(&id)) {
            unique.push(id);
        }
    }
    Ok(unique)
}

/// A create request that passed every rule, waiting for its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub subscription: Subscription,
}

/// Every subscription, and each app's recent writes.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions {
    by_id: BTreeMap<String, Subscription>,
    writes: HashMap<String, VecDeque<Timestamp>>,
}

impl Subscriptions {
    /// Counts a `/subscriptions` write by `app`, or refuses it over quota.
    pub fn admit_write(&mut self, app: &str, now: Timestamp) -> Result<(), SubscriptionError> {
        let writes = self.writes.entry(app.to_lowercase()).or_default();
        while writes.front().is_some_and(|t| now >= *t + WRITE_WINDOW) {
            writes.pop_front();
        }
        if writes.len() >= WRITE_QUOTA {
            return Err(SubscriptionError::Quota);
        }
        writes.push_back(now);
        Ok(())
    }

    /// Checks a create request against every rule but the handshake.
    /// `is_user` says whether an id is a user of the tenant;
    /// `certificate_ok` reads a certificate's DER (an RSA key of 2048 to
    /// 4096 bits) or says what is wrong with it. `id` is the new
    /// subscription's id, drawn by the caller.
    pub fn check_new(
        &mut self,
        caller: &Caller,
        new: NewSubscription,
        id: String,
        is_user: impl Fn(&str) -> bool,
        certificate_ok: impl Fn(&[u8]) -> Result<(), String>,
        now: Timestamp,
    ) -> Result<Checked, SubscriptionError> {
        let Some(creator) = caller.user_oid.clone() else {
            return Err(SubscriptionError::AppOnly);
        };
        self.admit_write(&caller.application_id, now)?;
        if new.change_type != "updated" {
            return Err(bad(format!(
                "changeType '{}' is not supported for presence; use 'updated'.",
                new.change_type
            )));
        }
        for (name, url) in [
            ("notificationUrl", Some(&new.notification_url)),
            ("lifecycleNotificationUrl", new.lifecycle_url.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(bad(format!(
                    "{name} '{url}' must be an absolute http(s) URL."
                )));
            }
        }
        let user_ids = parse_resource(&new.resource)?;
        if user_ids.len() > MAX_IDS {
            return Err(bad(format!(
                "Too many ids in the resource: {} (at most {MAX_IDS}).",
                user_ids.len()
            )));
        }
        let unknown: Vec<String> = user_ids.iter().filter(|id| !is_user(id)).cloned().collect();
        if !unknown.is_empty() {
            return Err(SubscriptionError::UnknownUsers(unknown));
        }
        let expires_at = check_expiry(new.expires_at, now)?;
        if let Some(state) = &new.client_state
            && state.len() > 128
        {
            return Err(bad("clientState may be at most 128 characters."));
        }
        let encryption = if new.include_resource_data {
            let (Some(certificate), Some(certificate_id)) = (
                new.encryption_certificate
                    .as_deref()
                    .filter(|c| !c.is_empty()),
                new.encryption_certificate_id
                    .as_deref()
                    .filter(|c| !c.is_empty()),
            ) else {
                return Err(bad(
                    "includeResourceData needs encryptionCertificate (base64 DER of an X.509 certificate with an RSA key) and encryptionCertificateId.",
                ));
            };
            use base64::Engine;
            let der = base64::engine::general_purpose::STANDARD
                .decode(certificate.trim())
                .map_err(|_| bad("encryptionCertificate is not base64."))?;
            certificate_ok(&der)
                .map_err(|why| bad(format!("encryptionCertificate is not usable: {why}.")))?;
            Some(Encryption {
                certificate_der: der,
                certificate_id: certificate_id.to_string(),
            })
        } else {
            None
        };
        self.conflict(&caller.application_id, &creator, now)?;
        Ok(Checked {
            subscription: Subscription {
                id,
                resource: new.resource,
                user_ids,
                change_type: new.change_type,
                notification_url: new.notification_url,
                lifecycle_url: new.lifecycle_url,
                client_state: new.client_state,
                expires_at,
                creator_id: creator,
                application_id: caller.application_id.clone(),
                encryption,
            },
        })
    }

    fn conflict(&self, app: &str, creator: &str, now: Timestamp) -> Result<(), SubscriptionError> {
        match self.by_id.values().find(|s| {
            now < s.expires_at
                && s.application_id.eq_ignore_ascii_case(app)
                && s.creator_id.eq_ignore_ascii_case(creator)
        }) {
            Some(existing) => Err(SubscriptionError::Conflict(existing.id.clone())),
            None => Ok(()),
        }
    }

    /// Adds a checked subscription once its handshake passed; the
    /// one-per-user rule is checked again, as another create may have won.
    pub fn insert(
        &mut self,
        checked: Checked,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        let s = checked.subscription;
        self.conflict(&s.application_id, &s.creator_id, now)?;
        self.by_id.insert(s.id.clone(), s.clone());
        Ok(s)
    }

    /// A live subscription of `caller` (another's is not found).
    pub fn get(
        &mut self,
        caller: &Caller,
        id: &str,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        self.remove_expired(now);
        self.by_id
            .get(id)
            .filter(|s| owned_by(s, caller))
            .cloned()
            .ok_or_else(|| SubscriptionError::NotFound(id.to_string()))
    }

    /// The caller's live subscriptions.
    pub fn list(&mut self, caller: &Caller, now: Timestamp) -> Vec<Subscription> {
        self.remove_expired(now);
        self.by_id
            .values()
            .filter(|s| owned_by(s, caller))
            .cloned()
            .collect()
    }

    /// `PATCH {expirationDateTime}`: a new expiry, with the same rules.
    pub fn renew(
        &mut self,
        caller: &Caller,
        id: &str,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        self.get(caller, id, now)?;
        self.admit_write(&caller.application_id, now)?;
        let expires_at = check_expiry(expires_at, now)?;
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SubscriptionError::NotFound(id.to_string()))?;
        s.expires_at = expires_at;
        Ok(s.clone())
    }

    /// `POST .../reauthorize`: the subscription is the caller's and alive.
    pub fn reauthorize(
        &mut self,
        caller: &Caller,
        id: &str,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        let s = self.get(caller, id, now)?;
        self.admit_write(&caller.application_id, now)?;
        Ok(s)
    }

    /// `DELETE`.
    pub fn delete(
        &mut self,
        caller: &Caller,
        id: &str,
        now: Timestamp,
    ) -> Result<(), SubscriptionError> {
        self.get(caller, id, now)?;
        self.admit_write(&caller.application_id, now)?;
        self.by_id.remove(id);
        Ok(())
    }

    /// Expired subscriptions are gone: they deliver nothing and no longer
    /// list.
    pub fn remove_expired(&mut self, now: Timestamp) {
        self.by_id.retain(|_, s| now < s.expires_at);
    }

    /// Removes every subscription `creator_id` made (their account was
    /// revoked) and returns them, for their `subscriptionRemoved`.
    pub fn remove_by_creator(&mut self, creator_id: &str) -> Vec<Subscription> {
        let ids: Vec<String> = self
            .by_id
            .values()
            .filter(|s| s.creator_id.eq_ignore_ascii_case(creator_id))
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.by_id.remove(id)).collect()
    }

    /// Any live subscription by id, whoever owns it (control routes).
    pub fn by_id(&self, id: &str, now: Timestamp) -> Option<&Subscription> {
        self.by_id.get(id).filter(|s| now < s.expires_at)
    }

    /// Every live subscription.
    pub fn all(&self, now: Timestamp) -> impl Iterator<Item = &Subscription> {
        self.by_id.values().filter(move |s| now < s.expires_at)
    }
}

fn owned_by(s: &Subscription, caller: &Caller) -> bool {
    s.application_id
        .eq_ignore_ascii_case(&caller.application_id)
        && caller
            .user_oid
            .as_deref()
            .is_some_and(|oid| s.creator_id.eq_ignore_ascii_case(oid))
}

fn check_expiry(
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<Timestamp, SubscriptionError> {
    let Some(expires_at) = expires_at else {
        return Err(bad(
            "expirationDateTime is required, e.g. 2024-01-01T10:00:00.0000000Z, at most 60 minutes from now.",
        ));
    };
    if expires_at <= now {
        return Err(bad("expirationDateTime must be in the future."));
    }
    // A little slack for the caller's clock and the request's travel.
    if expires_at > now + MAX_LIFETIME + Duration::from_secs(60) {
        return Err(bad(format!(
            "expirationDateTime is too far in the future: presence subscriptions last at most 60 minutes (until {}).",
            (now + MAX_LIFETIME).to_utc().format("%Y-%m-%dT%H:%M:%SZ")
        )));
    }
    Ok(expires_at)
}

#[cfg(test)]
mod tests;
