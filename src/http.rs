//! Outbound HTTP plumbing shared by the adapters that call out: the Graph
//! client ([`crate::graph`]) and the webhook sink ([`crate::webhook`]).
//!
//! - [`client`]: a reqwest client bounded by one timeout, following no
//!   redirects;
//! - [`transport_message`]: a failed request in words, without its URL;
//! - [`parse_retry_after`]: a `Retry-After` header as a wait.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A client whose connects and whole requests are bounded by `timeout`,
/// and which follows no redirects: Graph's paging links are followed by
/// hand after checking their host, and a redirected webhook POST may come
/// back as a GET whose 2xx would count as delivered.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Why the way out to Graph cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("cannot read the CA file `{path}`: {error}")]
    CaFile {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("the CA file `{path}` holds no PEM certificate: {why}")]
    CaPem {
        path: std::path::PathBuf,
        why: String,
    },
    #[error("the proxy `{host}` cannot be used: {why}")]
    Proxy { host: String, why: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// [`client`] with the way out the config gives: its proxy (the
/// environment's `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`
/// otherwise; `NO_PROXY` either way) and the CA file's certificates trusted
/// besides the system's.
pub fn client_with(
    timeout: Duration,
    outbound: &crate::config::Outbound,
) -> Result<reqwest::Client, OutboundError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &outbound.ca_file {
        let pem = std::fs::read(path).map_err(|error| OutboundError::CaFile {
            path: path.clone(),
            error,
        })?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OutboundError::CaPem {
                path: path.clone(),
                why: e.to_string(),
            })?;
        if certificates.is_empty() {
            return Err(OutboundError::CaPem {
                path: path.clone(),
                why: "no `BEGIN CERTIFICATE` block".into(),
            });
        }
        builder = builder.tls_certs_merge(certificates);
    }
    if let Some(url) = &outbound.proxy {
        let proxy = reqwest::Proxy::all(url.as_str()).map_err(|e| OutboundError::Proxy {
            host: proxy_in_use(outbound).unwrap_or_default(),
            why: e.to_string(),
        })?;
        builder = builder.proxy(proxy.no_proxy(reqwest::NoProxy::from_env()));
    }
    builder
        .build()
        .map_err(|e| OutboundError::Client(transport_message(&e)))
}

/// The proxy Graph and Entra are reached through, as `host:port` (no
/// credentials): the config's, else the environment's `HTTPS_PROXY` or
/// `ALL_PROXY` (either case).
pub fn proxy_in_use(outbound: &crate::config::Outbound) -> Option<String> {
    let url = outbound.proxy.clone().or_else(|| {
        ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    })?;
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    Some(authority.rsplit('@').next().unwrap_or_default().to_owned())
}

/// A reqwest error in words, without the URL's query (it may hold a secret).
pub(crate) fn transport_message(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut message = what.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// `Retry-After` as a wait: seconds (`120`), decimal seconds (`2.128`, as
/// Graph sends), or an HTTP date, measured from `now` (a date in the past
/// is no wait).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // Duration::from_secs_f64 panics on these; a header must not.
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(secs.min(u32::MAX as f64)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn retry_after_takes_seconds_decimals_and_dates() {
        let now = Utc::now();
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        let in_90s = (now + chrono::Duration::seconds(90))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let wait = parse_retry_after(&in_90s, now).unwrap();
        assert!(
            wait > Duration::from_secs(88) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means no wait"
        );
        for bad in ["", "soon", "-1", "NaN", "inf", "1e400"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn retry_after_never_panics(value in ".{0,40}") {
            let _ = parse_retry_after(&value, Utc::now());
        }
    }
}
