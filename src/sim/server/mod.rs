//! The HTTP adapter: axum routes on Graph's and Entra's real paths over the
//! pure tenant, token store and throttle, plus `/_sim` control endpoints.
//!
//! Locks are plain `std::sync::Mutex`es held only for a synchronous step,
//! never across an `.await`.

mod accounts;
mod context;
mod control;
mod devicecode;
mod errors;
pub(crate) mod form;
mod groups;
mod notifications;
mod presence;
mod subscriptions;
mod token;
mod users;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use super::auth::Auth;
use super::clock::SimClock;
use super::delegated::Delegated;
use super::notify::Notifier;
use super::notify::jwks::{SigningError, SigningKey};
use super::rng::{Rng, mix};
use super::script::Script;
use super::subscriptions::Subscriptions;
use super::tenant::Tenant;
use super::throttle::Throttle;
use crate::time::Timestamp;

pub(crate) use context::RequestCtx;
pub(crate) use notifications::run as run_notifications;

/// Injected faults (`POST /_sim/faults`).
#[derive(Debug)]
pub(crate) struct Faults {
    pub error_rate: f64,
    pub latency: Duration,
    pub rng: Rng,
}

/// Request counts by endpoint (`METHOD /route`) and status.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub by_endpoint: BTreeMap<String, BTreeMap<u16, u64>>,
    pub total: u64,
    pub throttled: u64,
    pub faults_injected: u64,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub clock: SimClock,
    pub base_url: String,
    tenant: Mutex<Tenant>,
    script: Option<Mutex<Script>>,
    pub auth: Mutex<Auth>,
    pub delegated: Mutex<Delegated>,
    pub subscriptions: Mutex<Subscriptions>,
    pub notifier: Mutex<Notifier>,
    /// Made on first use: most simulators never sign anything.
    signing: std::sync::OnceLock<Result<SigningKey, SigningError>>,
    /// For handshakes and deliveries to subscribers.
    pub http: reqwest::Client,
    pub tenant_id: String,
    pub throttle: Mutex<Throttle>,
    pub faults: Mutex<Faults>,
    pub stats: Mutex<Stats>,
    /// Seed for request and trace ids (mixed with a counter).
    id_seed: u64,
    id_counter: std::sync::atomic::AtomicU64,
}

/// A poisoned lock only means another request panicked mid-step; the data is
/// still the best state there is, and one bad request must not take the
/// simulator down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    // Called once, from `spawn`, with each part built there.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        clock: SimClock,
        base_url: String,
        tenant: Tenant,
        script: Option<Script>,
        auth: Auth,
        delegated: Delegated,
        notifier: Notifier,
        throttle: Throttle,
        seed: u64,
    ) -> Self {
        let tenant_id = auth.registration().tenant_id.clone();
        Shared {
            clock,
            base_url,
            tenant: Mutex::new(tenant),
            script: script.map(Mutex::new),
            auth: Mutex::new(auth),
            delegated: Mutex::new(delegated),
            subscriptions: Mutex::new(Subscriptions::default()),
            notifier: Mutex::new(notifier),
            signing: std::sync::OnceLock::new(),
            http: super::notify::delivery::client(),
            tenant_id,
            throttle: Mutex::new(throttle),
            faults: Mutex::new(Faults {
                error_rate: 0.0,
                latency: Duration::ZERO,
                rng: Rng::new(mix(seed ^ 0xFA17)),
            }),
            stats: Mutex::new(Stats::default()),
            id_seed: mix(seed ^ 0x1D),
            id_counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The tenant as of `now`: the scripted drift (if on) is played up to
    /// `now` first, so what a request sees never depends on timer jitter.
    pub(crate) fn tenant(&self, now: Timestamp) -> MutexGuard<'_, Tenant> {
        let mut tenant = lock(&self.tenant);
        if let Some(script) = &self.script {
            lock(script).run_until(&mut tenant, now);
        }
        tenant
    }

    /// A fresh GUID for request-id / trace-id headers.
    pub(crate) fn new_id(&self) -> String {
        let n = self
            .id_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let a = mix(self.id_seed ^ n);
        super::rng::format_guid(a, mix(a ^ 0xA5A5_A5A5_A5A5_A5A5))
    }

    /// The key that signs validation tokens, made on first use.
    pub(crate) fn signing_key(&self) -> Result<&SigningKey, SigningError> {
        self.signing
            .get_or_init(SigningKey::generate)
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(crate) fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }
}

/// Every route, with the request-id/stats layer around all of them and the
/// auth/throttle/fault gate around Graph's.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let graph = Router::new()
        .route("/v1.0/users", get(users::list))
        .route("/v1.0/users/delta", get(users::delta))
        .route("/v1.0/users/{id}", get(users::one))
        .route(
            "/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user",
            get(groups::user_members),
        )
        .route("/v1.0/users/{id}/presence", get(presence::get_user))
        .route(
            "/v1.0/communications/presences/{id}",
            get(presence::get_communications),
        )
        .route(
            "/v1.0/communications/getPresencesByUserId",
            post(presence::by_user_ids),
        )
        .route("/v1.0/users/{id}/presence/setPresence", post(presence::set))
        .route(
            "/v1.0/users/{id}/presence/clearPresence",
            post(presence::clear),
        )
        .route(
            "/v1.0/users/{id}/presence/setUserPreferredPresence",
            post(presence::set_preferred),
        )
        .route(
            "/v1.0/users/{id}/presence/clearUserPreferredPresence",
            post(presence::clear_preferred),
        )
        .route(
            "/v1.0/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/v1.0/subscriptions/{id}",
            get(subscriptions::one)
                .patch(subscriptions::renew)
                .delete(subscriptions::delete),
        )
        .route(
            "/v1.0/subscriptions/{id}/reauthorize",
            post(subscriptions::reauthorize),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            context::graph_gate,
        ));
    Router::new()
        .merge(graph)
        .route("/{tenant}/oauth2/v2.0/token", post(token::issue))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode::start))
        .route("/_sim/devicecode/approve", post(devicecode::approve))
        .route("/_sim/devicecode/decline", post(devicecode::decline))
        .route("/_sim/accounts/{upn}/{fault}", post(accounts::fault))
        .route("/common/discovery/v2.0/keys", get(notifications::keys))
        .route("/{tenant}/discovery/v2.0/keys", get(notifications::keys))
        .route("/_sim/notifications", post(notifications::faults))
        .route("/_sim/subscriptions", get(notifications::list_all))
        .route(
            "/_sim/subscriptions/{id}/lifecycle",
            post(notifications::lifecycle),
        )
        .route("/_sim/users", post(control::add_user))
        .route("/_sim/groups", post(groups::put_group))
        .route("/_sim/users/{id}/presence", post(control::set_client))
        .route("/_sim/users/{id}/preferred", post(control::set_preferred))
        .route("/_sim/faults", post(control::faults))
        .route("/_sim/clock", post(control::clock))
        .route("/_sim/stats", get(control::stats))
        .route("/_sim/roles", get(control::roles).post(control::set_roles))
        .fallback(errors::not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            context::request_context,
        ))
        .with_state(shared)
}
