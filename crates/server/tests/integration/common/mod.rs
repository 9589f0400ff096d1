//! Shared test support: a real server on a loopback port over a test database, a recording
//! Provisioner double, and small HTTP helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod agent;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use molecule_domain::WorkspaceId;
use molecule_provisioner_api::{
    BackendKind, ProvisionError, ProvisionRequest, Provisioner, Running, Started,
};
use molecule_server::app::{AppState, router};
use molecule_server::auth::Security;
use molecule_store::testing::TestStore;
use serde_json::Value;

/// The admin token of strict-mode test servers.
pub const ADMIN: &str = "test-admin-token";

/// A Provisioner double that records every call. Faults are set per test.
#[derive(Debug, Default)]
pub struct FakeBackend {
    pub starts: Mutex<Vec<ProvisionRequest>>,
    pub stops: Mutex<Vec<WorkspaceId>>,
    /// Answers of `running`, consumed in order; `Running::Yes` when empty.
    pub running_answers: Mutex<VecDeque<Running>>,
    /// When set, `start` fails.
    pub fail_start: Mutex<bool>,
    /// When set, `stop` fails.
    pub fail_stop: Mutex<bool>,
    /// What `managed_workspaces` answers.
    pub managed: Mutex<Vec<WorkspaceId>>,
    /// What `console_output` answers; `None`: unsupported.
    pub console: Mutex<Option<String>>,
    /// When set, `stop` waits for this semaphore's permit (to hold a cycle open).
    pub stop_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// How many `stop` calls have begun (before the gate).
    pub stops_entered: Mutex<usize>,
    /// Signalled after every recorded call.
    pub changed: tokio::sync::Notify,
}

impl FakeBackend {
    /// Waits until `done` holds for the recorded calls, woken by each new call (bounded by 20 s
    /// only to turn a hang into a failure).
    pub async fn wait_for(&self, done: impl Fn(&FakeBackend) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            tokio::time::timeout_at(deadline, notified)
                .await
                .expect("the backend was not called as expected in time");
        }
    }

    /// Waits for the first start of `id` and answers the auth token of its latest start.
    pub async fn token_of(&self, id: WorkspaceId) -> String {
        self.wait_for(|b| b.started(id) >= 1).await;
        self.starts
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.workspace_id == id)
            .and_then(|r| r.auth_token.clone())
            .expect("the start carried a token")
            .expose()
            .to_owned()
    }

    pub fn start_count(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    pub fn started(&self, id: WorkspaceId) -> usize {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.workspace_id == id)
            .count()
    }

    pub fn stopped(&self, id: WorkspaceId) -> usize {
        self.stops
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s == id)
            .count()
    }
}

#[async_trait]
impl Provisioner for FakeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Other
    }

    fn publishes_agent_url(&self) -> bool {
        true
    }

    async fn start(&self, request: &ProvisionRequest) -> Result<Started, ProvisionError> {
        self.starts.lock().unwrap().push(request.clone());
        self.changed.notify_waiters();
        if *self.fail_start.lock().unwrap() {
            return Err(ProvisionError::Failed(
                "daemon said: secret internal detail".into(),
            ));
        }
        Ok(Started {
            agent_url: Some(format!("http://127.0.0.1:1/{}", request.workspace_id)),
            instance_id: Some(format!("fake-{}", request.workspace_id.short())),
        })
    }

    async fn stop(&self, id: WorkspaceId, _instance: Option<&str>) -> Result<(), ProvisionError> {
        *self.stops_entered.lock().unwrap() += 1;
        self.changed.notify_waiters();
        let gate = self.stop_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await.unwrap();
        }
        if *self.fail_stop.lock().unwrap() {
            return Err(ProvisionError::Unavailable("daemon is down".into()));
        }
        self.stops.lock().unwrap().push(id);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn managed_workspaces(&self) -> Result<Vec<WorkspaceId>, ProvisionError> {
        Ok(self.managed.lock().unwrap().clone())
    }

    async fn console_output(
        &self,
        _id: WorkspaceId,
        _instance: Option<&str>,
    ) -> Result<String, ProvisionError> {
        self.console
            .lock()
            .unwrap()
            .clone()
            .ok_or(ProvisionError::Unsupported("console_output"))
    }

    async fn running(&self, _id: WorkspaceId, _instance: Option<&str>) -> Running {
        self.running_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Running::Yes)
    }
}

/// A server on 127.0.0.1 with its state and database.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub backend: Option<Arc<FakeBackend>>,
    pub http: reqwest::Client,
    _db: TestStore,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which backend and security mode a test server runs with.
pub struct Options {
    pub backend: bool,
    pub dev: bool,
}

impl TestServer {
    pub async fn start(db: TestStore, options: Options) -> TestServer {
        Self::start_configured(db, options, |s| s).await
    }

    /// Like `start`, with a last change to the state (e.g. a template directory).
    pub async fn start_configured(
        db: TestStore,
        options: Options,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestServer {
        let backend = options.backend.then(|| Arc::new(FakeBackend::default()));
        let mut server = Self::start_with_backend(
            db,
            options.dev,
            backend.clone().map(|b| b as Arc<dyn Provisioner>),
            configure,
        )
        .await;
        server.backend = backend;
        server
    }

    /// A server with any backend (a real one: `backend()` is then unavailable).
    pub async fn start_with_backend(
        db: TestStore,
        dev: bool,
        backend: Option<Arc<dyn Provisioner>>,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestServer {
        let security = if dev {
            Security::dev()
        } else {
            Security::strict(ADMIN.into(), true)
        };
        // Secret values are encrypted in every test server, as in a real one.
        let store = (*db)
            .clone()
            .with_secret_key(Some(molecule_store::SecretKey::generate().unwrap()));
        let state =
            AppState::with_backend(store, security, backend, "http://platform.test:8080".into());
        let state = configure(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(db, state, listener)
    }

    /// A strict-mode server with a real backend, listening on `ip` (e.g. the gateway of a
    /// Docker network) and telling workspaces to reach it at `http://<ip>:<port>`, so agents
    /// in containers can register with it.
    pub async fn start_reachable(
        db: TestStore,
        backend: Arc<dyn Provisioner>,
        ip: std::net::IpAddr,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let platform_url = format!("http://{}", listener.local_addr().unwrap());
        let store = (*db)
            .clone()
            .with_secret_key(Some(molecule_store::SecretKey::generate().unwrap()));
        let state = AppState::with_backend(
            store,
            Security::strict(ADMIN.into(), true),
            Some(backend),
            platform_url,
        );
        Self::serve(db, configure(state), listener)
    }

    fn serve(db: TestStore, state: AppState, listener: tokio::net::TcpListener) -> TestServer {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(state.clone());
        let task = tokio::spawn(molecule_server::http_server::serve(
            listener,
            app,
            molecule_server::http_server::ServerSettings::default(),
            std::future::pending(),
            std::time::Duration::ZERO,
        ));
        TestServer {
            base,
            state,
            backend: None,
            http: reqwest::Client::new(),
            _db: db,
            task,
        }
    }

    pub fn backend(&self) -> &FakeBackend {
        self.backend.as_deref().expect("a server with a backend")
    }

    /// Sends a request; `token` is the bearer (if any); returns status and JSON (or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        // A stream never ends: answer with its status only.
        let streaming = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            return (status, Value::Null);
        }
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends a raw body.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a workspace as admin and returns its id.
    pub async fn create(&self, body: Value) -> WorkspaceId {
        let (status, reply) = self
            .call("POST", "/workspaces", Some(ADMIN), Some(body))
            .await;
        assert_eq!(status, 201, "{reply}");
        reply["id"].as_str().unwrap().parse().unwrap()
    }

    /// Creates a workspace without credentials (dev mode) and returns its id.
    pub async fn create_dev(&self, body: Value) -> WorkspaceId {
        let (status, reply) = self.call("POST", "/workspaces", None, Some(body)).await;
        assert_eq!(status, 201, "{reply}");
        reply["id"].as_str().unwrap().parse().unwrap()
    }

    /// The stored status of a workspace.
    pub async fn status_of(&self, id: WorkspaceId) -> molecule_domain::WorkspaceStatus {
        self.state
            .store
            .workspaces()
            .get(id)
            .await
            .unwrap()
            .unwrap()
            .status
    }
}
