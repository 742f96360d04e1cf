//! The way out to Graph: the daemon reaches the simulator over HTTPS signed
//! by a test CA it trusts only through `[graph] ca_file`, through a real
//! HTTP CONNECT proxy named by `[graph] proxy`; with the proxy down,
//! `/readyz` says Graph cannot be reached.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::connect_proxy::ConnectProxy;
use common::daemon_kit::{DaemonKit, options, sim_options, until};
use presence_sync::sim::SimOptions;
use presence_sync::sim::tls::TestCa;
use serde_json::Value;

async fn readyz(kit: &DaemonKit) -> (u16, Value) {
    let response = kit
        .http
        .get(format!("{}/readyz", kit.base))
        .send()
        .await
        .expect("readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readyz JSON"))
}

fn graph_check(body: &Value) -> Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == "graph"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_through_a_connect_proxy_over_tls_with_the_test_ca() {
    let ca = TestCa::new("presence-sync test CA").unwrap();
    let server = ca
        .issue_server(
            &["127.0.0.1".parse().unwrap()],
            &["localhost"],
            Utc::now() + chrono::Duration::days(2),
        )
        .unwrap();
    let proxy = ConnectProxy::start().await;
    let proxy_url = proxy.url.clone();
    let ca_pem = ca.certificate().certificate_pem();
    let kit = DaemonKit::start_custom(
        SimOptions {
            tls: Some((vec![server.certificate_der.clone()], server.key_der.clone())),
            ..sim_options(2)
        },
        move |dir, _| {
            std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
            format!("proxy = \"{proxy_url}\"\nca_file = \"ca.pem\"")
        },
        "echo_window = \"10s\"",
        options(),
    )
    .await;
    assert!(kit.sim.base_url.starts_with("https://"));
    until(|| async {
        let (status, body) = readyz(&kit).await;
        status == 200 && graph_check(&body)["ok"] == true
    })
    .await;
    assert!(proxy.tunnels() > 0, "Graph was reached through the proxy");

    // A Teams write goes the same way.
    kit.link("a1", 0).await;
    kit.status("a1", "On contact").await;
    until(|| async { kit.sim.answered("setPresence", 200) >= 1 }).await;

    // The proxy goes down: every tunnel is cut, and /readyz says so.
    proxy.stop().await;
    until(|| async {
        let (status, body) = readyz(&kit).await;
        let graph = graph_check(&body);
        status == 503
            && graph["ok"] == false
            && graph["detail"]
                .as_str()
                .is_some_and(|d| d.contains("proxy"))
    })
    .await;
    kit.stop().await;
}

/// Without the CA file the simulator's certificate is not trusted: the
/// daemon does not reach it (and does not fall back to trusting it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_file_the_test_certificate_is_refused() {
    let ca = TestCa::new("presence-sync test CA").unwrap();
    let server = ca
        .issue_server(
            &["127.0.0.1".parse().unwrap()],
            &[],
            Utc::now() + chrono::Duration::days(2),
        )
        .unwrap();
    let kit = DaemonKit::start_sim(
        SimOptions {
            tls: Some((vec![server.certificate_der.clone()], server.key_der.clone())),
            ..sim_options(1)
        },
        "echo_window = \"10s\"",
        options(),
    )
    .await;
    until(|| async {
        let (status, body) = readyz(&kit).await;
        status == 503
            && graph_check(&body)["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("not usable"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(kit.sim.stats().total, 0, "no request got through");
    kit.stop().await;
}
