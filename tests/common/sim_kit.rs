//! A Graph simulator on a free loopback port, with a token and a client.

use presence_sync::sim::{self, SimClock, SimHandle, SimOptions};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

pub struct Kit {
    pub sim: SimHandle,
    pub http: Client,
    pub token: String,
}

/// Options for tests: loopback, a manual clock, no throttling unless asked.
pub fn options() -> SimOptions {
    SimOptions {
        users: 5,
        budget: None,
        clock: SimClock::manual_from_now(),
        ..SimOptions::default()
    }
}

impl Kit {
    pub async fn start(options: SimOptions) -> Kit {
        let sim = sim::spawn(options).await.expect("simulator starts");
        let http = Client::new();
        let mut kit = Kit {
            sim,
            http,
            token: String::new(),
        };
        kit.token = kit.fetch_token().await;
        kit
    }

    pub async fn stop(self) {
        self.sim.shutdown().await.expect("simulator stops cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url)
    }

    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    pub async fn fetch_token(&self) -> String {
        let response = self
            .token_request(
                &self.sim.tenant_id,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.sim.client_id),
                    ("client_secret", &self.sim.client_secret),
                    ("scope", GRAPH_SCOPE),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// `GET {graph}{path}` with the kit's token.
    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(&format!("/v1.0{path}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    /// `GET` of an absolute URL (a nextLink or deltaLink).
    pub async fn get_link(&self, link: &str) -> Response {
        self.http
            .get(link)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET link")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(&format!("/v1.0{path}")))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// `POST /_sim/...` (no auth).
    pub async fn control(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(&format!("/_sim{path}")))
            .json(body)
            .send()
            .await
            .expect("control POST")
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON")
    }

    pub fn user(&self, n: usize) -> String {
        self.sim.user_ids()[n].clone()
    }

    /// `availability/activity` of a user, read through Graph.
    pub async fn presence(&self, id: &str) -> String {
        let body = self.json(&format!("/users/{id}/presence")).await;
        format!(
            "{}/{}",
            body["availability"].as_str().unwrap_or("?"),
            body["activity"].as_str().unwrap_or("?")
        )
    }

    pub async fn set_presence(
        &self,
        id: &str,
        availability: &str,
        activity: &str,
        expiry: &str,
    ) -> Response {
        self.post(
            &format!("/users/{id}/presence/setPresence"),
            &json!({
                "sessionId": self.sim.client_id,
                "availability": availability,
                "activity": activity,
                "expirationDuration": expiry,
            }),
        )
        .await
    }
}

/// Asserts Graph's error shape and returns the error code.
pub async fn graph_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await.expect("error JSON");
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["innerError"]["request-id"].is_string(), "{body}");
    assert!(error["innerError"]["date"].is_string(), "{body}");
    error["code"].as_str().expect("code").to_string()
}
