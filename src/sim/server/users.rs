//! `GET /v1.0/users`, `/v1.0/users/{id}` and `/v1.0/users/delta`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::errors::{bad_request, graph_error, iso_date, user_not_found};
use super::{RequestCtx, Shared, form};
use crate::sim::directory::{DeltaError, MCOEV_PLAN_ID, TEAMS_PLAN_ID, User};

/// What `/users` returns without `$select` (Graph's default set).
const DEFAULT_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Everything `$select` may name (the default set plus what must be
/// selected explicitly, like `assignedPlans`).
const SELECTABLE: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
    "assignedPlans",
    "department",
    "accountEnabled",
    "createdDateTime",
];

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 999;

/// The selected properties in canonical spelling, or the unknown name.
fn selection(select: Option<&str>) -> Result<Vec<&'static str>, String> {
    let Some(select) = select.filter(|s| !s.trim().is_empty()) else {
        return Ok(DEFAULT_PROPERTIES.to_vec());
    };
    let mut chosen = Vec::new();
    for name in select.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = SELECTABLE
            .iter()
            .find(|p| p.eq_ignore_ascii_case(name))
            .ok_or_else(|| name.to_string())?;
        if !chosen.contains(known) {
            chosen.push(*known);
        }
    }
    Ok(chosen)
}

fn unknown_property(ctx: &RequestCtx, name: &str) -> Response {
    bad_request(
        ctx,
        &format!("Could not find a property named '{name}' on type 'microsoft.graph.user'."),
    )
}

pub(crate) fn user_json(user: &User, properties: &[&str]) -> Value {
    let mut object = Map::new();
    for property in properties {
        let value = match *property {
            "id" => json!(user.id),
            "userPrincipalName" => json!(user.user_principal_name),
            "mail" => json!(user.mail),
            "displayName" => json!(user.display_name),
            "givenName" => json!(user.given_name),
            "surname" => json!(user.surname),
            "jobTitle" => json!(user.job_title),
            "department" => json!(user.department),
            "officeLocation" => json!(user.office_location),
            "preferredLanguage" => json!(user.preferred_language),
            "businessPhones" => json!(user.business_phones),
            "mobilePhone" => json!(user.mobile_phone),
            "accountEnabled" => json!(true),
            "createdDateTime" => json!(iso_date(user.created)),
            "assignedPlans" => {
                // Every simulated user has Teams (they have a presence);
                // some also have Teams Phone, which direct-dial routing needs.
                let mut plans = vec![json!({
                    "assignedDateTime": iso_date(user.created),
                    "capabilityStatus": "Enabled",
                    "service": "TeamspaceAPI",
                    "servicePlanId": TEAMS_PLAN_ID,
                })];
                if user.teams_phone {
                    plans.push(json!({
                        "assignedDateTime": iso_date(user.created),
                        "capabilityStatus": "Enabled",
                        "service": "MicrosoftCommunicationsOnline",
                        "servicePlanId": MCOEV_PLAN_ID,
                    }));
                }
                json!(plans)
            }
            _ => continue,
        };
        object.insert((*property).to_string(), value);
    }
    Value::Object(object)
}

/// Every property, for the control endpoint's answer.
pub(crate) fn full_user_json(user: &User) -> Value {
    user_json(user, SELECTABLE)
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    RawQuery(query): RawQuery,
) -> Response {
    let page = match Page::read(&ctx, query.as_deref(), 'u') {
        Ok(page) => page,
        Err(response) => return response,
    };
    let tenant = shared.tenant(ctx.at);
    let directory = tenant.directory();
    let value: Vec<Value> = directory
        .users()
        .skip(page.start)
        .take(page.top)
        .map(|u| user_json(u, &page.properties))
        .collect();
    let link = format!("{}/users", shared.graph_base());
    page.answer(&shared, &link, directory.len(), value)
}

/// A paged listing's query: `$select`, `$top` and the `$skiptoken` this
/// simulator hands out (`prefix` and the next index in hex).
pub(crate) struct Page {
    pub properties: Vec<&'static str>,
    pub top: usize,
    pub start: usize,
    select: Option<String>,
    prefix: char,
}

impl Page {
    /// Reads the query, or answers Graph's 400 for a bad one.
    #[allow(clippy::result_large_err)] // the answer, once, at a request's edge
    pub(crate) fn read(
        ctx: &RequestCtx,
        query: Option<&str>,
        prefix: char,
    ) -> Result<Page, Response> {
        let pairs = form::parse(query.unwrap_or(""));
        let properties =
            selection(form::get(&pairs, "$select")).map_err(|name| unknown_property(ctx, &name))?;
        let top = match form::get(&pairs, "$top") {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(bad_request(
                        ctx,
                        &format!(
                            "Invalid page size specified: '{text}'. Must be between 1 and {MAX_PAGE} inclusive."
                        ),
                    ));
                }
            },
        };
        let start = match form::get(&pairs, "$skiptoken") {
            None => 0,
            Some(token) => token
                .strip_prefix(prefix)
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_request(ctx, "Invalid $skiptoken."))?,
        };
        Ok(Page {
            properties,
            top,
            start,
            select: form::get(&pairs, "$select").map(str::to_string),
            prefix,
        })
    }

    /// The page's answer: `value`, with a `@odata.nextLink` on `link`
    /// while `total` goes on past it.
    pub(crate) fn answer(
        &self,
        shared: &Shared,
        link: &str,
        total: usize,
        value: Vec<Value>,
    ) -> Response {
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            json!(format!("{}/$metadata#users", shared.graph_base())),
        );
        let next = self.start.saturating_add(self.top);
        if next < total {
            let mut link = format!("{link}?$top={}", self.top);
            if let Some(select) = &self.select {
                link.push_str(&format!("&$select={}", form::encode(select)));
            }
            link.push_str(&format!("&$skiptoken={}{next:x}", self.prefix));
            body.insert("@odata.nextLink".into(), json!(link));
        }
        body.insert("value".into(), Value::Array(value));
        Json(Value::Object(body)).into_response()
    }
}

pub(crate) async fn one(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = form::parse(query.as_deref().unwrap_or(""));
    let properties = match selection(form::get(&pairs, "$select")) {
        Ok(p) => p,
        Err(name) => return unknown_property(&ctx, &name),
    };
    let tenant = shared.tenant(ctx.at);
    match tenant.directory().get(&id) {
        Some(user) => {
            let mut value = user_json(user, &properties);
            if let Value::Object(map) = &mut value {
                map.insert(
                    "@odata.context".into(),
                    json!(format!("{}/$metadata#users/$entity", shared.graph_base())),
                );
            }
            Json(value).into_response()
        }
        None => user_not_found(&ctx, &id),
    }
}

/// A delta round in progress, carried in `$skiptoken` (hex, so it survives
/// any URL handling): versions `(since, upto]`, resume after `after`.
struct Round {
    since: u64,
    upto: u64,
    after: Option<usize>,
    page: usize,
    select: String,
}

impl Round {
    fn encode(&self) -> String {
        let after = self.after.map_or("-".to_string(), |a| format!("{a:x}"));
        let text = format!(
            "{:x}.{:x}.{after}.{:x}.{}",
            self.since, self.upto, self.page, self.select
        );
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(hex: &str) -> Option<Round> {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let text = String::from_utf8(bytes?).ok()?;
        let mut parts = text.splitn(5, '.');
        let since = u64::from_str_radix(parts.next()?, 16).ok()?;
        let upto = u64::from_str_radix(parts.next()?, 16).ok()?;
        let after = match parts.next()? {
            "-" => None,
            a => Some(usize::from_str_radix(a, 16).ok()?),
        };
        let page = usize::from_str_radix(parts.next()?, 16).ok()?;
        let select = parts.next()?.to_string();
        Some(Round {
            since,
            upto,
            after,
            page,
            select,
        })
    }
}

/// `Prefer: odata.maxpagesize=N`, Graph's way to size delta pages.
fn max_page_size(headers: &HeaderMap) -> usize {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .next()
        .map_or(DEFAULT_PAGE, |n| n.clamp(1, MAX_PAGE))
}

pub(crate) async fn delta(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = form::parse(query.as_deref().unwrap_or(""));
    let tenant = shared.tenant(ctx.at);
    let directory = tenant.directory();
    let round = if let Some(skip) = form::get(&pairs, "$skiptoken") {
        match Round::decode(skip) {
            Some(round) if round.upto <= directory.version() => round,
            _ => return sync_state_not_found(&ctx),
        }
    } else {
        let (token, select) = match form::get(&pairs, "$deltatoken") {
            None => (None, form::get(&pairs, "$select").unwrap_or("").to_string()),
            Some(text) => {
                let (token, select) = text.split_once('~').unwrap_or((text, ""));
                (Some(token), select.to_string())
            }
        };
        let since = match token {
            None => 0,
            // `latest`: no users, just a token for changes from now on.
            Some("latest") => directory.version(),
            Some(token) => match directory.check_delta_token(token, ctx.at) {
                Ok(version) => version,
                Err(DeltaError::Unknown | DeltaError::Expired) => {
                    return sync_state_not_found(&ctx);
                }
            },
        };
        Round {
            since,
            upto: directory.version(),
            after: None,
            page: max_page_size(&headers),
            select,
        }
    };
    let properties = match selection(Some(&round.select)) {
        // Delta always identifies the object, whatever was selected.
        Ok(mut p) => {
            if !p.contains(&"id") {
                p.push("id");
            }
            p
        }
        Err(name) => return unknown_property(&ctx, &name),
    };
    let page = directory.changes(round.since, round.upto, round.after, round.page);
    let value: Vec<Value> = page
        .users
        .iter()
        .map(|u| user_json(u, &properties))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}/$metadata#users", shared.graph_base())),
    );
    match page.next_after {
        Some(after) => {
            let next = Round {
                after: Some(after),
                ..round
            };
            body.insert(
                "@odata.nextLink".into(),
                json!(format!(
                    "{}/users/delta?$skiptoken={}",
                    shared.graph_base(),
                    next.encode()
                )),
            );
        }
        None => {
            let mut token = directory.delta_token(round.upto, ctx.at);
            if !round.select.is_empty() {
                token.push('~');
                token.push_str(&form::encode(&round.select));
            }
            body.insert(
                "@odata.deltaLink".into(),
                json!(format!(
                    "{}/users/delta?$deltatoken={token}",
                    shared.graph_base()
                )),
            );
        }
    }
    body.insert("value".into(), Value::Array(value));
    Json(Value::Object(body)).into_response()
}

fn sync_state_not_found(ctx: &RequestCtx) -> Response {
    graph_error(
        ctx,
        StatusCode::GONE,
        "syncStateNotFound",
        "The sync state generation is not found; the delta token has expired or is unknown. Restart with a full sync.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::directory::{Directory, NewUser};
    use crate::time::Timestamp;

    /// The plans a client reads to tell Teams users (and Teams Phone users) apart.
    #[test]
    fn every_user_has_teams_and_some_have_teams_phone() {
        let mut directory = Directory::new("contoso.test", 1, 1);
        for phone in [true, false] {
            let new = NewUser {
                teams_phone: Some(phone),
                ..NewUser::default()
            };
            let index = directory
                .add(new, Timestamp::from_secs(1_700_000_000))
                .unwrap();
            let json = user_json(directory.by_index(index).unwrap(), &["id", "assignedPlans"]);
            let user: crate::graph::model::User = serde_json::from_value(json).unwrap();
            assert_eq!(user.has_teams(), Some(true));
            assert_eq!(user.has_teams_phone(), Some(phone));
        }
    }
}
