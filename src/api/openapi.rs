//! The OpenAPI 3.1 description served at `GET /v1/openapi.json`, written by
//! hand next to the routes it describes. Tests hold it to [`ROUTES`] and
//! check the schemas against serialized model values.

use serde_json::{Map, Value, json};

use crate::events::kind;

use super::events_stream::{GAP, PAGE};
use super::extract::AGENT_ID_MAX_CHARS;
use super::routes::{METRICS_CONTENT_TYPE, OPEN_PATHS, ROUTES};

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in ROUTES {
        let mut operation = operation(method, path);
        if OPEN_PATHS.contains(path)
            && let Some(operation) = operation.as_object_mut()
        {
            operation.insert("security".into(), json!([]));
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(method.to_ascii_lowercase(), operation);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "presence-sync contact-center API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Agents, their statuses and the event stream of presence-sync. \
                Every route under /v1 except this document needs `Authorization: Bearer <token>`; \
                /healthz, /readyz and /metrics are open so probes and scrapers need no token \
                (keep the listener off untrusted networks). Every 4xx and 5xx, including unknown \
                routes (404), wrong methods (405), bodies over the limit (413) and bodies that are \
                not JSON (415), has the body `{\"error\":{\"code\",\"message\",\"field\"?}}`; \
                `field` names the input at fault (`agent_id`, `since`, or a body path such as \
                `skills.fr` or `groups[1]`). Request bodies refuse unknown fields."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "parameters": {
                "AgentId": {
                    "name": "agent_id",
                    "in": "path",
                    "required": true,
                    "description": "The CC's id for the agent.",
                    "schema": agent_id_schema()
                }
            },
            "responses": error_responses(),
            "schemas": schemas(),
        }
    })
}

fn agent_id_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": AGENT_ID_MAX_CHARS,
        "pattern": "^[A-Za-z0-9._:@-]+$"
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn response_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": json_content(schema_ref(schema))})
}

fn json_body(schema: &str) -> Value {
    json!({"required": true, "content": json_content(schema_ref(schema))})
}

/// The operation for one route of [`ROUTES`].
fn operation(method: &str, path: &str) -> Value {
    let agent_param = json!([{"$ref": "#/components/parameters/AgentId"}]);
    match (method, path) {
        ("PUT", "/v1/agents/{agent_id}") => json!({
            "operationId": "putAgent",
            "summary": "Create or update an agent",
            "description": "Durable when answered. `teams_user` is a Teams object id or a UPN / e-mail \
                in the directory; with `auto_link` an address not in the directory yet is accepted and \
                linked when it appears.",
            "parameters": agent_param,
            "requestBody": json_body("AgentUpsert"),
            "responses": {
                "200": ok("The agent as the daemon now sees it.", "AgentOut"),
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "413": response_ref("PayloadTooLarge"),
                "415": response_ref("UnsupportedMediaType"),
                "422": response_ref("Unprocessable"),
                "503": response_ref("Unavailable"),
            }
        }),
        ("GET", "/v1/agents/{agent_id}") => json!({
            "operationId": "getAgent",
            "summary": "One agent: CC status, Teams presence, routability and sync state",
            "parameters": agent_param,
            "responses": {
                "200": ok("The agent.", "AgentOut"),
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "404": response_ref("NotFound"),
                "503": response_ref("Unavailable"),
            }
        }),
        ("DELETE", "/v1/agents/{agent_id}") => json!({
            "operationId": "deleteAgent",
            "summary": "Delete an agent",
            "parameters": agent_param,
            "responses": {
                "204": {"description": "Deleted."},
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "404": response_ref("NotFound"),
                "503": response_ref("Unavailable"),
            }
        }),
        ("PUT", "/v1/agents/{agent_id}/status") => json!({
            "operationId": "putAgentStatus",
            "summary": "Report an agent's CC status",
            "description": "Durable when answered. A status the agent's profile does not know is a 422 \
                naming `status`.",
            "parameters": agent_param,
            "requestBody": json_body("StatusReport"),
            "responses": {
                "200": ok("The agent after the report.", "AgentOut"),
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "404": response_ref("NotFound"),
                "413": response_ref("PayloadTooLarge"),
                "415": response_ref("UnsupportedMediaType"),
                "422": response_ref("Unprocessable"),
                "503": response_ref("Unavailable"),
            }
        }),
        ("GET", "/v1/agents") => json!({
            "operationId": "listAgents",
            "summary": "Every agent",
            "responses": {
                "200": ok("The agents.", "AgentList"),
                "401": response_ref("Unauthorized"),
                "503": response_ref("Unavailable"),
            }
        }),
        ("GET", "/v1/events") => json!({
            "operationId": "streamEvents",
            "summary": "The event stream (WebSocket)",
            "description": format!(
                "Open with a WebSocket upgrade and the bearer header. Each text frame is one `Event` \
                (JSON), oldest first. With `since`, every event with `seq > since` still kept is sent, \
                then live events, with no gap and no repeat; without it, only events committed from \
                now on. If retention already dropped some of the asked events, a `StreamGap` frame \
                (`type` `{GAP}`) comes first. Delivery is at least once: keep the last `seq` and \
                reconnect with `since=<last seq>`; de-duplicate by `id`. The server answers pings, \
                pings idle clients, and closes with 1001 when the daemon stops. The log is read \
                {PAGE} events at a time."
            ),
            "parameters": [{
                "name": "since",
                "in": "query",
                "required": false,
                "description": "Resume after this sequence number (0: from the oldest event kept).",
                "schema": {"type": "integer", "format": "int64", "minimum": 0}
            }],
            "responses": {
                "101": {
                    "description": "Switching to the WebSocket protocol. Frames from the server: \
                        `Event` or `StreamGap`.",
                    "content": json_content(json!({
                        "oneOf": [schema_ref("Event"), schema_ref("StreamGap")]
                    }))
                },
                "400": response_ref("BadRequest"),
                "401": response_ref("Unauthorized"),
                "503": response_ref("Unavailable"),
            }
        }),
        ("GET", "/v1/openapi.json") => json!({
            "operationId": "getOpenApi",
            "summary": "This document (no token needed)",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 description of the API.",
                    "content": json_content(json!({"type": "object"}))
                }
            }
        }),
        ("GET", "/healthz") => json!({
            "operationId": "healthz",
            "summary": "Liveness (no token needed)",
            "responses": {"200": ok("The process answers.", "Health")}
        }),
        ("GET", "/readyz") => json!({
            "operationId": "readyz",
            "summary": "Readiness and its checks (no token needed)",
            "responses": {
                "200": ok("Ready.", "Readiness"),
                "503": ok("Not ready; the failing checks say why.", "Readiness"),
            }
        }),
        ("GET", "/metrics") => json!({
            "operationId": "metrics",
            "summary": "Prometheus metrics (no token needed)",
            "description": "Open like the health endpoints, for scrapers; it includes \
                `presence_sync_ws_clients`, the event stream clients connected now.",
            "responses": {
                "200": {
                    "description": "The Prometheus text exposition format.",
                    "content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}
                }
            }
        }),
        _ => json!({"summary": "undocumented"}),
    }
}

fn error_responses() -> Value {
    let error = |description: &str| json!({"description": description, "content": json_content(schema_ref("ErrorBody"))});
    json!({
        "BadRequest": error("The input is malformed: an invalid agent id or `since`, a body that \
            is not JSON, an unknown or missing field, a value of the wrong type. `field` names it."),
        "Unauthorized": {
            "description": "No bearer token, or the wrong one.",
            "headers": {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer …`"}
            },
            "content": json_content(schema_ref("ErrorBody"))
        },
        "NotFound": error("No such agent."),
        "PayloadTooLarge": error("The body is over the configured limit."),
        "UnsupportedMediaType": error("The body is not sent as `application/json`."),
        "Unprocessable": error("Well-formed input the daemon cannot accept: an unknown status or \
            profile, a Teams user not in the directory. `field` names it."),
        "Unavailable": error("The daemon cannot take the request now (stopping, store failing)."),
    })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    let opt_string = nullable(string.clone());
    let opt_time = nullable(time.clone());
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let skills = json!({
        "type": "object",
        "description": "Skill name → level (0–100).",
        "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}
    });
    json!({
        "AgentUpsert": {
            "type": "object",
            "additionalProperties": false,
            "required": ["teams_user"],
            "properties": {
                "teams_user": {"type": "string", "description": "A Teams object id (GUID) or a UPN / e-mail."},
                "auto_link": {"type": "boolean", "default": false,
                    "description": "Accept a UPN / e-mail not in the directory yet and link it when it appears."},
                "display_name": opt_string,
                "groups": nullable(strings.clone()),
                "skills": nullable(skills.clone()),
                "phone": opt_string,
                "profile": nullable(json!({"type": "string",
                    "description": "A mapping profile by name; by default the agent's groups decide."})),
            }
        },
        "StatusReport": {
            "type": "object",
            "additionalProperties": false,
            "required": ["status"],
            "properties": {
                "status": string,
                "at": nullable(json!({"type": "string", "format": "date-time",
                    "description": "When the status changed in the CC; the debounce counts from then."})),
            }
        },
        "SetBy": {"type": "string", "enum": ["agent", "daemon"]},
        "Presence": {
            "type": "object",
            "required": ["availability", "activity"],
            "properties": {"availability": string, "activity": string}
        },
        "Requested": {
            "type": "object",
            "description": "A status the daemon asked the CC for and has not seen back yet.",
            "required": ["status", "kind", "at"],
            "properties": {
                "status": string,
                "kind": {"type": "string", "enum": ["rule", "restore"]},
                "at": time,
            }
        },
        "Cc": {
            "type": "object",
            "required": ["status", "set_by", "since", "routable", "pending_until", "requested"],
            "properties": {
                "status": opt_string,
                "set_by": nullable(schema_ref("SetBy")),
                "since": opt_time,
                "routable": {"type": "boolean"},
                "pending_until": opt_time,
                "requested": nullable(schema_ref("Requested")),
            }
        },
        "Target": {
            "type": "object",
            "required": ["action", "presence"],
            "properties": {
                "action": {"type": "string", "enum": ["set", "clear"]},
                "presence": nullable(schema_ref("Presence")),
            }
        },
        "Written": {
            "type": "object",
            "required": ["target", "at"],
            "properties": {"target": schema_ref("Target"), "at": time}
        },
        "Teams": {
            "type": "object",
            "required": ["presence", "set_by", "since", "blocking", "pending_until", "target", "written"],
            "properties": {
                "presence": nullable(schema_ref("Presence")),
                "set_by": nullable(schema_ref("SetBy")),
                "since": opt_time,
                "blocking": {"type": "boolean"},
                "pending_until": opt_time,
                "target": nullable(schema_ref("Target")),
                "written": nullable(schema_ref("Written")),
            }
        },
        "Suspended": {
            "type": "object",
            "required": ["flows", "until"],
            "properties": {
                "flows": {"type": "array", "items": {"type": "string", "enum": ["cc_to_teams", "teams_to_cc"]}},
                "until": time,
            }
        },
        "ErrorAt": {
            "type": "object",
            "required": ["message", "at"],
            "properties": {"message": string, "at": time}
        },
        "Restore": {
            "type": "object",
            "required": ["rule", "status"],
            "properties": {"rule": string, "status": string}
        },
        "Sync": {
            "type": "object",
            "required": ["debouncing_until", "suspended", "teams_override_since", "write_in_flight",
                "last_error", "restore", "last_decision"],
            "properties": {
                "debouncing_until": opt_time,
                "suspended": nullable(schema_ref("Suspended")),
                "teams_override_since": opt_time,
                "write_in_flight": {"type": "boolean"},
                "last_error": nullable(schema_ref("ErrorAt")),
                "restore": nullable(schema_ref("Restore")),
                "last_decision": opt_string,
            }
        },
        "AgentOut": {
            "type": "object",
            "required": ["id", "teams_user", "teams_user_id", "upn", "display_name", "groups", "skills",
                "phone", "profile", "linked", "cc", "teams", "routable", "not_routable_because", "sync"],
            "properties": {
                "id": string,
                "teams_user": string,
                "teams_user_id": opt_string,
                "upn": opt_string,
                "display_name": opt_string,
                "groups": strings,
                "skills": skills,
                "phone": opt_string,
                "profile": {"type": "string", "description": "The profile in force."},
                "linked": {"type": "boolean"},
                "cc": schema_ref("Cc"),
                "teams": schema_ref("Teams"),
                "routable": {"type": "boolean"},
                "not_routable_because": strings,
                "sync": schema_ref("Sync"),
            }
        },
        "AgentList": {
            "type": "object",
            "required": ["agents"],
            "properties": {"agents": {"type": "array", "items": schema_ref("AgentOut")}}
        },
        "Check": {
            "type": "object",
            "required": ["name", "ok", "detail"],
            "properties": {"name": string, "ok": {"type": "boolean"}, "detail": string}
        },
        "Task": {
            "type": "object",
            "required": ["name", "state", "detail"],
            "properties": {
                "name": string,
                "state": {"type": "string", "enum": ["starting", "running", "stopping", "stopped", "failed"]},
                "detail": string,
            }
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "checks", "tasks"],
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {"type": "array", "items": schema_ref("Check")},
                "tasks": {"type": "array", "items": schema_ref("Task")},
            }
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}}
        },
        "ErrorBody": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "Stable, for programs (`unknown_field`, `not_found`, …)."},
                        "message": {"type": "string", "description": "For people."},
                        "field": {"type": "string", "description": "The input at fault, when one is."},
                    }
                }
            }
        },
        "Event": {
            "type": "object",
            "required": ["seq", "id", "type", "time", "data"],
            "properties": {
                "seq": {"type": "integer", "format": "int64", "minimum": 1,
                    "description": "Strictly increasing, never reused, durable across restarts."},
                "id": {"type": "string", "description": "Unique across stores, for de-duplication."},
                "type": {"type": "string", "enum": kind::ALL},
                "time": time,
                "agent_id": string,
                "data": {"description": "Depends on `type`."},
            }
        },
        "StreamGap": {
            "type": "object",
            "description": "Events after `requested_since` and before `first_available` were removed by \
                retention; the stream goes on from `first_available`.",
            "required": ["type", "data"],
            "properties": {
                "type": {"type": "string", "enum": [GAP]},
                "data": {
                    "type": "object",
                    "required": ["requested_since", "first_available"],
                    "properties": {
                        "requested_since": {"type": "integer", "format": "int64", "minimum": 0},
                        "first_available": {"type": "integer", "format": "int64", "minimum": 1},
                    }
                }
            }
        },
    })
}
