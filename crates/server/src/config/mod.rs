//! Configuration: every setting is an environment variable and an equal command-line flag.
//! Long-ish by nature: one field per setting; its tests live in `tests.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The browser origins allowed when `CORS_ORIGINS` is not set.
pub const DEFAULT_CORS_ORIGINS: &str = "http://localhost:3000,http://localhost:3001";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The server's configuration. A `.env` file in the working directory (or a parent) is read
/// first; variables already in the environment win over it, and flags win over both.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "molecule-server",
    version,
    about = "The molecule-rs control plane"
)]
pub struct Config {
    /// What to do; without one, serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Database: postgres://… or sqlite:… (unset: the SQLite file molecule.db in the data
    /// directory).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for the embedded database and other state; created if missing.
    #[arg(long, env = "MOLECULE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "MOLECULE_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,

    /// Port to listen on (0: any free port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Log format.
    #[arg(long, env = "MOLECULE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Admin bearer token. Unset outside dev mode: generated once and kept in
    /// `<data dir>/admin_token` (mode 0600).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Key encrypting secret values at rest (AES-256-GCM): standard base64 of 32 bytes, or 32
    /// raw bytes. Required when MOLECULE_ENV is prod/production; elsewhere, unset means a key
    /// generated once into `<data dir>/secrets_key` (mode 0600). A malformed key always
    /// refuses to start.
    #[arg(long, env = "SECRETS_ENCRYPTION_KEY", hide_env_values = true)]
    pub secrets_encryption_key: Option<String>,

    /// `development`/`dev` (with no ADMIN_TOKEN) turns on the permissive dev mode;
    /// `production` turns off the test-token route.
    #[arg(long = "env", env = "MOLECULE_ENV")]
    pub molecule_env: Option<String>,

    /// `1` enables `GET /admin/workspaces/:id/test-token` outside dev mode.
    #[arg(long, env = "MOLECULE_ENABLE_TEST_TOKENS")]
    pub enable_test_tokens: Option<String>,

    /// Global requests per minute per client IP (default 600; non-positive or invalid: 600).
    #[arg(long = "rate-limit", env = "RATE_LIMIT")]
    pub rate_limit_text: Option<String>,

    /// Seconds a client may take to send a request's headers; also how long an idle keep-alive
    /// connection stays open. At least 1.
    #[arg(
        long = "header-read-timeout-seconds",
        env = "MOLECULE_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub header_read_timeout_seconds: u64,

    /// Seconds a client may take to send a request's body, counted from its headers; a late
    /// body gets 408. At least 1.
    #[arg(
        long = "body-read-timeout-seconds",
        env = "MOLECULE_BODY_READ_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub body_read_timeout_seconds: u64,

    /// Connections open at once (WebSockets included); further ones wait to be accepted.
    /// At least 1.
    #[arg(
        long = "max-connections",
        env = "MOLECULE_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// Allowed browser origins, comma-separated.
    #[arg(long, env = "CORS_ORIGINS", default_value = DEFAULT_CORS_ORIGINS)]
    pub cors_origins: String,

    /// URL injected into workspaces to reach the platform (default
    /// `http://host.docker.internal:<port>`).
    #[arg(long, env = "PLATFORM_URL")]
    pub platform_url: Option<String>,

    /// The platform's public URL, shown to external agents in their `connection` block;
    /// unset: the request's `X-Forwarded-Proto`/`X-Forwarded-Host`, else `Host`.
    #[arg(long, env = "EXTERNAL_PLATFORM_URL")]
    pub external_platform_url: Option<String>,

    /// Where workspaces run: `docker`, `ec2` or `none`; unset: Docker when its daemon answers,
    /// else none (only external workspaces).
    #[arg(long, env = "MOLECULE_BACKEND")]
    pub backend: Option<String>,

    /// Directory of workspace templates (each a folder with a `config.yaml`); default: the
    /// first of `workspace-configs-templates`, `../…`, `../../…` that holds one.
    #[arg(long, env = "CONFIGS_DIR")]
    pub configs_dir: Option<PathBuf>,

    /// Directory of org templates (each a folder with an `org.yaml`); default: the first of
    /// `org-templates`, `../org-templates`, `<CONFIGS_DIR>/../org-templates` that exists.
    #[arg(long, env = "ORG_TEMPLATES_DIR")]
    pub org_templates_dir: Option<PathBuf>,

    /// The plugin registry (each subdirectory a plugin, the `local://` source); default:
    /// `<CONFIGS_DIR>/../plugins`, `../plugins` or `plugins`, the first holding a plugin.
    #[arg(long, env = "PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// `true` accepts `github://owner/repo` plugin sources without a `#ref` pin.
    #[arg(long, env = "PLUGIN_ALLOW_UNPINNED")]
    pub plugin_allow_unpinned: Option<String>,

    /// Largest plugin install request body in bytes (positive; default 65536).
    #[arg(long, env = "PLUGIN_INSTALL_BODY_MAX_BYTES")]
    pub plugin_install_body_max_bytes: Option<String>,

    /// How long one plugin install may take, e.g. `5m` (default 5m).
    #[arg(long, env = "PLUGIN_INSTALL_FETCH_TIMEOUT")]
    pub plugin_install_fetch_timeout: Option<String>,

    /// Largest staged plugin in bytes (positive; default 104857600).
    #[arg(long, env = "PLUGIN_INSTALL_MAX_DIR_BYTES")]
    pub plugin_install_max_dir_bytes: Option<String>,

    /// Langfuse base URL for `GET /workspaces/:id/traces` (with the two keys below).
    #[arg(long, env = "LANGFUSE_HOST")]
    pub langfuse_host: Option<String>,

    /// Langfuse public key.
    #[arg(long, env = "LANGFUSE_PUBLIC_KEY")]
    pub langfuse_public_key: Option<String>,

    /// Langfuse secret key.
    #[arg(long, env = "LANGFUSE_SECRET_KEY", hide_env_values = true)]
    pub langfuse_secret_key: Option<String>,

    /// The audit ledger's HMAC salt (shared with the agent runtime): `GET …/audit` verifies
    /// the chain with it; unset: `chain_valid` is null.
    #[arg(long, env = "AUDIT_LEDGER_SALT", hide_env_values = true)]
    pub audit_ledger_salt: Option<String>,

    /// Seconds a workspace may stay in `provisioning` before it is marked failed.
    #[arg(long, env = "PROVISION_TIMEOUT_SECONDS", default_value_t = 600)]
    pub provision_timeout_seconds: u64,

    /// Seconds between the scheduler's looks for due cron runs.
    #[arg(long, env = "MOLECULE_SCHEDULER_POLL_SECONDS", default_value_t = 30)]
    pub scheduler_poll_seconds: u64,

    /// Activity rows accepted and not yet committed, at most: what a crash (`kill -9`) can
    /// lose; a full buffer makes writers wait.
    #[arg(long, env = "MOLECULE_ACTIVITY_BUFFER", default_value_t = 4096)]
    pub activity_buffer: usize,

    /// Activity rows per multi-row insert, at most.
    #[arg(long, env = "MOLECULE_ACTIVITY_BATCH", default_value_t = 256)]
    pub activity_batch: usize,

    /// Milliseconds a group commit waits for more rows after its first.
    #[arg(long, env = "MOLECULE_WRITE_LINGER_MS", default_value_t = 2)]
    pub write_linger_ms: u64,

    /// Seconds a registry cache entry (workspace, token, empty queue) is trusted without being
    /// read again; the bound on staleness when a replica's notifications are lost.
    #[arg(long, env = "MOLECULE_CACHE_TTL_SECONDS", default_value_t = 5)]
    pub cache_ttl_seconds: u64,

    /// Seconds without a heartbeat after which a workspace is offline (external: awaiting_agent).
    #[arg(long, env = "MOLECULE_LIVENESS_TTL_SECONDS", default_value_t = 180)]
    pub liveness_ttl_seconds: u64,

    /// Seconds without a heartbeat after which an external workspace is awaiting its agent.
    #[arg(long, env = "REMOTE_LIVENESS_STALE_AFTER", default_value_t = 90)]
    pub remote_liveness_stale_after: u64,

    /// Seconds an A2A delivery may stay silent (every event of the target resets the timer);
    /// a positive integer, else 300.
    #[arg(long = "a2a-idle-timeout", env = "A2A_IDLE_TIMEOUT_SECONDS")]
    pub a2a_idle_timeout_text: Option<String>,

    /// `saas` or `self-hosted`: in SaaS, agents on private networks (RFC 1918) are reachable.
    /// Unset: SaaS when `MOLECULE_ORG_ID` is set.
    #[arg(long, env = "MOLECULE_DEPLOY_MODE")]
    pub deploy_mode: Option<String>,

    /// The tenant's org id (SaaS); also turns the tenant guard on (requests must carry it in
    /// `X-Molecule-Org-Id`, except `/health`, `/buildinfo`, `/metrics`, register, heartbeat).
    #[arg(long, env = "MOLECULE_ORG_ID")]
    pub org_id: Option<String>,

    /// The canvas (web UI) to proxy every request no route matches to, e.g.
    /// `http://localhost:3000`; unset: such requests get the plain 404.
    #[arg(long, env = "CANVAS_PROXY_URL")]
    pub canvas_proxy_url: Option<String>,

    /// The secret GitHub signs webhook deliveries with (`X-Hub-Signature-256`); unset:
    /// `POST /webhooks/github` answers 503.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<String>,

    /// The GitHub App id (the JWT issuer) for installation tokens; with the two settings
    /// below, `GET …/github-installation-token` works, else it answers 404.
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<String>,

    /// The GitHub App installation id (digits).
    #[arg(long, env = "GITHUB_APP_INSTALLATION_ID")]
    pub github_app_installation_id: Option<String>,

    /// The GitHub App's PEM private key file (read at each token refresh).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_FILE")]
    pub github_app_private_key_file: Option<PathBuf>,

    /// Base URL of the GitHub API (GitHub Enterprise, or a stand-in in tests).
    #[arg(long, env = "GITHUB_API_URL", default_value = crate::github_app::DEFAULT_API_URL)]
    pub github_api_url: String,

    /// Base URL of the Telegram Bot API.
    #[arg(
        long,
        env = "MOLECULE_TELEGRAM_API_URL",
        default_value = "https://api.telegram.org"
    )]
    pub telegram_api_url: String,

    /// Base URL of the Slack Web API.
    #[arg(
        long,
        env = "MOLECULE_SLACK_API_URL",
        default_value = "https://slack.com/api"
    )]
    pub slack_api_url: String,

    /// Base URL Slack incoming-webhook URLs must start with.
    #[arg(
        long,
        env = "MOLECULE_SLACK_HOOKS_URL",
        default_value = "https://hooks.slack.com"
    )]
    pub slack_hooks_url: String,

    /// Base URL of Discord (webhook URLs start with `<it>/api/webhooks/`).
    #[arg(
        long,
        env = "MOLECULE_DISCORD_API_URL",
        default_value = "https://discord.com"
    )]
    pub discord_api_url: String,

    /// Comma-separated Lark / Feishu base URLs (bot webhook URLs start with
    /// `<one>/open-apis/bot/v2/hook/`).
    #[arg(
        long,
        env = "MOLECULE_LARK_API_URLS",
        default_value = "https://open.feishu.cn,https://open.larksuite.com"
    )]
    pub lark_api_urls: String,

    /// Whether this server runs inside a Docker container (`1/0/t/f/true/false`, any case);
    /// unset: whether `/.dockerenv` exists. With the Docker backend, agents are then reached
    /// by their container name on the shared network (a2a.md §1.2.4).
    #[arg(long, env = "MOLECULE_IN_DOCKER")]
    pub in_docker: Option<String>,
}

/// A one-off command instead of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// `GET /health` of the server listening per `MOLECULE_HOST`/`PORT` on this machine (an
    /// unspecified host is asked on loopback): exit 0 when it answers 200, 1 otherwise. For a
    /// container `HEALTHCHECK` in an image without a shell or curl.
    Healthcheck,
}

impl Config {
    /// Whether this process runs in a Docker container: `MOLECULE_IN_DOCKER` when it parses
    /// as a bool, else the presence of `/.dockerenv`.
    pub fn runs_in_docker(&self) -> bool {
        let parsed =
            self.in_docker
                .as_deref()
                .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "t" | "true" => Some(true),
                    "0" | "f" | "false" => Some(false),
                    _ => None,
                });
        parsed.unwrap_or_else(|| std::path::Path::new("/.dockerenv").exists())
    }

    /// Dev mode: `MOLECULE_ENV` is `development` or `dev` (any case) and no `ADMIN_TOKEN`.
    pub fn dev_mode(&self) -> bool {
        let env = self
            .molecule_env
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.admin_token
            .as_deref()
            .is_none_or(|t| t.trim().is_empty())
            && (env == "development" || env == "dev")
    }

    /// Production mode: `MOLECULE_ENV` is `prod` or `production` (any case, trimmed). The
    /// secrets encryption key is then required.
    pub fn production(&self) -> bool {
        let env = self
            .molecule_env
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        env == "prod" || env == "production"
    }

    /// The A2A idle window: `A2A_IDLE_TIMEOUT_SECONDS` if a positive integer, else 300 s
    /// (with a warning for a value that is set but unusable).
    pub fn a2a_idle_timeout(&self) -> std::time::Duration {
        const DEFAULT: u64 = 300;
        let secs = match self.a2a_idle_timeout_text.as_deref().map(str::trim) {
            None | Some("") => DEFAULT,
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    tracing::warn!(
                        value = text,
                        "A2A_IDLE_TIMEOUT_SECONDS is not a positive integer; using 300"
                    );
                    DEFAULT
                }
            },
        };
        std::time::Duration::from_secs(secs)
    }

    /// Langfuse, when its host and both keys are set.
    pub fn langfuse(&self) -> Option<crate::observability::Langfuse> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        Some(crate::observability::Langfuse {
            host: set(&self.langfuse_host)?,
            public_key: set(&self.langfuse_public_key)?,
            secret_key: set(&self.langfuse_secret_key)?,
        })
    }

    /// The scheduler's settings: the reference's constants with the configured poll interval.
    pub fn scheduler_settings(&self) -> crate::scheduler::Settings {
        crate::scheduler::Settings {
            poll_every: std::time::Duration::from_secs(self.scheduler_poll_seconds.max(1)),
            ..crate::scheduler::Settings::default()
        }
    }

    /// The chat platforms' base URLs (trailing slashes dropped).
    pub fn channel_endpoints(&self) -> crate::channels::Endpoints {
        let base = |s: &str| s.trim().trim_end_matches('/').to_owned();
        crate::channels::Endpoints {
            telegram: base(&self.telegram_api_url),
            slack_api: base(&self.slack_api_url),
            slack_hooks: base(&self.slack_hooks_url),
            discord: base(&self.discord_api_url),
            lark: self
                .lark_api_urls
                .split(',')
                .map(base)
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The A2A settings: the idle window and the address policy of this deployment.
    pub fn a2a_settings(&self) -> molecule_a2a::Settings {
        molecule_a2a::Settings {
            idle_timeout: self.a2a_idle_timeout(),
            policy: molecule_a2a::ssrf::UrlPolicy {
                dev_mode: self.dev_mode(),
                saas: molecule_a2a::ssrf::saas_mode(
                    self.deploy_mode.as_deref(),
                    self.org_id.as_deref(),
                ),
            },
            ..molecule_a2a::Settings::default()
        }
    }

    /// The store's cache and group-commit settings (`MOLECULE_ACTIVITY_BUFFER`,
    /// `MOLECULE_ACTIVITY_BATCH`, `MOLECULE_WRITE_LINGER_MS`, `MOLECULE_CACHE_TTL_SECONDS`).
    pub fn store_settings(&self) -> molecule_store::StoreSettings {
        molecule_store::StoreSettings {
            write_behind: molecule_store::WriteBehindSettings {
                buffer: self.activity_buffer.max(1),
                batch: self.activity_batch.max(1),
                linger: std::time::Duration::from_millis(self.write_linger_ms),
            },
            cache_ttl: std::time::Duration::from_secs(self.cache_ttl_seconds),
        }
    }

    /// The canvas reverse proxy of `CANVAS_PROXY_URL` (blank: none); a URL that is not
    /// http(s) with a host refuses to start.
    pub fn canvas_proxy(
        &self,
    ) -> Result<Option<crate::canvas_proxy::CanvasProxy>, crate::canvas_proxy::CanvasProxyError>
    {
        match self.canvas_proxy_url.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(url) => crate::canvas_proxy::CanvasProxy::new(url).map(Some),
        }
    }

    /// The settings of the HTTP pipeline (`CORS_ORIGINS`, `RATE_LIMIT`,
    /// `MOLECULE_BODY_READ_TIMEOUT_SECONDS`, `MOLECULE_ORG_ID`, `EXTERNAL_PLATFORM_URL`; the rest
    /// at their defaults).
    pub fn http_settings(&self) -> crate::middleware::HttpSettings {
        crate::middleware::HttpSettings {
            cors_origins: crate::middleware::cors::parse_origins(&self.cors_origins),
            rate_limit: self.rate_limit(),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_seconds),
            tenant_org_id: self.org_id.clone(),
            external_platform_url: self
                .external_platform_url
                .as_deref()
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            ..crate::middleware::HttpSettings::default()
        }
    }

    /// Whether the test-token route exists: dev mode, or `MOLECULE_ENABLE_TEST_TOKENS=1`.
    pub fn test_tokens_enabled(&self) -> bool {
        self.dev_mode() || self.enable_test_tokens.as_deref() == Some("1")
    }

    /// The global requests per minute per client IP: `RATE_LIMIT` if a positive integer, else 600.
    pub fn rate_limit(&self) -> u32 {
        crate::middleware::rate_limit::parse_rate_limit(self.rate_limit_text.as_deref())
    }

    /// The origins a WebSocket upgrade must come from: `None` (any origin, none needed) unless
    /// `CORS_ORIGINS` is set to something other than its default, as the reference checks the
    /// WebSocket `Origin` only when the variable is set. Entries are trimmed and lower-cased.
    pub fn ws_origins(&self) -> Option<Vec<String>> {
        let raw = self.cors_origins.trim();
        if raw.is_empty() || raw == DEFAULT_CORS_ORIGINS {
            return None;
        }
        Some(
            raw.split(',')
                .map(|o| o.trim().to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        )
    }

    /// The template directory: `CONFIGS_DIR`, else the first candidate that holds a template.
    pub fn configs_dir(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.configs_dir {
            return Some(dir.clone());
        }
        [
            "workspace-configs-templates",
            "../workspace-configs-templates",
            "../../workspace-configs-templates",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().join("config.yaml").is_file())
            })
        })
    }

    /// The GitHub App settings when the id, a numeric installation id and the key file are
    /// all set; a partial or malformed set is logged and treated as none.
    pub fn github_app(&self) -> Option<crate::github_app::AppSettings> {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let app_id = set(&self.github_app_id);
        let installation = set(&self.github_app_installation_id);
        let key = self
            .github_app_private_key_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        match (app_id, installation, key) {
            (None, None, None) => None,
            (Some(app_id), Some(installation), Some(private_key_file)) => {
                let Ok(installation_id) = installation.parse::<u64>() else {
                    tracing::warn!("GITHUB_APP_INSTALLATION_ID is not a number; no GitHub App");
                    return None;
                };
                Some(crate::github_app::AppSettings {
                    app_id: app_id.to_owned(),
                    installation_id,
                    private_key_file,
                    api_url: self.github_api_url.trim().trim_end_matches('/').to_owned(),
                })
            }
            _ => {
                tracing::warn!(
                    "GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID and GITHUB_APP_PRIVATE_KEY_FILE \
                     must all be set; no GitHub App"
                );
                None
            }
        }
    }

    /// Where org templates and plugins come from, and the plugin install limits.
    pub fn catalog(&self) -> crate::catalog::Catalog {
        let configs = self.configs_dir();
        let limits = crate::catalog::PluginLimits::from_settings(
            self.plugin_install_body_max_bytes.as_deref(),
            self.plugin_install_fetch_timeout.as_deref(),
            self.plugin_install_max_dir_bytes.as_deref(),
        );
        crate::catalog::Catalog {
            org_templates_dir: self
                .org_templates_dir
                .clone()
                .unwrap_or_else(|| crate::catalog::default_org_templates_dir(configs.as_deref())),
            plugins_dir: self
                .plugins_dir
                .clone()
                .unwrap_or_else(|| crate::catalog::default_plugins_dir(configs.as_deref())),
            github_api_url: self.github_api_url.trim().trim_end_matches('/').to_owned(),
            allow_unpinned: self.plugin_allow_unpinned.as_deref().map(str::trim) == Some("true"),
            limits,
        }
    }

    /// The URL workspaces use to reach the platform.
    pub fn platform_url(&self) -> String {
        self.platform_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| format!("http://host.docker.internal:{}", self.port))
    }
}

#[cfg(test)]
mod tests;
