//! The HTTP pipeline over real HTTP: the real router and layers, served by the server's own
//! loop (`http_server::serve`, with connect info) on 127.0.0.1, called with reqwest.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use molecule_server::Security;
use molecule_server::extract::JsonBody;
use molecule_server::http_server::ServerSettings;
use molecule_server::{AppState, HttpSettings, app};
use molecule_store::testing::TestStore;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::serve_router;

const ADMIN: &str = "admin-token";

struct Server {
    base: String,
    state: AppState,
    client: reqwest::Client,
    _db: TestStore,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path).await
    }

    /// `GET path` from a page of `origin` (its `Origin` header).
    async fn get_from(&self, path: &str, origin: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).header("Origin", origin);
        request.send().await.unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        let request = self.client.request(method, self.url(path));
        request.send().await.unwrap()
    }
}

#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Echo {
    name: String,
    #[serde(default)]
    count: u32,
}

async fn echo(JsonBody(body): JsonBody<Echo>) -> axum::Json<Echo> {
    axum::Json(body)
}

async fn item() -> &'static str {
    "item"
}

async fn boom() -> &'static str {
    panic!("handler exploded")
}

/// Serves the real routes plus a few test routes inside the real pipeline.
async fn start_with(security: Security, http: HttpSettings) -> Server {
    let db = TestStore::sqlite().await;
    let state = AppState::new(db.clone(), security).with_http(http);
    let routes = app::routes(&state)
        .route("/test/echo", post(echo))
        .route("/test/items/{id}", get(item))
        .route("/test/panic", get(boom));
    let router: Router = app::with_pipeline(routes, state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_router(listener, router, ServerSettings::default());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server {
        base: format!("http://{addr}"),
        state,
        client,
        _db: db,
    }
}

async fn start() -> Server {
    start_with(
        Security::strict(ADMIN.into(), false),
        HttpSettings::default(),
    )
    .await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

const CANVAS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; font-src 'self' data:";

fn assert_security_headers(headers: &HeaderMap, csp: &str) {
    assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(headers, "x-frame-options"), Some("DENY"));
    assert_eq!(
        header(headers, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    assert_eq!(
        header(headers, "permissions-policy"),
        Some("camera=(), microphone=(), geolocation=()")
    );
    assert_eq!(header(headers, "content-security-policy"), Some(csp));
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_with_the_path_csp() {
    let s = start().await;
    let r = s.get("/health").await;
    assert_eq!(r.status(), 200);
    assert_security_headers(r.headers(), "default-src 'self'");

    let r = s.get("/buildinfo").await;
    assert_eq!(r.status(), 200);
    assert_security_headers(r.headers(), CANVAS_CSP);

    let r = s.get("/workspaces-nope/x").await;
    assert_eq!(r.status(), 404);
    assert_security_headers(r.headers(), CANVAS_CSP);
    assert_eq!(r.text().await.unwrap(), "404 page not found");

    let r = s.get("/admin/liveness").await;
    assert_eq!(r.status(), 401);
    assert_security_headers(r.headers(), "default-src 'self'");
}

#[tokio::test]
async fn cors_echoes_allowed_origins_and_refuses_others() {
    let s = start().await;
    // Allowed origin: echoed, with credentials.
    let r = s.get_from("/health", "http://localhost:3000").await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(h, "vary"), Some("Origin"));

    // Another origin, or an upper-case spelling of an allowed one: 403, empty body, with the
    // security headers.
    for origin in ["http://evil.example", "http://LOCALHOST:3000"] {
        let r = s.get_from("/health", origin).await;
        assert_eq!(r.status(), 403, "{origin}");
        assert_security_headers(r.headers(), "default-src 'self'");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert_eq!(r.text().await.unwrap(), "");
    }

    // Preflight of an allowed origin.
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/workspaces"))
        .header("Origin", "http://localhost:3001")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("http://localhost:3001")
    );
    assert_eq!(
        header(h, "access-control-allow-methods"),
        Some("GET,POST,PUT,PATCH,DELETE,OPTIONS")
    );
    assert_eq!(
        header(h, "access-control-allow-headers"),
        Some("Origin,Content-Type,X-Workspace-ID,Authorization")
    );
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(h, "vary"),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );

    // Preflight of a refused origin.
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/health"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // An Origin naming this very host is not CORS.
    let host = s.base.trim_start_matches("http://").to_owned();
    let r = s.get_from("/health", &format!("http://{host}")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn configured_origins_are_normalised() {
    let http = HttpSettings {
        cors_origins: molecule_server::middleware::cors::parse_origins(" https://Canvas.Example "),
        ..HttpSettings::default()
    };
    let s = start_with(Security::strict(ADMIN.into(), false), http).await;
    let r = s.get_from("/health", "https://canvas.example").await;
    assert_eq!(r.status(), 200);
    let r = s.get_from("/health", "http://localhost:3000").await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_global_limiter_refuses_past_the_limit_by_peer_address() {
    let http = HttpSettings {
        rate_limit: 3,
        ..HttpSettings::default()
    };
    let s = start_with(Security::strict(ADMIN.into(), false), http).await;
    for remaining in ["2", "1", "0"] {
        // Proxy headers are not trusted: a new X-Forwarded-For is the same client.
        let r = s
            .client
            .get(s.url("/health"))
            .header("X-Forwarded-For", format!("10.0.0.{remaining}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(header(h, "x-ratelimit-limit"), Some("3"));
        assert_eq!(header(h, "x-ratelimit-remaining"), Some(remaining));
        let reset: u64 = header(h, "x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset <= 60);
    }
    let r = s.get("/nope").await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_security_headers(&h, CANVAS_CSP);
    assert_eq!(header(&h, "x-ratelimit-limit"), Some("3"));
    assert_eq!(header(&h, "x-ratelimit-remaining"), Some("0"));
    let retry: u64 = header(&h, "retry-after").unwrap().parse().unwrap();
    assert_eq!(
        header(&h, "x-ratelimit-reset"),
        Some(retry.to_string().as_str())
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": "rate limit exceeded", "retry_after": retry })
    );
    // Another peer address is another client.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "x-ratelimit-remaining"), Some("2"));
    // /metrics is limited like everything else, and the 429s are counted.
    assert_eq!(s.get("/metrics").await.status(), 429);
    let text = s.state.metrics.encode().unwrap();
    assert!(
        text.contains(
            r#"molecule_http_requests_total{method="GET",path="unmatched",status="429"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn dev_mode_does_not_limit() {
    let http = HttpSettings {
        rate_limit: 1,
        ..HttpSettings::default()
    };
    let s = start_with(Security::dev(), http).await;
    for _ in 0..5 {
        let r = s.get("/health").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(r.headers(), "x-ratelimit-limit"), Some("unlimited"));
        assert!(r.headers().get("x-ratelimit-remaining").is_none());
    }
}

#[tokio::test]
async fn metrics_count_requests_under_their_route_template() {
    let s = start().await;
    assert_eq!(s.get("/health").await.status(), 200);
    assert_eq!(s.get("/test/items/abc").await.status(), 200);
    assert_eq!(s.get("/test/items/def").await.status(), 200);
    assert_eq!(s.get("/nowhere").await.status(), 404);
    s.state.metrics.websocket_connections().inc();

    let r = s.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(r.headers(), "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text().await.unwrap();
    for line in [
        r#"molecule_http_requests_total{method="GET",path="/health",status="200"} 1"#,
        r#"molecule_http_requests_total{method="GET",path="/test/items/:id",status="200"} 2"#,
        r#"molecule_http_requests_total{method="GET",path="unmatched",status="404"} 1"#,
        "molecule_websocket_connections_active 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"molecule_http_request_duration_seconds_total{method="GET",path="/health",status="200"} "#
        )),
        "{text}"
    );
}

/// An unknown route (or a known path with a wrong method) that is sent a body reads it and
/// answers the 404, instead of closing the connection while the client is still sending
/// (async clients saw a reset) — issue 14 item 7.
#[tokio::test]
async fn an_unmatched_route_with_a_body_answers_404_not_a_reset() {
    let s = start().await;
    let body = vec![b'x'; 900 * 1024];
    for (method, path) in [
        (reqwest::Method::POST, "/no/such/route"),
        (reqwest::Method::PUT, "/workspaces/x/y/z"),
        (reqwest::Method::POST, "/health"),
    ] {
        for _ in 0..5 {
            let r = s
                .client
                .request(method.clone(), s.url(path))
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(r.status(), 404, "{method} {path}");
            assert_eq!(r.text().await.unwrap(), "404 page not found");
        }
    }
}

#[tokio::test]
async fn a_wrong_method_is_the_plain_404() {
    let s = start().await;
    for (method, path) in [
        (reqwest::Method::POST, "/health"),
        (reqwest::Method::DELETE, "/admin/liveness"),
        (reqwest::Method::GET, "/test/echo"),
    ] {
        let r = s.send(method.clone(), path).await;
        assert_eq!(r.status(), 404, "{method} {path}");
        assert!(r.headers().get("allow").is_none());
        assert_eq!(r.text().await.unwrap(), "404 page not found");
    }
}

#[tokio::test]
async fn a_trailing_slash_redirects_to_the_known_path() {
    let s = start().await;
    let r = s.get("/health/").await;
    assert_eq!(r.status(), 301);
    assert_eq!(header(r.headers(), "location"), Some("/health"));
    assert_security_headers(r.headers(), "default-src 'self'");

    let r = s.get("/test/items/abc/?x=1").await;
    assert_eq!(r.status(), 301);
    assert_eq!(header(r.headers(), "location"), Some("/test/items/abc?x=1"));

    let r = s.client.post(s.url("/test/echo/")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(header(r.headers(), "location"), Some("/test/echo"));

    // A guarded route is redirected without running its guard.
    let r = s.get("/admin/liveness/").await;
    assert_eq!(r.status(), 301);

    // No route for the method, or no route at all: 404.
    for (method, path) in [
        (reqwest::Method::POST, "/health/"),
        (reqwest::Method::GET, "/nowhere/"),
        (reqwest::Method::GET, "/"),
    ] {
        let r = s.send(method.clone(), path).await;
        assert_eq!(r.status(), 404, "{method} {path}");
        assert_eq!(r.text().await.unwrap(), "404 page not found");
    }
}

#[tokio::test]
async fn json_bodies_are_checked_and_capped() {
    let s = start().await;
    let post = |body: String| s.client.post(s.url("/test/echo")).body(body).send();

    let r = post(r#"{"name":"a","count":2}"#.into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "a", "count": 2})
    );

    for bad in [
        "",
        "{",
        "not json",
        r#"{"count":1}"#,
        r#"{"name":5}"#,
        r#"{"name":"a","count":"many"}"#,
        r#"{"name":"a","count":-1}"#,
        "[]",
    ] {
        let r = post(bad.into()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "invalid request body"}),
            "{bad}"
        );
    }

    let big = format!(
        r#"{{"name":"{}"}}"#,
        "x".repeat(molecule_server::middleware::DEFAULT_BODY_LIMIT + 16)
    );
    let r = post(big).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "request body too large"})
    );
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_with_an_empty_body() {
    let s = start().await;
    let r = s.get("/test/panic").await;
    assert_eq!(r.status(), 500);
    assert_security_headers(r.headers(), CANVAS_CSP);
    assert_eq!(r.text().await.unwrap(), "");
    // The server goes on serving.
    assert_eq!(s.get("/health").await.status(), 200);
}

#[tokio::test]
async fn liveness_reports_the_last_tick_of_each_loop() {
    let s = start().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.state
        .supervisor
        .spawn_loop("test-loop", Duration::from_secs(3600), move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
            }
        });
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    // The tick is recorded right after it returns.
    tokio::time::timeout(Duration::from_secs(10), async {
        while s.state.supervisor.tick_count("test-loop") == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();

    assert_eq!(s.get("/admin/liveness").await.status(), 401);
    let r = s
        .client
        .get(s.url("/admin/liveness"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let entry = &body["subsystems"]["test-loop"];
    let at = entry["last_tick_at"].as_str().unwrap();
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(entry["seconds_ago"].as_i64().unwrap() <= 1, "{body}");
    s.state.supervisor.stop(Duration::from_secs(5)).await;
}
