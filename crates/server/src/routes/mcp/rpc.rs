//! The JSON-RPC 2.0 side of the bridge: parse one request, answer `initialize`,
//! `notifications/*`, `tools/list` and `tools/call`; everything else is "method not found".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use molecule_domain::WorkspaceId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::tools::{self, ToolError};
use crate::error::ok_json;
use crate::state::AppState;

/// JSON-RPC: the body is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a request object.
const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: no such method.
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: bad params.
const INVALID_PARAMS: i64 = -32602;
/// A tool's own failure.
const TOOL_ERROR: i64 = -32000;

/// The protocol version the bridge speaks.
pub(super) const PROTOCOL_VERSION: &str = "2024-11-05";

#[derive(Deserialize)]
struct CallParams {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Handles one request body for workspace `id`.
pub(super) async fn handle(state: &AppState, id: WorkspaceId, body: &[u8]) -> Response {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let answer = error_body(&Value::Null, PARSE_ERROR, &format!("parse error: {e}"));
            return ok_json(StatusCode::BAD_REQUEST, answer);
        }
    };
    let Some(object) = request.as_object() else {
        let answer = error_body(
            &Value::Null,
            INVALID_REQUEST,
            "invalid request: expected one JSON-RPC object (no batches)",
        );
        return ok_json(StatusCode::BAD_REQUEST, answer);
    };
    let rpc_id = object.get("id").cloned().unwrap_or(Value::Null);
    let method = object
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => result(
            &rpc_id,
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "molecule-a2a", "version": "1.0.0"},
            }),
        ),
        m if m.starts_with("notifications/") && !object.contains_key("id") => {
            StatusCode::OK.into_response()
        }
        "tools/list" => result(
            &rpc_id,
            json!({ "tools": tools::list(tools::send_message_allowed(state)) }),
        ),
        "tools/call" => {
            let call: CallParams = match serde_json::from_value(params) {
                Ok(c) => c,
                Err(e) => return error(&rpc_id, INVALID_PARAMS, &format!("invalid params: {e}")),
            };
            let arguments = call.arguments.unwrap_or_else(|| json!({}));
            match tools::call(state, id, &call.name, arguments).await {
                Ok(text) => result(
                    &rpc_id,
                    json!({"content": [{"type": "text", "text": text}]}),
                ),
                Err(ToolError::Params(m)) => {
                    error(&rpc_id, INVALID_PARAMS, &format!("invalid params: {m}"))
                }
                Err(ToolError::Failed(m)) => error(&rpc_id, TOOL_ERROR, &m),
            }
        }
        m => error(&rpc_id, METHOD_NOT_FOUND, &format!("method not found: {m}")),
    }
}

fn result(id: &Value, result: Value) -> Response {
    ok_json(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

fn error_body(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn error(id: &Value, code: i64, message: &str) -> Response {
    ok_json(StatusCode::OK, error_body(id, code, message))
}
