//! Org API tokens (spec: auth-router §4.2): full-admin bearer tokens, minted, listed and
//! revoked by admins. Minting is limited to 10 an hour per client IP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::views::rfc3339;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::state::AppState;

/// Longest token name, in bytes.
const MAX_NAME: usize = 100;

fn listed(t: &molecule_store::OrgToken) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.id));
    m.insert("prefix".into(), json!(t.prefix));
    if let Some(name) = &t.name {
        m.insert("name".into(), json!(name));
    }
    if let Some(org) = t.org_id {
        m.insert("org_id".into(), json!(org));
    }
    if let Some(by) = &t.created_by {
        m.insert("created_by".into(), json!(by));
    }
    m.insert("created_at".into(), json!(rfc3339(t.created_at)));
    if let Some(used) = t.last_used_at {
        m.insert("last_used_at".into(), json!(rfc3339(used)));
    }
    Value::Object(m)
}

/// `GET /org/tokens`: the live tokens, newest first (at most 500).
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Response> {
    let tokens = state
        .store
        .org_tokens()
        .list()
        .await
        .or_internal("failed to list tokens")?;
    let items: Vec<Value> = tokens.iter().map(listed).collect();
    let count = items.len();
    Ok(ok_json(
        StatusCode::OK,
        json!({ "tokens": items, "count": count }),
    ))
}

/// `POST /org/tokens` `{"name"?}`: mints a token; its text is in this answer only.
/// Provenance: an org-token caller's own prefix and org; otherwise `session` (a `Cookie`
/// header) or `admin-token`.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
) -> ApiResult<Response> {
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let decision = state.org_mint_limiter.check(ip);
    if !decision.allowed {
        return Ok(decision.rejection("rate limit exceeded"));
    }
    // A bad or empty body mints an unnamed token.
    let name = serde_json::from_slice::<Map<String, Value>>(&body)
        .ok()
        .and_then(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
        return Err(ApiError::bad_request("name too long (max 100 chars)"));
    }
    let (created_by, org_id) = match extensions.get::<Caller>() {
        Some(Caller::Org(org)) => (format!("org-token:{}", org.prefix), org.org_id),
        _ if headers.contains_key(axum::http::header::COOKIE) => ("session".to_owned(), None),
        _ => ("admin-token".to_owned(), None),
    };
    let issued = state
        .store
        .org_tokens()
        .issue(name.as_deref(), &created_by, org_id)
        .await
        .or_internal("failed to mint token")?;
    tracing::info!(prefix = %issued.info.prefix, created_by = %created_by, "org token minted");
    let mut reply = Map::new();
    reply.insert("id".into(), json!(issued.info.id));
    reply.insert("prefix".into(), json!(issued.info.prefix));
    if let Some(name) = &issued.info.name {
        reply.insert("name".into(), json!(name));
    }
    reply.insert("auth_token".into(), json!(issued.token.expose()));
    reply.insert(
        "warning".into(),
        json!("copy this token now; it will not be shown again"),
    );
    let mut response = ok_json(StatusCode::OK, Value::Object(reply)).into_response();
    decision.set_headers(response.headers_mut());
    Ok(response)
}

/// `DELETE /org/tokens/:id`: revokes at once (the next request with it is refused).
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        // The reference answers a database error for a non-UUID id; nothing can match it.
        return Err(ApiError::not_found("token not found or already revoked"));
    };
    let revoked = state
        .store
        .org_tokens()
        .revoke(uuid)
        .await
        .or_internal("failed to revoke")?;
    if revoked {
        tracing::info!(token = %uuid, "org token revoked");
        Ok(ok_json(StatusCode::OK, json!({ "revoked": uuid })))
    } else {
        Err(ApiError::not_found("token not found or already revoked"))
    }
}

/// The org ownership check of `/orgs/:id/...` routes (spec: auth-router §2.8), for the routes
/// that will need it: callers other than org tokens pass; an org token passes only when it is
/// anchored to this org.
#[allow(dead_code)] // no `/orgs/:id/...` route exists yet (the allowlist belongs to plugins)
pub(crate) fn check_org_ownership(caller: Option<&Caller>, org: uuid::Uuid) -> ApiResult<()> {
    match caller {
        Some(Caller::Org(token)) if token.org_id != Some(org) => {
            Err(ApiError::forbidden("org access denied"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use molecule_store::OrgIdentity;

    use super::*;

    #[test]
    fn org_ownership() {
        let org = uuid::Uuid::new_v4();
        let token = |org_id| {
            Caller::Org(OrgIdentity {
                id: uuid::Uuid::new_v4(),
                prefix: "abcdefgh".into(),
                org_id,
            })
        };
        assert!(check_org_ownership(None, org).is_ok());
        assert!(check_org_ownership(Some(&Caller::Admin), org).is_ok());
        assert!(check_org_ownership(Some(&token(Some(org))), org).is_ok());
        assert!(check_org_ownership(Some(&token(None)), org).is_err());
        assert!(check_org_ownership(Some(&token(Some(uuid::Uuid::new_v4()))), org).is_err());
    }
}
