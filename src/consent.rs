//! `presence-sync permissions` and `check --online`: what a config needs of
//! Graph and why, the tenant's admin-consent URL, and whether the app has
//! it, asked of Entra and Graph.

use std::fmt::Write as _;
use std::sync::Arc;

use reqwest::Method;

use crate::config::Config;
use crate::daemon::permissions::uses;
use crate::graph::permissions::{
    Feature, Granted, Needs, Permission, Refusal, classify_refusal, consent_url, granted_roles,
    needed,
};
use crate::graph::{AuthError, CallClass, Credential, GraphClient, GraphError};
use crate::mapping::Profile;

/// What the config needs of Graph.
pub fn needs(config: &Config, profiles: &[Arc<Profile>]) -> Needs {
    needed(crate::graph::permissions::Uses {
        scope_groups: !config.directory.scope.groups().is_empty(),
        ..uses(profiles, &config.routing)
    })
}

/// The config's admin-consent URL.
pub fn consent_url_for(config: &Config) -> String {
    consent_url(
        &config.graph.login_base,
        &config.graph.tenant_id,
        &config.graph.client_id,
    )
}

fn features(list: &[Feature]) -> String {
    list.iter()
        .map(|f| f.describe())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The text `presence-sync permissions` prints.
pub fn explain(config: &Config, profiles: &[Arc<Profile>]) -> String {
    let needs = needs(config, profiles);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Application permissions of Microsoft Graph this config needs (admin consent required):"
    );
    for need in &needs.0 {
        let _ = writeln!(out, "\n  {}", need.permission);
        let _ = writeln!(out, "    for:  {}", features(&need.features));
        let _ = writeln!(out, "    why:  {}", need.permission.why());
    }
    if !needs.needs(Permission::PresenceReadWriteAll) {
        let _ = writeln!(
            out,
            "\nNo write permission: every profile only reads Teams (direction teams_to_cc or off), so \
             Presence.ReadWrite.All is not needed."
        );
    } else {
        let _ = writeln!(
            out,
            "\nPresence.ReadWrite.All also reads presence; Presence.Read.All is listed for what it \
             alone keeps working if the write permission is withheld (the daemon then holds Teams \
             writes and says so)."
        );
    }
    let _ = writeln!(
        out,
        "\nAdmin consent for tenant {}: {}",
        config.graph.tenant_id,
        consent_url_for(config)
    );
    out
}

/// Whether one needed permission is granted, and how that was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionCheck {
    pub permission: Permission,
    pub granted: bool,
    /// How it was found, in words.
    pub how: String,
    pub features: Vec<Feature>,
}

/// What `check --online` found.
#[derive(Debug)]
pub enum Online {
    /// A token was issued; each needed permission checked.
    Checked(Vec<PermissionCheck>),
    /// Entra refused the credentials.
    Refused(AuthError),
    /// Entra or Graph could not be reached.
    Unreachable(String),
}

/// Gets a token and makes one minimal read per needed permission:
/// `GET /users?$top=1` for User.Read.All, the presence of that user for
/// Presence.Read.All. Presence.ReadWrite.All is read from the token's
/// roles: it cannot be tried without changing someone's presence.
pub async fn check_online(config: &Config, profiles: &[Arc<Profile>]) -> Online {
    let needs = needs(config, profiles);
    let credential = match Credential::load(&config.graph.auth) {
        Ok(c) => c,
        Err(e) => return Online::Refused(e),
    };
    let client = match GraphClient::new(&config.graph, credential) {
        Ok(c) => c,
        Err(e) => return Online::Unreachable(e.to_string()),
    };
    let token = match client.throttle().tokens().token().await {
        Ok(token) => token,
        Err(e @ AuthError::Unreachable { .. }) => return Online::Unreachable(e.to_string()),
        Err(e) => return Online::Refused(e),
    };
    let granted = granted_roles(token.expose());
    let from_roles = |p: Permission| match &granted {
        Granted::Roles(_) if granted.has(p) => (true, "in the token's roles".to_string()),
        Granted::Roles(_) => (false, "not in the token's roles".to_string()),
        Granted::Unknown => (true, "the token's roles cannot be read".to_string()),
    };
    let mut user = None;
    let mut checks = Vec::new();
    // Users first: the presence read needs a user id.
    let mut order: Vec<_> = needs.0.iter().collect();
    order.sort_by_key(|n| n.permission != Permission::UserReadAll);
    for need in order {
        let (granted, how) = match need.permission {
            Permission::UserReadAll => match first_user(&client).await {
                Ok(id) => {
                    user = id;
                    (true, "listed a user (GET /users?$top=1)".to_string())
                }
                Err(e) => refused_or(e, "GET /users", &from_roles(need.permission)),
            },
            Permission::PresenceReadAll => match &user {
                Some(id) => match client.get_presences(std::slice::from_ref(id)).await {
                    Ok(_) => (
                        true,
                        "read one user's presence (getPresencesByUserId)".to_string(),
                    ),
                    Err(e) => refused_or(e, "getPresencesByUserId", &from_roles(need.permission)),
                },
                None => from_roles(need.permission),
            },
            Permission::PresenceReadWriteAll => {
                let (ok, how) = from_roles(need.permission);
                (ok, format!("{how} (a write is not tried)"))
            }
            Permission::GroupMemberReadAll => match config.directory.scope.groups().first() {
                Some(group) => match first_member(&client, group).await {
                    Ok(()) => (
                        true,
                        format!("listed a member of group {group} (transitiveMembers)"),
                    ),
                    Err(e) => refused_or(
                        e,
                        &format!("GET /groups/{group}/transitiveMembers"),
                        &from_roles(need.permission),
                    ),
                },
                None => from_roles(need.permission),
            },
        };
        checks.push(PermissionCheck {
            permission: need.permission,
            granted,
            how,
            features: need.features.clone(),
        });
    }
    checks.sort_by_key(|c| c.permission);
    Online::Checked(checks)
}

/// A refused call is a missing permission; any other failure leaves the
/// token's word.
fn refused_or(error: GraphError, what: &str, roles: &(bool, String)) -> (bool, String) {
    match classify_refusal(error.status().unwrap_or(0), error.code()) {
        Some(Refusal::PermissionMissing { code }) => {
            (false, format!("{what} was refused: 403 {code}"))
        }
        None => (
            roles.0,
            format!("{}; {what} failed: {}", roles.1, error.summary()),
        ),
    }
}

async fn first_user(client: &GraphClient) -> Result<Option<String>, GraphError> {
    let mut url = client.url(&["users"]);
    url.query_pairs_mut()
        .append_pair("$select", "id")
        .append_pair("$top", "1");
    let response = client
        .call(CallClass::Directory, Method::GET, url, None, "listUsers")
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    Ok(body["value"][0]["id"].as_str().map(str::to_string))
}

async fn first_member(client: &GraphClient, group: &str) -> Result<(), GraphError> {
    let mut url = client.url(&["groups", group, "transitiveMembers", "microsoft.graph.user"]);
    url.query_pairs_mut()
        .append_pair("$select", "id")
        .append_pair("$top", "1");
    client
        .call(
            CallClass::Directory,
            Method::GET,
            url,
            None,
            "listGroupMembers",
        )
        .await
        .map(|_| ())
}

/// The lines `check --online` prints, and whether every needed permission
/// is granted.
pub fn render(checks: &[PermissionCheck], consent: &str) -> (String, bool) {
    let mut out = String::new();
    let mut all = true;
    for c in checks {
        if c.granted {
            let _ = writeln!(out, "granted: {} ({})", c.permission, c.how);
        } else {
            all = false;
            let _ = writeln!(
                out,
                "missing: {} ({}); stops {}",
                c.permission,
                c.how,
                features(&c.features)
            );
        }
    }
    if !all {
        let _ = writeln!(
            out,
            "an admin adds the missing application permissions to the app registration and grants admin consent: {consent}"
        );
    }
    (out, all)
}
