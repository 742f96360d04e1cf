//! An embedded Microsoft Graph simulator: a fake tenant for tests and the
//! demo (SPEC §9), serving Entra's token and device-code endpoints and
//! Graph's users, delta, presence and subscription endpoints on their real
//! paths, with Microsoft's documented session aggregation, expiry,
//! throttling, change notifications and error shapes.
//!
//! A pure core with an HTTP adapter:
//! - [`tenant`] (with [`directory`] and [`sessions`]): users, presence
//!   sessions, aggregation, the delta log — no I/O, time passed in;
//! - [`auth`]: the app registration and issued tokens; [`delegated`]:
//!   service accounts' device-code sign-in and refresh tokens;
//!   [`subscriptions`]: presence subscriptions and Graph's rules for them;
//!   [`notify`]: change notifications, found from sequence numbers and
//!   delivered (the one part of the core that posts); [`throttle`]: the
//!   request budget; [`script`]: scripted drift through Teams states;
//!   [`rng`]: the seeded PRNG behind every generated value;
//! - `server`: axum routes, plus `/_sim` control endpoints;
//! - [`spawn`] starts it all and returns a [`SimHandle`] (the test kit).

pub mod auth;
pub mod clock;
pub mod delegated;
pub mod directory;
pub mod groups;
pub mod notify;
pub mod rng;
pub mod script;
mod server;
pub mod sessions;
pub mod subscriptions;
pub mod tenant;
pub mod throttle;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::SimClock;

use auth::{Auth, Registration};
use directory::{Directory, NewUser};
use rng::Rng;
use script::Script;
use server::{Shared, lock};
use tenant::Tenant;
use throttle::Throttle;

/// How to start a simulator.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Where to listen; tests use `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// How many users to generate (deterministically from `seed`).
    pub users: usize,
    /// Graph calls allowed per 30 s (sliding window); `None`: unlimited.
    pub budget: Option<u32>,
    /// Seeds the users, the credentials, the script and fault draws.
    pub seed: u64,
    /// `expires_in` of issued tokens (Entra: 3599 s).
    pub token_lifetime: Duration,
    /// Users drift through Teams states on their own.
    pub scripted: bool,
    /// Scripted changes per user per hour.
    pub script_rate: f64,
    /// The simulator's time; a manual clock lets tests move it.
    pub clock: SimClock,
    /// The tenant's domain: UPNs and mail addresses end in it.
    pub domain: String,
    /// A certificate registered with the app, so clients can sign in with a
    /// client assertion: the certificate's DER and its RSA public key
    /// (PKCS#1 DER). Without it, assertions are refused as Entra refuses
    /// them for an app with no certificate.
    pub certificate: Option<(Vec<u8>, Vec<u8>)>,
    /// The application roles granted to the app (admin consent); by
    /// default every one the daemon uses ([`auth::DEFAULT_ROLES`]).
    pub roles: Vec<String>,
    /// Serve HTTPS with this certificate chain (DER, leaf first) and
    /// PKCS#8 key, e.g. from [`tls::TestCa`]; the base URL is then
    /// `https://`.
    pub tls: Option<(Vec<Vec<u8>>, Vec<u8>)>,
    /// Device codes approve themselves after a few seconds (the demo),
    /// signed in as the first user whose UPN starts with `svc-` and who is
    /// not signed in yet this way (or the first such user when all are).
    /// Without such a user codes stay pending, and a warning says so.
    pub auto_approve: bool,
    /// How long a presence change waits before its notification is sent
    /// (Graph: under 10 s on average, at most a minute).
    pub notification_delay: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: 25,
            budget: Some(throttle::DEFAULT_BUDGET),
            seed: 1,
            token_lifetime: auth::DEFAULT_TOKEN_LIFETIME,
            scripted: false,
            script_rate: script::DEFAULT_RATE_PER_USER_PER_HOUR,
            clock: SimClock::real(),
            domain: "contoso.test".into(),
            certificate: None,
            roles: auth::DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
            tls: None,
            auto_approve: false,
            notification_delay: notify::DEFAULT_DELAY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the simulator's server failed: {0}")]
    Serve(std::io::Error),
    #[error("the simulator's HTTPS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("a simulator task did not end cleanly: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Request counts as `/_sim/stats` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// `"METHOD /route"` → HTTP status → count (Graph and token calls).
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    pub total: u64,
    /// 429s sent.
    pub throttled: u64,
    /// 500/503s injected by `error_rate`.
    pub faults_injected: u64,
}

/// A running simulator. Dropping it stops the server too, but only
/// [`SimHandle::shutdown`] waits for its tasks to end.
pub struct SimHandle {
    /// `http://127.0.0.1:PORT`: both the login and the Graph host.
    pub base_url: String,
    pub tenant_id: String,
    pub tenant_domain: String,
    pub client_id: String,
    pub client_secret: String,
    clock: SimClock,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), SimError>>>,
}

impl SimHandle {
    /// Graph's base, `{base_url}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }

    /// The token endpoint for this tenant.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base_url, self.tenant_id)
    }

    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Moves the simulator's clock forward (fades, expiries, token
    /// lifetimes and the throttle window all follow).
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn stats(&self) -> SimStats {
        let stats = lock(&self.shared.stats);
        SimStats {
            requests: stats.by_endpoint.clone(),
            total: stats.total,
            throttled: stats.throttled,
            faults_injected: stats.faults_injected,
        }
    }

    /// Replaces the roles granted to the app; the next token carries them.
    pub fn set_roles(&self, roles: &[&str]) {
        lock(&self.shared.auth).set_roles(roles.iter().map(|r| r.to_string()));
    }

    /// The roles granted to the app now.
    pub fn roles(&self) -> Vec<String> {
        lock(&self.shared.auth).roles().to_vec()
    }

    /// Requests answered with `status` on endpoints whose label contains
    /// `endpoint` (e.g. `setPresence`), from the stats.
    pub fn answered(&self, endpoint: &str, status: u16) -> u64 {
        lock(&self.shared.stats)
            .by_endpoint
            .iter()
            .filter(|(label, _)| label.contains(endpoint))
            .filter_map(|(_, by_status)| by_status.get(&status))
            .sum()
    }

    /// The device-code endpoint for this tenant.
    pub fn devicecode_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/devicecode",
            self.base_url, self.tenant_id
        )
    }

    /// A user of the tenant (`upn` or id) approves the device code shown
    /// to them; returns the UPN and object id signed in.
    pub fn approve_device_code(
        &self,
        user_code: &str,
        upn: &str,
    ) -> Result<(String, String), delegated::ApprovalError> {
        self.shared
            .approve_device_code(user_code, upn, self.clock.now())
    }

    /// The user says no to the device code shown to them.
    pub fn decline_device_code(&self, user_code: &str) -> Result<(), delegated::ApprovalError> {
        lock(&self.shared.delegated).decline(user_code, self.clock.now())
    }

    /// User codes waiting for a user, oldest first.
    pub fn pending_user_codes(&self) -> Vec<String> {
        lock(&self.shared.delegated).pending_user_codes(self.clock.now())
    }

    /// Revokes, faults or restores the account `upn` (see
    /// [`delegated::AccountAction`]); returns how many subscriptions went
    /// with it, or `None` when no such user.
    pub fn account(&self, upn: &str, action: delegated::AccountAction) -> Option<usize> {
        self.shared
            .account_action(upn, action, self.clock.now())
            .map(|outcome| outcome.subscriptions_removed)
    }

    /// Every live subscription, whoever made it.
    pub fn subscriptions(&self) -> Vec<subscriptions::Subscription> {
        let now = self.clock.now();
        let mut all = lock(&self.shared.subscriptions);
        all.remove_expired(now);
        all.all(now).cloned().collect()
    }

    /// Sends a lifecycle notification for subscription `id` (after the
    /// delivery delay): `None` when no live one has that id, `Some(false)`
    /// when it has no lifecycle URL.
    pub fn trigger_lifecycle(&self, id: &str, event: notify::LifecycleEvent) -> Option<bool> {
        self.shared.trigger_lifecycle(id, event)
    }

    /// Replaces the delivery faults (drop, duplicate, delay, jitter,
    /// reorder).
    pub fn set_notification_faults(&self, faults: notify::NotificationFaults) {
        lock(&self.shared.notifier).faults = faults;
    }

    /// Subscription and notification counts.
    pub fn notification_stats(&self) -> notify::NotificationStats {
        lock(&self.shared.notifier).stats.clone()
    }

    /// The JWKS URL (validation tokens are signed by its key).
    pub fn jwks_url(&self) -> String {
        format!("{}/common/discovery/v2.0/keys", self.base_url)
    }

    /// The generated users' ids, in creation order.
    pub fn user_ids(&self) -> Vec<String> {
        let now = self.clock.now();
        self.shared
            .tenant(now)
            .directory()
            .users()
            .map(|u| u.id.clone())
            .collect()
    }

    /// The generated users' ids and UPNs, in creation order.
    pub fn users(&self) -> Vec<(String, String)> {
        let now = self.clock.now();
        self.shared
            .tenant(now)
            .directory()
            .users()
            .map(|u| (u.id.clone(), u.user_principal_name.clone()))
            .collect()
    }

    /// Stops the server (open connections finish) and its tasks, and waits.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for task in self.tasks.drain(..) {
            // Bounded: a client holding a request open must not hang a
            // test's teardown.
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => result = Err(error),
                Ok(Err(join)) => result = Err(SimError::Task(join)),
                Err(_elapsed) => {}
            }
        }
        result
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts a simulator on `options.listen`.
pub async fn spawn(options: SimOptions) -> Result<SimHandle, SimError> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: options.listen,
        source,
    })?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base_url = format!("{scheme}://{addr}");
    let now = options.clock.now();

    // Credentials follow the seed, so a demo config keeps working across
    // restarts of the same simulator.
    let mut rng = Rng::new(options.seed);
    let registration = Registration {
        tenant_id: rng.guid(),
        tenant_domain: options.domain.clone(),
        client_id: rng.guid(),
        client_secret: format!("sim~{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
        base_url: base_url.clone(),
        certificate: options
            .certificate
            .as_ref()
            .map(|(der, key)| auth::RegisteredCertificate::new(der, key.clone())),
    };
    let mut directory = Directory::new(&options.domain, rng.next_u64(), run_nonce());
    for _ in 0..options.users {
        // Generated users cannot collide (free UPNs are searched for).
        let _ = directory.add(NewUser::default(), now);
    }
    let mut tenant = Tenant::new(directory);
    let script = options.scripted.then(|| {
        let mut script = Script::new(options.seed, options.script_rate, now);
        script.start_day(&mut tenant, now);
        script
    });
    let shared = Arc::new(Shared::new(
        options.clock.clone(),
        base_url.clone(),
        tenant,
        script,
        {
            let mut auth = Auth::new(registration.clone(), options.token_lifetime);
            auth.set_roles(options.roles.iter().cloned());
            auth
        },
        delegated::Delegated::new(options.auto_approve),
        notify::Notifier::new(rng::mix(options.seed ^ 0x0071), options.notification_delay),
        Throttle::new(options.budget),
        options.seed,
    ));

    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let router = server::router(shared.clone());
    let mut server_stop = stopped.clone();
    let stopping = async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    };
    match &options.tls {
        None => tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopping)
                .await
                .map_err(SimError::Serve)
        })),
        Some((chain, key)) => {
            let listener = tls::TlsListener::new(listener, chain, key)?;
            tasks.push(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopping)
                    .await
                    .map_err(SimError::Serve)
            }));
        }
    }
    {
        let shared = shared.clone();
        let stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            server::run_notifications(shared, stop).await;
            Ok(())
        }));
    }
    if options.scripted {
        let shared = shared.clone();
        let mut script_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(script::TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        // Playing the script happens inside `tenant()`.
                        drop(shared.tenant(shared.clock.now()));
                    }
                    _ = script_stop.wait_for(|stop| *stop) => return Ok(()),
                }
            }
        }));
    }
    Ok(SimHandle {
        base_url,
        tenant_id: registration.tenant_id,
        tenant_domain: registration.tenant_domain,
        client_id: registration.client_id,
        client_secret: registration.client_secret,
        clock: options.clock,
        shared,
        stop,
        tasks,
    })
}

/// Different on every run, so delta tokens from an earlier run are refused
/// (as Graph refuses lost sync state) even with the same seed.
fn run_nonce() -> u64 {
    let mut bytes = [0u8; 8];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => crate::time::Timestamp::now().as_micros(),
    }
}
