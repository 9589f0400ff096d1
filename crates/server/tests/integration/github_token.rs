//! GitHub App installation tokens over real HTTP, both databases (spec observability §1.19):
//! a local stand-in for the GitHub API checks the App JWT's RS256 signature with the public
//! key of the fixture key pair and its claims, counts its calls and answers as told; the
//! server's cache is seen through that count.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use molecule_server::github_app::AppSettings;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::common::{Options, TestServer, assert_error, assert_status};

on_both_backends!(
    no_app_is_404,
    tokens_are_minted_with_a_signed_jwt_and_cached,
    failures_are_500_without_detail,
);

const APP_ID: &str = "424242";
const INSTALLATION: u64 = 777;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What the stand-in answers.
#[derive(Clone)]
enum Answer {
    /// 201 with this token, expiring this many seconds from now.
    Token(&'static str, i64),
    /// This status.
    Status(u16),
}

#[derive(Clone)]
struct Stub {
    calls: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
}

async fn access_tokens(
    State(stub): State<Stub>,
    Path(installation): Path<u64>,
    headers: HeaderMap,
) -> Response {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    assert_eq!(installation, INSTALLATION);
    assert_eq!(headers["accept"], "application/vnd.github+json");
    let jwt = headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let public = std::fs::read(fixture("github_app_test_key.pub.pem")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[APP_ID]);
    let Ok(data) = jsonwebtoken::decode::<Value>(&jwt, &key, &validation) else {
        return (StatusCode::UNAUTHORIZED, "bad JWT").into_response();
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (iat, exp) = (
        data.claims["iat"].as_i64().unwrap(),
        data.claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 11 * 60, "{:?}", data.claims);
    assert!((now - 70..=now - 50).contains(&iat), "iat {iat} now {now}");
    match stub.answer.lock().clone() {
        Answer::Token(token, secs) => {
            let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
            let at = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            (
                StatusCode::CREATED,
                axum::Json(json!({"token": token, "expires_at": at})),
            )
                .into_response()
        }
        Answer::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
    }
}

async fn stub(answer: Answer) -> (String, Stub) {
    let stub = Stub {
        calls: Arc::default(),
        answer: Arc::new(Mutex::new(answer)),
    };
    let app = Router::new()
        .route(
            "/app/installations/{id}/access_tokens",
            axum::routing::post(access_tokens),
        )
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, stub)
}

async fn server(db: TestStore, api_url: &str, key: &str) -> TestServer {
    let settings = AppSettings {
        app_id: APP_ID.into(),
        installation_id: INSTALLATION,
        private_key_file: fixture(key),
        api_url: api_url.into(),
    };
    TestServer::start_configured(db, Options::STRICT, move |st| {
        st.with_github_app(Some(settings))
    })
    .await
}

async fn no_app_is_404(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, token) = s.stored_workspace("no-app").await;
    assert_error(
        s.admin("GET", "/admin/github-installation-token", None)
            .await,
        404,
        "no GitHub App configured",
    );
    let path = format!("/workspaces/{id}/github-installation-token");
    assert_error(
        s.call("GET", &path, Some(&token), None).await,
        404,
        "no GitHub App configured",
    );
}

async fn tokens_are_minted_with_a_signed_jwt_and_cached(db: TestStore) {
    let (api, stub) = stub(Answer::Token("ghs_first", 3600)).await;
    let s = server(db, &api, "github_app_test_key.pem").await;
    let (id, token) = s.stored_workspace("gh").await;
    let path = format!("/workspaces/{id}/github-installation-token");
    assert_status(s.call("GET", &path, None, None).await, 401);
    assert_status(
        s.call(
            "GET",
            "/admin/github-installation-token",
            Some(&token),
            None,
        )
        .await,
        401,
    );
    // Several callers at once: one refresh.
    let calls: Vec<_> = (0..6)
        .map(|_| s.admin("GET", "/admin/github-installation-token", None))
        .collect();
    for reply in futures_util::future::join_all(calls).await {
        let body = assert_status(reply, 200);
        assert_eq!(body["token"], "ghs_first");
        let at = body["expires_at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 20, "{at}");
    }
    let body = assert_status(s.call("GET", &path, Some(&token), None).await, 200);
    assert_eq!(body["token"], "ghs_first");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
    // A token within five minutes of its expiry is replaced at each call.
    let (api, stub) = self::stub(Answer::Token("ghs_short", 120)).await;
    let short = server(TestStore::sqlite().await, &api, "github_app_test_key.pem").await;
    for _ in 0..2 {
        let body = assert_status(
            short
                .admin("GET", "/admin/github-installation-token", None)
                .await,
            200,
        );
        assert_eq!(body["token"], "ghs_short");
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 2);
}

async fn failures_are_500_without_detail(db: TestStore) {
    let (api, stub) = stub(Answer::Status(500)).await;
    let s = server(db, &api, "github_app_test_key.pem").await;
    let get = || s.admin("GET", "/admin/github-installation-token", None);
    assert_error(get().await, 500, "token refresh failed");
    *stub.answer.lock() = Answer::Token("", 3600);
    assert_error(get().await, 500, "token refresh failed: empty token");
    // A failure is not cached: the next call succeeds.
    *stub.answer.lock() = Answer::Token("ghs_ok", 3600);
    assert_eq!(assert_status(get().await, 200)["token"], "ghs_ok");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 3);
    drop(s);
    // A key of another App (the stand-in refuses its signature), a file that is no private
    // key, a missing key file, and an API that does not answer.
    for (api, key) in [
        (api.as_str(), "github_app_other_key.pem"),
        (api.as_str(), "github_app_test_key.pub.pem"),
        (api.as_str(), "missing.pem"),
        ("http://127.0.0.1:9", "github_app_test_key.pem"),
    ] {
        let other = server(TestStore::sqlite().await, api, key).await;
        assert_error(
            other
                .admin("GET", "/admin/github-installation-token", None)
                .await,
            500,
            "token refresh failed",
        );
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 4);
}
