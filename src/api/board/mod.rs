//! The status board (SPEC §3.1): a web page for supervisors at `/`, served
//! from files compiled into the binary (`index.html`, `board.js`,
//! `board.css`: no CDN, no build step), and the security headers every
//! answer of the listener carries. The page signs in with the API token or
//! the viewer token, keeps it in the tab's session storage and sends it only
//! in the `Authorization` header of `fetch()`; it reads the API's JSON
//! routes and stays current with [`stream`], `GET /v1/board/stream`.
//!
//! The page's assets are not API routes (they need no token and have no
//! JSON body), so they have their own table, [`ASSETS`], merged beside the
//! route table's router like the receivers.

pub mod stream;

use std::sync::OnceLock;

use aws_lc_rs::digest::{SHA256, digest};
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the page.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file the board serves. The page names the others by these paths.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("index.html"),
    },
    Asset {
        path: "/board/board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("board.js"),
    },
    Asset {
        path: "/board/board.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("board.css"),
    },
];

/// The Content-Security-Policy of every answer: scripts, styles and
/// connections from this origin only (no inline script or style, no
/// `eval`), images from here or `data:`, no plugins, no `<base>`, no form
/// posts, and no framing by anyone.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The headers set on every answer of the listener (the board's files,
/// the API's JSON, errors), unless the handler set its own.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
];

/// Adds [`SECURITY_HEADERS`] to every response.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// Each asset's entity tag: a digest of its bytes, so a new build's files
/// are fetched again and an unchanged one is answered with 304.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let hash = digest(&SHA256, asset.body);
                let hex: String = hash.as_ref()[..12]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The board's files, each at its path.
pub(crate) fn router() -> Router {
    let mut router = Router::new();
    for (index, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(index, &headers) }),
        );
    }
    router
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), etags().get(index)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let common = [
        (header::ETAG, etag_value),
        // Revalidate every time: a daemon upgrade changes the files.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.path == path).unwrap();
        std::str::from_utf8(asset.body).unwrap()
    }

    /// The CSP forbids inline script and style: the page has neither, and
    /// the script never builds HTML from strings.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = text("/");
        assert!(html.contains(r#"<script type="module" src="/board/board.js"></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="/board/board.css">"#));
        assert_eq!(html.matches("<script").count(), 1, "one external script");
        assert!(!html.contains("<style"), "no inline style element");
        assert!(!html.contains("style="), "no style attribute");
        for handler in ["onclick", "onload", "onerror", "onsubmit", "javascript:"] {
            assert!(
                !html.to_lowercase().contains(handler),
                "{handler} in the page"
            );
        }
        let js = text("/board/board.js");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            ".style.",
            "setAttribute('style'",
            "localStorage",
        ] {
            assert!(!js.contains(sink), "board.js uses {sink}");
        }
        // The token travels in a header, never in a URL: its input has no
        // name, so not even a form sent without the script (which the CSP's
        // `form-action 'none'` stops too) could carry it.
        assert!(html.contains(r#"<input id="token" type="password""#));
        for input in html.split("<input").skip(1) {
            let tag = input.split('>').next().unwrap_or_default();
            assert!(!tag.contains(" name="), "a named input: <input{tag}>");
        }
        assert!(js.contains("Authorization"));
        assert!(!js.contains("?token") && !js.contains("&token"));
    }

    #[test]
    fn etags_differ_per_file() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        for (i, a) in tags.iter().enumerate() {
            assert!(
                a.starts_with('"') && a.ends_with('"') && a.len() == 26,
                "{a}"
            );
            assert!(tags[i + 1..].iter().all(|b| b != a));
        }
    }
}
