//! The A2A proxy over real HTTP: a real server, real agents on loopback (the tiny
//! [`TestAgent`](crate::common::agent::TestAgent), or the Python A2A SDK's), both databases.

mod delegation;
mod idle;
mod proxy;
mod queue;
mod replicas;
mod sdk;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use serde_json::{Value, json};

use crate::common::TestServer;

/// A dev-mode server whose A2A idle timeout is `idle` (a held agent is cut off quickly).
async fn with_idle_timeout(
    db: molecule_store::testing::TestStore,
    idle: std::time::Duration,
) -> TestServer {
    TestServer::start_configured(db, crate::common::Options::DEV, |st| {
        st.with_a2a_settings(molecule_a2a::Settings {
            idle_timeout: idle,
            policy: molecule_a2a::ssrf::UrlPolicy {
                dev_mode: true,
                saas: false,
            },
            ..Default::default()
        })
    })
    .await
}

/// A reply: status, `Retry-After`, JSON body.
struct Answered {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answered {
    /// Asserts the reply is `status` with `message` as its `error`.
    #[track_caller]
    fn assert_error(&self, status: u16, message: &str) {
        let got = (self.status, self.body["error"].as_str());
        assert_eq!(got, (status, Some(message)), "{}", self.body);
    }
}

/// `POST /workspaces/:target/a2a` with optional caller header and bearer.
async fn a2a(
    s: &TestServer,
    target: WorkspaceId,
    caller: Option<&str>,
    token: Option<&str>,
    body: &str,
) -> Answered {
    let mut req = s
        .http
        .post(format!("{}/workspaces/{target}/a2a", s.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(c) = caller {
        req = req.header("X-Workspace-ID", c);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    Answered {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// A `message/send` body with this `messageId` and text.
fn message(id: &str, text: &str) -> String {
    json!({
        "method": "message/send",
        "params": { "message": { "role": "user", "messageId": id, "parts": [{"kind": "text", "text": text}] } },
    })
    .to_string()
}

/// A backend workspace whose published address is `url`, online (as after its agent registered).
async fn online_at(s: &TestServer, id: WorkspaceId, url: &str) {
    let workspaces = s.state.store.workspaces();
    workspaces.set_url(id, Some(url)).await.unwrap();
    s.set_status(id, WorkspaceStatus::Online).await;
}

/// A workspace the fake backend started, online at `url`, with the token it was given.
async fn started_online(s: &TestServer, name: &str, url: &str) -> (WorkspaceId, String) {
    let id = s.create(json!({ "name": name })).await;
    let token = s.backend().token_of(id).await;
    online_at(s, id, url).await;
    (id, token)
}

/// A reclaim cutoff that leaves deliveries in flight alone.
fn an_hour_ago() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::hours(1)
}
