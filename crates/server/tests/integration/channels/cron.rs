//! A schedule's answer is posted to the workspace's Slack channels (spec §6.5, invariant 14):
//! only non-empty ok answers, only Slack, cut to 500 characters.

use molecule_store::testing::TestStore;
use serde_json::json;

use super::fake::{BOT_TOKEN, FakeChats};
use super::{agent_workspace, create_channel, server};
use crate::common::{ADMIN, assert_status};

molecule_store::on_both_backends!(a_schedules_answer_is_posted_to_slack_cut_to_500_characters);

async fn a_schedules_answer_is_posted_to_slack_cut_to_500_characters(db: TestStore) {
    let fake = FakeChats::start().await;
    let s = server(db, &fake).await;
    let (ws, _, _agent) = agent_workspace(&s).await;
    let slack = json!({"channel_type": "slack", "config": {
        "bot_token": "xoxb-test-token", "channel_id": "C1",
    }});
    create_channel(&s, ws, slack).await;
    let telegram = json!({"channel_type": "telegram", "config": {
        "bot_token": BOT_TOKEN, "chat_id": "42",
    }});
    create_channel(&s, ws, telegram).await;
    let schedule = json!({"name": "daily", "cron_expr": "0 9 * * *", "prompt": "p".repeat(600)});
    let path = format!("/workspaces/{ws}/schedules");
    let created = assert_status(
        s.call("POST", &path, Some(ADMIN), Some(schedule)).await,
        201,
    );
    let id = created["id"].as_str().unwrap();
    let run = format!("/workspaces/{ws}/schedules/{id}/run?fire=true");
    let fired = assert_status(s.call("POST", &run, Some(ADMIN), None).await, 200);
    assert_eq!(fired["run_status"], "ok", "{fired}");

    let posted = fake
        .wait_call("slack", "chat.postMessage", |c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("echo: "))
        })
        .await;
    let text = posted.body["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 500, "{text}");
    assert!(text.ends_with("..."));
    assert_eq!(posted.body["channel"], "C1");
    assert!(
        fake.calls_of("telegram", "sendMessage").is_empty(),
        "cron output goes to Slack channels only"
    );
}
