//! `POST /_sim/accounts/{upn}/{revoke|mfa|conditional-access|restore}`:
//! what an admin or a policy does to a signed-in account. `revoke` kills
//! its refresh tokens (AADSTS50173) and removes its subscriptions (each
//! with a `subscriptionRemoved` lifecycle notification); `mfa` and
//! `conditional-access` make refreshes answer AADSTS50076 and 53003;
//! `restore` clears those two (revoked tokens stay revoked).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::errors::{bad_request, user_not_found};
use super::{RequestCtx, Shared, lock};
use crate::sim::delegated::{AccountAction, AccountFault};

fn parse(text: &str) -> Option<AccountAction> {
    match text {
        "revoke" => Some(AccountAction::Revoke),
        "mfa" => Some(AccountAction::Fault(AccountFault::Mfa)),
        "conditional-access" => Some(AccountAction::Fault(AccountFault::ConditionalAccess)),
        "restore" => Some(AccountAction::Restore),
        _ => None,
    }
}

pub(crate) async fn fault(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path((upn, action)): Path<(String, String)>,
) -> Response {
    let Some(parsed) = parse(&action) else {
        return bad_request(
            &ctx,
            &format!(
                "unknown account action '{action}'; known: revoke, mfa, conditional-access, restore"
            ),
        );
    };
    match shared.account_action(&upn, parsed, ctx.at) {
        Some(outcome) => Json(json!({
            "upn": outcome.upn,
            "action": action,
            "refresh_tokens_revoked": outcome.revoked,
            "subscriptions_removed": outcome.subscriptions_removed,
        }))
        .into_response(),
        None => user_not_found(&ctx, &upn),
    }
}

/// What an account action did.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountOutcome {
    pub upn: String,
    pub revoked: usize,
    pub subscriptions_removed: usize,
}

impl Shared {
    /// Applies `action` to the tenant's user `upn`; `None` when no such user.
    pub(crate) fn account_action(
        &self,
        upn: &str,
        action: AccountAction,
        now: crate::time::Timestamp,
    ) -> Option<AccountOutcome> {
        let (upn, oid) = {
            let tenant = self.tenant(now);
            let user = tenant.directory().get(upn)?;
            (user.user_principal_name.clone(), user.id.clone())
        };
        let mut outcome = AccountOutcome {
            upn: upn.clone(),
            ..AccountOutcome::default()
        };
        let mut delegated = lock(&self.delegated);
        match action {
            AccountAction::Revoke => {
                outcome.revoked = delegated.revoke(&upn);
                drop(delegated);
                lock(&self.auth).revoke_user(&upn, self.clock.now());
                outcome.subscriptions_removed = self.remove_subscriptions_of(&oid);
            }
            AccountAction::Fault(fault) => delegated.set_fault(&upn, fault),
            AccountAction::Restore => delegated.restore(&upn),
        }
        Some(outcome)
    }
}
