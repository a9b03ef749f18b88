//! The OpenAPI 3.1 document of the API, built from the wire types (feature `schema`).
//!
//! The routes' parameters, bodies and answers are described here, next to nothing else; every
//! object's schema comes from its type through `schemars`, under the serde attributes the
//! server and its clients use, so the document cannot describe a field the forge does not have.
//! `crates/lanes-server/src/openapi.json` is this document, written by a test
//! (`UPDATE_OPENAPI=1`) and compared with it on every test run.

use crate::agent::{
    Assignment, Fenced, FinishBody, HostStatus, LogAck, Registered, Registration, SecretsAnswer,
    SecretsRequest, StepBody,
};
use crate::forge::{
    Agent, BranchState, BranchSummary, Error, Group, Health, Job, Jobs, RefsChanged, Repo, Run,
};
use lanes_core::run::RunStatus;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The admin token (or a UI session for `GET`s).
    Admin,
    /// An agent's token.
    Agent,
    /// Anyone.
    Open,
}

/// One route's description.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    params: Vec<Value>,
    body: Option<Value>,
    /// The success answers: status, description, content.
    ok: Vec<(u16, &'static str, Option<Value>)>,
    /// The error statuses the route can answer with (besides the ones every route has).
    errors: &'static [u16],
}

fn json_content(schema: Schema) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn text(kind: &str) -> Value {
    json!({kind: {"schema": {"type": "string"}}})
}

fn param(name: &str, place: &str, required: bool, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": place, "required": required, "description": description,
           "schema": schema})
}

/// A `u64` query parameter (the forge reads any, and clamps where its description says).
fn u64_schema() -> Value {
    json!({"type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX})
}

/// Gives every integer schema of a sized format (`uint64`, `int32`, ...) the bounds of its type,
/// which schemars leaves open above: the forge refuses what does not fit, and the document says
/// so.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let bounds: Option<(Value, Value)> = match fields.get("format").and_then(Value::as_str)
            {
                Some("uint64") => Some((json!(0), json!(u64::MAX))),
                Some("int64") => Some((json!(i64::MIN), json!(i64::MAX))),
                Some("uint32") => Some((json!(0), json!(u32::MAX))),
                Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                Some("uint16") => Some((json!(0), json!(u16::MAX))),
                Some("uint") => Some((json!(0), json!(u64::MAX))),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                fields.entry("minimum").or_insert(min);
                fields.entry("maximum").or_insert(max);
            }
            fields.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// A resource id in a path: a positive integer that fits an `i64`.
fn id_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX})
}

fn repo_param() -> Value {
    param(
        "repo",
        "path",
        true,
        "The repository's name.",
        json!({"type": "string", "minLength": 1}),
    )
}

fn number_param() -> Value {
    param(
        "number",
        "path",
        true,
        "The run's number in its repository.",
        id_schema(),
    )
}

fn job_param() -> Value {
    param("id", "path", true, "The job's id.", id_schema())
}

fn array_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<Vec<T>>()
}

fn ops(g: &mut SchemaGenerator) -> Vec<Op> {
    use Auth::{Admin, Agent as AgentAuth, Open};
    let none: &'static [u16] = &[];
    let not_found: &'static [u16] = &[404];
    let action: &'static [u16] = &[404, 409];
    let agent_job: &'static [u16] = &[404, 409];
    vec![
        Op {
            method: "get",
            path: "/api/v1/repos",
            summary: "The repositories the forge watches.",
            auth: Admin,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "Repositories.",
                Some(json_content(array_of::<Repo>(g))),
            )],
            errors: none,
        },
        Op {
            method: "get",
            path: "/api/v1/repos/{repo}/branches",
            summary: "The branches of a repository with their CI status and latest run.",
            auth: Admin,
            params: vec![repo_param()],
            body: None,
            ok: vec![(
                200,
                "Branches.",
                Some(json_content(array_of::<BranchSummary>(g))),
            )],
            errors: not_found,
        },
        Op {
            method: "get",
            path: "/api/v1/repos/{repo}/branches/{branch}",
            summary: "A branch's CI status, derived from its latest head's run, with that run's jobs.",
            auth: Admin,
            params: vec![
                repo_param(),
                param(
                    "branch",
                    "path",
                    true,
                    "The branch; may contain `/`.",
                    json!({"type": "string", "minLength": 1}),
                ),
            ],
            body: None,
            ok: vec![(
                200,
                "The branch status.",
                Some(json_content(g.subschema_for::<BranchState>())),
            )],
            errors: not_found,
        },
        Op {
            method: "post",
            path: "/api/v1/repos/{repo}/refs-changed",
            summary: "Read the repository's refs now (the post-receive hook calls this). Anonymous.",
            auth: Open,
            params: vec![repo_param()],
            body: None,
            ok: vec![(
                202,
                "The runs created.",
                Some(json_content(g.subschema_for::<RefsChanged>())),
            )],
            errors: not_found,
        },
        Op {
            method: "get",
            path: "/api/v1/repos/{repo}/runs",
            summary: "Runs, newest first.",
            auth: Admin,
            params: vec![
                repo_param(),
                param(
                    "branch",
                    "query",
                    false,
                    "Only this branch's runs.",
                    json!({"type": "string"}),
                ),
                param(
                    "status",
                    "query",
                    false,
                    "Only runs with this status.",
                    g.subschema_for::<RunStatus>().to_value(),
                ),
                param(
                    "before",
                    "query",
                    false,
                    "Only runs older than this run number.",
                    u64_schema(),
                ),
                param(
                    "limit",
                    "query",
                    false,
                    "At most this many (default 50; values are clamped to 1..=500).",
                    json!({"type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX}),
                ),
            ],
            body: None,
            ok: vec![(
                200,
                "Runs without their jobs.",
                Some(json_content(array_of::<Run>(g))),
            )],
            errors: not_found,
        },
        Op {
            method: "get",
            path: "/api/v1/repos/{repo}/runs/{number}",
            summary: "One run with its jobs and steps.",
            auth: Admin,
            params: vec![repo_param(), number_param()],
            body: None,
            ok: vec![(
                200,
                "The run.",
                Some(json_content(g.subschema_for::<Run>())),
            )],
            errors: not_found,
        },
        Op {
            method: "post",
            path: "/api/v1/repos/{repo}/runs/{number}/cancel",
            summary: "Cancel every open job of the run.",
            auth: Admin,
            params: vec![repo_param(), number_param()],
            body: None,
            ok: vec![(
                200,
                "The run.",
                Some(json_content(g.subschema_for::<Run>())),
            )],
            errors: action,
        },
        Op {
            method: "post",
            path: "/api/v1/repos/{repo}/runs/{number}/rerun-failed",
            summary: "Rerun every job of the run whose latest attempt did not pass.",
            auth: Admin,
            params: vec![repo_param(), number_param()],
            body: None,
            ok: vec![(
                200,
                "The new jobs.",
                Some(json_content(g.subschema_for::<Jobs>())),
            )],
            errors: action,
        },
        Op {
            method: "get",
            path: "/api/v1/jobs/{id}",
            summary: "One job.",
            auth: Admin,
            params: vec![job_param()],
            body: None,
            ok: vec![(
                200,
                "The job.",
                Some(json_content(g.subschema_for::<Job>())),
            )],
            errors: not_found,
        },
        Op {
            method: "get",
            path: "/api/v1/jobs/{id}/log",
            summary: "The job's log bytes from an offset. Headers: x-log-offset, x-log-length (acknowledged length), x-job-status.",
            auth: Admin,
            params: vec![
                job_param(),
                param(
                    "offset",
                    "query",
                    false,
                    "First byte (default 0).",
                    u64_schema(),
                ),
                param(
                    "limit",
                    "query",
                    false,
                    "Most bytes (default 1 MiB; values are clamped to 1 byte..=1 MiB).",
                    u64_schema(),
                ),
            ],
            body: None,
            ok: vec![(200, "Log bytes.", Some(text("text/plain")))],
            errors: not_found,
        },
        Op {
            method: "get",
            path: "/api/v1/jobs/{id}/log/stream",
            summary: "Server-sent events: `log` (LogChunk) per acknowledged chunk, then `end` (LogEnd); `error` (StreamError) if the log cannot be read.",
            auth: Admin,
            params: vec![
                job_param(),
                param(
                    "offset",
                    "query",
                    false,
                    "First byte (default 0).",
                    u64_schema(),
                ),
            ],
            body: None,
            ok: vec![(200, "An event stream.", Some(text("text/event-stream")))],
            errors: not_found,
        },
        Op {
            method: "post",
            path: "/api/v1/jobs/{id}/cancel",
            summary: "Cancel a queued or held job.",
            auth: Admin,
            params: vec![job_param()],
            body: None,
            ok: vec![(
                200,
                "The job.",
                Some(json_content(g.subschema_for::<Job>())),
            )],
            errors: action,
        },
        Op {
            method: "post",
            path: "/api/v1/jobs/{id}/rerun",
            summary: "A new job for the same lane of the same run, served first, recording what it reruns.",
            auth: Admin,
            params: vec![job_param()],
            body: None,
            ok: vec![(
                200,
                "The new job.",
                Some(json_content(g.subschema_for::<Job>())),
            )],
            errors: action,
        },
        Op {
            method: "post",
            path: "/api/v1/jobs/{id}/requeue",
            summary: "Put a leased or running job back in the queue.",
            auth: Admin,
            params: vec![job_param()],
            body: None,
            ok: vec![(
                200,
                "The job.",
                Some(json_content(g.subschema_for::<Job>())),
            )],
            errors: action,
        },
        Op {
            method: "get",
            path: "/api/v1/groups",
            summary: "Concurrency groups with their limits, holders and waiters.",
            auth: Admin,
            params: vec![],
            body: None,
            ok: vec![(200, "Groups.", Some(json_content(array_of::<Group>(g))))],
            errors: none,
        },
        Op {
            method: "get",
            path: "/api/v1/agents",
            summary: "Agents with their labels, capacity, state and running jobs.",
            auth: Admin,
            params: vec![],
            body: None,
            ok: vec![(200, "Agents.", Some(json_content(array_of::<Agent>(g))))],
            errors: none,
        },
        Op {
            method: "post",
            path: "/api/v1/agents",
            summary: "Register a remote agent (admin); its token is returned once.",
            auth: Admin,
            params: vec![],
            body: Some(json_content(g.subschema_for::<Registration>())),
            ok: vec![(
                201,
                "The agent and its token.",
                Some(json_content(g.subschema_for::<Registered>())),
            )],
            errors: &[409],
        },
        Op {
            method: "post",
            path: "/api/v1/agent/lease",
            summary: "The next job for the calling agent, waiting up to wait_ms (at most 60 s).",
            auth: AgentAuth,
            params: vec![param(
                "wait_ms",
                "query",
                false,
                "How long to wait for a job (default 30000; at most 60000 is waited).",
                u64_schema(),
            )],
            body: None,
            ok: vec![
                (
                    200,
                    "A job.",
                    Some(json_content(g.subschema_for::<Assignment>())),
                ),
                (204, "No job came within the wait.", None),
            ],
            errors: none,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/status",
            summary: "The calling agent's host status: its scopes and its step cache, shown on the agents page.",
            auth: AgentAuth,
            params: vec![],
            body: Some(json_content(g.subschema_for::<HostStatus>())),
            ok: vec![(204, "Accepted.", None)],
            errors: none,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/jobs/{id}/started",
            summary: "The job started.",
            auth: AgentAuth,
            params: vec![job_param()],
            body: Some(json_content(g.subschema_for::<Fenced>())),
            ok: vec![(204, "Accepted.", None)],
            errors: agent_job,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/jobs/{id}/heartbeat",
            summary: "Extend the lease.",
            auth: AgentAuth,
            params: vec![job_param()],
            body: Some(json_content(g.subschema_for::<Fenced>())),
            ok: vec![(204, "Accepted.", None)],
            errors: agent_job,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/jobs/{id}/log",
            summary: "Append bytes to the job's log at offset (the acknowledged length so far). A resend of acknowledged bytes writes nothing twice; different bytes at acknowledged offsets are 409.",
            auth: AgentAuth,
            params: vec![
                job_param(),
                param(
                    "token",
                    "query",
                    true,
                    "The lease's fencing token.",
                    u64_schema(),
                ),
                param("offset", "query", true, "Where the bytes go.", u64_schema()),
            ],
            body: Some(
                json!({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}),
            ),
            ok: vec![(
                200,
                "The new acknowledged length.",
                Some(json_content(g.subschema_for::<LogAck>())),
            )],
            errors: agent_job,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/jobs/{id}/secrets",
            summary: "The secrets the job's lane asks for (its catalog's `secrets`), to the agent holding the job's lease: each name's value, or why the forge refuses it (it holds none, or the job's branch may not use it). Answered with Cache-Control: no-store.",
            auth: AgentAuth,
            params: vec![job_param()],
            body: Some(json_content(g.subschema_for::<SecretsRequest>())),
            ok: vec![(
                200,
                "Each name asked for, with its value or the refusal.",
                Some(json_content(g.subschema_for::<SecretsAnswer>())),
            )],
            errors: agent_job,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/jobs/{id}/steps",
            summary: "Record one step.",
            auth: AgentAuth,
            params: vec![job_param()],
            body: Some(json_content(g.subschema_for::<StepBody>())),
            ok: vec![(204, "Accepted.", None)],
            errors: agent_job,
        },
        Op {
            method: "post",
            path: "/api/v1/agent/jobs/{id}/finish",
            summary: "The job ended.",
            auth: AgentAuth,
            params: vec![job_param()],
            body: Some(json_content(g.subschema_for::<FinishBody>())),
            ok: vec![(204, "Accepted.", None)],
            errors: agent_job,
        },
        Op {
            method: "get",
            path: "/api/v1/openapi.json",
            summary: "This document. Anonymous.",
            auth: Open,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "OpenAPI 3.1.",
                Some(json!({"application/json": {"schema": {"type": "object"}}})),
            )],
            errors: none,
        },
        Op {
            method: "get",
            path: "/api/v1/health",
            summary: "Whether the forge can take work now: false disk_full, else since when its data directory's disk is full (no new leases meanwhile).",
            auth: Admin,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "The forge's health.",
                Some(json_content(g.subschema_for::<Health>())),
            )],
            errors: none,
        },
        Op {
            method: "get",
            path: "/metrics",
            summary: "Prometheus metrics (text format).",
            auth: Admin,
            params: vec![],
            body: None,
            ok: vec![(200, "Metrics.", Some(text("text/plain")))],
            errors: none,
        },
    ]
}

/// The OpenAPI document, as `GET /api/v1/openapi.json` serves it.
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut g = settings.into_generator();
    let error = g.subschema_for::<Error>();
    let ops = ops(&mut g);
    let mut paths: Map<String, Value> = Map::new();
    for op in ops {
        let mut responses = Map::new();
        for (status, description, content) in op.ok {
            let mut r = json!({"description": description});
            if let Some(c) = content {
                r["content"] = c;
            }
            responses.insert(status.to_string(), r);
        }
        // Every route can answer with these (the HTTP layer's limits, docs/serve.md); the error
        // statuses are documented once. 503 is `busy` (with Retry-After) or `unavailable`.
        let mut errors: Vec<u16> = vec![400, 405, 408, 413, 431, 500];
        if op.auth != Auth::Open {
            errors.extend([401, 403]);
        }
        errors.extend(op.errors);
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            responses.insert(
                status.to_string(),
                json!({"$ref": "#/components/responses/Error"}),
            );
        }
        responses.insert("503".into(), json!({"$ref": "#/components/responses/Busy"}));
        let mut operation = json!({"summary": op.summary, "responses": responses});
        if !op.params.is_empty() {
            operation["parameters"] = Value::Array(op.params);
        }
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true, "content": body});
        }
        match op.auth {
            Auth::Admin => {}
            Auth::Agent => operation["security"] = json!([{"agent": []}]),
            Auth::Open => operation["security"] = json!([]),
        }
        let item = paths.entry(op.path).or_insert_with(|| json!({}));
        item[op.method] = operation;
    }
    let mut schemas = Value::Object(g.take_definitions(true));
    bound_integers(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "lanes forge API",
            "version": crate::VERSION.trim_start_matches('v'),
            "description": "The JSON API of `lanes serve`, generated from the lanes-api crate's types. Reference: docs/api.md."
        },
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "The admin token printed on the server's first start (LANES_TOKEN)."},
                "agent": {"type": "http", "scheme": "bearer", "description": "An agent's token, returned once by POST /api/v1/agents."}
            },
            "responses": {
                "Error": {
                    "description": "An error with a stable code.",
                    "content": {"application/json": {"schema": error.clone()}}
                },
                "Busy": {
                    "description": "The server is at its limit of requests in flight or of busy connections (`busy`; retry after `Retry-After` seconds), or cannot reach what it needs now (`unavailable`).",
                    "headers": {"Retry-After": {"description": "Seconds to wait before retrying (with `busy`).", "schema": {"type": "integer", "minimum": 0}}},
                    "content": {"application/json": {"schema": error}}
                }
            },
            "schemas": schemas,
        }
    })
}
