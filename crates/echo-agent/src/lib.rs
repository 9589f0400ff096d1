//! A minimal workspace agent: the test workload of the Docker backend and the reference for
//! external runtimes. It follows the container contract (spec provisioner §1.6):
//!
//! - configuration from the environment: `WORKSPACE_ID` (required), `PLATFORM_URL` (default
//!   `http://host.docker.internal:8080`), `PORT` (default 8000), `CONFIGS_DIR` (default
//!   `/configs`), `AGENT_URL` (the URL it announces; default `http://$HOSTNAME:<port>`),
//!   `HEARTBEAT_SECONDS` (default 30, clamped to 1–300);
//! - its bearer token from `<CONFIGS_DIR>/.auth_token`, else `MOLECULE_WORKSPACE_TOKEN`, else
//!   the `auth_token` of the register answer;
//! - `POST {PLATFORM_URL}/registry/register` with `{"id","url","agent_card"}` (retried until
//!   it succeeds), then `POST /registry/heartbeat` every interval;
//! - it serves `GET /.well-known/agent.json` (the agent card), `GET /health`, and A2A JSON-RPC
//!   on `POST /`: `message/send` answers with a message holding the text parts it was sent
//!   (and, when the request carried a W3C `traceparent`, that header in its `metadata`, so a
//!   test can see which trace reached the agent);
//! - behind the platform inbound secret (`<CONFIGS_DIR>/.platform_inbound_secret`, else the
//!   `platform_inbound_secret` of the register or heartbeat answer), the chat-file endpoints
//!   of [`files`] under `FILES_ROOT` (default `/`).

pub mod files;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::RwLock;

/// Largest request body the agent reads.
const MAX_BODY: usize = 1024 * 1024;
/// Largest chat upload body the agent reads (the platform's 50 MiB and multipart framing).
const MAX_UPLOAD: usize = 51 * 1024 * 1024;

/// What the agent needs to run.
#[derive(Clone)]
pub struct Config {
    /// The workspace this agent is.
    pub workspace_id: String,
    /// The platform's base URL, without a trailing slash.
    pub platform_url: String,
    /// The URL the agent announces at registration.
    pub agent_url: String,
    /// The port to listen on (all interfaces).
    pub port: u16,
    /// The bearer token for the platform, if one was provisioned.
    pub token: Option<String>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// The platform inbound secret, if one was provisioned.
    pub inbound_secret: Option<String>,
    /// The directory standing for the container's `/` in the file endpoints.
    pub files_root: std::path::PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("workspace_id", &self.workspace_id)
            .field("platform_url", &self.platform_url)
            .field("agent_url", &self.agent_url)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("heartbeat", &self.heartbeat)
            .field(
                "inbound_secret",
                &self.inbound_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("files_root", &self.files_root)
            .finish()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `WORKSPACE_ID` is missing.
    #[error("WORKSPACE_ID is not set")]
    NoWorkspaceId,
    /// A number could not be read.
    #[error("{0} is not a valid number")]
    BadNumber(&'static str),
}

impl Config {
    /// Reads the container contract from the environment and the config directory.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the contract from any variable lookup (the token file from `CONFIGS_DIR`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let workspace_id = var("WORKSPACE_ID").ok_or(ConfigError::NoWorkspaceId)?;
        let platform_url = var("PLATFORM_URL")
            .unwrap_or_else(|| "http://host.docker.internal:8080".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let port = match var("PORT") {
            Some(p) => p.parse().map_err(|_| ConfigError::BadNumber("PORT"))?,
            None => 8000,
        };
        let heartbeat = match var("HEARTBEAT_SECONDS") {
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| ConfigError::BadNumber("HEARTBEAT_SECONDS"))?,
            None => 30,
        }
        .clamp(1, 300);
        let host = var("HOSTNAME").unwrap_or_else(|| "localhost".to_owned());
        let agent_url = var("AGENT_URL").unwrap_or_else(|| format!("http://{host}:{port}"));
        let configs = var("CONFIGS_DIR").unwrap_or_else(|| "/configs".to_owned());
        let token = std::fs::read_to_string(format!("{configs}/.auth_token"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .or_else(|| var("MOLECULE_WORKSPACE_TOKEN"));
        let inbound_secret = std::fs::read_to_string(format!("{configs}/.platform_inbound_secret"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let files_root = var("FILES_ROOT").unwrap_or_else(|| "/".to_owned()).into();
        Ok(Self {
            inbound_secret,
            files_root,
            workspace_id,
            platform_url,
            agent_url,
            port,
            token,
            heartbeat: Duration::from_secs(heartbeat),
        })
    }
}

/// The agent card served at `/.well-known/agent.json` and sent at registration.
pub fn agent_card(config: &Config) -> Value {
    json!({
        "name": format!("echo-{}", config.workspace_id),
        "description": "Echoes the text of every message it is sent.",
        "version": env!("CARGO_PKG_VERSION"),
        "url": config.agent_url,
        "skills": [{
            "id": "echo",
            "name": "Echo",
            "description": "Answers with the text parts of the message.",
            "tags": ["test"],
        }],
        "capabilities": {"streaming": false, "pushNotifications": false},
        "defaultInputModes": ["text"],
        "defaultOutputModes": ["text"],
    })
}

/// The answer to one JSON-RPC request (A2A `message/send` echoes; other methods are unknown).
pub fn handle_rpc(request: &Value) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str);
    match method {
        Some("message/send") => {
            let parts: Vec<Value> = request
                .pointer("/params/message/parts")
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter(|p| {
                            p.get("kind")
                                .or_else(|| p.get("type"))
                                .and_then(Value::as_str)
                                == Some("text")
                        })
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .map(|text| json!({"kind": "text", "text": text}))
                        .collect()
                })
                .unwrap_or_default();
            let mut result = json!({
                "kind": "message",
                "role": "agent",
                "messageId": format!("echo-{}", unique()),
                "parts": parts,
            });
            if let Some(context) = request.pointer("/params/message/contextId") {
                result["contextId"] = context.clone();
            }
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        }
        _ => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32601, "message": "method not found"},
        }),
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The running agent's shared state.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    token: RwLock<Option<String>>,
    inbound: RwLock<Option<String>>,
    started: Instant,
    http: reqwest::Client,
}

impl Agent {
    /// An agent for a configuration.
    pub fn new(config: Config) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            token: RwLock::new(config.token.clone()),
            inbound: RwLock::new(config.inbound_secret.clone()),
            config,
            started: Instant::now(),
            http,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, reqwest::Error> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.config.platform_url))
            .header("Origin", &self.config.platform_url)
            .header("X-Workspace-ID", &self.config.workspace_id)
            .json(body);
        if let Some(token) = self.token.read().await.as_deref() {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await?.error_for_status()?;
        Ok(answer.json().await.unwrap_or(Value::Null))
    }

    /// Registers once; keeps an `auth_token` from the answer when it had none.
    pub async fn register(&self) -> Result<(), reqwest::Error> {
        let body = json!({
            "id": self.config.workspace_id,
            "url": self.config.agent_url,
            "agent_card": agent_card(&self.config),
        });
        let answer = self.post("/registry/register", &body).await?;
        self.keep_inbound_secret(&answer).await;
        if let Some(token) = answer.get("auth_token").and_then(Value::as_str) {
            let mut mine = self.token.write().await;
            if mine.is_none() {
                *mine = Some(token.to_owned());
            }
        }
        Ok(())
    }

    /// Sends one heartbeat.
    pub async fn heartbeat(&self) -> Result<(), reqwest::Error> {
        let body = json!({
            "workspace_id": self.config.workspace_id,
            "error_rate": 0.0,
            "sample_error": "",
            "active_tasks": 0,
            "current_task": "",
            "uptime_seconds": self.started.elapsed().as_secs(),
        });
        let answer = self.post("/registry/heartbeat", &body).await?;
        self.keep_inbound_secret(&answer).await;
        Ok(())
    }

    /// Keeps the platform inbound secret of a registry answer (the platform's is current).
    async fn keep_inbound_secret(&self, answer: &Value) {
        if let Some(secret) = answer
            .get("platform_inbound_secret")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            *self.inbound.write().await = Some(secret.to_owned());
        }
    }

    /// Whether `req` carries `Authorization: Bearer <inbound secret>` (compared in constant
    /// time); never true while the agent knows no secret.
    async fn is_platform_call(&self, req: &Request<Incoming>) -> bool {
        let Some(secret) = self.inbound.read().await.clone() else {
            return false;
        };
        let Some(given) = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        given.len() == secret.len()
            && given
                .bytes()
                .zip(secret.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    async fn ingest(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(boundary) = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(files::boundary)
        else {
            return respond(
                StatusCode::BAD_REQUEST,
                &json!({"error": "expected multipart/form-data"}),
            );
        };
        let body = match Limited::new(req.into_body(), MAX_UPLOAD).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"error": "body too large"}),
                );
            }
        };
        let Some(parts) = files::parse_multipart(&body, &boundary) else {
            return respond(
                StatusCode::BAD_REQUEST,
                &json!({"error": "malformed multipart body"}),
            );
        };
        if parts.is_empty() {
            return respond(StatusCode::BAD_REQUEST, &json!({"error": "no files"}));
        }
        match files::store_uploads(&self.config.files_root, &parts, unique()) {
            Ok(answer) => respond(StatusCode::OK, &answer),
            Err(e) => {
                eprintln!("echo-agent: cannot store an upload: {e}");
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "cannot store the upload"}),
                )
            }
        }
    }

    fn read_file(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req
            .uri()
            .query()
            .and_then(|q| reqwest::Url::parse(&format!("http://agent/?{q}")).ok())
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "path")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        let Some(file) = files::readable_path(&self.config.files_root, &path) else {
            return respond(StatusCode::BAD_REQUEST, &json!({"error": "invalid path"}));
        };
        let Ok(data) = std::fs::read(&file) else {
            return respond(StatusCode::NOT_FOUND, &json!({"error": "file not found"}));
        };
        let name = files::safe_name(&path);
        let mut response = Response::new(Full::new(Bytes::from(data)));
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(files::content_type_of(&file)),
        );
        if let Ok(v) =
            hyper::header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        {
            headers.insert(hyper::header::CONTENT_DISPOSITION, v);
        }
        response
    }

    /// Registers (retrying every 2 s until it succeeds), then heartbeats forever.
    pub async fn run_registry(self: Arc<Self>) {
        while let Err(e) = self.register().await {
            eprintln!("echo-agent: register failed, retrying: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        eprintln!("echo-agent: registered as {}", self.config.workspace_id);
        loop {
            tokio::time::sleep(self.config.heartbeat).await;
            if let Err(e) = self.heartbeat().await {
                eprintln!("echo-agent: heartbeat failed: {e}");
            }
        }
    }

    /// Serves HTTP on a bound listener until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let agent = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let agent = agent.clone();
                    async move { Ok::<_, Infallible>(agent.route(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path().starts_with("/internal/") && !self.is_platform_call(&req).await {
            return respond(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized"}));
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/.well-known/agent.json" | "/.well-known/agent-card.json") => {
                respond(StatusCode::OK, &agent_card(&self.config))
            }
            (&Method::GET, "/health") => respond(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::POST, "/internal/chat/uploads/ingest") => self.ingest(req).await,
            (&Method::GET, "/internal/file/read") => self.read_file(&req),
            (&Method::POST, "/") => {
                let traceparent = req
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return respond(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            &json!({"error": "body too large"}),
                        );
                    }
                };
                match serde_json::from_slice::<Value>(&body) {
                    Ok(request) => {
                        let mut answer = handle_rpc(&request);
                        if let (Some(tp), Some(result)) = (
                            traceparent,
                            answer.get_mut("result").and_then(Value::as_object_mut),
                        ) {
                            result.insert("metadata".to_owned(), json!({ "traceparent": tp }));
                        }
                        respond(StatusCode::OK, &answer)
                    }
                    Err(_) => respond(
                        StatusCode::OK,
                        &json!({"jsonrpc": "2.0", "id": null,
                                "error": {"code": -32700, "message": "parse error"}}),
                    ),
                }
            }
            _ => respond(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
        }
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_text_parts() {
        let answer = handle_rpc(&json!({
            "jsonrpc": "2.0", "id": 7, "method": "message/send",
            "params": {"message": {"role": "user", "messageId": "m", "parts": [
                {"kind": "text", "text": "hello"},
                {"kind": "file", "file": {}},
                {"type": "text", "text": "again"},
            ]}},
        }));
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["result"]["role"], "agent");
        assert_eq!(
            answer["result"]["parts"],
            json!([{"kind": "text", "text": "hello"}, {"kind": "text", "text": "again"}])
        );
        let unknown = handle_rpc(&json!({"jsonrpc": "2.0", "id": "x", "method": "tasks/get"}));
        assert_eq!(unknown["error"]["code"], -32601);
    }

    #[test]
    fn config_from_the_contract() {
        let dir = std::env::temp_dir().join(format!("echo-agent-{}", unique()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(".auth_token"), "tok-from-file");
        let dir_s = dir.to_string_lossy().into_owned();
        let c = Config::from_lookup(|k| match k {
            "WORKSPACE_ID" => Some("ws1".into()),
            "CONFIGS_DIR" => Some(dir_s.clone()),
            "MOLECULE_WORKSPACE_TOKEN" => Some("tok-from-env".into()),
            "HOSTNAME" => Some("abc".into()),
            _ => None,
        });
        let _ = std::fs::remove_dir_all(&dir);
        let c = c.unwrap();
        assert_eq!(c.token.as_deref(), Some("tok-from-file"));
        assert_eq!(c.agent_url, "http://abc:8000");
        assert_eq!(c.platform_url, "http://host.docker.internal:8080");
        assert!(!format!("{c:?}").contains("tok-from-file"));
        assert!(matches!(
            Config::from_lookup(|_| None),
            Err(ConfigError::NoWorkspaceId)
        ));
    }
}
