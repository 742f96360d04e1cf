//! The status board's first load, made as a browser makes it once the
//! agents are registered: the page, then its script and stylesheet at once;
//! then the first page of agents (50, as the page asks), the queues and the
//! health report at once; then the first update of the live stream. Beside
//! it, every agent unpaged (`GET /v1/agents` without parameters): what the
//! page does not load.

use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::drive::Http;

/// Milliseconds and bytes of each step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BoardLoad {
    pub page_ms: f64,
    pub page_bytes: u64,
    pub data_ms: f64,
    pub data_bytes: u64,
    pub stream_ms: f64,
    pub total_ms: f64,
    pub all_agents_ms: f64,
    pub all_agents_bytes: u64,
}

/// The bytes of `GET path` (with the token when `token`); an error unless
/// 2xx (or the health report's 503, which carries the report).
async fn get(http: &Http, path: &str, token: bool) -> anyhow::Result<u64> {
    let mut request = http.client.get(format!("{}{path}", http.daemon));
    if token {
        request = request.bearer_auth(&http.token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status();
    let report_not_ready = path == "/v1/health" && status.as_u16() == 503;
    if !(status.is_success() || report_not_ready) {
        bail!("GET {path}: {status}");
    }
    Ok(response.bytes().await?.len() as u64)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub async fn first_load(http: &Http) -> anyhow::Result<BoardLoad> {
    let start = Instant::now();
    let html = get(http, "/", false).await?;
    let (js, css) = tokio::try_join!(
        get(http, "/board/board.js", false),
        get(http, "/board/board.css", false)
    )?;
    let page_ms = ms(start);

    let data = Instant::now();
    let (agents, queues, health) = tokio::try_join!(
        get(http, "/v1/agents?limit=50", true),
        get(http, "/v1/queues", true),
        get(http, "/v1/health", true)
    )?;
    let data_ms = ms(data);

    let stream = Instant::now();
    let mut response = http
        .client
        .get(format!("{}/v1/board/stream", http.daemon))
        .bearer_auth(&http.token)
        .send()
        .await
        .context("GET /v1/board/stream")?;
    if !response.status().is_success() {
        bail!("GET /v1/board/stream: {}", response.status());
    }
    let mut seen = Vec::new();
    while !seen.windows(2).any(|w| w == b"\n\n") {
        match response.chunk().await? {
            Some(chunk) => seen.extend_from_slice(&chunk),
            None => bail!("the board's stream ended before its first update"),
        }
    }
    drop(response);
    let stream_ms = ms(stream);
    let total_ms = ms(start);

    let all = Instant::now();
    let all_agents_bytes = get(http, "/v1/agents", true).await?;
    Ok(BoardLoad {
        page_ms,
        page_bytes: html + js + css,
        data_ms,
        data_bytes: agents + queues + health,
        stream_ms,
        total_ms,
        all_agents_ms: ms(all),
        all_agents_bytes,
    })
}
