//! `[subscriptions]`: defaults, required keys when enabled, value checks.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;

use super::super::raw::{RawSubscriptions, Text};
use super::super::secret::{SecretLocation, SecretSource};
use super::super::subscriptions::{EncryptionFiles, SubscriptionsConfig};
use super::Ctx;
use crate::duration::format_duration;

const DEFAULT_LISTEN: &str = "127.0.0.1:8790";
const CLIENT_STATE_CREDENTIAL: &str = "subscription-client-state";
const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
const RECONCILE_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(5), Duration::from_secs(24 * 3600));
const DEFAULT_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// Graph keeps a presence subscription at most an hour; under a few
/// minutes the daemon would do little but renew.
const LIFETIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(5 * 60), Duration::from_secs(60 * 60));
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);
/// A renewal must have time to be retried before the expiry.
const RENEW_BEFORE_MIN: Duration = Duration::from_secs(30);
/// Graph's limit of users in one presence subscription's `$filter`.
pub(crate) const MAX_USERS_PER_SUBSCRIPTION: i64 = 650;
const DEFAULT_MAX_BODY: usize = 1024 * 1024;
const MAX_BODY_RANGE: (usize, usize) = (1024, 64 * 1024 * 1024);

pub(in crate::config) fn subscriptions(
    raw: RawSubscriptions,
    ctx: &mut Ctx<'_>,
) -> Option<SubscriptionsConfig> {
    ctx.inline_secret(
        &["subscriptions", "client_state"],
        raw.client_state.is_some(),
        "put the clientState secret in a file only the service can read and set \
         `client_state_file`, or leave it unset and give the systemd credential \
         `subscription-client-state` (LoadCredential=)",
    );
    let enabled = raw.enabled.unwrap_or(false);
    let accounts = accounts(raw.accounts, enabled, ctx);
    let notification_url = public_url(
        &["subscriptions", "notification_url"],
        raw.notification_url,
        enabled,
        "https://presence.example.com/notifications",
        ctx,
    );
    let lifecycle_url = public_url(
        &["subscriptions", "lifecycle_url"],
        raw.lifecycle_url,
        enabled,
        "https://presence.example.com/lifecycle",
        ctx,
    );
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = match listen_text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            ctx.error(
                &["subscriptions", "listen"],
                format!(
                    "`subscriptions.listen` = \"{listen_text}\" is not an IP address and port, \
                     e.g. \"{DEFAULT_LISTEN}\" or \"[::1]:8790\""
                ),
            );
            None
        }
    };
    let client_state = ctx.secret_source(
        ["subscriptions", "client_state_file"],
        raw.client_state_file,
        "the subscriptions' clientState secret",
        CLIENT_STATE_CREDENTIAL,
    );
    let encryption = encryption(
        raw.encryption_certificate_file,
        raw.encryption_key_file,
        ctx,
    );
    let reconcile_interval = ctx.duration(
        &["subscriptions", "reconcile_interval"],
        raw.reconcile_interval,
        DEFAULT_RECONCILE_INTERVAL,
        RECONCILE_INTERVAL_RANGE,
    );
    let lifetime = ctx.duration(
        &["subscriptions", "lifetime"],
        raw.lifetime,
        DEFAULT_LIFETIME,
        LIFETIME_RANGE,
    );
    let renew_before_key = ["subscriptions", "renew_before"];
    let renew_before_text = raw.renew_before.as_ref().map(|t| t.0.clone());
    let renew_before = ctx.duration(
        &renew_before_key,
        raw.renew_before,
        DEFAULT_RENEW_BEFORE,
        (RENEW_BEFORE_MIN, Duration::MAX),
    );
    let renew_before = match (lifetime, renew_before) {
        (Some(lifetime), Some(before)) if before >= lifetime => {
            let shown = renew_before_text.unwrap_or_else(|| format_duration(before));
            ctx.error(
                &renew_before_key,
                format!(
                    "`subscriptions.renew_before` = \"{shown}\" is not shorter than \
                     `subscriptions.lifetime` ({}): a subscription would be renewed as soon as \
                     it is made; use e.g. \"10m\"",
                    format_duration(lifetime)
                ),
            );
            None
        }
        (_, before) => before,
    };
    let max_users = ctx.integer(
        &["subscriptions", "max_users_per_subscription"],
        raw.max_users_per_subscription,
        MAX_USERS_PER_SUBSCRIPTION,
        1,
        MAX_USERS_PER_SUBSCRIPTION,
    );
    let max_body = max_body(raw.max_body, ctx);
    Some(SubscriptionsConfig {
        enabled,
        accounts: accounts?,
        notification_url: notification_url?,
        lifecycle_url: lifecycle_url?,
        listen: listen?,
        client_state: client_state?,
        encryption: encryption?,
        reconcile_interval: reconcile_interval?,
        lifetime: lifetime?,
        renew_before: renew_before?,
        max_users_per_subscription: usize::try_from(max_users?).ok()?,
        max_body: max_body?,
    })
}

fn accounts(list: Option<Vec<String>>, enabled: bool, ctx: &mut Ctx<'_>) -> Option<Vec<String>> {
    let key = ["subscriptions", "accounts"];
    let list = list.unwrap_or_default();
    if enabled && list.is_empty() {
        ctx.error(
            &key,
            "`subscriptions.accounts` is empty: subscriptions need at least one service account, \
             e.g. accounts = [\"presence-sync-1@contoso.onmicrosoft.com\"], each signed in with \
             `presence-sync login`",
        );
        return None;
    }
    let mut ok = true;
    let mut seen: Vec<String> = Vec::new();
    for upn in &list {
        let upn = upn.trim();
        if let Err(why) = check_upn(upn) {
            ctx.error(&key, format!("`subscriptions.accounts`: \"{upn}\" {why}"));
            ok = false;
        } else if seen.iter().any(|s| s.eq_ignore_ascii_case(upn)) {
            ctx.error(
                &key,
                format!("`subscriptions.accounts`: \"{upn}\" is listed twice"),
            );
            ok = false;
        } else {
            seen.push(upn.to_owned());
        }
    }
    ok.then_some(seen)
}

/// A user principal name: `local@domain`, no spaces, one `@`.
pub(crate) fn check_upn(upn: &str) -> Result<(), &'static str> {
    let Some((local, domain)) = upn.split_once('@') else {
        return Err("is not a user principal name: write it as user@domain");
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || upn.len() > 256
        || upn.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("is not a user principal name: write it as user@domain");
    }
    Ok(())
}

/// A URL Graph posts to: https (plain http only to a loopback host, for
/// tests with the simulator), no credentials, no fragment. Required when
/// enabled.
fn public_url(
    key: &[&str],
    value: Option<String>,
    enabled: bool,
    example: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Option<Url>> {
    let name = key.join(".");
    let Some(text) = value else {
        if enabled {
            ctx.error(
                key,
                format!(
                    "missing key `{name}`: subscriptions need the public https URL the reverse \
                     proxy maps to the receiver, e.g. \"{example}\""
                ),
            );
            return None;
        }
        return Some(None);
    };
    match check_notification_url(&text) {
        Ok(url) => Some(Some(url)),
        Err(why) => {
            ctx.error(key, format!("`{name}` = \"{}\": {why}", text.trim()));
            None
        }
    }
}

/// Graph only delivers to https; http is accepted for a loopback host so
/// that tests can run against the simulator.
pub(crate) fn check_notification_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim())
        .map_err(|_| "not a URL: write e.g. \"https://presence.example.com/notifications\"")?;
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host,
        _ => return Err("the URL has no host".into()),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "Graph delivers notifications to https URLs only (plain http only to a \
                 loopback host, for tests): use https"
                    .into(),
            );
        }
        other => return Err(format!("the scheme must be https, not `{other}`")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds a user name or password: Graph proves itself with the \
                    clientState instead"
                .into(),
        );
    }
    if url.fragment().is_some() {
        return Err("the URL has a fragment (`#...`): Graph would not send it".into());
    }
    Ok(url)
}

fn encryption(
    certificate: Option<String>,
    key: Option<String>,
    ctx: &mut Ctx<'_>,
) -> Option<Option<EncryptionFiles>> {
    let cert_key = ["subscriptions", "encryption_certificate_file"];
    let key_key = ["subscriptions", "encryption_key_file"];
    match (certificate, key) {
        (None, None) => Some(None),
        (Some(certificate), Some(key)) => {
            let certificate_file = ctx.path(&cert_key, &certificate);
            let key = ctx.path(&key_key, &key).map(|path| SecretSource {
                purpose: "the notification encryption key",
                location: SecretLocation::File(path),
                origin: ctx.locator.origin(&key_key),
            });
            Some(Some(EncryptionFiles {
                certificate_file: certificate_file?,
                key: key?,
            }))
        }
        (Some(_), None) => {
            ctx.error(
                &cert_key,
                "`subscriptions.encryption_certificate_file` needs `subscriptions.encryption_key_file` \
                 (its PEM private key): set both for rich notifications, or neither",
            );
            None
        }
        (None, Some(_)) => {
            ctx.error(
                &key_key,
                "`subscriptions.encryption_key_file` needs `subscriptions.encryption_certificate_file` \
                 (its PEM certificate): set both for rich notifications, or neither",
            );
            None
        }
    }
}

fn max_body(value: Option<Text>, ctx: &mut Ctx<'_>) -> Option<usize> {
    let key = ["subscriptions", "max_body"];
    let Some(Text(text)) = value else {
        return Some(DEFAULT_MAX_BODY);
    };
    let (min, max) = MAX_BODY_RANGE;
    match parse_size(&text) {
        Ok(bytes) if (min..=max).contains(&bytes) => Some(bytes),
        Ok(_) => {
            ctx.error(
                &key,
                format!(
                    "`subscriptions.max_body` = \"{text}\" is out of range: it must be from 1KiB to 64MiB"
                ),
            );
            None
        }
        Err(why) => {
            ctx.error(&key, format!("`subscriptions.max_body`: {why}"));
            None
        }
    }
}

/// A size: bytes (`65536`) or with a unit, `KiB`, `MiB` (or `KB`, `MB`,
/// taken as the same powers of two, as most admins mean them).
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let bad =
        || format!("\"{trimmed}\" is not a size: write e.g. \"1MiB\", \"512KiB\" or \"65536\"");
    if digits.is_empty() {
        return Err(bad());
    }
    let number: usize = digits.parse().map_err(|_| bad())?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_take_bytes_and_binary_units() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size(" 512 KiB "), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("2mb"), Ok(2 << 20));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1GiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }

    #[test]
    fn notification_urls_are_https_or_loopback_http() {
        assert!(check_notification_url("https://presence.example.com/n").is_ok());
        assert!(check_notification_url("http://127.0.0.1:8790/n").is_ok());
        assert!(check_notification_url("http://[::1]:8790/n").is_ok());
        assert!(check_notification_url("http://localhost/n").is_ok());
        assert!(check_notification_url("http://presence.example.com/n").is_err());
        assert!(check_notification_url("http://10.0.0.1/n").is_err());
        assert!(check_notification_url("ftp://presence.example.com/n").is_err());
        assert!(check_notification_url("https://u:p@presence.example.com/n").is_err());
        assert!(check_notification_url("https://presence.example.com/n#x").is_err());
        assert!(check_notification_url("presence.example.com").is_err());
    }

    #[test]
    fn upns_are_user_at_domain() {
        assert!(check_upn("svc@contoso.onmicrosoft.com").is_ok());
        for bad in [
            "svc",
            "@contoso.com",
            "svc@",
            "svc@contoso",
            "a b@c.com",
            "a@b@c.com",
        ] {
            assert!(check_upn(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn size_parsing_never_panics(text in "\\PC{0,40}") {
            let _ = parse_size(&text);
        }

        #[test]
        fn sizes_in_kib_read_back(n in 0usize..1_000_000) {
            prop_assert_eq!(parse_size(&format!("{n}KiB")), Ok(n * 1024));
        }

        #[test]
        fn url_checking_never_panics(text in "\\PC{0,80}") {
            let _ = check_notification_url(&text);
        }
    }
}
