//! Slow and oversized clients over raw TCP against the real router, pipeline and server loop
//! (`http_server::serve`): the header and body read timeouts, the connection limit, and the
//! JSON 413 on every route. Every wait on the server is bounded by a tokio timeout that fails
//! the test; nothing sleeps to synchronise.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::post;
use molecule_server::Security;
use molecule_server::http_server::{self, ServerSettings};
use molecule_server::middleware::body_limit::RouteBodyLimit;
use molecule_server::{AppState, HttpSettings, app};
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::serve_router;

/// The longest any answer or close may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);
/// The small timeouts the servers of these tests run with.
const SHORT: Duration = Duration::from_millis(300);
/// The limit of the `/test/big` route.
const BIG_LIMIT: usize = 2 * molecule_server::middleware::DEFAULT_BODY_LIMIT;

struct Server {
    addr: SocketAddr,
    _db: TestStore,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

async fn length(body: Bytes) -> String {
    body.len().to_string()
}

/// The real routes plus `/test/big` (a larger limit, declared in the settings) and
/// `/test/small` (its own smaller `DefaultBodyLimit`), in the real pipeline and server loop.
async fn start(http: HttpSettings, server: ServerSettings) -> Server {
    let db = TestStore::sqlite().await;
    let http = HttpSettings {
        route_body_limits: vec![RouteBodyLimit {
            method: Method::POST,
            path: "/test/big".into(),
            limit: BIG_LIMIT,
        }],
        ..http
    };
    let state = AppState::new(db.clone(), Security::strict("admin".into(), false)).with_http(http);
    let routes = app::routes(&state)
        .route("/test/big", post(length))
        .route("/test/small", post(length).layer(DefaultBodyLimit::max(16)));
    let router: Router = app::with_pipeline(routes, state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_router(listener, router, server);
    Server { addr, _db: db }
}

/// HTTP settings with the [`SHORT`] body read timeout.
fn short_body_reads() -> HttpSettings {
    HttpSettings {
        body_read_timeout: SHORT,
        ..HttpSettings::default()
    }
}

async fn start_default() -> Server {
    start(HttpSettings::default(), ServerSettings::default()).await
}

/// Everything the server sends until it closes the connection (a reset counts as a close);
/// fails the test if the connection is still open after [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {BOUND:?}; it sent: {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

/// A parsed response: status, lower-cased headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// One response read off a connection that stays open: status, lower-cased headers, body.
async fn read_response(stream: &mut TcpStream) -> Answer {
    tokio::time::timeout(BOUND, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(parsed) = parse(&got, true) {
                return parsed;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no whole response in time")
}

/// Parses one response; `None` if incomplete. With `need_length`, the body is
/// `Content-Length` bytes; otherwise everything after the head.
fn parse(raw: &[u8], need_length: bool) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let end = text.find("\r\n\r\n")?;
    let mut lines = text[..end].split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &raw[end + 4..];
    if need_length {
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")?
            .1
            .parse()
            .ok()?;
        if body.len() < len {
            return None;
        }
        return Some((status, headers, body[..len].to_vec()));
    }
    Some((status, headers, body.to_vec()))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A whole answer read until the server closes: an API error of `status` in JSON.
fn assert_json_error(raw: &[u8], status: u16, message: &str) {
    let (got, headers, body) = parse(raw, false)
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(raw)));
    assert_eq!(got, status, "{:?}", String::from_utf8_lossy(raw));
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json"),
        "{headers:?}"
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({ "error": message }));
}

#[tokio::test]
async fn partial_headers_are_cut_off_after_the_header_read_timeout() {
    let s = start(
        HttpSettings::default(),
        ServerSettings {
            header_read_timeout: SHORT,
            ..ServerSettings::default()
        },
    )
    .await;
    // Half a request head, never finished.
    let mut slow = s.connect().await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = read_until_closed(&mut slow).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(started.elapsed() >= SHORT / 2, "closed before the timeout");

    // A connection that never sends anything, and one idle after an answered request.
    let mut silent = s.connect().await;
    assert!(read_until_closed(&mut silent).await.is_empty());
    let mut idle = s.connect().await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut idle).await;
    assert_eq!(status, 200);
    assert!(read_until_closed(&mut idle).await.is_empty());

    // A whole head in time is served.
    let r = reqwest::get(s.url("/health")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_stalled_body_gets_a_json_408_after_the_body_read_timeout() {
    let s = start(short_body_reads(), ServerSettings::default()).await;
    // A body route (JSON body) and a raw-bytes route, each sent 10 of 100 announced bytes.
    for path in ["/registry/heartbeat", "/registry/check-access"] {
        let mut stalled = s.connect().await;
        let head = format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
        stalled.write_all(head.as_bytes()).await.unwrap();
        stalled.write_all(b"{\"caller_").await.unwrap();
        let got = read_until_closed(&mut stalled).await;
        assert_json_error(&got, 408, "request body timeout");
    }
}

#[tokio::test]
async fn a_trickled_body_gets_a_json_408_when_the_whole_body_is_late() {
    let s = start(short_body_reads(), ServerSettings::default()).await;
    let stream = s.connect().await;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /test/big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    // One byte every 20 ms: never idle for the timeout, but 1000 bytes take 20 s. The pace is
    // the client's behaviour under test, not a synchronisation.
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if writer.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the trickled body held the connection");
    trickle.abort();
    assert_json_error(&got, 408, "request body timeout");
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let s = start(
        HttpSettings::default(),
        ServerSettings {
            max_connections: 1,
            ..ServerSettings::default()
        },
    )
    .await;
    // The one slot: a keep-alive connection that stays open after its answer.
    let mut first = s.connect().await;
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut first).await.0, 200);

    // A second connection reaches the listen backlog but is not served while the first is open.
    let mut second = s.connect().await;
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection over the limit was served: {early:?}"
    );

    // Once the first closes, the waiting one is accepted and answered.
    drop(first);
    let got = read_until_closed(&mut second).await;
    let (status, _, _) = parse(&got, false).unwrap();
    assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_a_json_413_on_every_route() {
    let s = start_default().await;
    let over = molecule_server::middleware::DEFAULT_BODY_LIMIT + 1;
    // A route that takes no body, a raw-bytes route, an admin route (before its guard), an
    // unknown path, and the larger route past its own limit: the head alone is refused.
    for (method, path, length) in [
        ("GET", "/health", over),
        ("POST", "/registry/check-access", over),
        ("POST", "/workspaces", over),
        ("POST", "/no/such/route", over),
        ("POST", "/test/big", BIG_LIMIT + 1),
    ] {
        let mut stream = s.connect().await;
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let got = read_until_closed(&mut stream).await;
        assert_json_error(&got, 413, "request body too large");
    }
}

#[tokio::test]
async fn an_undeclared_body_over_the_limit_is_a_json_413() {
    let s = start_default().await;
    // Chunked, so only reading finds the size: one byte over the limit, never terminated.
    for (path, limit) in [
        (
            "/registry/check-access",
            molecule_server::middleware::DEFAULT_BODY_LIMIT,
        ),
        ("/test/small", 16),
    ] {
        let mut stream = s.connect().await;
        let head = format!("POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut left = limit + 1;
        while left > 0 {
            let n = left.min(64 * 1024);
            stream
                .write_all(format!("{n:x}\r\n").as_bytes())
                .await
                .unwrap();
            stream.write_all(&vec![b'x'; n]).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
            left -= n;
        }
        let got = read_until_closed(&mut stream).await;
        assert_json_error(&got, 413, "request body too large");
    }
}

#[tokio::test]
async fn a_route_with_a_larger_limit_takes_bodies_up_to_it() {
    let s = start_default().await;
    let client = reqwest::Client::new();
    let size = molecule_server::middleware::DEFAULT_BODY_LIMIT
        + molecule_server::middleware::DEFAULT_BODY_LIMIT / 2;
    let r = client
        .post(s.url("/test/big"))
        .body(vec![b'x'; size])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), size.to_string());
    // A body within the limit of a smaller route is taken too.
    let r = client
        .post(s.url("/test/small"))
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "10");
}

/// The stop: once signalled, no new connection is served, an in-flight request still gets
/// its answer, and the loop returns when it is done.
#[tokio::test]
async fn a_stop_finishes_in_flight_requests_and_accepts_no_more() {
    use std::sync::Arc;
    use tokio::sync::{Notify, oneshot};

    let db = TestStore::sqlite().await;
    let state = AppState::new(db.clone(), Security::strict("admin".into(), false));
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (e, r) = (Arc::clone(&entered), Arc::clone(&release));
    let routes = app::routes(&state).route(
        "/test/slow",
        axum::routing::get(move || {
            let (e, r) = (Arc::clone(&e), Arc::clone(&r));
            async move {
                e.notify_one();
                r.notified().await;
                "done"
            }
        }),
    );
    let router: Router = app::with_pipeline(routes, state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(http_server::serve(
        listener,
        router,
        ServerSettings::default(),
        async move {
            let _ = stop_rx.await;
        },
        BOUND,
    ));

    let mut in_flight = TcpStream::connect(addr).await.unwrap();
    in_flight
        .write_all(b"GET /test/slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(BOUND, entered.notified())
        .await
        .expect("the slow request reached its handler");
    stop_tx.send(()).unwrap();

    // The listener is closed: a new connection is refused or closed unanswered.
    let refused = tokio::time::timeout(BOUND, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return,
                Ok(mut late) => {
                    let _ = late
                        .write_all(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
                        .await;
                    let mut buf = [0u8; 64];
                    match late.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        // Accepted just before the stop: try again.
                        Ok(_) => {}
                    }
                }
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections are still served");
    assert!(
        !server.is_finished(),
        "the loop waits for the in-flight request"
    );

    release.notify_one();
    let got = read_until_closed(&mut in_flight).await;
    let (status, _, body) = parse(&got, false).unwrap();
    assert_eq!(status, 200);
    assert!(
        body.ends_with(b"done"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    tokio::time::timeout(BOUND, server)
        .await
        .expect("the loop returns once drained")
        .unwrap();
    drop(db);
}
