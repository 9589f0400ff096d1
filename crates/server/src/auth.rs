//! Who is calling: bearer extraction, the admin token, and the route guards of the security
//! model (Decision 2 of the spec).
//!
//! - *Dev mode* (`MOLECULE_ENV=development|dev`, no `ADMIN_TOKEN`): every guard passes.
//! - Otherwise *strict*: admin is the admin token (generated into the data directory when not
//!   configured). A workspace token is never admin. Nothing fails open.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_store::{OrgIdentity, PlainToken};

use crate::app::AppState;
use crate::error::ApiError;

/// The security settings fixed at boot.
#[derive(Clone)]
pub struct Security {
    dev_mode: bool,
    admin_token: Option<String>,
    test_tokens: bool,
    ws_origins: Option<Vec<String>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("dev_mode", &self.dev_mode)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("test_tokens", &self.test_tokens)
            .field("ws_origins", &self.ws_origins)
            .finish()
    }
}

/// The file, in the data directory, that keeps a generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin_token";

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the admin token file {path}: {error}")]
pub struct AdminTokenError {
    path: String,
    error: std::io::Error,
}

impl Security {
    /// Dev mode: every guard passes.
    pub fn dev() -> Self {
        Self {
            dev_mode: true,
            admin_token: None,
            test_tokens: true,
            ws_origins: None,
        }
    }

    /// Strict mode with this admin token.
    pub fn strict(admin_token: String, test_tokens: bool) -> Self {
        Self {
            dev_mode: false,
            admin_token: Some(admin_token),
            test_tokens,
            ws_origins: None,
        }
    }

    /// From the configuration: dev mode, the configured admin token, or one generated once
    /// and kept in `<data_dir>/admin_token` (0600). Logs where it is, never its value.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, AdminTokenError> {
        if config.dev_mode() {
            return Ok(Self::dev().with_ws_origins(config.ws_origins()));
        }
        let configured = config
            .admin_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let token = match configured {
            Some(t) => t.to_owned(),
            None => load_or_generate(&config.data_dir)?,
        };
        Ok(Self::strict(token, config.test_tokens_enabled()).with_ws_origins(config.ws_origins()))
    }

    /// With the origins a WebSocket upgrade must come from (`None`: any origin, or none).
    /// Entries are compared trimmed and case-insensitively.
    pub fn with_ws_origins(mut self, origins: Option<Vec<String>>) -> Self {
        self.ws_origins = origins.map(|list| {
            list.iter()
                .map(|o| o.trim().to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect()
        });
        self
    }

    /// Whether a WebSocket upgrade with this `Origin` header is allowed: always when no list
    /// is configured; otherwise the origin must be in it (a missing one never is).
    pub fn ws_origin_allowed(&self, origin: Option<&str>) -> bool {
        match &self.ws_origins {
            None => true,
            Some(list) => origin.is_some_and(|o| {
                let o = o.trim().to_ascii_lowercase();
                list.contains(&o)
            }),
        }
    }

    /// Whether dev mode is on.
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// Whether the test-token route exists.
    pub fn test_tokens(&self) -> bool {
        self.test_tokens
    }

    /// Whether `bearer` is the admin token (constant-time comparison).
    pub fn is_admin_token(&self, bearer: &str) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), bearer.as_bytes()))
    }
}

fn load_or_generate(data_dir: &Path) -> Result<String, AdminTokenError> {
    let path: PathBuf = data_dir.join(ADMIN_TOKEN_FILE);
    let fail = |error| AdminTokenError {
        path: path.display().to_string(),
        error,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            molecule_store::private::private_file(&path).map_err(fail)?;
            tracing::info!(path = %path.display(), "admin token read from the data directory");
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    molecule_store::private::private_dir(data_dir).map_err(fail)?;
    let token = molecule_store::random_token().map_err(|e| fail(std::io::Error::other(e)))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(fail)?;
    file.write_all(token.as_bytes()).map_err(fail)?;
    tracing::warn!(
        path = %path.display(),
        "ADMIN_TOKEN is not set: generated an admin token and saved it in this file (mode 0600)"
    );
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer of a request: `Authorization` must start with exactly `Bearer `; the rest is
/// trimmed; empty means none.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

/// Who a guard let through; handlers read it from the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Dev mode: no credential was needed.
    Dev,
    /// The admin token.
    Admin,
    /// A token of this workspace.
    Workspace(WorkspaceId),
    /// A live org API token: admin everywhere, never a workspace's own identity.
    Org(OrgIdentity),
}

/// The answer when the credential store cannot be asked (fail closed, no driver text).
fn datastore_unavailable() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "platform datastore unavailable — retry shortly",
    )
    .with("code", "platform_unavailable")
}

/// The org token a bearer is, if it is a live one. A datastore failure is a 503, never a
/// silent "invalid".
async fn org_caller(state: &AppState, bearer: &str) -> Result<Option<Caller>, ApiError> {
    match state
        .store
        .org_tokens()
        .validate(&PlainToken::new(bearer))
        .await
    {
        Ok(found) => Ok(found.map(Caller::Org)),
        Err(e) => {
            tracing::error!(error = %e, "org token lookup failed");
            Err(datastore_unavailable())
        }
    }
}

/// Route guard for admin routes.
pub async fn admin_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = admin_caller(&state, request.headers()).await?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// The admin decision, for handlers that check it themselves: the admin token or a live org
/// token (a workspace token is never admin).
pub async fn admin_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if state.security.dev_mode() {
        return Ok(Caller::Dev);
    }
    match bearer(headers) {
        None => Err(ApiError::unauthorized("admin auth required")),
        Some(b) if state.security.is_admin_token(b) => Ok(Caller::Admin),
        Some(b) => org_caller(state, b)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid admin auth token")),
    }
}

/// Route guard for `/workspaces/:id/...` routes: the admin token, a live org token, or a live
/// token of this workspace. An invalid bearer never falls back to dev mode.
pub async fn workspace_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let id = workspace_id_of(request.uri().path())?;
    let caller = workspace_caller(&state, request.headers(), id).await?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// The workspace-route decision, for handlers that check it themselves.
pub async fn workspace_caller(
    state: &AppState,
    headers: &HeaderMap,
    id: WorkspaceId,
) -> Result<Caller, ApiError> {
    match bearer(headers) {
        Some(b) if state.security.is_admin_token(b) => Ok(Caller::Admin),
        Some(b) => {
            if let Some(org) = org_caller(state, b).await? {
                return Ok(org);
            }
            let valid = state
                .store
                .tokens()
                .validate(id, &PlainToken::new(b))
                .await
                .map_err(|e| ApiError::internal("auth check failed", &e))?;
            if valid {
                Ok(Caller::Workspace(id))
            } else {
                Err(ApiError::unauthorized("invalid workspace auth token"))
            }
        }
        None if state.security.dev_mode() => Ok(Caller::Dev),
        None => Err(ApiError::unauthorized("missing workspace auth token")),
    }
}

/// How an agent's registry call (register, heartbeat, update-card) proved that it speaks for
/// its workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCredential {
    /// A live auth token of the workspace.
    Token,
    /// The workspace's unexpired one-time bootstrap token (register only); the registration
    /// consumes it and answers the auth token.
    Bootstrap(PlainToken),
    /// Dev mode, and the workspace has no live token: nothing was needed.
    Open,
}

/// The credential check of the registry routes (Decision 2: no tokenless registration
/// outside dev mode). The bearer must be a live token of the workspace or, when
/// `bootstrap` is allowed, its one-time bootstrap token. Dev mode keeps "own token if any": a
/// workspace with no live token is let through (its first register issues one).
pub async fn agent_credential(
    state: &AppState,
    headers: &HeaderMap,
    id: WorkspaceId,
    bootstrap: bool,
) -> Result<AgentCredential, ApiError> {
    let tokens = state.store.tokens();
    let failed = |e: molecule_store::StoreError| ApiError::internal("auth check failed", &e);
    if let Some(b) = bearer(headers) {
        let presented = PlainToken::new(b);
        if tokens.validate(id, &presented).await.map_err(failed)? {
            return Ok(AgentCredential::Token);
        }
        if bootstrap
            && tokens
                .bootstrap_valid(id, &presented)
                .await
                .map_err(failed)?
        {
            return Ok(AgentCredential::Bootstrap(presented));
        }
    }
    if state.security.dev_mode() && tokens.count_live(id).await.map_err(failed)? == 0 {
        return Ok(AgentCredential::Open);
    }
    Err(match bearer(headers) {
        None => ApiError::unauthorized("missing workspace auth token"),
        Some(_) => ApiError::unauthorized("invalid workspace auth token"),
    })
}

/// "Own token if any": if the workspace has live tokens, the bearer must be one of them;
/// a workspace with none is let through (its first register issues one).
pub async fn own_token_if_any(
    state: &AppState,
    headers: &HeaderMap,
    id: WorkspaceId,
) -> Result<(), ApiError> {
    let tokens = state.store.tokens();
    let live = tokens
        .count_live(id)
        .await
        .map_err(|e| ApiError::internal("auth check failed", &e))?;
    if live == 0 {
        return Ok(());
    }
    let Some(b) = bearer(headers) else {
        return Err(ApiError::unauthorized("missing workspace auth token"));
    };
    let valid = tokens
        .validate(id, &PlainToken::new(b))
        .await
        .map_err(|e| ApiError::internal("auth check failed", &e))?;
    if valid {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid workspace auth token"))
    }
}

/// Route guard for routes only the workspace itself may call (`GET …/secrets/values`), run
/// after [`workspace_auth`]: "own token if any", so the admin token and org tokens are refused
/// whenever the workspace has a live token.
pub async fn own_workspace_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let id = workspace_id_of(request.uri().path())?;
    own_token_if_any(&state, request.headers(), id).await?;
    Ok(next.run(request).await)
}

/// The `:id` of a `/workspaces/:id/...` path.
fn workspace_id_of(path: &str) -> Result<WorkspaceId, ApiError> {
    path.strip_prefix("/workspaces/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::bad_request("invalid workspace ID"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(auth).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_follows_the_reference_rule() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("Bearer   abc  ")), Some("abc"));
        assert_eq!(bearer(&headers("bearer abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn admin_token_comparison() {
        let s = Security::strict("s3cret".into(), false);
        assert!(s.is_admin_token("s3cret"));
        assert!(!s.is_admin_token("s3cre"));
        assert!(!s.is_admin_token(""));
        assert!(!Security::dev().is_admin_token(""));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn ws_origin_check_only_when_configured() {
        let open = Security::dev();
        assert!(open.ws_origin_allowed(None));
        assert!(open.ws_origin_allowed(Some("https://evil.example")));
        let strict = Security::strict("t".into(), false)
            .with_ws_origins(Some(vec![" HTTPS://Canvas.example ".into()]));
        assert!(strict.ws_origin_allowed(Some("https://canvas.example")));
        assert!(strict.ws_origin_allowed(Some(" https://CANVAS.example")));
        assert!(!strict.ws_origin_allowed(Some("https://evil.example")));
        assert!(!strict.ws_origin_allowed(None));
    }

    #[test]
    fn generated_admin_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path()).unwrap();
        assert_eq!(first.len(), 43);
        let again = load_or_generate(dir.path()).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn workspace_id_comes_from_the_path() {
        let id = WorkspaceId::new();
        assert_eq!(
            workspace_id_of(&format!("/workspaces/{id}/tokens")).unwrap(),
            id
        );
        assert!(workspace_id_of("/workspaces/nope/tokens").is_err());
    }
}
