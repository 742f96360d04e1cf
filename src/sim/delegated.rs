//! Delegated sign-in for service accounts: Entra's device-code flow and
//! refresh tokens, with the faults an admin or a policy causes (revoked
//! sessions, MFA, conditional access, 90 days of inactivity).
//!
//! Pure: no I/O, no clock, no randomness of its own. The HTTP adapter draws
//! the codes and tokens and passes them in with the time, and turns the
//! [`EntraError`]s into Entra's error bodies. Access tokens are issued by
//! [`super::auth::Auth::issue_delegated`]; this module decides *whether*.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::auth::{EntraError, SignedInUser};
use crate::time::Timestamp;

/// How long a device code may be redeemed (Entra: 900 s).
pub const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(900);
/// The polling interval a client is told (Entra: 5 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// What `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// A refresh token unused for this long is refused (AADSTS700082).
pub const REFRESH_INACTIVITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// With auto-approve on, a device code is approved once it is this old.
pub const AUTO_APPROVE_AFTER: Duration = Duration::from_secs(3);
/// Auto-approve signs in as a user whose UPN starts with this.
pub const SERVICE_ACCOUNT_PREFIX: &str = "svc-";
/// The delegated permission a presence subscription needs.
pub const PRESENCE_SCOPE: &str = "Presence.Read.All";
/// The scope that asks for a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Scopes the app has consent for: Graph's presence and profile reads and
/// the OpenID ones. Anything else is consent the tenant never gave.
const CONSENTED: &[&str] = &[
    "Presence.Read.All",
    "Presence.Read",
    "User.Read",
    "offline_access",
    "openid",
    "profile",
    "email",
];

/// A fault an admin or a policy put on an account (`/_sim/accounts/...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountFault {
    /// A new MFA requirement: refreshes answer AADSTS50076.
    Mfa,
    /// A conditional-access policy blocks the sign-in: AADSTS53003.
    ConditionalAccess,
}

/// What an admin or a policy does to a signed-in account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountAction {
    /// Sessions revoked (or the password changed): refresh tokens die
    /// (AADSTS50173) and the account's subscriptions are removed.
    Revoke,
    /// A fault until restored.
    Fault(AccountFault),
    /// Clears the fault; revoked tokens stay revoked.
    Restore,
}

/// A device code just issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCodeIssued {
    pub device_code: String,
    pub user_code: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// A successful sign-in or refresh: whom the tokens are for, and whether a
/// refresh token comes with them (`offline_access` was asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub user: SignedInUser,
    pub offline: bool,
}

/// Why an approval or a decline from the control route was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("no device code '{0}' is waiting; ask for a new one")]
    UnknownCode(String),
    #[error("device code '{0}' has expired (they last 15 minutes); ask for a new one")]
    Expired(String),
    #[error("device code '{0}' was already approved, declined or redeemed")]
    AlreadyDecided(String),
    #[error("'{0}' is not a user of the tenant; sign in as one (GET /v1.0/users lists them)")]
    UnknownUser(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    Pending,
    Approved { upn: String, oid: String },
    Declined,
    Redeemed,
}

#[derive(Clone, Debug)]
struct DeviceCode {
    user_code: String,
    client_id: String,
    scopes: Vec<String>,
    created: Timestamp,
    interval: Duration,
    last_poll: Option<Timestamp>,
    decision: Decision,
}

#[derive(Clone, Debug)]
struct RefreshGrant {
    client_id: String,
    upn: String,
    oid: String,
    scopes: Vec<String>,
    issued_at: Timestamp,
}

/// Device codes, refresh tokens and account faults.
#[derive(Clone, Debug, Default)]
pub struct Delegated {
    codes: HashMap<String, DeviceCode>,
    by_user_code: HashMap<String, String>,
    refresh: HashMap<String, RefreshGrant>,
    /// Refresh tokens revoked, with their user, so they answer AADSTS50173
    /// rather than "malformed".
    revoked: HashMap<String, String>,
    faults: HashMap<String, AccountFault>,
    /// Lower-cased UPNs auto-approve has signed in as.
    auto_signed_in: HashSet<String>,
    auto_approve: bool,
}

fn entra(status: u16, error: &'static str, code: u32, description: &str) -> EntraError {
    EntraError {
        status,
        error,
        code,
        description: description.to_string(),
    }
}

/// Reads a `scope` parameter: space-separated, Graph's scopes either bare or
/// prefixed by a Graph host (`https://graph.microsoft.com/` or `graph_host`,
/// the simulator's own). At least one Graph scope is needed; a scope the app
/// has no consent for is AADSTS65001.
pub fn parse_scopes(scope: &str, graph_host: &str) -> Result<Vec<String>, EntraError> {
    let hosts = [
        "https://graph.microsoft.com/".to_string(),
        format!("{}/", graph_host.trim_end_matches('/')),
    ];
    let mut scopes = Vec::new();
    for word in scope.split_whitespace() {
        let name = hosts
            .iter()
            .find_map(|host| word.strip_prefix(host.as_str()))
            .unwrap_or(word);
        // `{graph}/.default`: every Graph permission consented to.
        let name = if name == ".default" && word != name {
            PRESENCE_SCOPE
        } else {
            name
        };
        if name.contains('/') || name.is_empty() {
            return Err(entra(
                400,
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {word} is not valid."
                ),
            ));
        }
        let Some(known) = CONSENTED.iter().find(|c| c.eq_ignore_ascii_case(name)) else {
            return Err(entra(
                400,
                "invalid_grant",
                65001,
                &format!(
                    "The user or administrator has not consented to use the application with the scope '{name}'. Send an interactive authorization request for this user and resource."
                ),
            ));
        };
        if !scopes.iter().any(|s: &String| s == known) {
            scopes.push(known.to_string());
        }
    }
    let graph = scopes
        .iter()
        .any(|s| !["offline_access", "openid", "profile", "email"].contains(&s.as_str()));
    if !graph {
        return Err(entra(
            400,
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' names no Graph permission, e.g. https://graph.microsoft.com/Presence.Read.All."
            ),
        ));
    }
    Ok(scopes)
}

impl Delegated {
    pub fn new(auto_approve: bool) -> Self {
        Delegated {
            auto_approve,
            ..Delegated::default()
        }
    }

    /// Whether device codes approve themselves (the demo).
    pub fn auto_approve(&self) -> bool {
        self.auto_approve
    }

    /// A new device code for `client_id` (already checked) and `scopes`;
    /// `device_code` and `user_code` are drawn by the caller.
    pub fn start(
        &mut self,
        client_id: &str,
        scopes: Vec<String>,
        device_code: String,
        user_code: String,
        now: Timestamp,
    ) -> DeviceCodeIssued {
        self.forget_old_codes(now);
        self.by_user_code
            .insert(user_code.clone(), device_code.clone());
        self.codes.insert(
            device_code.clone(),
            DeviceCode {
                user_code: user_code.clone(),
                client_id: client_id.to_string(),
                scopes,
                created: now,
                interval: POLL_INTERVAL,
                last_poll: None,
                decision: Decision::Pending,
            },
        );
        DeviceCodeIssued {
            device_code,
            user_code,
            expires_in: DEVICE_CODE_LIFETIME.as_secs(),
            interval: POLL_INTERVAL.as_secs(),
        }
    }

    /// A user approves the code shown to them, signed in as `upn` (`oid`).
    pub fn approve(
        &mut self,
        user_code: &str,
        upn: &str,
        oid: &str,
        now: Timestamp,
    ) -> Result<(), ApprovalError> {
        self.decide(
            user_code,
            Decision::Approved {
                upn: upn.to_string(),
                oid: oid.to_string(),
            },
            now,
        )
    }

    /// A user says no to the code shown to them.
    pub fn decline(&mut self, user_code: &str, now: Timestamp) -> Result<(), ApprovalError> {
        self.decide(user_code, Decision::Declined, now)
    }

    fn decide(
        &mut self,
        user_code: &str,
        decision: Decision,
        now: Timestamp,
    ) -> Result<(), ApprovalError> {
        let unknown = || ApprovalError::UnknownCode(user_code.to_string());
        let device_code = self.by_user_code.get(user_code).ok_or_else(unknown)?;
        let code = self.codes.get_mut(device_code).ok_or_else(unknown)?;
        if now >= code.created + DEVICE_CODE_LIFETIME {
            return Err(ApprovalError::Expired(user_code.to_string()));
        }
        if code.decision != Decision::Pending {
            return Err(ApprovalError::AlreadyDecided(user_code.to_string()));
        }
        code.decision = decision;
        Ok(())
    }

    /// The user codes still waiting for a user, oldest first.
    pub fn pending_user_codes(&self, now: Timestamp) -> Vec<String> {
        let mut pending: Vec<&DeviceCode> = self
            .codes
            .values()
            .filter(|c| c.decision == Decision::Pending && now < c.created + DEVICE_CODE_LIFETIME)
            .collect();
        pending.sort_by_key(|c| c.created);
        pending.iter().map(|c| c.user_code.clone()).collect()
    }

    /// A client polls the token endpoint with its device code. With
    /// auto-approve on, a code old enough is approved first as the first
    /// of `service_accounts` (UPN, oid) not yet signed in this way, or the
    /// first one when all are.
    pub fn poll(
        &mut self,
        client_id: &str,
        device_code: &str,
        service_accounts: &[(String, String)],
        now: Timestamp,
    ) -> Result<SignedIn, EntraError> {
        let auto = self.auto_approve;
        let fresh = service_accounts
            .iter()
            .find(|(upn, _)| !self.auto_signed_in.contains(&upn.to_lowercase()))
            .or_else(|| service_accounts.first())
            .cloned();
        let Some(code) = self.codes.get_mut(device_code) else {
            return Err(entra(
                400,
                "invalid_grant",
                70000,
                "The provided value for the 'device_code' is not valid.",
            ));
        };
        if !code.client_id.eq_ignore_ascii_case(client_id) {
            return Err(entra(
                400,
                "invalid_grant",
                70000,
                "The device code was issued to another application.",
            ));
        }
        if now >= code.created + DEVICE_CODE_LIFETIME {
            return Err(entra(
                400,
                "expired_token",
                70019,
                "Verification code expired. Have the user retry the sign-in.",
            ));
        }
        if auto
            && code.decision == Decision::Pending
            && now >= code.created + AUTO_APPROVE_AFTER
            && let Some((upn, oid)) = fresh
        {
            self.auto_signed_in.insert(upn.to_lowercase());
            code.decision = Decision::Approved { upn, oid };
        }
        match code.decision.clone() {
            Decision::Pending => {
                let too_soon = code
                    .last_poll
                    .is_some_and(|last| now < last + code.interval);
                code.last_poll = Some(now);
                if too_soon {
                    code.interval += SLOW_DOWN_STEP;
                    Err(entra(
                        400,
                        "slow_down",
                        70016,
                        "The client is polling too quickly; wait the interval (now 5 s longer) between requests.",
                    ))
                } else {
                    Err(entra(
                        400,
                        "authorization_pending",
                        70016,
                        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    ))
                }
            }
            Decision::Declined => Err(entra(
                400,
                "authorization_declined",
                70000,
                "The user declined the sign-in request.",
            )),
            Decision::Redeemed => Err(entra(
                400,
                "invalid_grant",
                70000,
                "The provided device code was already redeemed.",
            )),
            Decision::Approved { upn, oid } => {
                code.decision = Decision::Redeemed;
                let scopes = code.scopes.clone();
                Ok(signed_in(upn, oid, scopes))
            }
        }
    }

    /// Keeps `refresh_token` (drawn by the caller) for the signed-in user.
    pub fn keep_refresh_token(
        &mut self,
        client_id: &str,
        refresh_token: String,
        signed_in: &SignedIn,
        now: Timestamp,
    ) {
        let scopes = signed_in.user.scopes.clone();
        self.refresh.insert(
            refresh_token,
            RefreshGrant {
                client_id: client_id.to_string(),
                upn: signed_in.user.upn.clone(),
                oid: signed_in.user.oid.clone(),
                scopes,
                issued_at: now,
            },
        );
    }

    /// A client redeems a refresh token. The token stays valid (Entra keeps
    /// older ones until revoked or idle for 90 days); the caller keeps the
    /// new one it issues with [`Delegated::keep_refresh_token`].
    pub fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        now: Timestamp,
    ) -> Result<SignedIn, EntraError> {
        if self.revoked.contains_key(refresh_token) {
            return Err(entra(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
            ));
        }
        let Some(grant) = self.refresh.get(refresh_token) else {
            return Err(entra(
                400,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid: the refresh token is not one this tenant issued.",
            ));
        };
        if !grant.client_id.eq_ignore_ascii_case(client_id) {
            return Err(entra(
                400,
                "invalid_grant",
                70000,
                "The refresh token was issued to another application.",
            ));
        }
        if now >= grant.issued_at + REFRESH_INACTIVITY {
            return Err(entra(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued and was inactive for 90.00:00:00.",
            ));
        }
        match self.faults.get(&grant.upn.to_lowercase()) {
            Some(AccountFault::Mfa) => {
                return Err(entra(
                    400,
                    "interaction_required",
                    50076,
                    "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource.",
                ));
            }
            Some(AccountFault::ConditionalAccess) => {
                return Err(entra(
                    400,
                    "interaction_required",
                    53003,
                    "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
                ));
            }
            None => {}
        }
        Ok(signed_in(
            grant.upn.clone(),
            grant.oid.clone(),
            grant.scopes.clone(),
        ))
    }

    /// An admin revokes the user's sessions (or the password changed):
    /// every refresh token they hold now answers AADSTS50173. Returns how
    /// many were revoked.
    pub fn revoke(&mut self, upn: &str) -> usize {
        let tokens: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, g)| g.upn.eq_ignore_ascii_case(upn))
            .map(|(t, _)| t.clone())
            .collect();
        for token in &tokens {
            self.refresh.remove(token);
            self.revoked.insert(token.clone(), upn.to_string());
        }
        self.auto_signed_in.remove(&upn.to_lowercase());
        tokens.len()
    }

    /// Puts `fault` on the account until [`Delegated::restore`].
    pub fn set_fault(&mut self, upn: &str, fault: AccountFault) {
        self.faults.insert(upn.to_lowercase(), fault);
    }

    /// Clears the account's MFA or conditional-access fault. Revoked tokens
    /// stay revoked, as in Entra: the account signs in again.
    pub fn restore(&mut self, upn: &str) {
        self.faults.remove(&upn.to_lowercase());
    }

    pub fn fault(&self, upn: &str) -> Option<AccountFault> {
        self.faults.get(&upn.to_lowercase()).copied()
    }

    /// Refresh tokens held (valid, not revoked) for `upn`.
    pub fn refresh_tokens_of(&self, upn: &str) -> usize {
        self.refresh
            .values()
            .filter(|g| g.upn.eq_ignore_ascii_case(upn))
            .count()
    }

    /// Codes an hour past their expiry are forgotten (a poll then reads
    /// "not valid" rather than "expired").
    fn forget_old_codes(&mut self, now: Timestamp) {
        let keep = DEVICE_CODE_LIFETIME + Duration::from_secs(3600);
        self.codes.retain(|_, c| now < c.created + keep);
        let codes = &self.codes;
        self.by_user_code.retain(|_, d| codes.contains_key(d));
    }
}

/// The access token's `scp` keeps the Graph scopes and `offline_access`
/// (as the contract with the daemon has it), not the OpenID ones.
fn signed_in(upn: String, oid: String, scopes: Vec<String>) -> SignedIn {
    let offline = scopes.iter().any(|s| s == OFFLINE_ACCESS);
    let scopes = scopes
        .into_iter()
        .filter(|s| !["openid", "profile", "email"].contains(&s.as_str()))
        .collect();
    SignedIn {
        user: SignedInUser { upn, oid, scopes },
        offline,
    }
}

#[cfg(test)]
mod tests;
