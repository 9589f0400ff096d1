//! Who is calling: bearer extraction and the route guards of the security model (Decision 2
//! of the spec), over the boot-time [`Security`](crate::security::Security) settings.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_store::{OrgIdentity, PlainToken};

use crate::error::{ApiError, OrInternal};
use crate::state::AppState;

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
                .or_internal("auth check failed")?;
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
        .or_internal("auth check failed")?;
    if live == 0 {
        return Ok(());
    }
    let Some(b) = bearer(headers) else {
        return Err(ApiError::unauthorized("missing workspace auth token"));
    };
    let valid = tokens
        .validate(id, &PlainToken::new(b))
        .await
        .or_internal("auth check failed")?;
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
    fn workspace_id_comes_from_the_path() {
        let id = WorkspaceId::new();
        assert_eq!(
            workspace_id_of(&format!("/workspaces/{id}/tokens")).unwrap(),
            id
        );
        assert!(workspace_id_of("/workspaces/nope/tokens").is_err());
    }
}
