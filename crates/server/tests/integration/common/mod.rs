//! Shared test support: a real server on a loopback port over a test database (strict or dev
//! mode), a recording Provisioner double ([`FakeBackend`]), a tiny A2A agent ([`agent`]), and
//! what the areas of the tests keep doing: calls as the operator, workspaces that are created,
//! registered or online, the next event of a kind, bounded waits for a row or a condition
//! ([`wait`]), and assertions of a status with its JSON body.
#![allow(dead_code)]

pub mod agent;
mod backend;
pub mod python;
pub mod wait;

use std::future::Future;
use std::sync::Arc;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::Provisioner;
use molecule_server::Security;
use molecule_server::http_server::{self, ServerSettings};
use molecule_server::{AppState, router};
use molecule_store::testing::TestStore;
use molecule_store::{ActivityRow, NewWorkspace, Workspace};
use serde_json::{Value, json};

pub use backend::{FakeBackend, provision_request};
pub use wait::{Events, WITHIN, eventually, next_event, next_event_where, poll};

/// The admin token of strict-mode test servers.
pub const ADMIN: &str = "test-admin-token";

/// The address agents registered by [`TestServer::online_workspace`] publish.
pub const AGENT_URL: &str = "http://agent.test:8000";

/// A server on 127.0.0.1 with its state and database.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub backend: Option<Arc<FakeBackend>>,
    pub http: reqwest::Client,
    /// Dev mode: no credential is needed (and the operator presents none).
    pub dev: bool,
    _db: TestStore,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// The test database behind this server (for raw SQL a test needs).
    pub fn db(&self) -> &TestStore {
        &self._db
    }
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

impl Options {
    /// Strict mode (the admin token is [`ADMIN`]) with a [`FakeBackend`].
    pub const STRICT: Options = Options {
        backend: true,
        dev: false,
    };
    /// Dev mode (no credentials) with a [`FakeBackend`].
    pub const DEV: Options = Options {
        backend: true,
        dev: true,
    };
}

/// Serves `app` on `listener` with the server's own loop until the task is aborted.
pub fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    settings: ServerSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(http_server::serve(
        listener,
        app,
        settings,
        std::future::pending(),
        std::time::Duration::ZERO,
    ))
}

impl TestServer {
    /// A strict-mode server with a [`FakeBackend`].
    pub async fn strict(db: TestStore) -> TestServer {
        Self::start(db, Options::STRICT).await
    }

    /// A dev-mode server with a [`FakeBackend`].
    pub async fn dev(db: TestStore) -> TestServer {
        Self::start(db, Options::DEV).await
    }

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
        let state = AppState::with_backend(
            keyed(&db),
            security,
            backend,
            "http://platform.test:8080".into(),
        );
        let state = configure(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(db, state, listener, dev)
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
        let state = AppState::with_backend(
            keyed(&db),
            Security::strict(ADMIN.into(), true),
            Some(backend),
            platform_url,
        );
        Self::serve(db, configure(state), listener, false)
    }

    fn serve(
        db: TestStore,
        state: AppState,
        listener: tokio::net::TcpListener,
        dev: bool,
    ) -> TestServer {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = serve_router(listener, router(state.clone()), ServerSettings::default());
        TestServer {
            base,
            state,
            backend: None,
            http: reqwest::Client::new(),
            dev,
            _db: db,
            task,
        }
    }

    /// A second replica of this PostgreSQL server: the same security mode, no backend, its
    /// own store (pools, registry cache, cache listener, group-commit writer) with
    /// `settings` on the same database; answers once both caches listen.
    pub async fn replica(&self, settings: molecule_store::StoreSettings) -> TestServer {
        let db = self._db.replica(settings).await;
        let replica = Self::start_with_backend(db, self.dev, None, |s| s).await;
        eventually("both replicas' caches listen", || async {
            self.state.store.cache_trusted() && replica.state.store.cache_trusted()
        })
        .await;
        replica
    }

    pub fn backend(&self) -> &FakeBackend {
        self.backend.as_deref().expect("a server with a backend")
    }

    // ---- HTTP ----
    //
    // The request is built at once: the future borrows nothing (`use<>`), so it may be kept
    // in a variable while the path it was given is a temporary.

    /// Sends a request; `token` is the bearer (if any); answers status and JSON (or Null).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> impl Future<Output = (u16, Value)> + use<> {
        let mut req = self.request(method, path, None, token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req)
    }

    /// Sends a raw body as JSON.
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> impl Future<Output = (u16, Value)> + use<> {
        let req = self
            .request(method, path, None, token)
            .header("content-type", "application/json")
            .body(body.to_owned());
        reply(req)
    }

    /// Sends a request with the admin token.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> impl Future<Output = (u16, Value)> + use<> {
        self.call(method, path, Some(ADMIN), body)
    }

    /// `GET path` as workspace `caller` (its `X-Workspace-ID`) with `token` as the bearer.
    pub fn get_as(
        &self,
        path: &str,
        caller: Option<&str>,
        token: Option<&str>,
    ) -> impl Future<Output = (u16, Value)> + use<> {
        reply(self.request("GET", path, caller, token))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        caller: Option<&str>,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = caller {
            req = req.header("X-Workspace-ID", c);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// The credential the operator presents: the admin token, none in dev mode.
    pub fn operator(&self) -> Option<&'static str> {
        (!self.dev).then_some(ADMIN)
    }

    // ---- workspaces ----

    /// Creates a workspace as admin and returns its id.
    pub async fn create(&self, body: Value) -> WorkspaceId {
        id_of(&assert_status(
            self.admin("POST", "/workspaces", Some(body)).await,
            201,
        ))
    }

    /// Creates a workspace without credentials (dev mode) and returns its id.
    pub async fn create_dev(&self, body: Value) -> WorkspaceId {
        id_of(&assert_status(
            self.call("POST", "/workspaces", None, Some(body)).await,
            201,
        ))
    }

    /// Creates a workspace as the operator; returns the whole answer (a 201).
    pub async fn create_reply(&self, body: Value) -> Value {
        let created = self.call("POST", "/workspaces", self.operator(), Some(body));
        assert_status(created.await, 201)
    }

    /// Creates an external workspace (`runtime: external`, under `parent`) as the operator;
    /// returns its id and the token of its connection.
    pub async fn external(&self, name: &str, parent: Option<WorkspaceId>) -> (WorkspaceId, String) {
        let mut body = json!({ "name": name, "runtime": "external" });
        if let Some(p) = parent {
            body["parent_id"] = json!(p);
        }
        connection_of(&self.create_reply(body).await)
    }

    /// An external workspace (see [`Self::external`]) whose agent registered in push mode at
    /// `url`, its card named `name`; with its token.
    pub async fn registered(
        &self,
        name: &str,
        url: &str,
        parent: Option<WorkspaceId>,
    ) -> (WorkspaceId, String) {
        let (id, token) = self.external(name, parent).await;
        let body =
            json!({ "id": id, "url": url, "agent_card": {"name": name}, "delivery_mode": "push" });
        assert_status(self.register(Some(&token), body).await, 200);
        (id, token)
    }

    /// Creates a workspace, waits for its provision and registers its agent at [`AGENT_URL`];
    /// returns its id and token.
    pub async fn online_workspace(&self, name: &str) -> (WorkspaceId, String) {
        let id = self.create(json!({"name": name})).await;
        let token = self.backend().token_of(id).await;
        let body = json!({"id": id, "url": AGENT_URL, "agent_card": {"name": name}});
        assert_status(self.register(Some(&token), body).await, 200);
        (id, token)
    }

    /// A workspace created through the API (under `parent`) and the token its start delivered.
    pub async fn provisioned(
        &self,
        name: &str,
        parent: Option<WorkspaceId>,
    ) -> (WorkspaceId, String) {
        let id = self
            .create(json!({"name": name, "parent_id": parent}))
            .await;
        let token = self.backend().token_of(id).await;
        (id, token)
    }

    /// A workspace written straight to the store (no provisioning) and a live token of it.
    pub async fn stored_workspace(&self, name: &str) -> (WorkspaceId, String) {
        let store = &self.state.store;
        let id = store
            .workspaces()
            .create(NewWorkspace::named(name))
            .await
            .unwrap()
            .id;
        let token = store.tokens().issue(id).await.unwrap().token;
        (id, token.expose().to_owned())
    }

    /// `POST /registry/register` with `token` as the bearer.
    pub fn register(
        &self,
        token: Option<&str>,
        body: Value,
    ) -> impl Future<Output = (u16, Value)> + use<> {
        self.call("POST", "/registry/register", token, Some(body))
    }

    /// `POST /registry/heartbeat` with `token` as the bearer.
    pub fn heartbeat(
        &self,
        token: Option<&str>,
        body: Value,
    ) -> impl Future<Output = (u16, Value)> + use<> {
        self.call("POST", "/registry/heartbeat", token, Some(body))
    }

    /// A heartbeat of `id` reporting `active_tasks`, which must be accepted.
    pub async fn report_tasks(&self, id: WorkspaceId, token: &str, active_tasks: i64) {
        let beat = json!({ "workspace_id": id, "active_tasks": active_tasks });
        assert_status(self.heartbeat(Some(token), beat).await, 200);
    }

    // ---- the store ----

    /// The stored row of a workspace (which must exist).
    pub async fn row(&self, id: WorkspaceId) -> Workspace {
        self.state
            .store
            .workspaces()
            .get(id)
            .await
            .unwrap()
            .unwrap()
    }

    /// The stored status of a workspace.
    pub async fn status_of(&self, id: WorkspaceId) -> WorkspaceStatus {
        self.row(id).await.status
    }

    /// Moves a workspace to `to` in the store (from any status the table allows).
    pub async fn set_status(&self, id: WorkspaceId, to: WorkspaceStatus) {
        let workspaces = self.state.store.workspaces();
        workspaces.transition(id, to, None).await.unwrap();
    }

    /// The activity rows of a workspace, newest first.
    pub async fn activity_of(&self, id: WorkspaceId) -> Vec<ActivityRow> {
        let activity = self.state.store.activity();
        activity.list(id, &Default::default()).await.unwrap()
    }

    /// The types of the newest ten recorded events of a workspace, newest first.
    pub async fn event_types_of(&self, id: WorkspaceId) -> Vec<String> {
        let recent = self.state.store.events().recent(Some(id), 10).await;
        recent.unwrap().into_iter().map(|e| e.event_type).collect()
    }

    /// Polls the stored workspace until `done` holds for it (bounded by [`WITHIN`]; the
    /// failure shows the row and the workspace's console).
    pub async fn wait_row(
        &self,
        id: WorkspaceId,
        what: &str,
        done: impl Fn(&Workspace) -> bool,
    ) -> Workspace {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let ws = self.row(id).await;
            if done(&ws) {
                return ws;
            }
            if tokio::time::Instant::now() > deadline {
                let path = format!("/workspaces/{id}/console");
                let (_, console) = self.admin("GET", &path, None).await;
                panic!("{what}: not reached in time: {ws:?}\nconsole: {console}");
            }
            tokio::time::sleep(wait::POLL).await;
        }
    }

    /// A subscription to the server's events from now on.
    pub fn events(&self) -> Events {
        self.state.events.subscribe()
    }
}

/// The store of a test server: its secret values are encrypted, as in a real one.
fn keyed(db: &TestStore) -> molecule_store::Store {
    (**db)
        .clone()
        .with_secret_key(Some(molecule_store::SecretKey::generate().unwrap()))
}

/// Status and JSON body (or Null) of a sent request; a stream (which never ends) answers its
/// status only.
async fn reply(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
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

/// The `id` of a created workspace's answer.
pub fn id_of(created: &Value) -> WorkspaceId {
    created["id"].as_str().unwrap().parse().unwrap()
}

/// The id and connection token of an external workspace's creation answer.
pub fn connection_of(created: &Value) -> (WorkspaceId, String) {
    let token = created["connection"]["auth_token"].as_str().unwrap();
    (id_of(created), token.to_owned())
}

// ---- assertions ----

/// Asserts the status of a reply (showing its body when it differs); returns the body.
#[track_caller]
pub fn assert_status((status, body): (u16, Value), expected: u16) -> Value {
    assert_eq!(status, expected, "{body}");
    body
}

/// Asserts a reply is `status` with `message` as its `error` (other fields may follow).
#[track_caller]
pub fn assert_error((status, body): (u16, Value), expected: u16, message: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (expected, Some(message)),
        "{body}"
    );
}

/// Asserts a reply is `status` with exactly `body`.
#[track_caller]
pub fn assert_json(reply: (u16, Value), status: u16, body: Value) {
    assert_eq!(reply, (status, body));
}
