//! The bridge's tools, called as workspace `:id`: each runs on the store and services the
//! HTTP routes use (never our own HTTP API) and answers one text block.

use molecule_domain::memory::{self, MemoryScope};
use molecule_domain::{EventType, WorkspaceId};
use molecule_store::{NewMemory, RecallFilter, Workspace};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::delegation;
use crate::routes::views::rfc3339;
use crate::state::AppState;

/// The longest `send_message_to_user` message, in bytes.
const MESSAGE_MAX_BYTES: usize = 64 * 1024;
/// The longest `recall_memory` query, in bytes.
const QUERY_MAX_BYTES: usize = 1024;

/// Why a tool call did nothing.
#[derive(Debug)]
pub(super) enum ToolError {
    /// The arguments are not what the tool's schema says (-32602).
    Params(String),
    /// The tool refused or failed, with its message (-32000).
    Failed(String),
}

fn failed(message: impl Into<String>) -> ToolError {
    ToolError::Failed(message.into())
}

/// Whether `send_message_to_user` is offered: the state's setting, else the env (read on
/// every request).
pub(super) fn send_message_allowed(state: &AppState) -> bool {
    state.mcp_allow_send_message.unwrap_or_else(|| {
        std::env::var("MOLECULE_MCP_ALLOW_SEND_MESSAGE").is_ok_and(|v| v == "true")
    })
}

/// The peer property of the delegation tools.
fn target_property() -> Value {
    string("The target workspace's id, as `list_peers` gives it.")
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required},
    })
}

/// The `tools/list` entries, in the spec's order.
pub(super) fn list(send_message: bool) -> Vec<Value> {
    let mut tools = vec![
        tool(
            "delegate_task",
            "Send a task to a peer workspace (from `list_peers`) and wait for its reply text \
             (up to 30 s).",
            json!({"workspace_id": target_property(), "task": string("What the peer should do.")}),
            &["workspace_id", "task"],
        ),
        tool(
            "delegate_task_async",
            "Send a task to a peer workspace (from `list_peers`) without waiting; answers a \
             task_id for `check_task_status`.",
            json!({"workspace_id": target_property(), "task": string("What the peer should do.")}),
            &["workspace_id", "task"],
        ),
        tool(
            "check_task_status",
            "The status (and result, once done) of a task started with `delegate_task_async`.",
            json!({"workspace_id": target_property(),
                   "task_id": string("The task_id `delegate_task_async` answered.")}),
            &["workspace_id", "task_id"],
        ),
        tool(
            "list_peers",
            "List the workspaces this one may talk to: its siblings, children and parent.",
            json!({}),
            &[],
        ),
        tool(
            "get_workspace_info",
            "This workspace's id, name, role, tier, status and parent.",
            json!({}),
            &[],
        ),
        tool(
            "send_message_to_user",
            "Push a chat message to the user watching this workspace on the canvas.",
            json!({"message": string("The message text.")}),
            &["message"],
        ),
        tool(
            "commit_memory",
            "Store a memory. LOCAL is private to this workspace, TEAM is shared with its \
             siblings; GLOBAL scope is blocked on this bridge. Secrets are redacted.",
            json!({
                "content": string("The text to remember."),
                "scope": {"type": "string", "enum": ["LOCAL", "TEAM"],
                          "description": "LOCAL (default) or TEAM; GLOBAL is blocked."},
            }),
            &["content"],
        ),
        tool(
            "recall_memory",
            "Search memories this workspace may see, best match first (at most 50). GLOBAL \
             scope is blocked on this bridge.",
            json!({
                "query": string("Text to search for; empty lists the newest."),
                "scope": {"type": "string", "enum": ["LOCAL", "TEAM", ""],
                          "description": "LOCAL, TEAM, or empty for both; GLOBAL is blocked."},
            }),
            &[],
        ),
    ];
    if !send_message {
        tools.retain(|t| t["name"] != "send_message_to_user");
    }
    tools
}

/// Runs tool `name` for workspace `id` with `arguments`.
pub(super) async fn call(
    state: &AppState,
    id: WorkspaceId,
    name: &str,
    arguments: Value,
) -> Result<String, ToolError> {
    if !arguments.is_object() {
        return Err(ToolError::Params(String::from(
            "arguments must be an object",
        )));
    }
    match name {
        "delegate_task" => {
            let a: DelegateArgs = args(arguments)?;
            delegation::delegate(state, id, a.workspace_id.as_deref(), a.task.as_deref())
                .await
                .map_err(failed)
        }
        "delegate_task_async" => {
            let a: DelegateArgs = args(arguments)?;
            delegation::delegate_async(state, id, a.workspace_id.as_deref(), a.task.as_deref())
                .await
                .map_err(failed)
        }
        "check_task_status" => {
            let a: StatusArgs = args(arguments)?;
            delegation::status(state, id, a.workspace_id.as_deref(), a.task_id.as_deref())
                .await
                .map_err(failed)
        }
        "send_message_to_user" => send_message(state, id, args(arguments)?).await,
        "list_peers" => list_peers(state, id).await,
        "get_workspace_info" => workspace_info(state, id).await,
        "commit_memory" => commit_memory(state, id, args(arguments)?).await,
        "recall_memory" => recall_memory(state, id, args(arguments)?).await,
        other => Err(failed(format!("unknown tool: {other}"))),
    }
}

fn args<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|e| ToolError::Params(e.to_string()))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

async fn live(state: &AppState, id: WorkspaceId) -> Result<Workspace, ToolError> {
    state
        .store
        .workspaces()
        .get(id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, workspace = %id, "mcp: workspace lookup failed");
            failed("lookup failed")
        })?
        .filter(|w| !w.status.is_removed())
        .ok_or_else(|| failed("workspace not found"))
}

async fn list_peers(state: &AppState, id: WorkspaceId) -> Result<String, ToolError> {
    let all = state.store.workspaces().list().await.map_err(|e| {
        tracing::warn!(error = %e, workspace = %id, "mcp: peer lookup failed");
        failed("lookup failed")
    })?;
    let me = all
        .iter()
        .find(|w| w.id == id)
        .ok_or_else(|| failed("workspace not found"))?;
    let siblings = all
        .iter()
        .filter(|w| w.id != id && w.parent_id == me.parent_id);
    let children = all.iter().filter(|w| w.parent_id == Some(id));
    let parent = all.iter().filter(|w| Some(w.id) == me.parent_id);
    let peers: Vec<Value> = siblings
        .chain(children)
        .chain(parent)
        .map(|w| json!({"id": w.id, "name": w.name, "role": w.role, "status": w.status, "tier": w.tier}))
        .collect();
    if peers.is_empty() {
        return Ok(String::from("No peers found."));
    }
    Ok(pretty(&Value::Array(peers)))
}

async fn workspace_info(state: &AppState, id: WorkspaceId) -> Result<String, ToolError> {
    let w = live(state, id).await?;
    let mut info =
        json!({"id": w.id, "name": w.name, "role": w.role, "tier": w.tier, "status": w.status});
    if let Some(parent) = w.parent_id {
        info["parent_id"] = json!(parent);
    }
    Ok(pretty(&info))
}

#[derive(Deserialize)]
struct CommitArgs {
    content: Option<String>,
    scope: Option<String>,
}

async fn commit_memory(
    state: &AppState,
    id: WorkspaceId,
    a: CommitArgs,
) -> Result<String, ToolError> {
    let content = a
        .content
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| failed("content is required"))?;
    let scope = match a.scope.as_deref().unwrap_or("LOCAL") {
        "" | "LOCAL" => MemoryScope::Local,
        "TEAM" => MemoryScope::Team,
        "GLOBAL" => {
            return Err(failed(
                "GLOBAL scope is not permitted via the MCP bridge — use LOCAL or TEAM",
            ));
        }
        _ => return Err(failed("scope must be LOCAL or TEAM")),
    };
    memory::check_content(&content).map_err(|e| failed(e.to_string()))?;
    let ws = live(state, id).await?;
    memory::check_write(scope, ws.parent_id).map_err(|e| failed(e.to_string()))?;
    let committed = state
        .store
        .memories()
        .commit(&NewMemory {
            workspace_id: id,
            content,
            scope,
            namespace: String::from(memory::DEFAULT_NAMESPACE),
            created_at: None,
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, workspace = %id, "mcp: memory commit failed");
            failed("failed to save memory")
        })?;
    if !committed.redacted.is_empty() {
        tracing::info!(workspace = %id, labels = ?committed.redacted, "mcp memory: secrets redacted");
    }
    Ok(json!({"id": committed.memory.id, "scope": scope}).to_string())
}

#[derive(Deserialize)]
struct RecallArgs {
    query: Option<String>,
    scope: Option<String>,
}

async fn recall_memory(
    state: &AppState,
    id: WorkspaceId,
    a: RecallArgs,
) -> Result<String, ToolError> {
    let scope = match a.scope.as_deref().unwrap_or("") {
        "" => None,
        "LOCAL" => Some(MemoryScope::Local),
        "TEAM" => Some(MemoryScope::Team),
        "GLOBAL" => {
            return Err(failed(
                "GLOBAL scope is not permitted via the MCP bridge — use LOCAL, TEAM, or empty",
            ));
        }
        _ => return Err(failed("scope must be LOCAL, TEAM, or empty")),
    };
    let query = a
        .query
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if query.as_ref().is_some_and(|q| q.len() > QUERY_MAX_BYTES) {
        return Err(failed(format!("query must be <= {QUERY_MAX_BYTES} bytes")));
    }
    let ws = live(state, id).await?;
    let filter = RecallFilter {
        scope,
        query,
        namespace: None,
        limit: memory::RECALL_MAX,
    };
    let rows = state
        .store
        .memories()
        .recall(id, ws.parent_id, &filter)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, workspace = %id, "mcp: memory recall failed");
            failed("recall failed")
        })?;
    if rows.is_empty() {
        return Ok(String::from("No memories found."));
    }
    let items: Vec<Value> = rows
        .iter()
        .map(|m| json!({"id": m.id, "content": m.read_content(), "scope": m.scope, "created_at": rfc3339(m.created_at)}))
        .collect();
    Ok(pretty(&Value::Array(items)))
}

#[derive(Deserialize)]
struct DelegateArgs {
    workspace_id: Option<String>,
    task: Option<String>,
}

#[derive(Deserialize)]
struct StatusArgs {
    workspace_id: Option<String>,
    task_id: Option<String>,
}

#[derive(Deserialize)]
struct MessageArgs {
    message: Option<String>,
}

async fn send_message(
    state: &AppState,
    id: WorkspaceId,
    a: MessageArgs,
) -> Result<String, ToolError> {
    let message = a
        .message
        .filter(|m| !m.is_empty())
        .ok_or_else(|| failed("message is required"))?;
    if !send_message_allowed(state) {
        return Err(failed(
            "send_message_to_user is not enabled on this MCP bridge (set MOLECULE_MCP_ALLOW_SEND_MESSAGE=true)",
        ));
    }
    if message.len() > MESSAGE_MAX_BYTES {
        return Err(failed(format!(
            "message must be <= {MESSAGE_MAX_BYTES} bytes"
        )));
    }
    let ws = live(state, id).await?;
    let payload = json!({"message": message, "workspace_id": id, "name": ws.name});
    state
        .events
        .emit(EventType::AgentMessage, Some(id), payload)
        .await;
    Ok(String::from("Message sent."))
}
