//! External workspaces' connection details (`lifecycle.md` §6.1 step 6 and its [05-06]
//! routes): the `connection` block of the create answer, `GET …/external/connection` (the same
//! block again, without a token: tokens are stored hashed and shown once), and
//! `POST …/external/rotate` (every live token replaced by a new one, shown in the answer).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use molecule_domain::Runtime;
use molecule_store::Workspace;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::WorkspacePath;
use crate::routes::live_workspace;
use crate::state::AppState;

/// The placeholder the snippets keep for the token (the client fills it in).
const TOKEN: &str = "{{AUTH_TOKEN}}";

/// `GET /workspaces/:id/external/connection` (admin).
pub(crate) async fn connection_info(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ws = external(&state, id).await?;
    Ok(answer(&state, &headers, &ws, ""))
}

/// `POST /workspaces/:id/external/rotate` (admin): the agent must register again with the
/// new token; the old ones are refused from now on.
pub(crate) async fn rotate(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ws = external(&state, id).await?;
    let issued = state
        .store
        .tokens()
        .rotate(id)
        .await
        .or_internal("failed to rotate the token")?;
    tracing::info!(workspace = %id, "external workspace token rotated");
    Ok(answer(&state, &headers, &ws, issued.token.expose()))
}

/// The live workspace `id` when it is external; 404 when missing, 400 when not external.
async fn external(state: &AppState, id: molecule_domain::WorkspaceId) -> ApiResult<Workspace> {
    let ws = live_workspace(state, id, "query failed").await?;
    if ws.runtime != Runtime::EXTERNAL {
        return Err(ApiError::bad_request("workspace is not external"));
    }
    Ok(ws)
}

fn answer(state: &AppState, headers: &HeaderMap, ws: &Workspace, token: &str) -> Response {
    ok_json(
        StatusCode::OK,
        json!({
            "id": ws.id,
            "external": true,
            "status": ws.status,
            "connection": connection(state, headers, ws, token),
        }),
    )
}

/// The `connection` block: where an external agent registers and heartbeats, with `token`
/// (empty when not shown), and ready-made snippets for common agent set-ups, each with the
/// platform URL and workspace id filled in and `{{AUTH_TOKEN}}` left for the token.
pub(crate) fn connection(
    state: &AppState,
    headers: &HeaderMap,
    ws: &Workspace,
    token: &str,
) -> Value {
    let platform = crate::routes::request_origin(&state.http, headers);
    let id = ws.id;
    let register_body = json!({
        "id": id,
        "url": "<your agent URL>",
        "agent_card": {"name": ws.name},
    })
    .to_string();
    let curl = format!(
        "curl -X POST {platform}/registry/register -H 'Authorization: Bearer {TOKEN}' \
         -H 'Content-Type: application/json' -d {}",
        shell_quote(&register_body)
    );
    let mcp = format!("{platform}/workspaces/{id}/mcp");
    json!({
        "workspace_id": id,
        "platform_url": platform,
        "auth_token": token,
        "registry_endpoint": format!("{platform}/registry/register"),
        "heartbeat_endpoint": format!("{platform}/registry/heartbeat"),
        "curl_register_template": curl,
        "python_snippet": python_snippet(&platform, &id.to_string()),
        "claude_code_channel_snippet": format!(
            "claude mcp add --transport http molecule {mcp} --header \"Authorization: Bearer {TOKEN}\""
        ),
        "universal_mcp_snippet": serde_json::to_string_pretty(&json!({
            "mcpServers": {"molecule": {
                "type": "http",
                "url": mcp,
                "headers": {"Authorization": format!("Bearer {TOKEN}")},
            }}
        }))
        .unwrap_or_default(),
        "hermes_channel_snippet": format!(
            "mcp_servers:\n  molecule:\n    url: \"{mcp}\"\n    headers:\n      Authorization: \"Bearer {TOKEN}\"\n"
        ),
        "codex_snippet": format!(
            "[mcp_servers.molecule]\nurl = \"{mcp}\"\nhttp_headers = {{ \"Authorization\" = \"Bearer {TOKEN}\" }}\n"
        ),
        "openclaw_snippet": serde_json::to_string_pretty(&json!({
            "mcp": {"servers": {"molecule": {
                "url": mcp,
                "headers": {"Authorization": format!("Bearer {TOKEN}")},
            }}}
        }))
        .unwrap_or_default(),
    })
}

/// A minimal Python agent loop: register, then the 30-second heartbeat.
fn python_snippet(platform: &str, id: &str) -> String {
    format!(
        r#"# pip install requests
import time, requests

PLATFORM = "{platform}"
WORKSPACE_ID = "{id}"
HEADERS = {{"Authorization": "Bearer {TOKEN}"}}
AGENT_URL = "http://<your agent host>:<port>"  # where A2A messages are sent

requests.post(f"{{PLATFORM}}/registry/register", headers=HEADERS, json={{
    "id": WORKSPACE_ID, "url": AGENT_URL, "agent_card": {{"name": "my-agent"}},
}}).raise_for_status()
started = time.time()
while True:
    requests.post(f"{{PLATFORM}}/registry/heartbeat", headers=HEADERS, json={{
        "workspace_id": WORKSPACE_ID, "active_tasks": 0,
        "uptime_seconds": int(time.time() - started),
    }})
    time.sleep(30)
"#
    )
}

/// `text` as one single-quoted POSIX shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn a_quote_cannot_end_the_shell_word() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("x"), "'x'");
    }
}
