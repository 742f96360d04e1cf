//! Granted against needed, at run time: each new token's roles are compared
//! with what the config needs; a change is logged once, counted per missing
//! permission in `/metrics`, shown in `/readyz` and `/v1/health`, and
//! without Presence.ReadWrite.All the sync loop holds Teams writes (and
//! releases them, newest value only, when a later token has the role).
//!
//! While a needed permission is missing, a new token is asked for every
//! `recheck`, so consent granted meanwhile takes effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::RoutingConfig;
use crate::graph::TokenCache;
use crate::graph::permissions::{Granted, Needs, Permission, Report, Uses, needed};
use crate::mapping::Profile;
use crate::metrics::GaugeVec;
use crate::stop::Stop;

use super::sync_loop::Command;

/// What `/readyz` and `/v1/health` show of the permissions.
#[derive(Clone, Debug, PartialEq)]
pub struct PermissionState {
    pub report: Report,
    /// The tenant's admin-consent URL for the app.
    pub consent_url: String,
}

/// What the config asks of Graph: its profiles' directions and its queues'
/// overflow to Teams users. `scope_groups` is false: the caller sets it
/// from the directory's scope (read at start, not reloaded).
pub fn uses(profiles: &[Arc<Profile>], routing: &RoutingConfig) -> Uses {
    Uses {
        writes_presence: profiles.iter().any(|p| p.direction.cc_to_teams()),
        teams_to_cc: profiles.iter().any(|p| p.direction.teams_to_cc()),
        overflow_to_teams: routing.queues.iter().any(|q| {
            matches!(
                q.overflow,
                Some(crate::routing::OverflowTarget::TeamsUsers(_))
            )
        }),
        scope_groups: false,
    }
}

/// Why Teams writes are held, when the report says they must be.
pub fn hold_reason(needs: &Needs, report: &Report) -> Option<String> {
    (needs.needs(Permission::PresenceReadWriteAll)
        && report.lacks(Permission::PresenceReadWriteAll))
    .then(|| {
        "held: the app lacks the application permission Presence.ReadWrite.All; \
         an admin grants it with admin consent, and the newest value is written then"
            .to_string()
    })
}

/// A certificate credential this close to its end date is a warning.
pub const CERTIFICATE_WARNING: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// The certificate credential's state at `now`: usable or not, and the
/// words for `/readyz` and the log (a warning within 30 days of the end).
pub fn certificate_check(
    not_after: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> (bool, String) {
    let date = not_after.format("%Y-%m-%d %H:%M UTC");
    let left = not_after - now;
    if left <= chrono::TimeDelta::zero() {
        (
            false,
            format!(
                "the Graph client certificate expired on {date}: upload a new certificate to the app registration and configure it"
            ),
        )
    } else if left <= CERTIFICATE_WARNING {
        (
            true,
            format!(
                "warning: the Graph client certificate expires on {date}, in {} days: upload a new certificate to the app registration and configure it",
                left.num_days()
            ),
        )
    } else {
        (
            true,
            format!("the Graph client certificate expires on {date}"),
        )
    }
}

/// Watches the tokens' roles for the writer's task.
pub struct PermissionWatch {
    pub tokens: Arc<TokenCache>,
    /// What the config in force asks of Graph; a reload changes it.
    pub uses: watch::Receiver<Uses>,
    pub needs: Needs,
    pub consent_url: String,
    /// How often a new token is asked for while a permission is missing.
    pub recheck: Duration,
    pub commands: mpsc::Sender<Command>,
    pub state: watch::Sender<Option<PermissionState>>,
    /// `presence_sync_graph_permission_missing{permission}`.
    pub missing: GaugeVec<1>,
}

impl PermissionWatch {
    pub fn new(
        tokens: Arc<TokenCache>,
        mut uses: watch::Receiver<Uses>,
        consent_url: String,
        recheck: Duration,
        commands: mpsc::Sender<Command>,
        missing: GaugeVec<1>,
    ) -> (Self, watch::Receiver<Option<PermissionState>>) {
        let (state, shown) = watch::channel(None);
        let needs = needed(*uses.borrow_and_update());
        for need in &needs.0 {
            missing.with([need.permission.as_str()]).set(0.0);
        }
        (
            PermissionWatch {
                tokens,
                uses,
                needs,
                consent_url,
                recheck,
                commands,
                state,
                missing,
            },
            shown,
        )
    }

    /// Runs until `stop`.
    pub async fn run(mut self, stop: Stop) {
        let mut granted = self.tokens.granted();
        let mut last: Option<Report> = None;
        loop {
            let current = granted.borrow_and_update().clone();
            if let Some(current) = current {
                let report = Report::compare(&self.needs, &current);
                if last.as_ref() != Some(&report) {
                    self.apply(&report, &current).await;
                    last = Some(report);
                }
            }
            let missing = last.as_ref().is_some_and(|r| !r.missing.is_empty());
            tokio::select! {
                () = stop.stopped() => return,
                changed = granted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                Ok(()) = self.uses.changed() => {
                    // A reload: the config may need more, or less, now.
                    self.needs = needed(*self.uses.borrow_and_update());
                    last = None;
                }
                () = tokio::time::sleep(self.recheck), if missing => {
                    // Consent may have been granted since: a new token says.
                    self.tokens.refresh_soon();
                    if let Err(error) = self.tokens.token().await {
                        tracing::debug!(%error, "no new token to re-check the permissions with");
                    }
                }
            }
        }
    }

    async fn apply(&self, report: &Report, granted: &Granted) {
        match granted {
            Granted::Unknown => tracing::info!(
                "the access token is not a JWT the daemon can read: its permissions are not checked"
            ),
            Granted::Roles(_) if report.missing.is_empty() => {
                tracing::info!("Graph permissions: {}", report.describe())
            }
            Granted::Roles(_) => tracing::warn!(
                consent_url = %self.consent_url,
                "Graph permissions: {}", report.describe()
            ),
        }
        for permission in Permission::ALL {
            let lacks = report.lacks(permission);
            // A permission no longer needed (after a reload) is not missing.
            self.missing
                .with([permission.as_str()])
                .set(if lacks { 1.0 } else { 0.0 });
        }
        let hold = hold_reason(&self.needs, report);
        // The loop may be gone at shutdown.
        let _ = self.commands.send(Command::HoldWrites(hold)).await;
        self.state.send_replace(Some(PermissionState {
            report: report.clone(),
            consent_url: self.consent_url.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::permissions::Granted;

    fn roles(list: &[&str]) -> Granted {
        Granted::Roles(list.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn a_certificate_near_its_end_is_a_warning_and_past_it_an_error() {
        use chrono::TimeZone;
        let now = chrono::Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let (ok, text) = certificate_check(now + chrono::TimeDelta::days(90), now);
        assert!(ok && !text.contains("warning"), "{text}");
        let (ok, text) = certificate_check(now + chrono::TimeDelta::days(12), now);
        assert!(
            ok && text.starts_with("warning") && text.contains("in 12 days"),
            "{text}"
        );
        let (ok, text) = certificate_check(now - chrono::TimeDelta::days(1), now);
        assert!(!ok && text.contains("expired"), "{text}");
    }

    #[test]
    fn writes_are_held_only_when_the_config_writes_and_the_role_is_missing() {
        let writes = needed(Uses {
            writes_presence: true,
            ..Uses::default()
        });
        let reads = needed(Uses::default());
        let read_only = roles(&["Presence.Read.All", "User.Read.All"]);
        let report = Report::compare(&writes, &read_only);
        assert!(
            hold_reason(&writes, &report)
                .unwrap()
                .contains("Presence.ReadWrite.All")
        );
        assert_eq!(
            hold_reason(&reads, &Report::compare(&reads, &read_only)),
            None
        );
        let all = roles(&["Presence.ReadWrite.All", "User.Read.All"]);
        assert_eq!(hold_reason(&writes, &Report::compare(&writes, &all)), None);
        assert_eq!(
            hold_reason(&writes, &Report::compare(&writes, &Granted::Unknown)),
            None
        );
    }
}
