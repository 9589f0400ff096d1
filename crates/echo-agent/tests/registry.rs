//! The agent binary against a tiny local platform stub that records what it is sent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One recorded request: path, authorization header, JSON body.
type Recorded = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// A one-request-per-connection HTTP stub answering `{"status":"ok"}`.
async fn platform_stub() -> (String, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Recorded = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = stream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = stream.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let auth = head.lines().find_map(|l| {
                    l.to_lowercase()
                        .starts_with("authorization:")
                        .then(|| l["authorization:".len()..].trim().to_owned())
                });
                let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                record.lock().unwrap().push((path, auth, body));
                let answer = r#"{"status":"ok"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn registers_heartbeats_and_echoes() {
    let (platform, seen) = platform_stub().await;
    let configs = tempfile::tempdir().unwrap();
    std::fs::write(configs.path().join(".auth_token"), "secret-token").unwrap();
    let port = free_port();
    let agent_url = format!("http://127.0.0.1:{port}");
    let _agent = Killed(
        Command::new(env!("CARGO_BIN_EXE_molecule-echo-agent"))
            .env("WORKSPACE_ID", "ws-test-1")
            .env("PLATFORM_URL", &platform)
            .env("PORT", port.to_string())
            .env("CONFIGS_DIR", configs.path())
            .env("AGENT_URL", &agent_url)
            .env("HEARTBEAT_SECONDS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Register first, then at least one heartbeat, both with the token from the file.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let calls = seen.lock().unwrap().clone();
        if calls.iter().any(|c| c.0 == "/registry/heartbeat") {
            let (path, auth, body) = &calls[0];
            assert_eq!(path, "/registry/register");
            assert_eq!(auth.as_deref(), Some("Bearer secret-token"));
            assert_eq!(body["id"], "ws-test-1");
            assert_eq!(body["url"], agent_url.as_str());
            assert_eq!(body["agent_card"]["skills"][0]["id"], "echo");
            let beat = calls.iter().find(|c| c.0 == "/registry/heartbeat").unwrap();
            assert_eq!(beat.1.as_deref(), Some("Bearer secret-token"));
            assert_eq!(beat.2["workspace_id"], "ws-test-1");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no register/heartbeat: {calls:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let http = reqwest::Client::new();
    let card: Value = http
        .get(format!("{agent_url}/.well-known/agent.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["url"], agent_url.as_str());

    let answer: Value = http
        .post(&agent_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
            "params": {"message": {"role": "user", "messageId": "m1",
                "parts": [{"kind": "text", "text": "ping"}]}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["parts"][0]["text"], "ping");

    let bad = http.post(&agent_url).body("{nope").send().await.unwrap();
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["code"], -32700);
}
