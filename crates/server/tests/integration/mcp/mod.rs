//! The MCP bridge (`scheduler-channels-mcp.md` §9) over real HTTP on both databases: the
//! official Python `mcp` SDK (pinned in `tests/mcp_sdk/requirements.txt`) initializes, lists
//! the tools and calls each one; the JSON-RPC contract, the MCP limiter (RL-MCP) and the
//! legacy SSE stream are checked on the wire.
//!
//! Python 3 with the pinned SDK is required: without it these tests fail (never skip).
//! `cargo xtask ci` installs it (step `mcp (Python MCP SDK)`).

use molecule_domain::WorkspaceId;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::common::python::PythonDir;

mod delegation;

on_both_backends!(
    sdk_client_calls_every_tool,
    bad_calls_do_nothing,
    json_rpc_contract_on_the_wire,
    limiter_counts_per_bearer,
    legacy_stream_names_the_endpoint,
);

const PYTHON: PythonDir = PythonDir {
    dir: "mcp_sdk",
    install_hint: "the MCP tests need python3 with the pins of \
     crates/server/tests/mcp_sdk/requirements.txt: run `cargo xtask ci` (its step \
     `mcp (Python MCP SDK)` installs them) or \
     `python3 -m pip install -r crates/server/tests/mcp_sdk/requirements.txt`",
};

/// Runs `client.py` with `plan` on stdin; answers its report.
pub(super) async fn sdk_client(plan: Value) -> Value {
    tokio::task::spawn_blocking(move || {
        let out = PYTHON.run("client.py", plan.to_string().as_bytes());
        assert!(
            out.status.success(),
            "client.py failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
    .await
    .unwrap()
}

pub(super) fn plan(s: &TestServer, id: WorkspaceId, token: &str, calls: Value) -> Value {
    json!({"url": format!("{}/workspaces/{id}/mcp", s.base), "token": token, "calls": calls})
}

pub(super) fn text(call: &Value) -> &str {
    call["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a text result: {call}"))
}

pub(super) fn error(call: &Value, code: i64) -> &str {
    assert_eq!(call["error"]["code"], code, "{call}");
    call["error"]["message"].as_str().unwrap()
}

async fn memory_count(s: &TestServer, id: WorkspaceId) -> usize {
    let filter = molecule_store::RecallFilter {
        scope: None,
        query: None,
        namespace: None,
        limit: 50,
    };
    s.state
        .store
        .memories()
        .recall(id, None, &filter)
        .await
        .unwrap()
        .len()
}

async fn sdk_client_calls_every_tool(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (parent, _) = s.provisioned("lead", None).await;
    let (me, token) = s.provisioned("me", Some(parent)).await;
    let (sibling, _) = s.provisioned("sib", Some(parent)).await;
    let calls = json!([
        {"name": "get_workspace_info", "arguments": {}},
        {"name": "list_peers", "arguments": {}},
        {"name": "commit_memory", "arguments": {"content": "the deploy key is in vault", "scope": "TEAM"}},
        {"name": "commit_memory", "arguments": {"content": "local note"}},
        {"name": "recall_memory", "arguments": {"query": "deploy"}},
        {"name": "recall_memory", "arguments": {"scope": "LOCAL"}},
    ]);
    let report = sdk_client(plan(&s, me, &token, calls)).await;
    assert_eq!(report["protocolVersion"], "2024-11-05");
    assert_eq!(report["serverInfo"]["name"], "molecule-a2a");
    let names: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "delegate_task",
            "delegate_task_async",
            "check_task_status",
            "list_peers",
            "get_workspace_info",
            "commit_memory",
            "recall_memory"
        ]
    );
    for tool in report["tools"].as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(!tool["description"].as_str().unwrap().is_empty());
    }
    let calls = report["calls"].as_array().unwrap();

    let info: Value = serde_json::from_str(text(&calls[0])).unwrap();
    assert_eq!(info["id"], me.to_string());
    assert_eq!(info["name"], "me");
    assert_eq!(info["parent_id"], parent.to_string());

    let peers: Value = serde_json::from_str(text(&calls[1])).unwrap();
    let mut ids: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = [sibling.to_string(), parent.to_string()];
    want.sort_unstable();
    assert_eq!(ids, want);

    let committed: Value = serde_json::from_str(text(&calls[2])).unwrap();
    assert_eq!(committed["scope"], "TEAM");
    let local: Value = serde_json::from_str(text(&calls[3])).unwrap();
    assert_eq!(local["scope"], "LOCAL");

    let found: Value = serde_json::from_str(text(&calls[4])).unwrap();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], committed["id"]);
    assert_eq!(found[0]["content"], "the deploy key is in vault");
    let locals: Value = serde_json::from_str(text(&calls[5])).unwrap();
    assert_eq!(locals.as_array().unwrap().len(), 1);
    assert_eq!(locals[0]["content"], "local note");

    // The sibling sees the TEAM memory through the same store the HTTP route uses.
    let (status, seen) = s
        .admin(
            "GET",
            &format!("/workspaces/{sibling}/memories?scope=TEAM"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen[0]["content"], "the deploy key is in vault");

    // A lone root has no peers and no memories.
    let (root, root_token) = s.provisioned("alone", None).await;
    let calls = json!([
        {"name": "recall_memory", "arguments": {}},
    ]);
    let report = sdk_client(plan(&s, root, &root_token, calls)).await;
    assert_eq!(text(&report["calls"][0]), "No memories found.");
}

async fn bad_calls_do_nothing(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (me, token) = s.provisioned("me", None).await;
    let big = "x".repeat(100_001);
    let calls = json!([
        {"name": "no_such_tool", "arguments": {}},
        {"name": "commit_memory", "arguments": {"content": 42}},
        {"name": "commit_memory", "arguments": {"content": "secret plan", "scope": "GLOBAL"}},
        {"name": "commit_memory", "arguments": {"content": "x", "scope": "WORLD"}},
        {"name": "commit_memory", "arguments": {}},
        {"name": "commit_memory", "arguments": {"content": big}},
        {"name": "recall_memory", "arguments": {"scope": "GLOBAL"}},
        {"name": "recall_memory", "arguments": {"query": ["a"]}},
        {"name": "send_message_to_user", "arguments": {"message": "hi"}},
        {"name": "send_message_to_user", "arguments": {}},
        {"name": "delegate_task", "arguments": {"task": "x"}},
        {"name": "delegate_task", "arguments": {"workspace_id": "x"}},
        {"name": "check_task_status", "arguments": {"workspace_id": 3, "task_id": "t"}},
    ]);
    let report = sdk_client(plan(&s, me, &token, calls)).await;
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(error(&calls[0], -32000), "unknown tool: no_such_tool");
    assert!(error(&calls[1], -32602).starts_with("invalid params: "));
    assert_eq!(
        error(&calls[2], -32000),
        "GLOBAL scope is not permitted via the MCP bridge — use LOCAL or TEAM"
    );
    assert_eq!(error(&calls[3], -32000), "scope must be LOCAL or TEAM");
    assert_eq!(error(&calls[4], -32000), "content is required");
    assert_eq!(error(&calls[5], -32000), "content must be <= 100000 bytes");
    assert_eq!(
        error(&calls[6], -32000),
        "GLOBAL scope is not permitted via the MCP bridge — use LOCAL, TEAM, or empty"
    );
    assert!(error(&calls[7], -32602).starts_with("invalid params: "));
    assert_eq!(
        error(&calls[8], -32000),
        "send_message_to_user is not enabled on this MCP bridge (set MOLECULE_MCP_ALLOW_SEND_MESSAGE=true)"
    );
    assert_eq!(error(&calls[9], -32000), "message is required");
    assert_eq!(error(&calls[10], -32000), "workspace_id is required");
    assert_eq!(error(&calls[11], -32000), "task is required");
    assert!(error(&calls[12], -32602).starts_with("invalid params: "));
    assert_eq!(memory_count(&s, me).await, 0);

    // Another workspace's token is refused before anything runs.
    let (other, other_token) = s.provisioned("other", None).await;
    let (status, reply) = s
        .call(
            "POST",
            &format!("/workspaces/{me}/mcp"),
            Some(&other_token),
            Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": {"name": "commit_memory", "arguments": {"content": "x"}}})),
        )
        .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"], "invalid workspace auth token");
    assert_eq!(memory_count(&s, me).await, 0);
    assert_eq!(memory_count(&s, other).await, 0);
}

async fn rpc(s: &TestServer, id: WorkspaceId, token: &str, body: &str) -> (u16, Value) {
    s.call_raw("POST", &format!("/workspaces/{id}/mcp"), Some(token), body)
        .await
}

async fn json_rpc_contract_on_the_wire(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (me, token) = s.provisioned("me", None).await;
    let (status, reply) = rpc(&s, me, &token, "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(reply["id"], Value::Null);
    assert_eq!(reply["error"]["code"], -32700);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("parse error: ")
    );

    let (status, reply) = rpc(
        &s,
        me,
        &token,
        r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"jsonrpc": "2.0", "id": "a", "result": {
            "protocolVersion": "2024-11-05",
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "molecule-a2a", "version": "1.0.0"}}})
    );
    let (status, reply) = rpc(
        &s,
        me,
        &token,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply, Value::Null);
    let (status, reply) = rpc(
        &s,
        me,
        &token,
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["error"]["code"], -32601);
    assert_eq!(reply["error"]["message"], "method not found: ping");
    let (status, reply) = rpc(
        &s,
        me,
        &token,
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"arguments":{}}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply["error"]["code"], -32602);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid params: ")
    );
    let (status, reply) = rpc(
        &s,
        me,
        &token,
        r#"[{"jsonrpc":"2.0","id":9,"method":"tools/list"}]"#,
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error"]["code"], -32600);
}

async fn limiter_counts_per_bearer(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (me, token) = s.provisioned("me", None).await;
    let url = format!("{}/workspaces/{me}/mcp", s.base);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let send = |auth: String| {
        s.http
            .post(&url)
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(list)
            .send()
    };
    for n in 1..=120_i64 {
        let resp = send(format!("Bearer {token}")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let remaining: i64 = resp.headers()["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(remaining, 120 - n);
        assert_eq!(resp.headers()["x-ratelimit-limit"], "120");
    }
    let resp = send(format!("Bearer {token}")).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "MCP rate limit exceeded");
    assert!(body["retry_after"].as_u64().unwrap() <= 60);
    // The admin token has a bucket of its own.
    let resp = send(format!("Bearer {}", crate::common::ADMIN))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "119");
}

async fn legacy_stream_names_the_endpoint(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (me, token) = s.provisioned("me", None).await;
    let mut resp = s
        .http
        .get(format!("{}/workspaces/{me}/mcp/stream", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["x-ratelimit-remaining"], "119");
    let chunk = resp.chunk().await.unwrap().unwrap();
    assert_eq!(
        std::str::from_utf8(&chunk).unwrap(),
        format!("event: endpoint\ndata: /workspaces/{me}/mcp\n\n")
    );
}
