//! `[subscriptions]`: Teams presence as change notifications rather than
//! only polling. Graph takes presence subscriptions with a delegated token
//! only, so the daemon signs in *service accounts* (`presence-sync login`)
//! and subscribes as them, up to 650 users a subscription; polling stays on
//! as reconciliation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::SecretSource;

/// `[subscriptions]`, validated. When `enabled` is false the other keys
/// keep their defaults and nothing subscribes.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionsConfig {
    pub enabled: bool,
    /// The service accounts' UPNs, as written (trimmed); no two the same
    /// (compared without case). At least one when enabled.
    pub accounts: Vec<String>,
    /// Where Graph posts change notifications: a public https URL the
    /// reverse proxy maps to the receiver. `Some` when enabled.
    pub notification_url: Option<Url>,
    /// Where Graph posts lifecycle events (reauthorization, removal,
    /// missed notifications). `Some` when enabled.
    pub lifecycle_url: Option<Url>,
    /// The receiver's own socket.
    pub listen: SocketAddr,
    /// The `clientState` secret every notification must carry: from
    /// `client_state_file`, or the systemd credential
    /// `subscription-client-state`.
    pub client_state: SecretSource,
    /// With it, subscriptions are rich (`includeResourceData`): Graph
    /// encrypts the presence into each notification for this certificate.
    pub encryption: Option<EncryptionFiles>,
    /// How often the subscriptions are compared with what should be.
    pub reconcile_interval: Duration,
    /// The expiry asked of each subscription (Graph allows at most 60 min).
    pub lifetime: Duration,
    /// A subscription is renewed this long before it expires.
    pub renew_before: Duration,
    /// Users per subscription, 1 to 650 (Graph's limit).
    pub max_users_per_subscription: usize,
    /// The receiver's body limit, in bytes.
    pub max_body: usize,
}

/// The certificate Graph encrypts rich notifications for, and its key.
#[derive(Clone, Debug, PartialEq)]
pub struct EncryptionFiles {
    /// PEM certificate; public, sent to Graph as base64 DER.
    pub certificate_file: PathBuf,
    /// PEM private key (RSA), a secret.
    pub key: SecretSource,
}

impl SubscriptionsConfig {
    /// The secrets to read at start (none while disabled).
    pub fn secrets(&self) -> Vec<&SecretSource> {
        if !self.enabled {
            return Vec::new();
        }
        let mut secrets = vec![&self.client_state];
        if let Some(encryption) = &self.encryption {
            secrets.push(&encryption.key);
        }
        secrets
    }

    /// Whether `upn` is one of the configured accounts (without case).
    pub fn has_account(&self, upn: &str) -> bool {
        self.accounts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(upn.trim()))
    }
}
