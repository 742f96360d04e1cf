//! `GET /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user` and the
//! `POST /_sim/groups` control that makes a group and changes its members.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::{bad_request, user_not_found};
use super::presence::parse_object;
use super::users::{Page, user_json};
use super::{RequestCtx, Shared};
use crate::sim::rng::is_guid;

/// The users in group `id` (the simulator's groups hold users only, so
/// transitive and direct members are the same), paged with `$top` and a
/// `$skiptoken`. An unknown group is Graph's 404.
pub(crate) async fn user_members(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let page = match Page::read(&ctx, query.as_deref(), 'm') {
        Ok(page) => page,
        Err(response) => return response,
    };
    let tenant = shared.tenant(ctx.at);
    let Some(group) = tenant.groups().get(&id) else {
        return user_not_found(&ctx, &id);
    };
    let value: Vec<Value> = group
        .members
        .iter()
        .skip(page.start)
        .take(page.top)
        .filter_map(|&i| tenant.user_at(i))
        .map(|u| {
            let mut item = user_json(u, &page.properties);
            if let Value::Object(map) = &mut item {
                map.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            }
            item
        })
        .collect();
    let link = format!(
        "{}/groups/{}/transitiveMembers/microsoft.graph.user",
        shared.graph_base(),
        group.id
    );
    page.answer(&shared, &link, group.members.len(), value)
}

/// `POST /_sim/groups {"id"?, "displayName"?, "members": [id or UPN, ...]}`:
/// creates the group (201; an id is made up when none is given) or, for an
/// id that exists, replaces its members (200). Answers the group with its
/// members' ids.
pub(crate) async fn put_group(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let body = match parse_object(&ctx, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let id = match body.get("id") {
        None | Some(Value::Null) => shared.new_id(),
        Some(Value::String(id)) if is_guid(id) => id.to_ascii_lowercase(),
        Some(other) => {
            return bad_request(
                &ctx,
                &format!(
                    "Invalid object identifier '{}'.",
                    other.as_str().unwrap_or("")
                ),
            );
        }
    };
    let Some(keys) = body.get("members").and_then(Value::as_array) else {
        return bad_request(&ctx, "`members` must be a list of user ids or UPNs.");
    };
    let mut tenant = shared.tenant(ctx.at);
    let mut members = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key.as_str().unwrap_or("");
        match tenant.index_of(key) {
            Some(index) => members.push(index),
            None => return user_not_found(&ctx, key),
        }
    }
    let name = body
        .get("displayName")
        .and_then(Value::as_str)
        .map_or_else(|| format!("Group {id}"), str::to_string);
    let created = tenant.groups_mut().put(&id, name, members);
    let Some(group) = tenant.groups().get(&id) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let ids: Vec<&str> = group
        .members
        .iter()
        .filter_map(|&i| tenant.user_at(i))
        .map(|u| u.id.as_str())
        .collect();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = json!({"id": group.id, "displayName": group.display_name, "members": ids});
    (status, Json(answer)).into_response()
}
