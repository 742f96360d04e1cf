//! What Graph and Entra send and receive, as serde types.
//!
//! Reading is lenient where Microsoft's own documents disagree or a payload
//! may grow: availability and activity keep unknown values, an error body may
//! spell `innerError` or `innererror`, a presence read may come back as an
//! entity or a `{"value":[...]}` collection, and one malformed item in a
//! collection is skipped (and counted) instead of failing the whole page.

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Secret;
use crate::presence::Presence;

/// The Teams Phone (MCOEV) service plan: the user can have a phone number.
pub const TEAMS_PHONE_PLAN_ID: &str = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7";
/// The Microsoft Teams (TEAMS1) service plan.
pub const TEAMS_PLAN_ID: &str = "57ff2da0-773e-42df-b2af-ffb7a2317929";
/// The service every Teams plan (commercial, government, exploratory) names.
pub const TEAMS_SERVICE: &str = "TeamspaceAPI";

// ---------------------------------------------------------------- tokens

/// A successful token answer from Entra.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token_type: String,
    /// Seconds. v2.0 sends a number; the v1.0 endpoint sends a string.
    #[serde(deserialize_with = "number_or_string")]
    pub expires_in: u64,
    #[serde(deserialize_with = "secret")]
    pub access_token: Secret,
}

/// Entra's error answer to a token request.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct TokenErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    /// The AADSTS numbers (`AADSTS7000222` → 7000222).
    #[serde(default)]
    pub error_codes: Vec<u64>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
}

// ---------------------------------------------------------------- errors

/// Graph's error answer: `{"error":{"code","message","innerError":{...}}}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphErrorDetail,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GraphErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The docs' examples spell `innerError`, the schema `innererror`.
    #[serde(default, rename = "innerError", alias = "innererror")]
    pub inner_error: Option<InnerError>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct InnerError {
    #[serde(default, rename = "request-id")]
    pub request_id: Option<String>,
    #[serde(default, rename = "client-request-id")]
    pub client_request_id: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
}

// ---------------------------------------------------------------- presence

/// A user's presence as Graph reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "WirePresence")]
pub struct GraphPresence {
    /// The Entra object id of the user.
    pub id: String,
    pub presence: Presence,
    pub status_message: Option<StatusMessage>,
    pub out_of_office: Option<OutOfOfficeSettings>,
    /// A lexicographically sortable version stamp: a larger one is newer.
    pub sequence_number: Option<String>,
    pub work_location: Option<WorkLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePresence {
    id: String,
    #[serde(default)]
    availability: Option<String>,
    #[serde(default)]
    activity: Option<String>,
    #[serde(default)]
    status_message: Option<StatusMessage>,
    #[serde(default)]
    out_of_office_settings: Option<OutOfOfficeSettings>,
    #[serde(default)]
    sequence_number: Option<String>,
    #[serde(default)]
    work_location: Option<WorkLocation>,
}

impl From<WirePresence> for GraphPresence {
    fn from(w: WirePresence) -> Self {
        // A presence without a value is one Graph could not determine.
        let availability = w.availability.as_deref().unwrap_or("PresenceUnknown");
        let activity = w.activity.as_deref().unwrap_or("PresenceUnknown");
        GraphPresence {
            id: w.id,
            presence: Presence::from_graph(availability, activity),
            status_message: w.status_message,
            out_of_office: w.out_of_office_settings,
            sequence_number: w.sequence_number,
            work_location: w.work_location,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessage {
    #[serde(default)]
    pub message: Option<ItemBody>,
    #[serde(default)]
    pub expiry_date_time: Option<DateTimeTimeZone>,
    #[serde(default)]
    pub published_date_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZone {
    #[serde(default)]
    pub date_time: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeSettings {
    #[serde(default)]
    pub is_out_of_office: Option<bool>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkLocation {
    #[serde(default)]
    pub work_location_type: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub place_id: Option<String>,
}

/// Presences from one read: an entity or a collection, whichever came.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceList {
    pub presences: Vec<GraphPresence>,
    /// Items of a collection that were not a presence (no id, wrong types).
    pub skipped: usize,
}

impl PresenceList {
    pub fn parse(body: &[u8]) -> Result<PresenceList, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        match value.get("value") {
            Some(serde_json::Value::Array(items)) => {
                let (presences, skipped) = parse_items(items);
                Ok(PresenceList { presences, skipped })
            }
            _ => Ok(PresenceList {
                presences: vec![serde_json::from_value(value)?],
                skipped: 0,
            }),
        }
    }
}

/// Parses each item on its own: one bad item costs itself, not the page.
fn parse_items<T: for<'de> Deserialize<'de>>(items: &[serde_json::Value]) -> (Vec<T>, usize) {
    let mut parsed = Vec::with_capacity(items.len());
    let mut skipped = 0;
    for item in items {
        match T::deserialize(item) {
            Ok(p) => parsed.push(p),
            Err(_) => skipped += 1,
        }
    }
    (parsed, skipped)
}

/// `POST /communications/getPresencesByUserId` body.
#[derive(Clone, Debug, Serialize)]
pub struct PresencesByUserIdRequest<'a> {
    pub ids: &'a [String],
}

/// `setPresence` body.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceRequest {
    pub session_id: String,
    pub availability: String,
    pub activity: String,
    pub expiration_duration: String,
}

/// `clearPresence` body.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClearPresenceRequest {
    pub session_id: String,
}

/// `setUserPreferredPresence` body.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SetPreferredRequest {
    pub availability: String,
    pub activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_duration: Option<String>,
}

// ---------------------------------------------------------------- users

/// The user properties the daemon asks for (`$select`).
pub const USER_SELECT: &str = "id,userPrincipalName,mail,displayName,businessPhones,mobilePhone,assignedPlans,department,jobTitle";

/// A user as listed or as a delta item.
///
/// In a delta page an absent property means "unchanged" while `null` means
/// "now empty", so each optional property is `None` (absent), `Some(None)`
/// (null) or `Some(Some(value))`; [`User::merge`] applies a delta item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default, deserialize_with = "present")]
    pub user_principal_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub mail: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub business_phones: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub mobile_phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub assigned_plans: Option<Option<Vec<AssignedPlan>>>,
    #[serde(default, deserialize_with = "present")]
    pub department: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub job_title: Option<Option<String>>,
    /// Set on delta items for users deleted (or moved out of scope).
    #[serde(default, rename = "@removed")]
    pub removed: Option<Removed>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedPlan {
    #[serde(default)]
    pub assigned_date_time: Option<String>,
    #[serde(default)]
    pub capability_status: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub service_plan_id: Option<String>,
}

impl AssignedPlan {
    fn enabled(&self) -> bool {
        self.capability_status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Enabled"))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Removed {
    #[serde(default)]
    pub reason: Option<String>,
}

impl User {
    fn text(field: &Option<Option<String>>) -> Option<&str> {
        field.as_ref().and_then(|v| v.as_deref())
    }

    pub fn user_principal_name(&self) -> Option<&str> {
        User::text(&self.user_principal_name)
    }

    pub fn mail(&self) -> Option<&str> {
        User::text(&self.mail)
    }

    pub fn display_name(&self) -> Option<&str> {
        User::text(&self.display_name)
    }

    pub fn mobile_phone(&self) -> Option<&str> {
        User::text(&self.mobile_phone)
    }

    pub fn department(&self) -> Option<&str> {
        User::text(&self.department)
    }

    pub fn job_title(&self) -> Option<&str> {
        User::text(&self.job_title)
    }

    pub fn business_phones(&self) -> &[String] {
        self.business_phones
            .as_ref()
            .and_then(|v| v.as_deref())
            .unwrap_or(&[])
    }

    fn plans(&self) -> Option<&[AssignedPlan]> {
        self.assigned_plans
            .as_ref()
            .map(|p| p.as_deref().unwrap_or(&[]))
    }

    /// Whether Teams is assigned and enabled; `None` when the plans were not
    /// in the payload (a delta item that did not change them).
    pub fn has_teams(&self) -> Option<bool> {
        self.plans().map(|plans| {
            plans.iter().any(|p| {
                p.enabled()
                    && (p.service.as_deref() == Some(TEAMS_SERVICE)
                        || p.service_plan_id
                            .as_deref()
                            .is_some_and(|id| id.eq_ignore_ascii_case(TEAMS_PLAN_ID)))
            })
        })
    }

    /// Whether Teams Phone (MCOEV) is enabled; `None` as for [`User::has_teams`].
    pub fn has_teams_phone(&self) -> Option<bool> {
        self.plans().map(|plans| {
            plans.iter().any(|p| {
                p.enabled()
                    && p.service_plan_id
                        .as_deref()
                        .is_some_and(|id| id.eq_ignore_ascii_case(TEAMS_PHONE_PLAN_ID))
            })
        })
    }

    /// Applies a newer item for the same user: properties it carries replace
    /// ours, absent ones stay.
    pub fn merge(&mut self, newer: User) {
        fn take<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        take(&mut self.user_principal_name, newer.user_principal_name);
        take(&mut self.mail, newer.mail);
        take(&mut self.display_name, newer.display_name);
        take(&mut self.business_phones, newer.business_phones);
        take(&mut self.mobile_phone, newer.mobile_phone);
        take(&mut self.assigned_plans, newer.assigned_plans);
        take(&mut self.department, newer.department);
        take(&mut self.job_title, newer.job_title);
        self.removed = newer.removed;
    }
}

/// One page of `/users` or `/users/delta`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<User>,
    /// Items that were not a user we can use (no id, wrong types).
    pub skipped: usize,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
}

#[derive(Deserialize)]
struct WireUserPage {
    #[serde(default)]
    value: Vec<serde_json::Value>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

impl UserPage {
    pub fn parse(body: &[u8]) -> Result<UserPage, serde_json::Error> {
        let wire: WireUserPage = serde_json::from_slice(body)?;
        let (users, skipped) = parse_items::<User>(&wire.value);
        Ok(UserPage {
            users,
            skipped,
            next_link: wire.next_link,
            delta_link: wire.delta_link,
        })
    }
}

// ---------------------------------------------------------------- helpers

/// Tells an absent property (`None`, via `#[serde(default)]`) from a null one.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        String(String),
    }
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

#[cfg(test)]
pub(crate) mod tests;
