//! The OpenAPI 3.1 description served at `GET /v1/openapi.json`. Its
//! operations are rendered from the route table ([`ROUTES`]: each route's
//! [`OperationDoc`] and auth); the schemas and shared answers are written
//! here by hand, and tests check them against serialized model values.

use serde_json::{Map, Value, json};

use crate::events::{EventData, kind};

use super::events_stream::{GAP, PAGE};
use super::routes::{Auth, METRICS_CONTENT_TYPE, ROUTES, Route};
use super::validate::{
    DISPLAY_NAME_MAX_CHARS, ID_MAX_CHARS, ID_PATTERN, NAME_MAX_CHARS, PHONE_MAX_CHARS,
    STATUS_MAX_CHARS, TEXT_PATTERN, id_rule,
};

/// How one route is documented: the OpenAPI operation, less what the route
/// table says elsewhere (the method, the path, and the auth, which gives
/// `security: []` to open routes and the 401 answer to the others).
#[derive(Clone, Copy, Debug)]
pub struct OperationDoc {
    /// The `operationId`.
    pub id: &'static str,
    pub summary: &'static str,
    pub description: Text,
    pub params: &'static [Param],
    pub body: Body,
    /// The answers that are not errors (a 503 that carries a report is one).
    pub replies: &'static [Reply],
    /// The errors it can answer, each in the error shape, besides the 401 of
    /// a route that needs the token.
    pub errors: &'static [Failure],
}

/// A description.
#[derive(Clone, Copy, Debug)]
pub enum Text {
    None,
    Plain(&'static str),
    /// Written when the document is, for text that quotes constants.
    Built(fn() -> String),
}

/// A path or query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// `{agent_id}`, the shared `AgentId` parameter.
    AgentId,
    /// `{contact_id}`.
    ContactId,
    /// `{queue}`, a queue name.
    Queue,
    /// `?since=`, the event stream's cursor.
    Since,
    /// `{user_id}`, a Teams user's object id.
    UserId,
    /// `GET /v1/directory`'s query: `search`, `presence`, `department`,
    /// `has_phone`, `limit`, `cursor`.
    DirectoryQuery,
    /// `?limit=`, a page's size.
    Limit,
    /// `?cursor=`, where a page starts.
    Cursor,
    /// `?search=`, text to look for.
    Search,
}

/// The request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    /// JSON of this schema, required.
    Json(&'static str),
    /// JSON of this schema, or no body at all.
    OptionalJson(&'static str),
}

/// An answer that is not an error.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
}

impl Reply {
    /// A JSON body of schema `schema`.
    pub const fn json(status: u16, description: &'static str, schema: &'static str) -> Self {
        Reply {
            status,
            description,
            content: Content::Schema(schema),
        }
    }

    /// No body.
    pub const fn empty(status: u16, description: &'static str) -> Self {
        Reply {
            status,
            description,
            content: Content::None,
        }
    }
}

/// What a [`Reply`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    None,
    /// JSON of this schema.
    Schema(&'static str),
    /// Any JSON object (the document itself).
    JsonObject,
    /// WebSocket text frames, each an `Event` or a `StreamGap`.
    EventFrames,
    /// Prometheus text.
    Metrics,
    /// Server-sent events (`text/event-stream`), each `data` a `BoardUpdate`.
    EventStream,
}

/// An error answer, in the error shape (`ErrorBody`); each is a shared
/// response under `components/responses`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    Unavailable,
}

impl Failure {
    const ALL: [Failure; 9] = [
        Failure::BadRequest,
        Failure::Unauthorized,
        Failure::Forbidden,
        Failure::NotFound,
        Failure::Conflict,
        Failure::PayloadTooLarge,
        Failure::UnsupportedMediaType,
        Failure::Unprocessable,
        Failure::Unavailable,
    ];

    /// The status it is documented under.
    pub const fn status(self) -> u16 {
        match self {
            Failure::BadRequest => 400,
            Failure::Unauthorized => 401,
            Failure::Forbidden => 403,
            Failure::NotFound => 404,
            Failure::Conflict => 409,
            Failure::PayloadTooLarge => 413,
            Failure::UnsupportedMediaType => 415,
            Failure::Unprocessable => 422,
            Failure::Unavailable => 503,
        }
    }

    /// Its name under `components/responses`.
    pub const fn name(self) -> &'static str {
        match self {
            Failure::BadRequest => "BadRequest",
            Failure::Unauthorized => "Unauthorized",
            Failure::Forbidden => "Forbidden",
            Failure::NotFound => "NotFound",
            Failure::Conflict => "Conflict",
            Failure::PayloadTooLarge => "PayloadTooLarge",
            Failure::UnsupportedMediaType => "UnsupportedMediaType",
            Failure::Unprocessable => "Unprocessable",
            Failure::Unavailable => "Unavailable",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Failure::BadRequest => {
                "The input is malformed: an invalid agent or contact id or `since`, a \
                body that is not JSON, an unknown or missing field, a value of the wrong type or out of \
                range, a name or text that is too long or holds control or invisible formatting \
                characters, a request line or headers too long (414, 431). `field` names it."
            }
            Failure::Unauthorized => "No bearer token, or the wrong one.",
            Failure::Forbidden => {
                "The viewer token was sent: it reads the status board and the read-only routes, \
                and changes nothing. Send the API token."
            }
            Failure::NotFound => "No such agent, queue or contact.",
            Failure::Conflict => {
                "The request clashes with the current state: a contact id in use, a \
                contact in the wrong state for the action, or offered to another agent."
            }
            Failure::PayloadTooLarge => "The body is over the configured limit.",
            Failure::UnsupportedMediaType => "The body is not sent as `application/json`.",
            Failure::Unprocessable => {
                "Well-formed input the daemon cannot accept: an unknown status, \
                profile or queue, a Teams user not in the directory, an event cursor past the end of \
                the log. `field` names it."
            }
            Failure::Unavailable => {
                "The daemon cannot take the request now (stopping, store failing)."
            }
        }
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(route.verb.as_str().to_ascii_lowercase(), operation(route));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "presence-sync contact-center API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Agents, their statuses and the event stream of presence-sync. \
                Every route under /v1 except this document needs `Authorization: Bearer <token>`; \
                the routes marked `x-viewer-token` also take the read-only viewer token \
                (`[api] viewer_token_file`), which gets 403 elsewhere. `/` serves the status \
                board (a web page; no token in its URL, it signs in with either token); \
                /healthz, /readyz and /metrics are open so probes and scrapers need no token \
                (keep the listener off untrusted networks). Every 4xx and 5xx, including unknown \
                routes (404), wrong methods (405), bodies over the limit (413) and bodies that are \
                not JSON (415), has the body `{\"error\":{\"code\",\"message\",\"field\"?}}`; \
                `field` names the input at fault (`agent_id`, `contact_id`, `since`, or a body path \
                such as `skills.fr`, `groups[1]` or `queues[0].position`: object keys joined by `.`, \
                array indexes in brackets). Messages are for people. Request bodies refuse unknown \
                fields. Agent and contact ids are 1 to 128 characters of A-Z a-z 0-9 . _ : @ -, not \
                starting with `.`."
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
                    "schema": id_schema()
                }
            },
            "responses": error_responses(),
            "schemas": schemas(),
        }
    })
}

/// Agent and contact ids.
fn id_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": ID_MAX_CHARS,
        "pattern": ID_PATTERN,
        "description": format!("An id: {}.", id_rule())
    })
}

/// Group, skill and queue names.
fn name_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": NAME_MAX_CHARS,
        "pattern": TEXT_PATTERN,
        "description": format!("1 to {NAME_MAX_CHARS} characters, not blank, without control or \
            invisible formatting characters (bidirectional overrides, zero-width characters).")
    })
}

/// Free text of at most `max` characters.
fn text_schema(max: usize) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": TEXT_PATTERN,
        "description": format!("At most {max} characters, not blank, without control or invisible \
            formatting characters (NUL, line breaks, U+202E and the other bidirectional controls, \
            zero-width characters).")
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
fn operation(route: &Route) -> Value {
    let doc = &route.doc;
    let mut operation = Map::new();
    operation.insert("operationId".into(), json!(doc.id));
    operation.insert("summary".into(), json!(doc.summary));
    match doc.description {
        Text::None => {}
        Text::Plain(text) => {
            operation.insert("description".into(), json!(text));
        }
        Text::Built(write) => {
            operation.insert("description".into(), json!(write()));
        }
    }
    if !doc.params.is_empty() {
        let params: Vec<Value> = doc
            .params
            .iter()
            .flat_map(|param| parameters(*param))
            .collect();
        operation.insert("parameters".into(), Value::Array(params));
    }
    match doc.body {
        Body::None => {}
        Body::Json(schema) => {
            operation.insert("requestBody".into(), json_body(schema));
        }
        Body::OptionalJson(schema) => {
            operation.insert(
                "requestBody".into(),
                json!({"required": false, "content": json_content(schema_ref(schema))}),
            );
        }
    }
    let mut responses = Map::new();
    for reply in doc.replies {
        responses.insert(reply.status.to_string(), reply_value(reply));
    }
    let refused: &[Failure] = match route.auth {
        Auth::Token => &[Failure::Unauthorized, Failure::Forbidden],
        Auth::Viewer => &[Failure::Unauthorized],
        Auth::Open => &[],
    };
    for failure in refused.iter().chain(doc.errors) {
        responses.insert(failure.status().to_string(), response_ref(failure.name()));
    }
    operation.insert("responses".into(), Value::Object(responses));
    if route.auth == Auth::Open {
        operation.insert("security".into(), json!([]));
    }
    if route.auth == Auth::Viewer {
        operation.insert("x-viewer-token".into(), json!(true));
    }
    Value::Object(operation)
}

/// The OpenAPI parameters a [`Param`] stands for: one, or for the
/// directory's query, one a key.
fn parameters(param: Param) -> Vec<Value> {
    match param {
        Param::DirectoryQuery => {
            let query = |name: &str, description: &str, schema: Value| {
                json!({"name": name, "in": "query", "required": false,
                    "description": description, "schema": schema})
            };
            vec![
                query(
                    "search",
                    "Text found in the display name, UPN or mail (case and accents aside), \
                    or digits found in a phone number. At most 256 characters.",
                    json!({"type": "string", "maxLength": 256}),
                ),
                query(
                    "presence",
                    "A comma-separated list of Teams availabilities (Graph's values: \
                    Available, AvailableIdle, Away, BeRightBack, Busy, BusyIdle, DoNotDisturb, Offline, \
                    PresenceUnknown); users not read yet match none.",
                    json!({"type": "string"}),
                ),
                query(
                    "department",
                    "The department, exactly (case and accents aside).",
                    json!({"type": "string", "maxLength": 256}),
                ),
                query(
                    "has_phone",
                    "Only users with (`true`) or without (`false`) a direct-dial number.",
                    json!({"type": "string", "enum": ["true", "false"]}),
                ),
                query(
                    "limit",
                    "Users per page, 1 to 500 (default 50).",
                    json!({"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
                ),
                query(
                    "cursor",
                    "The previous page's `next_cursor`, as it came. Pages follow the \
                    display name, then the id: a user present throughout is listed once across the \
                    pages, whatever changed between them.",
                    json!({"type": "string"}),
                ),
            ]
        }
        Param::UserId => vec![json!({"name": "user_id", "in": "path", "required": true,
            "description": "The Teams user's (Entra) object id.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9-]+$"}})],
        Param::AgentId => vec![json!({"$ref": "#/components/parameters/AgentId"})],
        Param::ContactId => {
            vec![
                json!({"name": "contact_id", "in": "path", "required": true, "schema": id_schema()}),
            ]
        }
        Param::Queue => {
            vec![json!({"name": "queue", "in": "path", "required": true, "schema": name_schema()})]
        }
        Param::Limit => vec![json!({
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "At most this many in the page (default 100).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}
        })],
        Param::Cursor => vec![json!({
            "name": "cursor",
            "in": "query",
            "required": false,
            "description": "The `next_cursor` of the page before; the first page without it.",
            "schema": {"type": "string", "maxLength": 256}
        })],
        Param::Search => vec![json!({
            "name": "search",
            "in": "query",
            "required": false,
            "description": "Only those whose id, display name or UPN contains this \
                (case-insensitive).",
            "schema": {"type": "string", "maxLength": 256}
        })],
        Param::Since => vec![json!({
            "name": "since",
            "in": "query",
            "required": false,
            "description": "Resume after this sequence number (0: from the oldest event kept). \
                At most the newest seq this store committed; beyond it is a 422 `cursor_ahead`.",
            "schema": {"type": "integer", "format": "int64", "minimum": 0}
        })],
    }
}

fn reply_value(reply: &Reply) -> Value {
    let description = reply.description;
    match reply.content {
        Content::None => json!({"description": description}),
        Content::Schema(schema) => ok(description, schema),
        Content::JsonObject => {
            json!({"description": description, "content": json_content(json!({"type": "object"}))})
        }
        Content::EventFrames => json!({
            "description": description,
            "content": json_content(json!({
                "oneOf": [schema_ref("Event"), schema_ref("StreamGap")]
            }))
        }),
        Content::Metrics => json!({
            "description": description,
            "content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}
        }),
        Content::EventStream => json!({
            "description": description,
            "content": {"text/event-stream": {"schema": schema_ref("BoardUpdate")}}
        }),
    }
}

/// The description of `GET /v1/events`, which quotes the stream's constants.
pub(super) fn events_description() -> String {
    format!(
        "Open with a WebSocket upgrade and the bearer header. Each text frame is one `Event` \
        (JSON), oldest first. With `since`, every event with `seq > since` still kept is sent, \
        then live events, with no gap and no repeat; without it, only events committed from \
        now on. If retention already dropped some of the asked events, a `StreamGap` frame \
        (`type` `{GAP}`) comes first. A `since` past the newest event this store ever \
        committed (a cursor from another or a wiped store) is refused before the upgrade \
        with a 422, code `cursor_ahead`, field `since`, whose message gives the newest seq. \
        Delivery is at least once: keep the last `seq` and \
        reconnect with `since=<last seq>`; de-duplicate by `id`. The server answers pings, \
        pings idle clients, and closes with 1001 when the daemon stops. The log is read \
        {PAGE} events at a time."
    )
}

/// The description of `GET /v1/board/stream`, which quotes its constants.
pub(super) fn board_stream_description() -> String {
    use super::board::stream::{FLUSH_EVERY, HEALTH_EVERY, KEEPALIVE_EVERY, MAX_AGENTS};
    format!(
        "What the status board at `/` reads to stay current without reloading: server-sent \
        events, read with `fetch()` and the bearer header (the API token or the viewer token; \
        never a token in the URL). Changes are coalesced: at most one `update` every {} ms, \
        carrying the agents that changed since the last one (at most {MAX_AGENTS}; past that, \
        `resync: true` asks the client to read its page of `GET /v1/agents` again), the queues \
        when they changed, and the health report when it changed (looked at every {} s). A \
        comment line every {} s keeps idle connections open. The stream ends when the daemon \
        stops; reconnect and read the views again.",
        FLUSH_EVERY.as_millis(),
        HEALTH_EVERY.as_secs(),
        KEEPALIVE_EVERY.as_secs(),
    )
}

/// The shared error answers, one per [`Failure`].
fn error_responses() -> Value {
    let mut responses = Map::new();
    for failure in Failure::ALL {
        let mut response = json!({
            "description": failure.description(),
            "content": json_content(schema_ref("ErrorBody"))
        });
        if failure == Failure::Unauthorized
            && let Some(response) = response.as_object_mut()
        {
            response.insert(
                "headers".into(),
                json!({
                    "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer …`"}
                }),
            );
        }
        responses.insert(failure.name().into(), response);
    }
    Value::Object(responses)
}

/// The value shapes every schema is built from.
struct Shapes {
    string: Value,
    time: Value,
    opt_string: Value,
    opt_time: Value,
    strings: Value,
    skills: Value,
}

fn shapes() -> Shapes {
    let string = json!({"type": "string"});
    let time = json!({"type": "string", "format": "date-time"});
    Shapes {
        opt_string: nullable(string.clone()),
        opt_time: nullable(time.clone()),
        string,
        time,
        strings: json!({"type": "array", "items": {"type": "string"}}),
        skills: json!({
            "type": "object",
            "description": "Skill name → level (0–100).",
            "propertyNames": name_schema(),
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}
        }),
    }
}

fn schemas() -> Value {
    let Shapes {
        string,
        time,
        opt_string,
        opt_time,
        strings,
        skills,
    } = shapes();
    let mut all = json!({
        "AgentUpsert": {
            "type": "object",
            "additionalProperties": false,
            "required": ["teams_user"],
            "properties": {
                "teams_user": {"type": "string", "description": "A Teams object id (GUID) or a UPN / e-mail."},
                "auto_link": {"type": "boolean", "default": false,
                    "description": "Accept a UPN / e-mail not in the directory yet and link it when it appears."},
                "display_name": nullable(json!({"allOf": [text_schema(DISPLAY_NAME_MAX_CHARS)],
                    "description": "Omitted or null: the Teams user's display name from the directory, \
                        when the agent is linked to a user it has."})),
                "groups": nullable(json!({"type": "array", "items": name_schema()})),
                "skills": nullable(skills.clone()),
                "phone": nullable(json!({"allOf": [text_schema(PHONE_MAX_CHARS)],
                    "description": "Omitted or null: the Teams user's phone number from the directory, \
                        when it has one."})),
                "profile": nullable(json!({"type": "string",
                    "description": "A mapping profile by name; by default the agent's groups decide."})),
                "queues": nullable(json!({"type": "array", "items": schema_ref("Membership"),
                    "description": "Routing queues the agent serves, in its order of preference."})),
                "capacity": nullable(json!({"type": "integer", "minimum": 1, "maximum": 20,
                    "description": "Contacts at once (default 1)."})),
            }
        },
        "StatusReport": {
            "type": "object",
            "additionalProperties": false,
            "required": ["status"],
            "properties": {
                "status": text_schema(STATUS_MAX_CHARS),
                "at": nullable(json!({"type": "string", "format": "date-time",
                    "description": "When the status changed in the CC; the debounce counts from then."})),
            }
        },
        "SetBy": {"type": "string", "enum": ["agent", "daemon", "routing"],
            "description": "Who set the value: the agent (or its own client, or the CC on its own), \
                presence-sync's sync rules (`daemon`), or routing for a contact (`routing`: the queue's \
                `on_contact_status` or `after_contact_status`)."},
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
            "required": ["status", "in_profile", "set_by", "since", "routable", "pending_until", "requested"],
            "properties": {
                "status": opt_string,
                "in_profile": {
                    "type": "boolean",
                    "description": "False when `status` is not a status of the agent's profile (a mapping reload removed it, or the agent moved to a profile without it): it is kept, is not routable, and Teams shows the profile's `default_teams` until the CC reports a status the profile knows or the profile has it again."
                },
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
            "required": ["debouncing_until", "suspended", "teams_override_since",
                "teams_outranked_since", "write_in_flight",
                "last_error", "restore", "last_decision", "writes_held"],
            "properties": {
                "debouncing_until": opt_time,
                "suspended": nullable(schema_ref("Suspended")),
                "teams_override_since": opt_time,
                "teams_outranked_since": opt_time,
                "write_in_flight": {"type": "boolean"},
                "last_error": nullable(schema_ref("ErrorAt")),
                "restore": nullable(schema_ref("Restore")),
                "last_decision": opt_string,
                "writes_held": opt_string,
            }
        },
        "AgentOut": {
            "type": "object",
            "required": ["id", "teams_user", "teams_user_id", "upn", "display_name", "groups", "skills",
                "phone", "profile", "linked", "link_conflict", "cc", "teams", "routable",
                "not_routable_because", "sync", "routing"],
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
                "link_conflict": nullable(schema_ref("LinkConflict")),
                "cc": schema_ref("Cc"),
                "teams": schema_ref("Teams"),
                "routable": {"type": "boolean"},
                "not_routable_because": strings,
                "sync": schema_ref("Sync"),
                "routing": schema_ref("Routing"),
            }
        },
        "LinkConflict": {
            "type": "object",
            "description": "The agent waits for a Teams user (`auto_link`) that is linked to another \
                agent, `held_by`; it links once that agent lets the user go. An `agent.link_conflict` \
                event said so when it happened.",
            "required": ["teams_user_id", "held_by"],
            "properties": {"teams_user_id": string, "held_by": string}
        },
        "AgentList": {
            "type": "object",
            "required": ["agents"],
            "description": "`next_cursor` and `total` are there when a page was asked for \
                (`limit`, `cursor` or `search`).",
            "properties": {
                "agents": {"type": "array", "items": schema_ref("AgentOut")},
                "next_cursor": nullable(json!({"type": "string",
                    "description": "The `cursor` of the next page; null on the last."})),
                "total": {"type": "integer", "minimum": 0, "description": "Agents that match."},
            }
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
                "state": {"type": "string", "enum": ["starting", "running", "degraded", "stopped", "failed"]},
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
                "poll": schema_ref("Poll"),
                "directory_poll": schema_ref("Poll"),
                "permissions": schema_ref("Permissions"),
                "subscriptions": schema_ref("Subscriptions"),
                "cluster": schema_ref("Cluster"),
            }
        },
        "Poll": {
            "type": "object",
            "description": "The presence poller's round, which follows the Graph budget that writes \
                leave (writes are served first), and how fresh its reads are.",
            "required": ["round_seconds", "users", "reads_per_second", "rate_limit"],
            "properties": {
                "round_seconds": {"type": "number", "description": "Seconds per round: every linked agent is read once a round."},
                "users": {"type": "integer", "minimum": 0},
                "reads_per_second": {"type": "number", "description": "Graph requests per second the round uses."},
                "oldest_read_seconds": {"type": "number", "description": "Seconds since the least recently read agent was read; absent with no agents."},
                "rate_limit": {"type": "number", "description": "Graph requests per second allowed now, all callers together; lowered after a 429, then recovering."},
            }
        },
        "HealthReport": {
            "type": "object",
            "required": ["ready", "checks", "tasks", "graph"],
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {"type": "array", "items": schema_ref("Check")},
                "tasks": {"type": "array", "items": schema_ref("Task")},
                "graph": schema_ref("GraphApp"),
                "poll": schema_ref("Poll"),
                "directory_poll": schema_ref("Poll"),
                "stats": schema_ref("HealthStats"),
                "permissions": schema_ref("PermissionsWithConsent"),
                "subscriptions": schema_ref("Subscriptions"),
                "cluster": schema_ref("Cluster"),
            }
        },
        "GraphApp": {
            "type": "object",
            "required": ["tenant_id", "client_id", "auth", "login_base", "graph_base"],
            "properties": {
                "tenant_id": string,
                "client_id": string,
                "auth": {"type": "string", "enum": ["client_secret", "certificate"]},
                "login_base": string,
                "graph_base": string,
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
                "data": {"description": "Depends on `type`: the schema `EventData_<type>`."},
            },
            "allOf": event_data_conditions(),
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
    });
    if let (Some(all), Value::Object(routing)) = (all.as_object_mut(), routing_schemas()) {
        all.extend(routing);
    }
    if let (Some(all), Value::Object(board)) = (all.as_object_mut(), board_schemas()) {
        all.extend(board);
    }
    if let (Some(all), Value::Object(permissions)) = (all.as_object_mut(), permission_schemas()) {
        all.extend(permissions);
    }
    if let Some(all) = all.as_object_mut() {
        all.extend(event_data_schemas());
    }
    all
}

/// The status board's schemas: the health report's numbers and the stream's
/// updates (split from [`schemas`] for the macro's recursion limit).
fn board_schemas() -> Value {
    let mut schemas = json!({
        "HealthStats": {
            "type": "object",
            "description": "The numbers the status board's health view shows, as in `/metrics`.",
            "required": ["graph_budget_per_30s", "graph_budget_in_use", "graph_throttled_total",
                "graph_failed_total", "token_expires_in_seconds", "token_error",
                "loop_suspensions_total", "teams_overrides_total", "outbox_depth"],
            "properties": {
                "graph_budget_per_30s": {"type": "integer", "minimum": 1,
                    "description": "Graph requests the budget allows per 30 s."},
                "graph_budget_in_use": {"type": "integer", "minimum": 0,
                    "description": "Graph requests sent in the last 30 s."},
                "graph_throttled_total": {"type": "integer", "minimum": 0,
                    "description": "Graph answers with 429 since the start."},
                "graph_failed_total": {"type": "integer", "minimum": 0,
                    "description": "Graph requests that failed otherwise since the start."},
                "token_expires_in_seconds": nullable(json!({"type": "number",
                    "description": "How long the Graph access token held now stays valid."})),
                "token_error": nullable(json!({"type": "string",
                    "description": "Why the last attempt to get a token failed."})),
                "loop_suspensions_total": {"type": "integer", "minimum": 0},
                "teams_overrides_total": {"type": "integer", "minimum": 0},
                "outbox_depth": {"type": "integer", "minimum": 0,
                    "description": "Teams writes waiting to be sent."},
            }
        },
        "BoardUpdate": {
            "type": "object",
            "description": "One `update` event of `GET /v1/board/stream`: what changed since the \
                one before. Each part is left out when nothing of it changed.",
            "properties": {
                "agents": {"type": "array", "items": schema_ref("AgentOut"),
                    "description": "The agents that changed, as they are now."},
                "removed": {"type": "array", "items": {"type": "string"},
                    "description": "Agents deleted."},
                "resync": {"type": "boolean",
                    "description": "Too many agents changed to list: read `GET /v1/agents` again."},
                "queues": {"type": "array", "items": schema_ref("QueueOut"),
                    "description": "Every queue, when any changed."},
                "health": schema_ref("HealthReport"),
            }
        }
    });
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), subscriptions_schemas()) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), cluster_schemas()) {
        all.extend(more);
    }
    schemas
}

/// Each event type's `data`, as `EventData_<type>`, from the payload types
/// the daemon emits.
fn event_data_schemas() -> Map<String, Value> {
    EventData::schemas()
        .into_iter()
        .map(|(kind, schema)| (format!("EventData_{kind}"), schema))
        .collect()
}

/// An event's `data` is its type's `EventData_<type>`.
fn event_data_conditions() -> Value {
    kind::ALL
        .iter()
        .map(|kind| {
            json!({
                "if": {"required": ["type"], "properties": {"type": {"const": kind}}},
                "then": {"properties": {"data": schema_ref(&format!("EventData_{kind}"))}},
            })
        })
        .collect()
}

/// The routing core's schemas (split from [`schemas`] for the macro's
/// recursion limit).
fn routing_schemas() -> Value {
    let Shapes {
        string,
        time,
        opt_string,
        opt_time,
        strings,
        skills,
    } = shapes();
    json!({
        "Membership": {
            "type": "object",
            "additionalProperties": false,
            "required": ["queue"],
            "properties": {
                "queue": string,
                "position": {"type": "integer", "minimum": 0,
                    "description": "Place in the queue's agent order (top-down, round-robin, ties)."},
            }
        },
        "MissingSkill": {
            "type": "object",
            "required": ["skill", "needed", "has"],
            "properties": {"skill": string, "needed": {"type": "integer"}, "has": {"type": "integer"}}
        },
        "QueueFit": {
            "type": "object",
            "required": ["queue", "position", "skills_match", "missing_skills"],
            "properties": {
                "queue": string,
                "position": nullable(json!({"type": "integer"})),
                "skills_match": {"type": "boolean"},
                "missing_skills": {"type": "array", "items": schema_ref("MissingSkill")},
            }
        },
        "Routing": {
            "type": "object",
            "description": "Whether the routing core would offer the agent a contact now, and why not.",
            "required": ["eligible", "not_eligible_because", "capacity", "queues", "offered", "contacts",
                "idle_since", "wrap_up_until", "backoff_until", "paused_since", "misses",
                "contacts_today", "busy_today_seconds"],
            "properties": {
                "eligible": {"type": "boolean"},
                "not_eligible_because": strings,
                "capacity": {"type": "integer"},
                "queues": {"type": "array", "items": schema_ref("QueueFit")},
                "offered": opt_string,
                "contacts": strings,
                "idle_since": time,
                "wrap_up_until": opt_time,
                "backoff_until": opt_time,
                "paused_since": opt_time,
                "misses": {"type": "integer"},
                "contacts_today": {"type": "integer"},
                "busy_today_seconds": {"type": "number"},
            }
        },
        "ContactIn": {
            "type": "object",
            "additionalProperties": false,
            "required": ["queue"],
            "properties": {
                "queue": string,
                "contact_id": nullable(id_schema()),
                "skills": nullable(skills.clone()),
                "priority": nullable(json!({"type": "integer", "minimum": 0, "maximum": 255,
                    "description": "Higher first; default: the queue's."})),
                "data": {"description": "Anything; returned in the contact's events."},
            }
        },
        "ContactActionIn": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "agent_id": nullable(json!({"allOf": [id_schema()],
                    "description": "When given, must be the agent the contact is offered to."})),
            }
        },
        "ContactOut": {
            "type": "object",
            "required": ["id", "queue", "state", "priority", "skills", "data", "arrived", "queued_at",
                "place_in_queue", "agent", "offer_expires", "offers", "overflowed_from", "ended_at"],
            "properties": {
                "id": string,
                "queue": string,
                "state": {"type": "string", "enum": ["waiting", "offered", "accepted", "completed",
                    "abandoned", "overflowed"]},
                "priority": {"type": "integer"},
                "skills": skills,
                "data": {},
                "arrived": time,
                "queued_at": time,
                "place_in_queue": nullable(json!({"type": "integer", "minimum": 1})),
                "agent": opt_string,
                "offer_expires": opt_time,
                "offers": {"type": "integer"},
                "overflowed_from": strings,
                "ended_at": opt_time,
            }
        },
        "QueueTotals": {
            "type": "object",
            "required": ["queued", "offered", "accepted", "declined", "rona", "completed", "abandoned",
                "overflowed"],
            "properties": {
                "queued": {"type": "integer"}, "offered": {"type": "integer"},
                "accepted": {"type": "integer"}, "declined": {"type": "integer"},
                "rona": {"type": "integer"}, "completed": {"type": "integer"},
                "abandoned": {"type": "integer"}, "overflowed": {"type": "integer"},
            }
        },
        "QueueOut": {
            "type": "object",
            "required": ["name", "strategy", "priority", "skills", "offer_timeout_seconds",
                "wrap_up_seconds", "max_no_answer", "miss_backoff_seconds", "max_wait_seconds",
                "overflow", "waiting", "longest_wait_seconds", "agents", "eligible_agents", "offered",
                "last_offered", "totals", "completed_today"],
            "properties": {
                "name": string,
                "strategy": {"type": "string", "enum": ["longest-idle", "round-robin", "fewest-contacts",
                    "least-occupied", "top-down", "random", "skills-best"]},
                "priority": {"type": "integer"},
                "skills": skills,
                "offer_timeout_seconds": {"type": "number"},
                "wrap_up_seconds": {"type": "number"},
                "max_no_answer": {"type": "integer"},
                "miss_backoff_seconds": {"type": "number"},
                "max_wait_seconds": nullable(json!({"type": "number"})),
                "overflow": nullable(json!({"type": "object"})),
                "waiting": {"type": "integer"},
                "longest_wait_seconds": nullable(json!({"type": "number"})),
                "agents": {"type": "integer"},
                "eligible_agents": {"type": "integer"},
                "offered": {"type": "integer"},
                "last_offered": opt_string,
                "totals": schema_ref("QueueTotals"),
                "completed_today": {"type": "integer", "minimum": 0,
                    "description": "Contacts completed today (UTC): served today."},
            }
        },
        "QueueList": {
            "type": "object",
            "required": ["queues"],
            "properties": {"queues": {"type": "array", "items": schema_ref("QueueOut")}}
        },
        "DirectoryUser": {
            "type": "object",
            "description": "A Teams user of the directory, agent or not.",
            "required": ["id", "upn", "display_name", "mail", "department", "job_title",
                "business_phones", "mobile_phone", "direct_dial", "presence", "presence_since", "agent"],
            "properties": {
                "id": {"type": "string", "description": "The Entra object id."},
                "upn": string,
                "display_name": {"type": "string", "description": "The UPN until the directory was read after a restart."},
                "mail": opt_string,
                "department": opt_string,
                "job_title": opt_string,
                "business_phones": {"type": "array", "items": string},
                "mobile_phone": opt_string,
                "direct_dial": nullable(json!({"type": "string", "pattern": "^\\+[0-9]{8,15}$",
                    "description": "The number to dial the user directly, `+` and digits (a `tel:` link): \
                        a business phone of a user with Teams Phone, else a mobile phone, when E.164."})),
                "presence": nullable(schema_ref("Presence")),
                "presence_since": nullable(json!({"type": "string", "format": "date-time",
                    "description": "When the presence was seen to change to what it is; null while it has not changed since first read."})),
                "agent": nullable(json!({"type": "string", "description": "The agent linked to the user."})),
            }
        },
        "DirectoryList": {
            "type": "object",
            "required": ["users", "next_cursor", "total"],
            "properties": {
                "users": {"type": "array", "items": schema_ref("DirectoryUser")},
                "next_cursor": nullable(json!({"type": "string", "description": "The `cursor` of the next page; null on the last."})),
                "total": {"type": "integer", "minimum": 0, "description": "Users matching the filters."},
            }
        },
    })
}

/// The Graph permissions in readiness and health.
fn permission_schemas() -> Value {
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let mut all = json!({
        "Permissions": {
            "type": "object",
            "description": "The Graph application permissions the config needs, the roles the newest \
                access token grants, and what is missing with the features it stops, with the tenant's \
                admin-consent URL while a permission is missing (in /v1/health always).",
            "required": ["needed", "granted", "missing"],
            "properties": {
                "needed": strings,
                "granted": {"type": ["array", "null"], "items": string},
                "missing": {"type": "array", "items": schema_ref("MissingPermission")},
                "consent_url": string,
            }
        },
        "MissingPermission": {
            "type": "object",
            "required": ["permission", "stops", "fix"],
            "properties": {
                "permission": string,
                "stops": strings,
                "fix": string,
            }
        }
    });
    // `/v1/health`'s: the same with the tenant's admin-consent URL.
    let mut full = all["Permissions"].clone();
    full["required"] = json!(["needed", "granted", "missing", "consent_url"]);
    full["description"] = json!(
        "The Graph permissions as in readiness, with the tenant's \
        admin-consent URL for the app."
    );
    all["PermissionsWithConsent"] = full;
    all
}

/// A node of an active/standby pair (`[cluster]`).
fn cluster_schemas() -> Value {
    let string = json!({"type": "string"});
    let count = json!({"type": "integer", "minimum": 0});
    let time = json!({"type": "string", "format": "date-time"});
    json!({
        "Cluster": {
            "type": "object",
            "description": "This node of an active/standby pair on NATS JetStream (only with \
                `[cluster]`): its role, who holds the lease, how far behind the commit log it is, \
                and its NATS connection.",
            "required": ["role", "node_id", "tenant", "lease_holder", "position", "lag_records",
                "lag_seconds", "nats", "nodes", "takeovers", "step_downs"],
            "properties": {
                "role": {"type": "string", "enum": ["active", "standby", "starting"]},
                "node_id": string,
                "tenant": string,
                "lease_holder": {
                    "type": ["object", "null"],
                    "required": ["node_id", "api_url", "since"],
                    "properties": {"node_id": string, "api_url": string, "since": time},
                    "description": "The active node; null while nobody holds the lease."
                },
                "position": count,
                "log_last": count,
                "lag_records": count,
                "lag_seconds": {"type": "number", "minimum": 0},
                "nats": {
                    "type": "object",
                    "required": ["connected"],
                    "properties": {"connected": {"type": "boolean"}, "server": string, "error": string}
                },
                "nodes": {"type": "array", "items": {
                    "type": "object",
                    "required": ["node_id", "role", "position", "api_url", "at"],
                    "properties": {"node_id": string, "role": string, "position": count,
                        "api_url": string, "at": time}
                }},
                "takeovers": count,
                "step_downs": count,
                "last_step_down": string,
            }
        }
    })
}

/// Presence subscriptions in `/readyz` and `/v1/health` (split from
/// [`board_schemas`] for the macro's recursion limit).
fn subscriptions_schemas() -> Value {
    let string = json!({"type": "string"});
    let count = json!({"type": "integer", "minimum": 0});
    let time = json!({"type": "string", "format": "date-time"});
    json!({
        "Subscriptions": {
            "type": "object",
            "description": "Presence subscriptions through service accounts (only with \
                `[subscriptions] enabled`): who is covered, each account and its subscription, \
                the notifications received and the reads they saved.",
            "required": ["users_subscribed", "users_polled", "accounts_needed",
                "graph_reads_saved_per_minute", "notifications", "accounts"],
            "properties": {
                "users_subscribed": {"type": "integer", "minimum": 0,
                    "description": "Users whose changes notifications bring (and reconciliation reads check)."},
                "users_polled": {"type": "integer", "minimum": 0,
                    "description": "Users read by polling alone, at the normal freshness."},
                "accounts_needed": {"type": "integer", "minimum": 0,
                    "description": "More service accounts needed to cover every user (650 each)."},
                "reconcile": schema_ref("Poll"),
                "graph_reads_saved_per_minute": {"type": "number", "minimum": 0},
                "notifications": {
                    "type": "object",
                    "required": ["received_total", "applied_total", "duplicates_total",
                        "rejected_total", "lifecycle_total"],
                    "properties": {
                        "received_total": count,
                        "applied_total": count,
                        "duplicates_total": count,
                        "rejected_total": count,
                        "lifecycle_total": count,
                        "last_delay_seconds": {"type": "number", "minimum": 0},
                    }
                },
                "accounts": {"type": "array", "items": schema_ref("ServiceAccount")},
            }
        },
        "ServiceAccount": {
            "type": "object",
            "required": ["account", "state", "subscription"],
            "properties": {
                "account": string,
                "state": {"type": "string", "enum": ["ok", "failed", "not_signed_in"]},
                "error": string,
                "fix": {"type": "string", "description": "The command that signs the account in again."},
                "subscription": {
                    "type": "object",
                    "required": ["state", "watching", "assigned"],
                    "properties": {
                        "state": {"type": "string", "enum": ["active", "creating", "renewing",
                            "reauthorizing", "deleting", "retrying", "idle", "account_failed"]},
                        "watching": count,
                        "assigned": count,
                        "expires_at": time,
                        "renew_at": time,
                        "retry_at": time,
                        "last_error": string,
                    }
                },
            }
        },
    })
}
