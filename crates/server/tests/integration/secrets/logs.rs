//! Secret values never reach the log: a capturing tracing subscriber (debug level, every
//! target) records a full create → provision → secret change → restart cycle, and none of
//! the values appear in it.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use molecule_provisioner_api::ProvisionRequest;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{ADMIN, TestServer, assert_status};

on_both_backends!(no_secret_value_is_logged);

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One subscriber for the whole test binary (tests may run in parallel threads of it).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        capture
    })
}

async fn no_secret_value_is_logged(db: TestStore) {
    let log = capture();
    let s = TestServer::strict(db).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let values = [
        format!("global-{tag}"),
        format!("create-{tag}"),
        format!("changed-{tag}"),
        format!("model-{tag}"),
    ];
    let global = Some(json!({"key": "G", "value": values[0]}));
    assert_status(s.admin("PUT", "/settings/secrets", global).await, 200);
    let id = s
        .create(json!({
            "name": "w",
            "model": format!("anthropic/{}", values[3]),
            "secrets": {"K": values[1]},
        }))
        .await;
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let path = format!("/workspaces/{id}/secrets");
    let changed = Some(json!({"key": "K", "value": values[2]}));
    assert_status(s.admin("POST", &path, changed).await, 200);
    // The restart after the change carries the new value. It is not necessarily the second
    // start: the global secret's route restarts, in the background, the workspaces that see
    // the secret, and that restart may find this workspace created already.
    let carries_change =
        |r: &ProvisionRequest| r.env.get("K").is_some_and(|v| v.expose() == values[2]);
    s.backend()
        .wait_for(|b| b.starts_of(id).iter().any(carries_change))
        .await;
    // A bad body that quotes a value is not echoed to the log either.
    let quoting = format!("{{\"key\": 1, \"value\": \"{}\"", values[2]);
    assert_status(s.call_raw("POST", &path, Some(ADMIN), &quoting).await, 400);
    // Everything the server logged: not one value, not even the model name.
    let server_log = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    for value in &values {
        let leak = server_log.lines().find(|l| l.contains(value.as_str()));
        assert!(leak.is_none(), "{value} reached the log: {leak:?}");
    }
    let starts = s.backend().starts_of(id);
    let last = starts.into_iter().rfind(carries_change).unwrap();
    // The values did reach the backend, so their absence from the log means something.
    assert_eq!(last.env["K"].expose(), values[2]);
    assert_eq!(last.env["G"].expose(), values[0]);
    tracing::debug!(request = ?last, "the recorded request, as a careless caller might log it");
    let env = last.auth_token.clone().unwrap();
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        text.contains(&id.to_string()),
        "the capture saw this test's logs"
    );
    // The request as a whole: its env and credentials are redacted (its `model` field is
    // plain configuration, so the model name is not checked here).
    for value in &values[..3] {
        let leak = text.lines().find(|l| l.contains(value.as_str()));
        assert!(leak.is_none(), "{value} reached the log: {leak:?}");
    }
    assert!(
        !text.contains(env.expose()),
        "the auth token reached the log"
    );
}
