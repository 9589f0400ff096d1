//! The event routes over real HTTP against the real router: `/ws` (canvas and workspace
//! clients, auth, origin check), the SSE stream, the structure-event log, and two server
//! replicas on one PostgreSQL sharing their events.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use molecule_domain::{EventType, WorkspaceId};
use molecule_server::app::{self, AppState};
use molecule_server::auth::Security;
use molecule_store::testing::TestStore;
use molecule_store::{DatabaseUrl, NewWorkspace, Store};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// An upper bound for anything awaited; never a synchronisation.
const BOUND: Duration = Duration::from_secs(15);
const ADMIN: &str = "admin-token";

use molecule_store::on_both_backends;

on_both_backends!(
    canvas_client_receives_every_event,
    canvas_client_needs_admin_credentials_outside_dev_mode,
    workspace_client_gets_only_what_it_may_communicate_with,
    workspace_client_presents_its_own_token_if_it_has_one,
    sse_stream_sends_this_workspace_events_only,
    sse_stream_refusals,
    event_log_lists_recorded_events_newest_first,
);

/// A server on a free loopback port, serving the real router.
struct Server {
    addr: std::net::SocketAddr,
    state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(state: AppState) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app::router(state.clone());
    let task = tokio::spawn(molecule_server::http_server::serve(
        listener,
        app,
        molecule_server::http_server::ServerSettings::default(),
        std::future::pending(),
        Duration::ZERO,
    ));
    Server { addr, state, task }
}

async fn strict(store: &Store) -> Server {
    serve(AppState::new(
        store.clone(),
        Security::strict(ADMIN.into(), false),
    ))
    .await
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn emit(&self, event: EventType, ws: Option<WorkspaceId>, payload: Value) {
        self.state.events.emit(event, ws, payload).await;
    }

    /// Opens `/ws<query>` with these headers; on refusal, the status and body.
    async fn ws(&self, query: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
        let mut request = format!("ws://{}/ws{query}", self.addr)
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
        {
            Ok((stream, _)) => Ok(Ws(stream)),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((response.status().as_u16(), body))
            }
            Err(e) => panic!("websocket error: {e}"),
        }
    }

    async fn canvas(&self) -> Ws {
        self.ws("", &[("authorization", &format!("Bearer {ADMIN}"))])
            .await
            .unwrap()
    }
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    /// The next event envelope.
    async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(BOUND, self.0.next())
                .await
                .expect("an event in time")
                .expect("the socket is open")
                .expect("a frame");
            match msg {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }
}

async fn workspace(store: &Store, name: &str, parent: Option<WorkspaceId>) -> WorkspaceId {
    let mut new = NewWorkspace::named(name);
    new.parent_id = parent;
    store.workspaces().create(new).await.unwrap().id
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["error"].as_str().unwrap().to_owned()
}

// ---- /ws ----

async fn canvas_client_receives_every_event(s: TestStore) {
    let server = strict(&s).await;
    let a = workspace(&s, "a", None).await;
    let b = workspace(&s, "b", None).await;
    let mut canvas = server.canvas().await;
    server
        .emit(
            EventType::WorkspaceOnline,
            Some(a),
            json!({"url": "http://a"}),
        )
        .await;
    server
        .emit(
            EventType::WorkspaceHeartbeat,
            Some(b),
            json!({"active_tasks": 1, "uptime_seconds": 5}),
        )
        .await;
    server
        .emit(EventType::CronExecuted, None, json!({"schedule_id": "s"}))
        .await;
    let first = canvas.next().await;
    assert_eq!(first["event"], "WORKSPACE_ONLINE");
    assert_eq!(first["workspace_id"], a.to_string());
    assert_eq!(first["payload"], json!({"url": "http://a"}));
    let ts = first["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    let second = canvas.next().await;
    assert_eq!(second["event"], "WORKSPACE_HEARTBEAT");
    assert_eq!(second["workspace_id"], b.to_string());
    let third = canvas.next().await;
    assert_eq!(third["event"], "CRON_EXECUTED");
    assert_eq!(third["workspace_id"], "");

    // Client frames are read and discarded; the connection stays.
    canvas
        .0
        .send(Message::Text("subscribe please".into()))
        .await
        .unwrap();
    server
        .emit(EventType::WorkspaceOffline, Some(a), json!({}))
        .await;
    assert_eq!(canvas.next().await["event"], "WORKSPACE_OFFLINE");

    // The query-parameter form of the admin token (browsers cannot set headers).
    let mut by_query = server.ws(&format!("?token={ADMIN}"), &[]).await.unwrap();
    server
        .emit(EventType::WorkspacePaused, Some(b), json!({"name": "b"}))
        .await;
    assert_eq!(by_query.next().await["event"], "WORKSPACE_PAUSED");
}

async fn canvas_client_needs_admin_credentials_outside_dev_mode(s: TestStore) {
    let server = strict(&s).await;
    let w = workspace(&s, "w", None).await;
    let token = s.tokens().issue(w).await.unwrap().token;
    let workspace_bearer = format!("Bearer {}", token.expose());
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let refusals: [(&str, Headers, &str); 5] = [
        ("", vec![], "admin auth required"),
        (
            "",
            vec![("authorization", "Bearer nope")],
            "invalid admin auth token",
        ),
        ("?token=nope", vec![], "invalid admin auth token"),
        ("?token=", vec![], "admin auth required"),
        (
            "",
            vec![("authorization", workspace_bearer.as_str())],
            "invalid admin auth token",
        ),
    ];
    for (query, headers, message) in refusals {
        let (status, body) = server.ws(query, &headers).await.err().unwrap();
        assert_eq!(status, 401, "{query} {headers:?}");
        assert_eq!(error_of(&body), message);
    }

    // Dev mode: the canvas connects without credentials.
    let dev = serve(AppState::new((*s).clone(), Security::dev())).await;
    let mut canvas = dev.ws("", &[]).await.unwrap();
    dev.emit(EventType::WorkspaceOnline, Some(w), json!({}))
        .await;
    assert_eq!(canvas.next().await["workspace_id"], w.to_string());
}

async fn workspace_client_gets_only_what_it_may_communicate_with(s: TestStore) {
    //   a              b
    //   ├── me         └── b1
    //   │   └── kid
    //   └── sib
    let a = workspace(&s, "a", None).await;
    let b = workspace(&s, "b", None).await;
    let me = workspace(&s, "me", Some(a)).await;
    let sib = workspace(&s, "sib", Some(a)).await;
    let kid = workspace(&s, "kid", Some(me)).await;
    let b1 = workspace(&s, "b1", Some(b)).await;
    let token = s.tokens().issue(me).await.unwrap().token;
    let server = strict(&s).await;
    let me_header = me.to_string();
    let bearer = format!("Bearer {}", token.expose());
    let mut client = server
        .ws(
            "",
            &[
                ("x-workspace-id", me_header.as_str()),
                ("authorization", bearer.as_str()),
            ],
        )
        .await
        .unwrap();
    use EventType::*;
    let sent = [
        (WorkspaceOnline, Some(b1), false),   // another tree
        (WorkspaceOnline, Some(sib), true),   // sibling
        (ActivityLogged, Some(sib), false),   // a sibling's traffic bodies stay private
        (AgentMessage, Some(kid), false),     // so do a child's messages
        (WorkspaceOffline, Some(b), false),   // an unrelated root
        (WorkspaceDegraded, Some(kid), true), // child
        (CronExecuted, None, false),          // about no workspace
        (WorkspacePaused, Some(a), true),     // parent
        (ActivityLogged, Some(me), true),     // itself, bodies included
    ];
    let mut expected = Vec::new();
    for (i, (event, about, delivered)) in sent.into_iter().enumerate() {
        server.emit(event, about, json!({"n": i})).await;
        if delivered {
            expected.push((event.as_str(), i));
        }
    }
    // Events arrive in emission order, so once the last delivered one is in, none of the
    // withheld ones can still come before it.
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let e = client.next().await;
        let event = EventType::ALL
            .iter()
            .find(|t| t.as_str() == e["event"])
            .unwrap()
            .as_str();
        got.push((event, e["payload"]["n"].as_u64().unwrap() as usize));
    }
    assert_eq!(got, expected);
}

async fn workspace_client_presents_its_own_token_if_it_has_one(s: TestStore) {
    let server = strict(&s).await;
    let with_token = workspace(&s, "t", None).await;
    let token = s.tokens().issue(with_token).await.unwrap().token;
    let other = workspace(&s, "o", None).await;
    let other_token = s.tokens().issue(other).await.unwrap().token;
    let id = with_token.to_string();
    let refusals = [
        (None, "missing workspace auth token"),
        (Some("nope".to_owned()), "invalid workspace auth token"),
        (
            Some(other_token.expose().to_owned()),
            "invalid workspace auth token",
        ),
        // The admin token is not this workspace's token.
        (Some(ADMIN.to_owned()), "invalid workspace auth token"),
    ];
    for (bearer, message) in refusals {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers = vec![("x-workspace-id", id.as_str())];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let (status, body) = server.ws("", &headers).await.err().unwrap();
        assert_eq!(status, 401);
        assert_eq!(error_of(&body), message);
    }
    let (status, body) = server
        .ws("", &[("x-workspace-id", "not-a-uuid")])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), "invalid workspace ID");

    let bearer = format!("Bearer {}", token.expose());
    let mut ok = server
        .ws(
            "",
            &[
                ("x-workspace-id", id.as_str()),
                ("authorization", bearer.as_str()),
            ],
        )
        .await
        .unwrap();
    // A workspace without any live token cannot be listened to without a credential either
    // (Decision 2: no tokenless identity outside dev mode).
    let tokenless = workspace(&s, "n", None).await;
    let tokenless_id = tokenless.to_string();
    let (status, body) = server
        .ws("", &[("x-workspace-id", tokenless_id.as_str())])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(error_of(&body), "missing workspace auth token");
    server
        .emit(EventType::WorkspaceOnline, Some(with_token), json!({}))
        .await;
    assert_eq!(ok.next().await["workspace_id"], id);
}

/// The origin check is about the handshake only; one backend is enough.
#[tokio::test]
async fn ws_origin_is_checked_only_when_configured() {
    let s = TestStore::sqlite().await;
    // The same list configures the CORS layer (which sees the handshake first) and the
    // WebSocket origin check, as one `CORS_ORIGINS` does in the server.
    let security = Security::strict(ADMIN.into(), false)
        .with_ws_origins(Some(vec!["https://canvas.example".into()]));
    let http = app::HttpSettings {
        cors_origins: vec!["https://canvas.example".into()],
        ..app::HttpSettings::default()
    };
    let server = serve(AppState::new((*s).clone(), security).with_http(http)).await;
    let bearer = format!("Bearer {ADMIN}");
    for origin in [None, Some("https://evil.example")] {
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let (status, _) = server.ws("", &headers).await.err().unwrap();
        assert_eq!(status, 403, "{origin:?}");
    }
    server
        .ws(
            "",
            &[
                ("authorization", bearer.as_str()),
                ("origin", "https://canvas.example"),
            ],
        )
        .await
        .unwrap();
    // Without a WebSocket list, a handshake needs no Origin, and any origin the CORS layer
    // lets through is fine.
    let open = strict(&s).await;
    open.ws("", &[("authorization", bearer.as_str())])
        .await
        .unwrap();
    open.ws(
        "",
        &[
            ("authorization", bearer.as_str()),
            ("origin", "http://localhost:3000"),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn ws_without_an_upgrade_is_a_json_error() {
    let s = TestStore::sqlite().await;
    let server = strict(&s).await;
    let response = reqwest::Client::new()
        .get(server.url("/ws"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "websocket upgrade required");
}

// ---- SSE ----

/// Reads an SSE body until it holds `blocks` blank-line-terminated blocks.
async fn read_blocks(response: &mut reqwest::Response, blocks: usize) -> String {
    let mut text = String::new();
    while text.matches("\n\n").count() < blocks {
        let chunk = tokio::time::timeout(BOUND, response.chunk())
            .await
            .expect("SSE data in time")
            .unwrap()
            .expect("the stream is open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

async fn sse_stream_sends_this_workspace_events_only(s: TestStore) {
    let server = strict(&s).await;
    let w = workspace(&s, "w", None).await;
    let other = workspace(&s, "other", None).await;
    let token = s.tokens().issue(w).await.unwrap().token;
    let mut response = reqwest::Client::new()
        .get(server.url(&format!("/workspaces/{w}/events/stream")))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(read_blocks(&mut response, 1).await, ": ping\n\n");

    server
        .emit(EventType::WorkspaceOnline, Some(other), json!({"n": 0}))
        .await;
    server
        .emit(EventType::WorkspaceOnline, Some(w), json!({"n": 1}))
        .await;
    server
        .emit(
            EventType::TaskUpdated,
            Some(w),
            json!({"current_task": "x", "active_tasks": 1}),
        )
        .await;
    let text = read_blocks(&mut response, 2).await;
    let lines: Vec<&str> = text.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = lines[0].strip_prefix("data: ").unwrap();
    assert!(
        first.starts_with(r#"{"type":"WORKSPACE_ONLINE","timestamp":"#),
        "{first}"
    );
    let first: Value = serde_json::from_str(first).unwrap();
    assert_eq!(first["data"], json!({"n": 1}));
    let ms = first["timestamp"].as_i64().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    assert!((now - ms).abs() < 60_000, "{ms} is unix milliseconds");
    let second: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(second["type"], "TASK_UPDATED");
    assert_eq!(second["data"]["current_task"], "x");

    // The admin token opens the stream too.
    let admin = reqwest::Client::new()
        .get(server.url(&format!("/workspaces/{w}/events/stream")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
}

async fn sse_stream_refusals(s: TestStore) {
    let server = strict(&s).await;
    let w = workspace(&s, "w", None).await;
    let other = workspace(&s, "other", None).await;
    let other_token = s.tokens().issue(other).await.unwrap().token;
    let client = reqwest::Client::new();
    let get = |id: String, bearer: Option<String>| {
        let mut r = client.get(server.url(&format!("/workspaces/{id}/events/stream")));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        async move {
            let response = r.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["error"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        get(w.to_string(), None).await,
        (401, "missing workspace auth token".into())
    );
    assert_eq!(
        get(w.to_string(), Some(other_token.expose().to_owned())).await,
        (401, "invalid workspace auth token".into())
    );
    assert_eq!(
        get(WorkspaceId::new().to_string(), Some(ADMIN.into())).await,
        (404, "workspace not found".into())
    );
    assert_eq!(
        get("nope".into(), Some(ADMIN.into())).await,
        (400, "invalid workspace ID".into())
    );
}

// ---- /events ----

async fn event_log_lists_recorded_events_newest_first(s: TestStore) {
    let server = strict(&s).await;
    let w1 = workspace(&s, "w1", None).await;
    let w2 = workspace(&s, "w2", None).await;
    server
        .emit(
            EventType::WorkspaceProvisioning,
            Some(w1),
            json!({"name": "w1"}),
        )
        .await;
    server
        .emit(EventType::WorkspaceOnline, Some(w2), json!({"url": "u"}))
        .await;
    server
        .emit(EventType::CronSkipped, None, json!({"reason": "r"}))
        .await;
    // Broadcast-only: never in the log.
    server
        .emit(EventType::WorkspaceHeartbeat, Some(w1), json!({}))
        .await;
    let client = reqwest::Client::new();
    let get = |path: &str, bearer: Option<&str>| {
        let mut r = client.get(server.url(path));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        async move {
            let response = r.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, all) = get("/events", Some(ADMIN)).await;
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    let types: Vec<&str> = all
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["CRON_SKIPPED", "WORKSPACE_ONLINE", "WORKSPACE_PROVISIONING"]
    );
    assert_eq!(all[0]["workspace_id"], Value::Null);
    assert_eq!(all[1]["workspace_id"], w2.to_string());
    assert_eq!(all[1]["payload"], json!({"url": "u"}));
    let item = all[2].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "event_type", "id", "payload", "workspace_id"]
    );
    assert!(uuid_like(item["id"].as_str().unwrap()));
    let created = item["created_at"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339).unwrap();

    let (status, one) = get(&format!("/events/{w1}"), Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["event_type"], "WORKSPACE_PROVISIONING");

    // At most 100, newest first.
    for i in 0..101 {
        server
            .emit(EventType::WorkspaceOnline, Some(w1), json!({"i": i}))
            .await;
    }
    let (_, many) = get(&format!("/events/{w1}"), Some(ADMIN)).await;
    assert_eq!(many.as_array().unwrap().len(), 100);
    assert_eq!(many[0]["payload"]["i"], 100);

    assert_eq!(
        get("/events/not-a-uuid", Some(ADMIN)).await,
        (400, json!({"error": "invalid workspace ID"}))
    );
    assert_eq!(
        get("/events", None).await,
        (401, json!({"error": "admin auth required"}))
    );
    assert_eq!(
        get(&format!("/events/{w1}"), Some("nope")).await,
        (401, json!({"error": "invalid admin auth token"}))
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.parse::<WorkspaceId>().is_ok()
}

// ---- replicas ----

/// Two servers with their own connection pools on one PostgreSQL database: an event emitted
/// on one reaches the WebSocket clients of the other, exactly once on each.
#[tokio::test]
async fn two_replicas_share_their_events() {
    let db = TestStore::postgres().await;
    let url = DatabaseUrl::parse(db.url()).unwrap();
    let store_a = Store::connect(&url).await.unwrap();
    let store_b = Store::connect(&url).await.unwrap();
    let a = strict(&store_a).await;
    let b = strict(&store_b).await;
    let mut listen_a = a.state.events.start_listener();
    let mut listen_b = b.state.events.start_listener();
    assert!(tokio::time::timeout(BOUND, listen_a.ready()).await.unwrap());
    assert!(tokio::time::timeout(BOUND, listen_b.ready()).await.unwrap());
    let w = workspace(&store_a, "w", None).await;
    let mut on_a = a.canvas().await;
    let mut on_b = b.canvas().await;

    // Small: the envelope travels in the notification.
    a.emit(
        EventType::WorkspaceOnline,
        Some(w),
        json!({"url": "http://w"}),
    )
    .await;
    // Too big for NOTIFY and recorded: sent by reference, read back from the log.
    let big = "x".repeat(10_000);
    a.emit(
        EventType::AgentCardUpdated,
        Some(w),
        json!({"agent_card": {"d": big}}),
    )
    .await;
    // Too big and broadcast-only: stays on its replica.
    a.emit(EventType::AgentMessage, Some(w), json!({"message": big}))
        .await;
    a.emit(EventType::CronExecuted, None, json!({"marker": 1}))
        .await;

    // B's listener takes A's notifications in order: the dropped one would have come
    // before the marker.
    let first = on_b.next().await;
    assert_eq!(first["event"], "WORKSPACE_ONLINE");
    assert_eq!(first["workspace_id"], w.to_string());
    assert_eq!(first["payload"], json!({"url": "http://w"}));
    let second = on_b.next().await;
    assert_eq!(second["event"], "AGENT_CARD_UPDATED");
    assert_eq!(second["workspace_id"], w.to_string());
    assert_eq!(
        second["payload"]["agent_card"]["d"].as_str().unwrap().len(),
        10_000
    );
    assert_eq!(on_b.next().await["payload"], json!({"marker": 1}));

    // The other way round.
    b.emit(
        EventType::WorkspaceHeartbeat,
        Some(w),
        json!({"active_tasks": 2}),
    )
    .await;
    assert_eq!(on_b.next().await["event"], "WORKSPACE_HEARTBEAT");

    // A saw each of its own events once (its listener skips its own notifications, which
    // PostgreSQL delivers before B's later one), then B's heartbeat.
    let mut seen_by_a = Vec::new();
    for _ in 0..5 {
        seen_by_a.push(on_a.next().await["event"].clone());
    }
    assert_eq!(
        seen_by_a,
        [
            "WORKSPACE_ONLINE",
            "AGENT_CARD_UPDATED",
            "AGENT_MESSAGE",
            "CRON_EXECUTED",
            "WORKSPACE_HEARTBEAT"
        ]
    );

    listen_a.stop().await;
    listen_b.stop().await;
    store_a.close().await;
    store_b.close().await;
}

#[tokio::test]
async fn there_is_no_replica_listener_on_sqlite() {
    let s = TestStore::sqlite().await;
    let state = AppState::new((*s).clone(), Security::dev());
    let mut listener = state.events.start_listener();
    assert!(!tokio::time::timeout(BOUND, listener.ready()).await.unwrap());
    listener.stop().await;
}

/// An open WebSocket is counted in `molecule_websocket_connections_active`.
#[tokio::test]
async fn open_sockets_are_counted_in_the_metrics() {
    let s = TestStore::sqlite().await;
    let server = strict(&s).await;
    let gauge = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("molecule_websocket_connections_active"))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_owned)
    };
    let read = || async {
        reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let mut socket = server.canvas().await;
    // The handshake is answered before the socket task runs: an event proves it runs.
    server
        .emit(
            EventType::WorkspaceOffline,
            Some(WorkspaceId::new()),
            json!({}),
        )
        .await;
    socket.next().await;
    assert_eq!(gauge(&read().await).as_deref(), Some("1"));
}
