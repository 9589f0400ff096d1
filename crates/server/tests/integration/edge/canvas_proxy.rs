//! The canvas reverse proxy against a local canvas stand-in: unmatched requests reach it with
//! `Host` rewritten and no `Authorization`/`Cookie`, bodies stream both ways, WebSocket
//! upgrades are joined, API routes stay ours, and a dead upstream is a 502.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use molecule_server::HttpSettings;
use molecule_server::canvas_proxy::CanvasProxy;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{ADMIN, Options, TestServer};

/// The canvas stand-in: `/page` answers what it received, `/stream` sends one chunk per
/// message on the test's channel, `/socket` echoes WebSocket text.
struct Canvas {
    base: String,
    chunks: mpsc::Sender<Bytes>,
}

async fn canvas() -> Canvas {
    let (chunks, receiver) = mpsc::channel::<Bytes>(4);
    let receiver = Arc::new(Mutex::new(Some(receiver)));
    let app = Router::new()
        .route(
            "/ui/page",
            any(
                |headers: HeaderMap, uri: axum::http::Uri, body: Bytes| async move {
                    let names = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                    axum::Json(json!({
                        "uri": uri.to_string(),
                        "host": names("host"),
                        "authorization": names("authorization"),
                        "cookie": names("cookie"),
                        "forwarded_for": names("x-forwarded-for"),
                        "custom": names("x-custom"),
                        "body": String::from_utf8_lossy(&body),
                    }))
                },
            ),
        )
        .route(
            "/ui/stream",
            get(move || {
                let receiver = receiver.clone();
                async move {
                    let receiver = receiver.lock().await.take().unwrap();
                    let stream = futures_util::stream::unfold(receiver, |mut r| async move {
                        r.recv().await.map(|c| (Ok::<_, std::io::Error>(c), r))
                    });
                    (
                        [("content-type", "text/event-stream")],
                        Body::from_stream(stream),
                    )
                }
            }),
        )
        .route(
            "/ui/socket",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move {
                    while let Some(Ok(WsMessage::Text(text))) = socket.recv().await {
                        let echo = format!("echo: {}", text.as_str());
                        if socket.send(WsMessage::Text(echo.into())).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Canvas { base, chunks }
}

async fn proxied_server(upstream: &str, org: Option<&str>) -> TestServer {
    let proxy = CanvasProxy::new(upstream).unwrap();
    let org = org.map(str::to_owned);
    TestServer::start_configured(TestStore::sqlite().await, Options::STRICT, move |s| {
        s.with_canvas_proxy(Some(Arc::new(proxy)))
            .with_http(HttpSettings {
                tenant_org_id: org,
                ..HttpSettings::default()
            })
    })
    .await
}

#[tokio::test]
async fn unmatched_requests_reach_the_canvas_without_credentials() {
    let canvas = canvas().await;
    let s = proxied_server(&format!("{}/ui/", canvas.base), None).await;
    let answer: Value = s
        .http
        .post(format!("{}/page?x=1", s.base))
        .bearer_auth(ADMIN)
        .header("Cookie", "session=secret")
        .header("X-Custom", "kept")
        .body("hello canvas")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upstream_host = canvas.base.trim_start_matches("http://");
    assert_eq!(answer["uri"], "/ui/page?x=1");
    assert_eq!(answer["host"], upstream_host);
    assert_eq!(answer["authorization"], Value::Null);
    assert_eq!(answer["cookie"], Value::Null);
    assert_eq!(answer["forwarded_for"], "127.0.0.1");
    assert_eq!(answer["custom"], "kept");
    assert_eq!(answer["body"], "hello canvas");
    // Our routes stay ours.
    let (status, body) = s.call("GET", "/health", None, None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn answers_stream_chunk_by_chunk() {
    let canvas = canvas().await;
    let s = proxied_server(&format!("{}/ui", canvas.base), None).await;
    let response = s
        .http
        .get(format!("{}/stream", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    // Each chunk arrives before the canvas is allowed to send the next one.
    for i in 0..3 {
        let chunk = format!("data: {i}\n\n");
        canvas
            .chunks
            .send(Bytes::from(chunk.clone()))
            .await
            .unwrap();
        let got = tokio::time::timeout(crate::common::WITHIN, body.next())
            .await
            .expect("a chunk within the deadline")
            .unwrap()
            .unwrap();
        assert_eq!(got, chunk.as_bytes());
    }
    drop(canvas.chunks);
    assert!(
        body.next().await.is_none(),
        "the stream ends with the canvas's"
    );
}

#[tokio::test]
async fn websocket_upgrades_are_joined() {
    let canvas = canvas().await;
    let s = proxied_server(&format!("{}/ui", canvas.base), None).await;
    let url = format!("{}/socket", s.base.replace("http://", "ws://"));
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    for text in ["one", "two"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(crate::common::WITHIN, socket.next())
            .await
            .expect("an echo within the deadline")
            .unwrap()
            .unwrap();
        assert_eq!(
            echoed.into_text().unwrap().as_str(),
            format!("echo: {text}")
        );
    }
}

#[tokio::test]
async fn a_dead_canvas_is_a_502() {
    let port = molecule_testkit::free_port().unwrap();
    let s = proxied_server(&format!("http://127.0.0.1:{port}"), None).await;
    let response = s.http.get(format!("{}/page", s.base)).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.text().await.unwrap(), "canvas unavailable");
}

#[tokio::test]
async fn the_tenant_guard_covers_the_canvas_too() {
    let canvas = canvas().await;
    let s = proxied_server(&format!("{}/ui", canvas.base), Some("org-1")).await;
    let page = |org: Option<&'static str>| {
        let mut request = s.http.get(format!("{}/page", s.base));
        if let Some(org) = org {
            request = request.header("X-Molecule-Org-Id", org);
        }
        request.send()
    };
    let refused = page(None).await.unwrap();
    assert_eq!(refused.status(), 404);
    assert_eq!(refused.text().await.unwrap(), "");
    let served: Value = page(Some("org-1")).await.unwrap().json().await.unwrap();
    assert_eq!(served["uri"], "/ui/page");
}
