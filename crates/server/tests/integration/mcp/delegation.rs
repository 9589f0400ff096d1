//! The bridge's delegation and messaging tools with a real agent (an HTTP agent on a loopback
//! port, dev mode so the address policy admits it): a synchronous delegation answers the
//! agent's reply, an asynchronous one is tracked by the platform's delegation subsystem until
//! `check_task_status` sees it completed, and `send_message_to_user` reaches the canvas as
//! `AGENT_MESSAGE`.

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::{error, plan, sdk_client, text};
use crate::common::agent::TestAgent;
use crate::common::wait::{next_event, poll};
use crate::common::{Options, TestServer};

on_both_backends!(delegation_and_messages_reach_real_agents);

async fn dev_server(db: TestStore) -> TestServer {
    TestServer::start_configured(
        db,
        Options {
            backend: true,
            dev: true,
        },
        |mut state| {
            state.mcp_allow_send_message = Some(true);
            state
        },
    )
    .await
}

async fn delegation_and_messages_reach_real_agents(db: TestStore) {
    let s = dev_server(db).await;
    let agent = TestAgent::start().await;
    let (lead, _) = s.registered("lead", &agent.url, None).await;
    let (me, token) = s.registered("me", &agent.url, Some(lead)).await;
    let (peer, _) = s.registered("peer", &agent.url, Some(lead)).await;
    let (other_root, _) = s.registered("other", &agent.url, None).await;
    let (stranger, _) = s.registered("stranger", &agent.url, Some(other_root)).await;
    let mut events = s.events();

    let calls = json!([
        {"name": "delegate_task", "arguments": {"workspace_id": peer, "task": "hello"}},
        {"name": "delegate_task", "arguments": {"workspace_id": stranger, "task": "hello"}},
        {"name": "delegate_task_async", "arguments": {"workspace_id": peer, "task": "later"}},
        {"name": "check_task_status", "arguments": {"workspace_id": peer, "task_id": "nope"}},
        {"name": "send_message_to_user", "arguments": {"message": "done for today"}},
    ]);
    let report = sdk_client(plan(&s, me, &token, calls)).await;
    let names: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"send_message_to_user"), "{names:?}");
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(text(&calls[0]), "echo: hello");
    assert_eq!(
        error(&calls[1], -32000),
        format!("workspace {me} is not authorised to communicate with {stranger}")
    );
    let started: Value = serde_json::from_str(text(&calls[2])).unwrap();
    assert_eq!(started["status"], "dispatched");
    assert_eq!(started["target_id"], peer.to_string());
    let task_id = started["task_id"].as_str().unwrap().to_owned();
    let unknown: Value = serde_json::from_str(text(&calls[3])).unwrap();
    assert_eq!(unknown["status"], "not_found");
    assert_eq!(text(&calls[4]), "Message sent.");
    let said = next_event(&mut events, "AGENT_MESSAGE", me).await;
    assert_eq!(said["payload"]["message"], "done for today");
    assert_eq!(said["payload"]["name"], "me");

    // The agent got both tasks, through the proxy (the caller is named), and nothing reached
    // the stranger.
    let texts = |agent: &TestAgent| -> Vec<String> {
        agent
            .received()
            .iter()
            .filter_map(|r| r.pointer("/params/message/parts/0/text"))
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    poll("the async delegation at the agent", || {
        let seen = texts(&agent);
        async move { seen.iter().any(|t| t == "later").then_some(()) }
    })
    .await;
    assert_eq!(texts(&agent).len(), 2, "{:?}", texts(&agent));

    // check_task_status follows the delegation to its end (waited for on the HTTP route
    // that reads the same delegation rows).
    poll("the delegation completed", || {
        let reply = s.call(
            "GET",
            &format!("/workspaces/{me}/delegations"),
            Some(&token),
            None,
        );
        let task_id = task_id.clone();
        async move {
            let (_, list) = reply.await;
            list.as_array()?
                .iter()
                .any(|d| d["delegation_id"] == task_id.as_str() && d["status"] == "completed")
                .then_some(())
        }
    })
    .await;
    let calls = json!([{"name": "check_task_status",
                        "arguments": {"workspace_id": peer, "task_id": task_id}}]);
    let report = sdk_client(plan(&s, me, &token, calls)).await;
    let status: Value = serde_json::from_str(text(&report["calls"][0])).unwrap();
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["task_id"], task_id.as_str());
    assert!(
        status["result"].as_str().unwrap().contains("echo: later"),
        "{status}"
    );
}
