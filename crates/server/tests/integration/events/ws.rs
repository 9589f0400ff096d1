//! `/ws`: the canvas client receives every event and needs the admin credential outside dev
//! mode; a workspace client gets only what it may communicate with and presents its own
//! token; the origin check; an open socket is counted in the metrics.

use futures_util::SinkExt;
use molecule_domain::{EventType, WorkspaceId};
use molecule_server::Security;
use molecule_server::{AppState, HttpSettings};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{ADMIN, error_of, serve, strict, workspace};

on_both_backends!(
    canvas_client_receives_every_event,
    canvas_client_needs_admin_credentials_outside_dev_mode,
    workspace_client_gets_only_what_it_may_communicate_with,
    workspace_client_presents_its_own_token_if_it_has_one,
);

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
    let http = HttpSettings {
        cors_origins: vec!["https://canvas.example".into()],
        ..HttpSettings::default()
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
    let response = server.get("/ws", Some(ADMIN)).await;
    assert!(response.status().is_client_error());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "websocket upgrade required");
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
    let read = || async { server.get("/metrics", None).await.text().await.unwrap() };
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
