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
