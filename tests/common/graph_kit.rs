//! The Graph client against a simulator: a config pointing at it, a client,
//! and one clock the two share.
//!
//! The simulator judges tokens, fades and its 30 s budget on its own clock;
//! the client times token refreshes, backoffs and its budget on its own. To
//! test them against each other without waiting real minutes, the client's
//! clock here *is* the simulator's (manual) clock, moved in one of two ways:
//! - [`SimTime::jumping`]: a sleep moves the simulator's clock to its end at
//!   once. Deterministic, but only right with one caller at a time (two
//!   sleepers would each push time forward for the other).
//! - [`SimTime::flowing`]: a driver task moves the clock at `speed` times real
//!   time and sleeps wait for it. For concurrent callers (a 429 storm, the
//!   poller); stop the [`Flow`] at the end of the test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use presence_sync::config::{GraphAuth, GraphConfig, Origin, Secret, SecretLocation, SecretSource};
use presence_sync::graph::clock::Sleep;
use presence_sync::graph::{Clock, Credential, GraphClient, SharedClock, ThrottleConfig};
use presence_sync::sim::{SimClock, SimHandle};
use presence_sync::time::Timestamp;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The client's view of the simulator's clock.
#[derive(Clone, Debug)]
pub struct SimTime {
    sim: SimClock,
    origin: Timestamp,
    /// `None`: sleeps jump; `Some(speed)`: a driver moves time.
    speed: Option<f64>,
}

/// The task that moves a flowing clock; [`Flow::stop`] ends it.
pub struct Flow {
    task: JoinHandle<()>,
}

impl Flow {
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

impl SimTime {
    /// Sleeps advance the simulator's clock at once (one caller at a time).
    pub fn jumping(sim: &SimHandle) -> Arc<SimTime> {
        Arc::new(SimTime {
            sim: sim.clock().clone(),
            origin: sim.clock().now(),
            speed: None,
        })
    }

    /// Time moves at `speed` × real time, driven by a task.
    pub fn flowing(sim: &SimHandle, speed: f64) -> (Arc<SimTime>, Flow) {
        let clock = sim.clock().clone();
        let time = Arc::new(SimTime {
            sim: clock.clone(),
            origin: clock.now(),
            speed: Some(speed),
        });
        let task = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let now = Instant::now();
                clock.advance((now - last).mul_f64(speed));
                last = now;
            }
        });
        (time, Flow { task })
    }

    pub fn shared(self: &Arc<Self>) -> SharedClock {
        self.clone()
    }
}

impl Clock for SimTime {
    fn now(&self) -> Duration {
        self.sim.now().since(self.origin)
    }

    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let this = self.clone();
        Box::pin(async move {
            match this.speed {
                None => {
                    let now = this.now();
                    if deadline > now {
                        // The simulator counts whole microseconds: round up,
                        // or a deadline between two of them is never reached.
                        let micros = (deadline - now).as_nanos().div_ceil(1_000);
                        this.sim.advance(Duration::from_micros(
                            u64::try_from(micros).unwrap_or(u64::MAX),
                        ));
                    }
                    tokio::task::yield_now().await;
                }
                Some(speed) => loop {
                    let now = this.now();
                    if now >= deadline {
                        return;
                    }
                    let real = (deadline - now).div_f64(speed);
                    tokio::time::sleep(real.max(Duration::from_millis(1))).await;
                },
            }
        })
    }

    fn wall(&self) -> DateTime<Utc> {
        let micros = i64::try_from(self.sim.now().as_micros()).unwrap_or(i64::MAX);
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }
}

/// A `[graph]` config for the simulator: login and Graph hosts both its
/// base URL, its tenant and app.
pub fn config(sim: &SimHandle) -> GraphConfig {
    GraphConfig {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        auth: GraphAuth::ClientSecret(SecretSource {
            purpose: "the Graph client secret",
            location: SecretLocation::File("/nonexistent".into()),
            origin: Origin::whole_file(std::path::Path::new("test.toml")),
        }),
        login_base: sim.base_url.clone(),
        graph_base: sim.base_url.clone(),
        requests_per_30s: 1_500,
        request_timeout: Duration::from_secs(10),
        session_expiry: Duration::from_secs(3600),
        outbound: Default::default(),
    }
}

/// The simulator's secret.
pub fn secret(sim: &SimHandle) -> Credential {
    Credential::Secret(Secret::new(sim.client_secret.clone()))
}

/// A client of `sim` on `clock` with `throttle`.
pub fn client(sim: &SimHandle, clock: SharedClock, throttle: ThrottleConfig) -> GraphClient {
    GraphClient::builder(&config(sim), secret(sim))
        .clock(clock)
        .throttle(throttle)
        .build()
        .expect("client builds")
}

/// `POST {sim}/_sim{path}`; the answer's JSON (panics on a non-2xx).
pub async fn control(sim: &SimHandle, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/_sim{path}", sim.base_url))
        .json(&body)
        .send()
        .await
        .expect("control request");
    let status = response.status();
    let text = response.text().await.expect("control answer");
    assert!(status.is_success(), "POST /_sim{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// What the user does in their own Teams client.
pub async fn set_own_presence(sim: &SimHandle, user: &str, availability: &str, activity: &str) {
    control(
        sim,
        &format!("/users/{user}/presence"),
        json!({ "availability": availability, "activity": activity }),
    )
    .await;
}

/// `POST /_sim/faults`.
pub async fn faults(sim: &SimHandle, body: Value) {
    control(sim, "/faults", body).await;
}

/// Requests the simulator answered for `endpoint` (`"POST /v1.0/..."`)
/// with `status`, or with any status when `None`.
pub fn count(sim: &SimHandle, endpoint: &str, status: Option<u16>) -> u64 {
    let stats = sim.stats();
    let Some(by_status) = stats.requests.get(endpoint) else {
        return 0;
    };
    match status {
        Some(status) => by_status.get(&status).copied().unwrap_or(0),
        None => by_status.values().sum(),
    }
}

pub const TOKEN: &str = "POST /{tenant}/oauth2/v2.0/token";
pub const BY_IDS: &str = "POST /v1.0/communications/getPresencesByUserId";
pub const GET_PRESENCE: &str = "GET /v1.0/users/{id}/presence";
pub const SET_PRESENCE: &str = "POST /v1.0/users/{id}/presence/setPresence";
pub const CLEAR_PRESENCE: &str = "POST /v1.0/users/{id}/presence/clearPresence";
pub const LIST_USERS: &str = "GET /v1.0/users";
pub const DELTA: &str = "GET /v1.0/users/delta";

/// Waits (without a deadline of its own: the caller bounds it) until
/// `ready` holds, checking every few milliseconds.
pub async fn until(mut ready: impl FnMut() -> bool) {
    while !ready() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
