//! Chat attachments over real HTTP, both databases (spec observability §1.17): uploads and
//! downloads through a real agent process (the echo agent binary, which checks the platform
//! inbound secret and stores files under a temporary directory), the 50 MiB cap, the
//! download path checks (before any database access), and the 422/503/502 answers.

pub(crate) mod agent;

use molecule_domain::{DeliveryMode, WorkspaceId};
use molecule_store::WorkspaceUpdate;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Options, TestServer, assert_error, assert_status};
use agent::{EchoAgent, multipart};

on_both_backends!(
    uploads_and_downloads_round_trip_through_the_agent,
    oversize_uploads_are_413,
    download_paths_are_checked_before_the_workspace,
    workspaces_without_a_usable_agent_are_refused,
);

/// A strict server whose address policy lets loopback agents through (they run on this
/// machine), as a dev deployment's would.
async fn server(db: TestStore) -> TestServer {
    TestServer::start_configured(db, Options::STRICT, |st| {
        let mut settings = st.a2a.settings().clone();
        settings.policy.dev_mode = true;
        st.with_a2a_settings(settings)
    })
    .await
}

fn upload_path(id: WorkspaceId) -> String {
    format!("/workspaces/{id}/chat/uploads")
}

fn download_path(id: WorkspaceId, path: &str) -> String {
    let mut url = url::Url::parse("http://x/").unwrap();
    url.query_pairs_mut().append_pair("path", path);
    format!("/workspaces/{id}/chat/download?{}", url.query().unwrap())
}

/// `POST …/chat/uploads` with a multipart body of `files`: status and JSON answer.
async fn upload(
    s: &TestServer,
    id: WorkspaceId,
    token: &str,
    files: &[(&str, &[u8])],
) -> (u16, Value) {
    let (content_type, body) = multipart(files);
    let reply = s
        .http
        .post(format!("{}{}", s.base, upload_path(id)))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn uploads_and_downloads_round_trip_through_the_agent(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.external("files", None).await;
    let agent = EchoAgent::start(&s, id, &token).await;
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let (status, answer) = upload(
        &s,
        id,
        &token,
        &[
            ("report.pdf", &binary),
            ("../../etc/notes $(x).txt", b"hello"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let files = answer["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["name"], "report.pdf");
    assert_eq!(files[0]["size"], 300_000);
    assert_eq!(files[1]["name"], "../../etc/notes $(x).txt");
    for f in files {
        let uri = f["uri"].as_str().unwrap();
        assert!(
            uri.starts_with("workspace:/workspace/.molecule/chat-uploads/"),
            "{uri}"
        );
    }
    // Stored inside the agent's uploads directory, nowhere else.
    assert_eq!(agent.uploads().len(), 2);
    let path = files[0]["uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("workspace:");
    let reply = s
        .http
        .get(format!("{}{}", s.base, download_path(id, path)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/pdf");
    assert_eq!(reply.headers()["content-length"], "300000");
    let disposition = reply.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename="),
        "{disposition}"
    );
    assert_eq!(reply.bytes().await.unwrap().as_ref(), binary.as_slice());
    // A missing file is the agent's 404, relayed.
    let missing = download_path(id, "/workspace/none.txt");
    assert_error(
        s.call("GET", &missing, Some(&token), None).await,
        404,
        "file not found",
    );
    // The caller needs the workspace's credentials; the agent needs the inbound secret.
    assert_status(upload(&s, id, "wrong", &[("a", b"a")]).await, 401);
    assert_status(s.call("GET", &missing, None, None).await, 401);
    let direct = s
        .http
        .get(format!("{}/internal/file/read?path={path}", agent.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
}

async fn oversize_uploads_are_413(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.external("big", None).await;
    let agent = EchoAgent::start(&s, id, &token).await;
    let limit = 50 * 1024 * 1024;
    // Declared too large: refused before any of it is read.
    let mut stream = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        upload_path(id),
        limit + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"request body too large"}"#),
        "{answer}"
    );
    // Exactly at the limit is fine (the agent stores it).
    let (_, framed) = multipart(&[("x.bin", b"")]);
    let room = limit - framed.len();
    let (status, answer) = upload(&s, id, &token, &[("x.bin", &vec![7u8; room])]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["files"][0]["size"], room);
    // One byte more, sent without a length (chunked): cut off while streamed, 413, and the
    // agent stored nothing more.
    let (content_type, body) = multipart(&[("x.bin", &vec![7u8; room + 1])]);
    let reply = s
        .http
        .post(format!("{}{}", s.base, upload_path(id)))
        .bearer_auth(&token)
        .header("content-type", content_type)
        .body(reqwest::Body::wrap(Chunked(
            body.chunks(1 << 20).map(|c| c.to_vec()).collect(),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    assert_eq!(agent.uploads().len(), 1);
}

/// A body of these chunks with no length: sent chunked.
struct Chunked(std::collections::VecDeque<Vec<u8>>);

impl http_body::Body for Chunked {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<axum::body::Bytes>, Self::Error>>> {
        let next = self.get_mut().0.pop_front();
        std::task::Poll::Ready(next.map(|c| Ok(http_body::Frame::data(axum::body::Bytes::from(c)))))
    }
}

async fn download_paths_are_checked_before_the_workspace(db: TestStore) {
    let s = server(db).await;
    // An id no workspace has: every bad path is 400, not 404.
    let id = WorkspaceId::new();
    for (path, message) in [
        ("", "path query required"),
        ("workspace/a.txt", "path must be absolute"),
        (
            "/etc/passwd",
            "path must be under /configs, /workspace, /home, or /plugins",
        ),
        (
            "/workspaces/a",
            "path must be under /configs, /workspace, /home, or /plugins",
        ),
        ("/workspace/../etc/passwd", "invalid path"),
        ("/workspace//a", "invalid path"),
        ("/workspace/./a", "invalid path"),
        ("/configs/a/", "invalid path"),
    ] {
        let reply = s.admin("GET", &download_path(id, path), None).await;
        assert_error(reply, 400, message);
    }
    let no_query = format!("/workspaces/{id}/chat/download");
    assert_error(
        s.admin("GET", &no_query, None).await,
        400,
        "path query required",
    );
    assert_error(
        s.admin("GET", &download_path(id, "/workspace/a"), None)
            .await,
        404,
        "workspace not found",
    );
    assert_error(
        s.admin(
            "GET",
            "/workspaces/not-a-uuid/chat/download?path=/workspace/a",
            None,
        )
        .await,
        400,
        "invalid workspace ID",
    );
}

async fn workspaces_without_a_usable_agent_are_refused(db: TestStore) {
    let s = server(db).await;
    let (id, token) = s.external("silent", None).await;
    let workspaces = s.state.store.workspaces();
    let set_mode = |mode| WorkspaceUpdate {
        delivery_mode: Some(mode),
        ..WorkspaceUpdate::default()
    };
    let download = download_path(id, "/workspace/a.txt");
    // No URL, poll mode: 422 for both operations.
    workspaces
        .update(id, set_mode(DeliveryMode::Poll))
        .await
        .unwrap();
    for (reply, op) in [
        (upload(&s, id, &token, &[("a", b"a")]).await, "upload"),
        (
            s.call("GET", &download, Some(&token), None).await,
            "download",
        ),
    ] {
        let body = assert_status(reply, 422);
        assert_eq!(
            body["error"],
            format!("workspace has no callback URL — chat {op} requires push-mode + public URL")
        );
        assert!(body["detail"].is_string());
    }
    // No URL, push mode: 503.
    workspaces
        .update(id, set_mode(DeliveryMode::Push))
        .await
        .unwrap();
    assert_error(
        upload(&s, id, &token, &[("a", b"a")]).await,
        503,
        "workspace url not registered yet",
    );
    assert_error(
        s.call("GET", &download, Some(&token), None).await,
        503,
        "workspace url not registered yet",
    );
    // An agent that is down: 502 (its secret was minted at registration).
    let closed = agent::closed_port_url();
    let (down, down_token) = s.registered("down", &closed, None).await;
    let download = download_path(down, "/workspace/a.txt");
    assert_error(
        upload(&s, down, &down_token, &[("a", b"a")]).await,
        502,
        "workspace unreachable",
    );
    assert_error(
        s.call("GET", &download, Some(&down_token), None).await,
        502,
        "workspace unreachable",
    );
    // No inbound secret: minted now, 503 with a retry hint; the next call goes through.
    workspaces.set_inbound_secret(down, "").await.unwrap();
    let body = assert_status(s.call("GET", &download, Some(&down_token), None).await, 503);
    assert_eq!(
        body["error"],
        "workspace re-registering — please retry in 30 seconds"
    );
    assert_eq!(body["retry_after_seconds"], 30);
    let minted = workspaces.inbound_secret(down).await.unwrap().unwrap();
    assert_eq!(minted.len(), 43);
    assert_error(
        s.call("GET", &download, Some(&down_token), None).await,
        502,
        "workspace unreachable",
    );
}
