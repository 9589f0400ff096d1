//! The idle timeout of a delivery follows what the target's runtime declared in its last
//! heartbeat (`runtime_metadata.idle_timeout_seconds`, lifecycle.md §9.2): an agent that
//! says its tasks may run silent for a minute is not cut off at the server's setting, and a
//! heartbeat without it goes back to the setting. No sleeps: a second agent without the
//! declaration, held the same way and started later, shows that the setting's time passed.

use std::time::Duration;

use molecule_store::testing::TestStore;
use serde_json::json;

use super::{a2a, message, with_idle_timeout};
use crate::common::agent::{Answer, TestAgent};
use crate::common::assert_status;

molecule_store::on_both_backends!(a_declared_idle_timeout_outlasts_the_setting);

async fn a_declared_idle_timeout_outlasts_the_setting(db: TestStore) {
    let s = with_idle_timeout(db, Duration::from_millis(300)).await;
    let patient = TestAgent::start().await;
    let plain = TestAgent::start().await;
    let (long, long_token) = s.registered("long", &patient.url, None).await;
    let (short, _) = s.registered("short", &plain.url, None).await;
    patient.answer(Answer::Hold);
    plain.answer(Answer::Hold);
    let declare = |seconds: serde_json::Value| {
        let beat = json!({
            "workspace_id": long,
            "active_tasks": 0,
            "runtime_metadata": {"capabilities": {"heartbeat": true}, "idle_timeout_seconds": seconds},
        });
        s.heartbeat(Some(&long_token), beat)
    };
    assert_status(declare(json!(60)).await, 200);

    let held = {
        let s_base = (s.http.clone(), s.base.clone());
        tokio::spawn(async move {
            let (http, base) = s_base;
            let reply = http
                .post(format!("{base}/workspaces/{long}/a2a"))
                .header("content-type", "application/json")
                .body(message("l-1", "a long task"))
                .send()
                .await
                .unwrap();
            reply.status().as_u16()
        })
    };
    patient.wait_for(1).await;
    // Started after the first delivery and held the same way, without a declaration: it is
    // cut off once the setting's 300 ms pass without an event.
    let cut = a2a(&s, short, None, None, &message("s-1", "a short task")).await;
    assert_eq!(cut.status, 504, "{}", cut.body);
    // The first has been silent at least as long, and is still waiting for its answer.
    assert!(!held.is_finished(), "cut off at the setting");
    patient.release(1);
    assert_eq!(held.await.unwrap(), 200);

    // A heartbeat without a (usable) declaration goes back to the setting.
    for nothing in [json!(null), json!(0), json!(-5), json!("60"), json!(0.5)] {
        assert_status(declare(nothing.clone()).await, 200);
        let r = a2a(&s, long, None, None, &message(&format!("l-{nothing}"), "x")).await;
        assert_eq!(r.status, 504, "{nothing}: {}", r.body);
    }
}
