//! The API of a node that is not active: `/healthz` (alive), `/readyz`
//! (503, with its role, the lease holder and its lag, so a load balancer
//! sends traffic to the active node), `/metrics`; every other request is
//! redirected (307, method and body kept) to the same path on the active
//! node's advertised URL, or answered 503 while no node holds the lease.
//!
//! Why reads are redirected too (docs/cluster.md): a standby holds the
//! store but not the engine and router the active runs in memory, so its
//! answers would be behind and missing what only the active computes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::status::ClusterStatus;
use crate::api::model::{Check, Readiness};
use crate::api::routes::METRICS_CONTENT_TYPE;

/// The standby's router.
pub fn router(status: Arc<ClusterStatus>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(redirect)
        .with_state(status)
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(status): State<Arc<ClusterStatus>>) -> Response {
    let out = status.out();
    let detail = match (&out.lease_holder, &out.nats.error) {
        (_, Some(error)) if !out.nats.connected => {
            format!("{}: NATS is not reachable: {error}", out.role)
        }
        (Some(holder), _) if holder.node_id != out.node_id => format!(
            "{}: node {} is active ({}); this node is {} records behind the log",
            out.role, holder.node_id, holder.api_url, out.lag_records
        ),
        _ => format!("{}: no node is active yet", out.role),
    };
    let readiness = Readiness {
        ready: false,
        checks: vec![Check {
            name: "cluster".into(),
            ok: false,
            detail,
        }],
        tasks: Vec::new(),
        poll: None,
        directory_poll: None,
        permissions: None,
        subscriptions: None,
        cluster: Some(out),
    };
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(readiness)).into_response()
}

async fn metrics(State(status): State<Arc<ClusterStatus>>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        status.render_metrics(),
    )
        .into_response()
}

async fn redirect(State(status): State<Arc<ClusterStatus>>, request: Request) -> Response {
    let out = status.out();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match out.lease_holder {
        Some(holder) if holder.node_id != out.node_id => {
            let location = format!("{}{}", holder.api_url.trim_end_matches('/'), path_and_query);
            let body = json!({
                "error": {
                    "code": "standby",
                    "message": format!(
                        "this node ({}) is a standby; node {} is active: send requests to {}",
                        out.node_id, holder.node_id, holder.api_url
                    ),
                },
                "active": {"node_id": holder.node_id, "api_url": holder.api_url},
            });
            let mut response = (StatusCode::TEMPORARY_REDIRECT, axum::Json(body)).into_response();
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    response.headers_mut().insert(header::LOCATION, value);
                    response
                }
                // A holder's URL that cannot be a header: say so rather
                // than redirect nowhere.
                Err(_) => no_active(&out.node_id, "the active node's advertised URL is unusable"),
            }
        }
        _ => no_active(
            &out.node_id,
            "no node is active yet (a takeover is under way)",
        ),
    }
}

fn no_active(node_id: &str, why: &str) -> Response {
    let body = json!({
        "error": {
            "code": "no_active",
            "message": format!("this node ({node_id}) is a standby and {why}; try again in a moment"),
        },
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::api::model::LeaseHolderOut;
    use crate::stop::Stop;

    async fn serve(status: Arc<ClusterStatus>) -> (String, crate::stop::StopHandle) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (handle, stop) = Stop::new();
        tokio::spawn(crate::api::serve(listener, router(status), stop));
        (format!("http://{addr}"), handle)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_standby_redirects_to_the_active_and_says_why_it_is_not_ready() {
        let status = Arc::new(ClusterStatus::new("node-b", "contoso"));
        status.set_role(crate::daemon::cluster::status::Role::Standby);
        let (base, _stop) = serve(Arc::clone(&status)).await;
        let client = client();

        // Nobody holds the lease yet: 503, try again.
        let answer = client
            .put(format!("{base}/v1/agents/a1/status"))
            .body(r#"{"status":"Available"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["retry-after"], "1");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "no_active");

        status.set_holder(Some(LeaseHolderOut {
            node_id: "node-a".into(),
            api_url: "http://10.0.0.5:8080/".into(),
            since: Utc::now(),
        }));
        status.set_position(7);
        status.set_log_last(9);
        let answer = client
            .put(format!("{base}/v1/agents/a1/status?x=1"))
            .body(r#"{"status":"Available"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 307);
        assert_eq!(
            answer.headers()["location"],
            "http://10.0.0.5:8080/v1/agents/a1/status?x=1"
        );
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "standby");
        assert_eq!(body["active"]["node_id"], "node-a");

        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let ready: Readiness = ready.json().await.unwrap();
        let cluster = ready.cluster.unwrap();
        assert_eq!((cluster.role.as_str(), cluster.lag_records), ("standby", 2));
        assert!(ready.checks[0].detail.contains("node node-a is active"));

        let alive = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(alive.status(), 200);
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains("presence_sync_cluster_lag_records{node=\"node-b\"} 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn without_nats_readyz_says_so() {
        let status = Arc::new(ClusterStatus::new("node-c", "contoso"));
        status.nats_failed("cannot connect to NATS at nats://127.0.0.1:14999: refused");
        let (base, _stop) = serve(status).await;
        let ready: Readiness = client()
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            ready.checks[0].detail.contains("NATS is not reachable"),
            "{}",
            ready.checks[0].detail
        );
    }

    #[tokio::test]
    async fn a_lease_this_node_still_holds_from_before_is_not_a_redirect_to_itself() {
        let status = Arc::new(ClusterStatus::new("node-a", "contoso"));
        status.set_holder(Some(LeaseHolderOut {
            node_id: "node-a".into(),
            api_url: "http://127.0.0.1:1/".into(),
            since: Utc::now(),
        }));
        let (base, _stop) = serve(status).await;
        let answer = client()
            .get(format!("{base}/v1/agents"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
    }
}
