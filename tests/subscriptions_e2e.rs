//! Presence subscriptions end to end: the real daemon against the
//! simulator, a service account signed in with the device-code flow (as
//! `presence-sync login` does), notifications posted to the daemon's own
//! receiver. What each test proves is read from the daemon's `/readyz` and
//! `/metrics` and the simulator's counters, never from how long a step took.

mod common;

use std::path::Path;
use std::time::Duration;

use common::certificate;
use common::daemon_kit::{DaemonKit, options, sim_options, until, write_config_with};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use presence_sync::accounts::device_code::PollTiming;
use presence_sync::accounts::login;
use presence_sync::config::{Config, Environment};
use presence_sync::daemon::DaemonOptions;
use presence_sync::graph::SharedClock;
use presence_sync::graph::clock::{Clock, Sleep};
use presence_sync::sim::clock::SimClock;
use presence_sync::sim::delegated::AccountAction;
use presence_sync::sim::notify::{LifecycleEvent, NotificationFaults};
use presence_sync::sim::{self, SimHandle, SimOptions};
use presence_sync::time::Timestamp;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// The simulated tenant's users: the agent, two others in the directory's
/// scope, and the service account; one subscription covers them all.
const USERS: usize = 4;

const CLIENT_STATE: &str = "a-client-state-only-graph-and-we-know-0123";

/// How the daemon is set up.
struct Setup {
    reconcile: &'static str,
    rich: bool,
    /// The simulator on a manual clock, which the daemon plans its
    /// subscriptions on too.
    manual_clock: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            // Long enough that a change seen within a test came by
            // notification, not by reconciliation.
            reconcile: "10m",
            rich: false,
            manual_clock: false,
        }
    }
}

/// The simulator's clock as the daemon's subscription clock: hours pass
/// when the test moves it.
#[derive(Debug)]
struct SimTime {
    sim: SimClock,
    origin: Timestamp,
}

impl Clock for SimTime {
    fn now(&self) -> Duration {
        self.sim.now().since(self.origin)
    }

    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let sim = self.sim.clone();
        let origin = self.origin;
        Box::pin(async move {
            while sim.now().since(origin) < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    fn wall(&self) -> DateTime<Utc> {
        self.sim.now().to_utc()
    }
}

struct Rig {
    kit: DaemonKit,
    account: String,
    receiver: String,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn subscriptions_toml(dir: &Path, account: &str, port: u16, setup: &Setup) -> String {
    std::fs::write(dir.join("client-state"), CLIENT_STATE).unwrap();
    let mut toml = format!(
        r#"
[subscriptions]
enabled = true
accounts = ["{account}"]
notification_url = "http://127.0.0.1:{port}/graph/notifications"
lifecycle_url = "http://127.0.0.1:{port}/graph/lifecycle"
listen = "127.0.0.1:{port}"
client_state_file = "{dir}/client-state"
reconcile_interval = "{reconcile}"
"#,
        dir = dir.display(),
        reconcile = setup.reconcile,
    );
    if setup.rich {
        let (cert, key) = certificate::make_pem();
        std::fs::write(dir.join("notify-cert.pem"), cert).unwrap();
        std::fs::write(dir.join("notify-key.pem"), key).unwrap();
        toml.push_str(&format!(
            "encryption_certificate_file = \"{dir}/notify-cert.pem\"\nencryption_key_file = \"{dir}/notify-key.pem\"\n",
            dir = dir.display()
        ));
    }
    toml
}

/// Signs `account` in as `presence-sync login` does, approving the code at
/// the simulator as the account would at Microsoft's page.
async fn sign_in(config: &Config, sim: &SimHandle, account: &str) {
    let flow = {
        let config = config.clone();
        let account = account.to_string();
        tokio::spawn(async move {
            let mut out = Vec::new();
            login::login(&config, &account, &mut out, PollTiming::default()).await
        })
    };
    until(|| async { !sim.pending_user_codes().is_empty() }).await;
    let code = sim.pending_user_codes().remove(0);
    sim.approve_device_code(&code, account)
        .expect("the simulator approves the code");
    let logged_in = flow.await.unwrap().expect("login stores the token");
    assert!(logged_in.file.is_file());
}

async fn rig(setup: Setup) -> Rig {
    let clock = if setup.manual_clock {
        SimClock::manual_from_now()
    } else {
        SimClock::real()
    };
    let sim = sim::spawn(SimOptions {
        notification_delay: Duration::from_millis(50),
        clock: clock.clone(),
        ..sim_options(USERS)
    })
    .await
    .expect("simulator starts");
    let account = sim.users()[3].1.clone();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = subscriptions_toml(dir.path(), &account, port, &setup);
    let config_path = write_config_with(dir.path(), &sim, "echo_window = \"10s\"", &extra);
    let config = Config::load_with(&config_path, &Environment::default())
        .unwrap_or_else(|e| panic!("config: {e}"));
    // Before the daemon's first start: the token goes beside the store.
    sign_in(&config, &sim, &account).await;
    let mut kit = DaemonKit {
        sim,
        daemon: None,
        dir,
        config_path,
        base: String::new(),
        token: "test-token-0123456789".into(),
        http: Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        options: DaemonOptions {
            subscription_clock: setup.manual_clock.then(|| {
                Arc::new(SimTime {
                    origin: clock.now(),
                    sim: clock,
                }) as SharedClock
            }),
            // A failed account is tried again soon, so its recovery shows.
            account_retry: Duration::from_millis(500),
            ..options()
        },
    };
    kit.boot().await;
    let receiver = format!(
        "http://{}",
        kit.daemon
            .as_ref()
            .unwrap()
            .receiver_addr
            .expect("a receiver")
    );
    kit.link("a1", 0).await;
    kit.status("a1", "Available").await;
    let rig = Rig {
        kit,
        account,
        receiver,
    };
    until(|| async {
        if setup.manual_clock {
            // The new users' settle time runs on the manual clock too.
            rig.kit.sim.advance(Duration::from_secs(1));
        }
        rig.subscriptions().await["users_subscribed"] == json!(USERS)
    })
    .await;
    rig
}

impl Rig {
    async fn readyz(&self) -> Value {
        self.kit
            .http
            .get(format!("{}/readyz", self.kit.base))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz JSON")
    }

    /// Notifications that led to a presence or a read.
    async fn applied(&self) -> f64 {
        self.kit
            .metric(
                "presence_sync_notifications_total",
                &[("outcome", "applied")],
            )
            .await
    }

    /// Reads notifications asked for.
    async fn reads(&self) -> f64 {
        self.kit
            .metric("presence_sync_notification_reads_total", &[])
            .await
    }

    async fn subscriptions(&self) -> Value {
        self.readyz().await["subscriptions"].clone()
    }

    async fn set_teams(&self, user: usize, availability: &str, activity: &str) {
        let (id, _) = self.kit.user(user);
        let r = self
            .kit
            .http
            .post(format!(
                "{}/_sim/users/{id}/presence",
                self.kit.sim.base_url
            ))
            .json(&json!({"availability": availability, "activity": activity}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Waits for the daemon to ask the CC for `status` for agent `a1`.
    async fn cc_asked(&self, status: &str) {
        let mut events = self.kit.events(0).await;
        events
            .until(|e| {
                e.kind == "cc.status_requested"
                    && e.agent_id.as_deref() == Some("a1")
                    && e.data["status"] == json!(status)
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_change_arrives_by_notification_and_becomes_a_cc_request() {
    let rig = rig(Setup::default()).await;
    let ready = rig.readyz().await;
    let subs = &ready["subscriptions"];
    assert_eq!(subs["accounts"][0]["account"], json!(rig.account));
    assert_eq!(subs["accounts"][0]["state"], json!("ok"));
    assert_eq!(
        subs["accounts"][0]["subscription"]["state"],
        json!("active")
    );
    assert_eq!(
        subs["accounts"][0]["subscription"]["watching"],
        json!(USERS)
    );
    assert_eq!(subs["users_polled"], json!(0), "{ready}");
    // The covered agent left the fast poller for reconciliation.
    until(|| async { rig.readyz().await["poll"]["users"] == json!(0) }).await;
    assert_eq!(rig.kit.sim.subscriptions().len(), 1);

    rig.set_teams(0, "Busy", "InAMeeting").await;
    rig.cc_asked("Meeting").await;
    assert!(rig.kit.sim.notification_stats().delivered >= 1);
    assert!(rig.applied().await >= 1.0);
    // A basic notification names the user; the daemon read it at once.
    assert!(rig.reads().await >= 1.0);
    assert_eq!(
        rig.kit
            .metric(
                "presence_sync_users_by_channel",
                &[("channel", "subscribed")]
            )
            .await,
        USERS as f64
    );
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rich_notifications_carry_the_presence_and_need_no_read() {
    let rig = rig(Setup {
        rich: true,
        ..Setup::default()
    })
    .await;
    let sub = rig.kit.sim.subscriptions().remove(0);
    assert!(sub.encryption.is_some(), "{sub:?}");
    rig.set_teams(0, "Busy", "InAMeeting").await;
    rig.cc_asked("Meeting").await;
    assert!(rig.applied().await >= 1.0);
    assert_eq!(
        rig.reads().await,
        0.0,
        "the presence came in the notification"
    );
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_notifications_are_caught_by_reconciliation() {
    let rig = rig(Setup {
        reconcile: "5s",
        ..Setup::default()
    })
    .await;
    rig.kit.sim.set_notification_faults(NotificationFaults {
        drop_rate: 1.0,
        ..NotificationFaults::with_delay(Duration::from_millis(50))
    });
    let applied_before = rig.applied().await;
    rig.set_teams(0, "Busy", "InAMeeting").await;
    rig.cc_asked("Meeting").await;
    assert!(rig.kit.sim.notification_stats().dropped >= 1);
    assert_eq!(
        rig.applied().await,
        applied_before,
        "nothing came by notification: reconciliation read it"
    );
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reauthorize_read_and_recreate() {
    let rig = rig(Setup::default()).await;
    let first = rig.kit.sim.subscriptions().remove(0).id;

    let reads = rig.reads().await;
    assert_eq!(
        rig.kit
            .sim
            .trigger_lifecycle(&first, LifecycleEvent::Missed),
        Some(true)
    );
    until(|| async { rig.reads().await > reads }).await;

    rig.kit
        .sim
        .trigger_lifecycle(&first, LifecycleEvent::ReauthorizationRequired);
    until(|| async {
        rig.kit
            .metric(
                "presence_sync_subscription_calls_total",
                &[("call", "reauthorize"), ("outcome", "ok")],
            )
            .await
            >= 1.0
    })
    .await;

    rig.kit
        .sim
        .trigger_lifecycle(&first, LifecycleEvent::SubscriptionRemoved);
    until(|| async {
        let subs = rig.kit.sim.subscriptions();
        subs.len() == 1 && subs[0].id != first
    })
    .await;
    until(|| async { rig.subscriptions().await["users_subscribed"] == json!(USERS) }).await;
    assert!(rig.subscriptions().await["notifications"]["lifecycle_total"].as_u64() >= Some(3));
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_account_falls_back_to_polling_says_how_to_fix_it_and_recovers_on_sign_in() {
    let rig = rig(Setup::default()).await;
    rig.kit.sim.account(&rig.account, AccountAction::Revoke);
    until(|| async { rig.subscriptions().await["accounts"][0]["state"] == json!("failed") }).await;
    let ready = rig.readyz().await;
    let account = &ready["subscriptions"]["accounts"][0];
    let fix = account["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("presence-sync login --config ") && fix.ends_with(&rig.account),
        "{fix}"
    );
    let short = account["error"].as_str().unwrap();
    assert!(short.contains("revoked"), "{account}");
    assert!(
        !short.contains("trace id"),
        "the open /readyz keeps Entra's ids: {short}"
    );
    // The authenticated health view says it in full.
    let health: Value = rig.kit.get("/v1/health").await.json().await.unwrap();
    let full = health["subscriptions"]["accounts"][0]["error"]
        .as_str()
        .unwrap();
    assert!(
        full.contains("AADSTS50173") && full.contains("trace id"),
        "{full}"
    );
    until(|| async { rig.readyz().await["poll"]["users"] == json!(1) }).await;
    assert_eq!(
        rig.kit
            .metric(
                "presence_sync_service_account_up",
                &[("account", rig.account.as_str())]
            )
            .await,
        0.0
    );
    assert_eq!(
        rig.kit
            .metric(
                "presence_sync_service_account_failure",
                &[("account", rig.account.as_str()), ("reason", "revoked")]
            )
            .await,
        1.0
    );
    // Teams changes still reach the CC, by polling.
    rig.set_teams(0, "Busy", "InAMeeting").await;
    rig.cc_asked("Meeting").await;
    // The fix it names: a new sign-in, while the daemon runs.
    let config = Config::load_with(&rig.kit.config_path, &Environment::default()).unwrap();
    sign_in(&config, &rig.kit.sim, &rig.account).await;
    until(|| async { rig.subscriptions().await["accounts"][0]["state"] == json!("ok") }).await;
    until(|| async { rig.subscriptions().await["users_subscribed"] == json!(USERS) }).await;
    assert_eq!(
        rig.kit
            .metric(
                "presence_sync_service_account_up",
                &[("account", rig.account.as_str())]
            )
            .await,
        1.0
    );
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_refuses_forgeries_and_serves_nothing_else() {
    let rig = rig(Setup::default()).await;
    let http = &rig.kit.http;
    let sub = rig.kit.sim.subscriptions().remove(0);
    let (user, _) = rig.kit.user(0);
    let forged = |state: &str| {
        json!({"value": [{
            "subscriptionId": sub.id,
            "clientState": state,
            "changeType": "updated",
            "tenantId": rig.kit.sim.tenant_id,
            "resource": format!("communications/presences/{user}"),
            "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "resourceData": {"@odata.type": "#microsoft.graph.presence", "@odata.id": format!("users/{user}/presence"), "id": user},
        }]})
    };
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", rig.receiver))
            .json(&body)
            .send()
    };
    let reads = rig.reads().await;
    let wrong = post("/graph/notifications", forged("not-the-secret"))
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let body: Value = wrong.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    let malformed = http
        .post(format!("{}/graph/notifications", rig.receiver))
        .header("content-type", "application/json")
        .body("{\"value\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    // Refused by its declared length, before a byte of it is read.
    let huge = http
        .post(format!("{}/graph/notifications", rig.receiver))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await;
    match huge {
        Ok(answer) => assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE),
        // The receiver may answer 413 and close before the body is sent:
        // its count says it refused it.
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert_eq!(
        rig.kit
            .metric(
                "presence_sync_notifications_rejected_total",
                &[("reason", "batch_too_large")]
            )
            .await,
        1.0
    );
    for path in ["/v1/agents", "/readyz", "/metrics", "/"] {
        let r = http
            .get(format!("{}{path}", rig.receiver))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The handshake on both paths.
    for path in ["/graph/notifications", "/graph/lifecycle"] {
        let r = http
            .post(format!(
                "{}{path}?validationToken=Validation%3A%20Testing%20client%20application",
                rig.receiver
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.text().await.unwrap(),
            "Validation: Testing client application"
        );
    }
    // Our own clientState passes and is acted on (a read asked for).
    let ok = post("/graph/notifications", forged(CLIENT_STATE))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    until(|| async { rig.reads().await > reads }).await;
    for reason in ["batch_client_state", "batch_malformed"] {
        assert_eq!(
            rig.kit
                .metric(
                    "presence_sync_notifications_rejected_total",
                    &[("reason", reason)]
                )
                .await,
            1.0,
            "{reason}"
        );
    }
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_subscription_graph_holds() {
    let mut rig = rig(Setup::default()).await;
    let first = rig.kit.sim.subscriptions().remove(0).id;
    rig.kit.restart().await;
    rig.kit.link("a1", 0).await;
    until(|| async { rig.subscriptions().await["users_subscribed"] == json!(USERS) }).await;
    let subs = rig.kit.sim.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].id, first, "kept, not created again");
    rig.receiver = String::new();
    rig.kit.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_renewed_for_hours_and_never_lapse() {
    let rig = rig(Setup {
        manual_clock: true,
        ..Setup::default()
    })
    .await;
    let sim = &rig.kit.sim;
    let first = sim.subscriptions().remove(0).id;
    let five = Duration::from_secs(5 * 60);
    // Three simulated hours, five minutes at a time. A renewal is due by
    // five minutes before expiry at the latest, so waiting for more than
    // that to remain before each step proves none lapsed.
    for _ in 0..36 {
        sim.advance(five);
        until(|| async {
            let subs = sim.subscriptions();
            subs.len() == 1 && subs[0].expires_at.since(sim.clock().now()) > five
        })
        .await;
        assert_eq!(sim.subscriptions()[0].id, first, "renewed, not re-created");
    }
    let renewed = rig
        .kit
        .metric(
            "presence_sync_subscription_calls_total",
            &[("call", "renew"), ("outcome", "ok")],
        )
        .await;
    assert!(renewed >= 3.0, "{renewed} renewals in three hours");
    // Teams changes still arrive by notification after hours of renewals.
    rig.set_teams(0, "Busy", "InAMeeting").await;
    rig.cc_asked("Meeting").await;
    rig.kit.stop().await;
}
