//! The application state every handler reaches: the store, the services and the settings
//! fixed at boot. Built once by [`crate::run`] (or a test), cheap to clone.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use molecule_store::Store;

use crate::a2a_platform::ServerPlatform;
use crate::channels::ChannelManager;
use crate::events::EventBus;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::middleware::HttpSettings;
use crate::middleware::rate_limit::RateLimiter;
use crate::observability::{AuditKey, Langfuse};
use crate::scheduler::Scheduler;
use crate::security::Security;
use crate::supervisor::Supervisor;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The repositories over PostgreSQL or SQLite.
    pub store: Store,
    /// Security settings fixed at boot.
    pub security: Security,
    /// Persists events and fans them out to WebSocket/SSE clients and other replicas.
    pub events: EventBus,
    /// The lifecycle service: the only way to start, stop or restart a workspace.
    pub lifecycle: Lifecycle,
    /// The workspace template directory, if there is one.
    pub configs_dir: Option<Arc<std::path::PathBuf>>,
    /// Org templates, plugin sources and the plugin install limits.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// Settings of the HTTP pipeline.
    pub http: Arc<HttpSettings>,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// The supervisor of the background loops.
    pub supervisor: Supervisor,
    /// The global per-client-IP rate limiter.
    pub rate_limiter: RateLimiter<IpAddr>,
    /// The org-token mint limiter: [`ORG_MINT_LIMIT`] per hour and client IP.
    pub org_mint_limiter: RateLimiter<IpAddr>,
    /// The MCP limiter (RL-MCP): [`MCP_LIMIT`] per minute and bearer (its hex SHA-256).
    pub mcp_limiter: RateLimiter<String>,
    /// Whether the MCP bridge offers `send_message_to_user`; `None` (the default) reads
    /// `MOLECULE_MCP_ALLOW_SEND_MESSAGE == "true"` on every request.
    pub mcp_allow_send_message: Option<bool>,
    /// The A2A proxy, queue and delegations.
    pub a2a: molecule_a2a::Proxy,
    /// Langfuse, when configured (`GET …/traces`).
    pub langfuse: Option<Arc<Langfuse>>,
    /// The audit ledger key, when `AUDIT_LEDGER_SALT` is set.
    pub audit_key: Option<AuditKey>,
    /// A client for operator-configured upstreams (Langfuse).
    pub http_client: reqwest::Client,
    /// The cron scheduler (its loop is started by `background::spawn_all`).
    pub scheduler: Scheduler,
    /// The chat channel manager (its loop is started by `background::spawn_all`).
    pub channels: ChannelManager,
    /// `GITHUB_WEBHOOK_SECRET`: `POST /webhooks/github` answers 503 without it.
    pub github_webhook_secret: Option<Arc<String>>,
    /// GitHub delivery ids seen recently (a redelivery is not handled twice).
    pub github_deliveries: Arc<parking_lot::Mutex<std::collections::VecDeque<String>>>,
    /// The GitHub App installation-token source, when configured.
    pub github_app: Option<Arc<crate::github_app::GithubApp>>,
    /// The canvas reverse proxy (`CANVAS_PROXY_URL`) for requests no route matches.
    pub canvas_proxy: Option<Arc<crate::canvas_proxy::CanvasProxy>>,
}

/// Org tokens one client IP may mint per [`ORG_MINT_WINDOW`].
pub const ORG_MINT_LIMIT: u32 = 10;
/// The org-token mint limiter's window.
pub const ORG_MINT_WINDOW: Duration = Duration::from_secs(60 * 60);
/// MCP requests one bearer may make per [`MCP_WINDOW`].
pub const MCP_LIMIT: u32 = 120;
/// The MCP limiter's window.
pub const MCP_WINDOW: Duration = Duration::from_secs(60);

impl AppState {
    /// State over an opened store, with no backend and the default [`HttpSettings`].
    pub fn new(store: Store, security: Security) -> Self {
        Self::with_backend(store, security, None, String::from("http://127.0.0.1:8080"))
    }

    /// With the canvas reverse proxy for unmatched routes (or none).
    pub fn with_canvas_proxy(
        mut self,
        proxy: Option<Arc<crate::canvas_proxy::CanvasProxy>>,
    ) -> Self {
        self.canvas_proxy = proxy;
        self
    }

    /// State with a provisioning backend (or none) and the URL workspaces reach us at.
    pub fn with_backend(
        store: Store,
        security: Security,
        backend: Option<Arc<dyn molecule_provisioner_api::Provisioner>>,
        platform_url: String,
    ) -> Self {
        let events = EventBus::new(store.clone());
        let lifecycle = Lifecycle::new(store.clone(), events.clone(), backend, platform_url);
        let http = HttpSettings::default();
        let platform = ServerPlatform {
            events: events.clone(),
            lifecycle: lifecycle.clone(),
        };
        let a2a_settings = molecule_a2a::Settings {
            policy: molecule_a2a::ssrf::UrlPolicy {
                dev_mode: security.dev_mode(),
                saas: false,
            },
            ..molecule_a2a::Settings::default()
        };
        let a2a = molecule_a2a::Proxy::new(store.clone(), Arc::new(platform), a2a_settings);
        let scheduler = Scheduler::new(
            store.clone(),
            a2a.clone(),
            events.clone(),
            crate::scheduler::Settings::default(),
            Arc::new(crate::scheduler::SystemClock),
        );
        let channels = ChannelManager::new(
            store.clone(),
            a2a.clone(),
            events.clone(),
            crate::channels::Ctx::new(crate::channels::Endpoints::default()),
            crate::channels::Settings::default(),
        );
        Self {
            scheduler,
            channels,
            github_webhook_secret: None,
            github_deliveries: Arc::default(),
            github_app: None,
            a2a,
            store,
            security,
            events,
            lifecycle,
            configs_dir: None,
            catalog: Arc::default(),
            rate_limiter: RateLimiter::new(http.rate_limit, http.rate_window),
            org_mint_limiter: RateLimiter::new(ORG_MINT_LIMIT, ORG_MINT_WINDOW),
            mcp_limiter: RateLimiter::new(MCP_LIMIT, MCP_WINDOW),
            mcp_allow_send_message: None,
            http: Arc::new(http),
            metrics: Metrics::new(),
            supervisor: Supervisor::new(),
            langfuse: None,
            audit_key: None,
            http_client: reqwest::Client::new(),
            canvas_proxy: None,
        }
    }

    /// The same state with Langfuse (traces) and the audit ledger salt, when configured.
    pub fn with_observability(
        mut self,
        langfuse: Option<Langfuse>,
        audit_salt: Option<String>,
    ) -> Self {
        self.langfuse = langfuse.map(Arc::new);
        self.audit_key = audit_salt.filter(|s| !s.is_empty()).map(AuditKey::new);
        self
    }

    /// The same state with these HTTP settings (and a fresh global limiter for them).
    pub fn with_http(mut self, http: HttpSettings) -> Self {
        self.rate_limiter = RateLimiter::new(http.rate_limit, http.rate_window);
        self.http = Arc::new(http);
        self
    }

    /// The same state with these A2A settings (the scheduler sends through the new proxy).
    pub fn with_a2a_settings(mut self, settings: molecule_a2a::Settings) -> Self {
        self.a2a = self.a2a.with_settings(settings);
        self.scheduler = self.scheduler.with_proxy(self.a2a.clone());
        self.channels = self.channels.rebuilt(self.a2a.clone(), None, None);
        self
    }

    /// The same state with a system-clock scheduler of these settings.
    pub fn with_scheduler_settings(mut self, settings: crate::scheduler::Settings) -> Self {
        self.scheduler = Scheduler::new(
            self.store.clone(),
            self.a2a.clone(),
            self.events.clone(),
            settings,
            Arc::new(crate::scheduler::SystemClock),
        );
        self
    }

    /// The same state with this scheduler (other settings, or a test clock).
    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// The same state with chat platforms at these base URLs.
    pub fn with_channel_endpoints(mut self, endpoints: crate::channels::Endpoints) -> Self {
        let ctx = crate::channels::Ctx::new(endpoints);
        self.channels = self.channels.rebuilt(self.a2a.clone(), Some(ctx), None);
        self
    }

    /// The same state with this channel manager (other settings or a test context).
    pub fn with_channels(mut self, channels: ChannelManager) -> Self {
        self.channels = channels;
        self
    }

    /// The same state with this GitHub webhook secret (empty: none).
    pub fn with_github_webhook_secret(mut self, secret: Option<String>) -> Self {
        self.github_webhook_secret = secret
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .map(Arc::new);
        self
    }

    /// The same state with this GitHub App (none: the token routes answer 404).
    pub fn with_github_app(mut self, app: Option<crate::github_app::AppSettings>) -> Self {
        self.github_app = app.map(|s| Arc::new(crate::github_app::GithubApp::new(s)));
        self
    }

    /// The same state with this template directory.
    pub fn with_configs_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.configs_dir = dir.map(Arc::new);
        self
    }

    /// The same state with these org template and plugin sources.
    pub fn with_catalog(mut self, catalog: crate::catalog::Catalog) -> Self {
        self.catalog = Arc::new(catalog);
        self
    }

    /// The same state with this supervisor.
    pub fn with_supervisor(mut self, supervisor: Supervisor) -> Self {
        self.supervisor = supervisor;
        self
    }
}
