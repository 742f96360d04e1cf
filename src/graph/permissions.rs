//! Least privilege, explained: the application permissions (app roles) the
//! daemon's features need, the ones the tenant granted (read from the
//! access token's `roles` claim), what is missing and what that stops, the
//! admin-consent URL, and what a Graph 403 means.
//!
//! Pure: the config's needs come in as profiles' directions, the granted
//! roles as the token's text.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::Serialize;

/// An application permission of Microsoft Graph the daemon uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Permission {
    /// Read every user's presence (the poller).
    #[serde(rename = "Presence.Read.All")]
    PresenceReadAll,
    /// Set and clear presence sessions and preferred presence.
    #[serde(rename = "Presence.ReadWrite.All")]
    PresenceReadWriteAll,
    /// Read users and their delta (the directory, auto-linking, phones).
    #[serde(rename = "User.Read.All")]
    UserReadAll,
    /// Read the members of groups (a directory scope by group membership).
    #[serde(rename = "GroupMember.Read.All")]
    GroupMemberReadAll,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::PresenceReadAll,
        Permission::PresenceReadWriteAll,
        Permission::UserReadAll,
        Permission::GroupMemberReadAll,
    ];

    /// The role's value as Entra writes it in `roles`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::PresenceReadAll => "Presence.Read.All",
            Permission::PresenceReadWriteAll => "Presence.ReadWrite.All",
            Permission::UserReadAll => "User.Read.All",
            Permission::GroupMemberReadAll => "GroupMember.Read.All",
        }
    }

    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Granted roles that give this permission: itself, or a broader one
    /// (Presence.ReadWrite.All reads too; the Directory roles read users).
    pub fn satisfied_by(self) -> &'static [&'static str] {
        match self {
            Permission::PresenceReadAll => &["Presence.Read.All", "Presence.ReadWrite.All"],
            Permission::PresenceReadWriteAll => &["Presence.ReadWrite.All"],
            Permission::UserReadAll => &[
                "User.Read.All",
                "User.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
            Permission::GroupMemberReadAll => &[
                "GroupMember.Read.All",
                "GroupMember.ReadWrite.All",
                "Group.Read.All",
                "Group.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
        }
    }

    /// Why the daemon asks for it, in one sentence.
    pub fn why(self) -> &'static str {
        match self {
            Permission::PresenceReadAll => {
                "reads every agent's Teams presence (getPresencesByUserId) to drive CC statuses, gate routing and show it"
            }
            Permission::PresenceReadWriteAll => {
                "sets and clears the app's presence session (or the preferred presence) of agents: CC statuses shown in Teams"
            }
            Permission::UserReadAll => {
                "reads the users of the tenant and their changes (/users, /users/delta): linking agents, new users, direct-dial numbers"
            }
            Permission::GroupMemberReadAll => {
                "reads the members of the groups `[directory] scope` names (/groups/{id}/transitiveMembers): who the directory lists and reads"
            }
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delegated permission the service accounts sign in with (presence
/// subscriptions take a delegated token only). Each account consents, or
/// an admin grants consent for the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum DelegatedPermission {
    /// Subscribe to users' presence as the signed-in account.
    #[serde(rename = "Presence.Read.All")]
    PresenceReadAll,
    /// A refresh token, so the daemon keeps the sign-in.
    #[serde(rename = "offline_access")]
    OfflineAccess,
}

impl DelegatedPermission {
    pub fn as_str(self) -> &'static str {
        match self {
            DelegatedPermission::PresenceReadAll => "Presence.Read.All",
            DelegatedPermission::OfflineAccess => "offline_access",
        }
    }

    /// Why the daemon asks for it, in one sentence.
    pub fn why(self) -> &'static str {
        match self {
            DelegatedPermission::PresenceReadAll => {
                "subscribes to the agents' presence (POST /subscriptions on /communications/presences) as a service account: changes arrive as notifications instead of waiting for the next poll"
            }
            DelegatedPermission::OfflineAccess => {
                "gives the daemon a refresh token, so a service account signed in once with `presence-sync login` stays signed in"
            }
        }
    }
}

impl fmt::Display for DelegatedPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delegated permissions a config needs: both with `[subscriptions]
/// enabled`, none without.
pub fn delegated_needed(subscriptions_enabled: bool) -> Vec<DelegatedPermission> {
    if subscriptions_enabled {
        vec![
            DelegatedPermission::PresenceReadAll,
            DelegatedPermission::OfflineAccess,
        ]
    } else {
        Vec::new()
    }
}

/// The delegated part of `presence-sync permissions`: nothing when none
/// is needed; else each permission, why, and the command that signs each
/// account in.
pub fn explain_delegated(
    needs: &[DelegatedPermission],
    config_file: &std::path::Path,
    accounts: &[String],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if needs.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nDelegated permissions of Microsoft Graph the service accounts sign in with ([subscriptions] is enabled):"
    );
    for permission in needs {
        let _ = writeln!(out, "\n  {permission} (delegated)");
        let _ = writeln!(out, "    why:  {}", permission.why());
    }
    let _ = writeln!(
        out,
        "\nThe app registration must allow public client flows (Authentication: \"Allow public client flows\"). \
         Grant admin consent for the delegated permissions too (the URL above covers both kinds), \
         then sign each service account in:"
    );
    for upn in accounts {
        let _ = writeln!(
            out,
            "  {}",
            crate::accounts::login_command(config_file, upn)
        );
    }
    out
}

/// A feature of the daemon that depends on a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Teams presence changes the CC status (`teams_to_cc` rules).
    TeamsToCc,
    /// Teams presences that keep an agent from being offered contacts.
    RoutingGates,
    /// Every agent's Teams presence in its view and on the status board.
    PresenceView,
    /// CC statuses shown in Teams (`setPresence` and the rest).
    CcToTeams,
    /// The directory: users, their changes, new users within a minute.
    Directory,
    /// Agents linked to their Teams user by UPN or mail.
    AutoLinking,
    /// Teams users' direct-dial numbers for overflow and click-to-call.
    DirectDialNumbers,
    /// The directory's scope by group membership (`scope = { groups }`).
    DirectoryScopeGroups,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::TeamsToCc => "teams_to_cc",
            Feature::RoutingGates => "routing_gates",
            Feature::PresenceView => "presence_view",
            Feature::CcToTeams => "cc_to_teams",
            Feature::Directory => "directory",
            Feature::AutoLinking => "auto_linking",
            Feature::DirectDialNumbers => "direct_dial_numbers",
            Feature::DirectoryScopeGroups => "directory_scope_groups",
        }
    }

    /// In words, for the README table, `permissions` and the log.
    pub fn describe(self) -> &'static str {
        match self {
            Feature::TeamsToCc => "Teams → CC (presence drives CC statuses)",
            Feature::RoutingGates => "routing gates (a meeting keeps an agent from contacts)",
            Feature::PresenceView => "Teams presence in agent views and on the board",
            Feature::CcToTeams => "CC → Teams (CC statuses shown in Teams)",
            Feature::Directory => "the directory (users and new users)",
            Feature::AutoLinking => "auto-linking agents by UPN",
            Feature::DirectDialNumbers => "direct-dial numbers (overflow to Teams users)",
            Feature::DirectoryScopeGroups => {
                "the directory's scope by group membership (its members listed and read)"
            }
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission the config needs and the features that need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Need {
    pub permission: Permission,
    pub features: Vec<Feature>,
}

/// What the config needs, in [`Permission::ALL`] order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needs(pub Vec<Need>);

/// What a config asks of Graph, for [`needed`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    /// Some profile sends CC statuses to Teams (`both` or `cc_to_teams`).
    pub writes_presence: bool,
    /// Some profile lets Teams change CC statuses.
    pub teams_to_cc: bool,
    /// Some routing queue overflows to Teams users (their numbers).
    pub overflow_to_teams: bool,
    /// `[directory] scope` names groups (their members).
    pub scope_groups: bool,
}

/// The permissions a config needs. Presence is always read (agent views,
/// routing gates, echo and override detection) and users always (linking);
/// writing needs Presence.ReadWrite.All, and a config that only reads
/// (`direction = "teams_to_cc"` or `off` everywhere) needs no write
/// permission. Group members (GroupMember.Read.All) only when the
/// directory's scope names groups.
pub fn needed(uses: Uses) -> Needs {
    let mut reads = Vec::new();
    if uses.teams_to_cc {
        reads.push(Feature::TeamsToCc);
    }
    reads.extend([Feature::RoutingGates, Feature::PresenceView]);
    let mut needs = vec![Need {
        permission: Permission::PresenceReadAll,
        features: reads,
    }];
    if uses.writes_presence {
        needs.push(Need {
            permission: Permission::PresenceReadWriteAll,
            features: vec![Feature::CcToTeams],
        });
    }
    let mut users = vec![Feature::Directory, Feature::AutoLinking];
    if uses.overflow_to_teams {
        users.push(Feature::DirectDialNumbers);
    }
    needs.push(Need {
        permission: Permission::UserReadAll,
        features: users,
    });
    if uses.scope_groups {
        needs.push(Need {
            permission: Permission::GroupMemberReadAll,
            features: vec![Feature::DirectoryScopeGroups],
        });
    }
    Needs(needs)
}

impl Needs {
    pub fn permissions(&self) -> Vec<Permission> {
        self.0.iter().map(|n| n.permission).collect()
    }

    pub fn needs(&self, permission: Permission) -> bool {
        self.0.iter().any(|n| n.permission == permission)
    }
}

/// The application roles a token carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Granted {
    /// The token's `roles` claim (empty when it has none).
    Roles(BTreeSet<String>),
    /// The token is not a JWT the daemon can read (a scripted peer, an
    /// opaque token): the roles cannot be told, so nothing is held back.
    Unknown,
}

impl Granted {
    pub fn has(&self, permission: Permission) -> bool {
        match self {
            Granted::Roles(roles) => permission
                .satisfied_by()
                .iter()
                .any(|r| roles.iter().any(|g| g.eq_ignore_ascii_case(r))),
            Granted::Unknown => true,
        }
    }

    pub fn roles(&self) -> Option<&BTreeSet<String>> {
        match self {
            Granted::Roles(roles) => Some(roles),
            Granted::Unknown => None,
        }
    }
}

/// Reads the `roles` claim of an access token (a JWT: the middle part is
/// base64url JSON). The signature is not checked: the token came from
/// Entra over TLS and Graph checks it; the daemon only reads what it says.
/// A JWT without `roles` grants nothing; text that is not a JWT is
/// [`Granted::Unknown`].
pub fn granted_roles(token: &str) -> Granted {
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Granted::Unknown;
    };
    let bytes = match URL_SAFE_NO_PAD
        .decode(claims)
        .or_else(|_| URL_SAFE.decode(claims))
    {
        Ok(bytes) => bytes,
        Err(_) => return Granted::Unknown,
    };
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(&bytes) else {
        return Granted::Unknown;
    };
    let roles = claims
        .get("roles")
        .and_then(serde_json::Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Granted::Roles(roles)
}

/// A needed permission the token does not carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub permission: Permission,
    /// The features it stops.
    pub stops: Vec<Feature>,
}

/// Needed against granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub needed: Vec<Permission>,
    /// `None` while no token was read yet, or when it cannot be read.
    pub granted: Option<BTreeSet<String>>,
    pub missing: Vec<Missing>,
}

impl Report {
    pub fn compare(needs: &Needs, granted: &Granted) -> Report {
        Report {
            needed: needs.permissions(),
            granted: granted.roles().cloned(),
            missing: needs
                .0
                .iter()
                .filter(|n| !granted.has(n.permission))
                .map(|n| Missing {
                    permission: n.permission,
                    stops: n.features.clone(),
                })
                .collect(),
        }
    }

    pub fn lacks(&self, permission: Permission) -> bool {
        self.missing.iter().any(|m| m.permission == permission)
    }

    /// One line for the log: what is missing and what it stops, or that
    /// everything needed is granted.
    pub fn describe(&self) -> String {
        if self.missing.is_empty() {
            let needed: Vec<&str> = self.needed.iter().map(|p| p.as_str()).collect();
            return format!("every permission needed is granted ({})", needed.join(", "));
        }
        let missing: Vec<String> = self
            .missing
            .iter()
            .map(|m| {
                let stops: Vec<&str> = m.stops.iter().map(|f| f.describe()).collect();
                format!("{} (stops {})", m.permission, stops.join("; "))
            })
            .collect();
        format!(
            "the app lacks {}: an admin grants it with admin consent",
            missing.join(", ")
        )
    }
}

/// The tenant's admin-consent URL for the app:
/// `{login_base}/{tenant}/adminconsent?client_id=...`.
pub fn consent_url(login_base: &str, tenant: &str, client_id: &str) -> String {
    let mut url = format!(
        "{}/{}/adminconsent",
        login_base.trim_end_matches('/'),
        tenant
    );
    url.push_str("?client_id=");
    url.extend(
        client_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-'),
    );
    url
}

/// What a Graph 403 means for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Authorization_RequestDenied` / `Forbidden`: the app's roles do not
    /// allow the call.
    PermissionMissing { code: String },
}

/// Classifies a Graph answer: a 403 with `Authorization_RequestDenied`,
/// `Forbidden` or `accessDenied` is a missing permission.
pub fn classify_refusal(status: u16, code: Option<&str>) -> Option<Refusal> {
    if status != 403 {
        return None;
    }
    let code = code.unwrap_or("Forbidden");
    ["Authorization_RequestDenied", "Forbidden", "accessDenied"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(code))
        .then(|| Refusal::PermissionMissing {
            code: code.to_string(),
        })
}

/// The operator's message for a 403 on a call that needs `permission`.
pub fn refusal_message(permission: Permission, code: &str) -> String {
    format!(
        "Graph refused the call with 403 {code}: the app lacks the application permission {permission}; an admin adds it to the app registration and grants admin consent (`presence-sync permissions` prints the URL)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    }

    fn roles(list: &[&str]) -> Granted {
        Granted::Roles(list.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn a_config_that_only_reads_needs_no_write_permission() {
        let reads = needed(Uses {
            teams_to_cc: true,
            ..Uses::default()
        });
        assert_eq!(
            reads.permissions(),
            vec![Permission::PresenceReadAll, Permission::UserReadAll]
        );
        assert!(reads.0[0].features.contains(&Feature::TeamsToCc));
        assert!(!reads.needs(Permission::GroupMemberReadAll));
        let both = needed(Uses {
            writes_presence: true,
            teams_to_cc: true,
            overflow_to_teams: true,
            scope_groups: true,
        });
        assert_eq!(both.permissions(), Permission::ALL.to_vec());
        assert_eq!(both.0[1].features, vec![Feature::CcToTeams]);
        assert!(both.0[2].features.contains(&Feature::DirectDialNumbers));
        assert_eq!(both.0[3].features, vec![Feature::DirectoryScopeGroups]);
        // A group role or a directory role reads group members.
        for role in [
            "Group.Read.All",
            "Directory.Read.All",
            "GroupMember.Read.All",
        ] {
            assert!(roles(&[role]).has(Permission::GroupMemberReadAll), "{role}");
        }
        assert!(!roles(&["User.Read.All"]).has(Permission::GroupMemberReadAll));
    }

    #[test]
    fn roles_are_read_from_the_token_and_a_token_without_them_has_none() {
        let token =
            jwt(serde_json::json!({"aud": "x", "roles": ["Presence.Read.All", "User.Read.All"]}));
        assert_eq!(
            granted_roles(&token),
            roles(&["Presence.Read.All", "User.Read.All"])
        );
        assert_eq!(
            granted_roles(&jwt(serde_json::json!({"aud": "x"}))),
            Granted::Roles(BTreeSet::new())
        );
        assert_eq!(granted_roles("opaque-token"), Granted::Unknown);
        assert_eq!(granted_roles("a.b.c"), Granted::Unknown);
        assert_eq!(granted_roles(""), Granted::Unknown);
        // Padded base64 is read too.
        let padded = format!(
            "h.{}.s",
            URL_SAFE.encode(serde_json::json!({"roles": ["User.Read.All"]}).to_string())
        );
        assert_eq!(granted_roles(&padded), roles(&["User.Read.All"]));
    }

    #[test]
    fn broader_roles_satisfy_narrower_needs() {
        let needs = needed(Uses {
            writes_presence: true,
            ..Uses::default()
        });
        let report = Report::compare(
            &needs,
            &roles(&["Presence.ReadWrite.All", "Directory.Read.All"]),
        );
        assert!(report.missing.is_empty(), "{report:?}");
        let report = Report::compare(&needs, &roles(&["Presence.Read.All", "User.Read.All"]));
        assert_eq!(
            report.missing,
            vec![Missing {
                permission: Permission::PresenceReadWriteAll,
                stops: vec![Feature::CcToTeams],
            }]
        );
        assert!(report.lacks(Permission::PresenceReadWriteAll));
        assert!(report.describe().contains("Presence.ReadWrite.All"));
        let none = Report::compare(&needs, &Granted::Roles(BTreeSet::new()));
        assert_eq!(none.missing.len(), 3);
        let unknown = Report::compare(&needs, &Granted::Unknown);
        assert!(unknown.missing.is_empty());
        assert_eq!(unknown.granted, None);
    }

    #[test]
    fn the_consent_url_follows_the_cloud() {
        assert_eq!(
            consent_url(
                "https://login.microsoftonline.us/",
                "contoso.onmicrosoft.com",
                "1234-ab"
            ),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/adminconsent?client_id=1234-ab"
        );
    }

    #[test]
    fn graph_403_bodies_are_missing_permissions() {
        assert!(matches!(
            classify_refusal(403, Some("Authorization_RequestDenied")),
            Some(Refusal::PermissionMissing { .. })
        ));
        assert!(classify_refusal(403, Some("Forbidden")).is_some());
        assert!(classify_refusal(403, None).is_some());
        assert_eq!(classify_refusal(404, Some("Forbidden")), None);
        assert_eq!(classify_refusal(403, Some("quotaLimitReached")), None);
        let message = refusal_message(Permission::PresenceReadWriteAll, "Forbidden");
        assert!(message.contains("Presence.ReadWrite.All") && message.contains("admin consent"));
    }

    #[test]
    fn delegated_permissions_are_needed_only_for_subscriptions() {
        assert!(delegated_needed(false).is_empty());
        assert_eq!(
            explain_delegated(&[], std::path::Path::new("c.toml"), &[]),
            ""
        );
        let needs = delegated_needed(true);
        assert_eq!(
            needs,
            vec![
                DelegatedPermission::PresenceReadAll,
                DelegatedPermission::OfflineAccess
            ]
        );
        let text = explain_delegated(
            &needs,
            std::path::Path::new("/etc/presence-sync/config.toml"),
            &["svc@contoso.example".to_string()],
        );
        assert!(text.contains("Presence.Read.All (delegated)"), "{text}");
        assert!(text.contains("offline_access (delegated)"), "{text}");
        assert!(
            text.contains(
                "presence-sync login --config /etc/presence-sync/config.toml --account svc@contoso.example"
            ),
            "{text}"
        );
    }

    #[test]
    fn permissions_parse_by_name() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(
            Permission::parse(" presence.read.all "),
            Some(Permission::PresenceReadAll)
        );
        assert_eq!(Permission::parse("Mail.Send"), None);
    }

    proptest::proptest! {
        #[test]
        fn reading_roles_never_panics(text in ".{0,200}") {
            let _ = granted_roles(&text);
        }

        #[test]
        fn the_roles_in_a_token_are_read_back(list in proptest::collection::vec("[A-Za-z.]{1,30}", 0..6)) {
            let token = jwt(serde_json::json!({"roles": list}));
            proptest::prop_assert_eq!(
                granted_roles(&token),
                Granted::Roles(list.iter().cloned().collect())
            );
        }
    }
}
