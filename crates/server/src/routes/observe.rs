//! What an operator looks at on a workspace: token usage (`observability.md` §1.21), traces
//! from Langfuse (§1.6), the agent's transcript (§1.7) and the audit ledger (§1.8). Upstream
//! failures answer fixed messages, never the upstream's text.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use molecule_a2a::fetch::FetchError;
use molecule_store::{AuditQuery, day_start};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::{Query, WorkspacePath, non_empty};
use crate::state::AppState;

/// How long Langfuse may take.
const LANGFUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The default and largest page of the audit ledger.
const AUDIT_LIMIT: (i64, i64) = (100, 500);

fn seconds(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `GET /workspaces/:id/metrics`: today's (UTC) token usage of the workspace.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    super::live_workspace(&state, id, "failed to verify workspace").await?;
    let start = day_start(time::OffsetDateTime::now_utc());
    let usage = state
        .store
        .usage()
        .of_day(id, start)
        .await
        .or_internal("failed to fetch metrics")?;
    Ok(ok_json(
        StatusCode::OK,
        json!({
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_calls": usage.calls,
            "estimated_cost_usd": format!("{:.6}", usage.cost_usd),
            "period_start": seconds(start),
            "period_end": seconds(start + time::Duration::DAY),
        }),
    ))
}

/// `GET /workspaces/:id/traces`: the workspace's 20 newest Langfuse traces (the page object
/// as Langfuse answers it); 503 when Langfuse is not configured.
pub(crate) async fn traces(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let Some(langfuse) = state.langfuse.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "tracing is not configured (set LANGFUSE_HOST, LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY)",
        ));
    };
    let url = format!("{}/api/public/traces", langfuse.host.trim_end_matches('/'));
    let request = state
        .http_client
        .get(url)
        .basic_auth(&langfuse.public_key, Some(&langfuse.secret_key))
        .query(&[
            ("limit", "20"),
            ("orderBy", "timestamp"),
            ("orderDir", "desc"),
            ("tags", &id.to_string()),
        ])
        .timeout(LANGFUSE_TIMEOUT);
    let unavailable = |status, message: &str| Err(ApiError::new(status, message));
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return unavailable(
                StatusCode::GATEWAY_TIMEOUT,
                "trace service did not answer in time",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "traces: Langfuse unreachable");
            return unavailable(StatusCode::BAD_GATEWAY, "trace service unreachable");
        }
    };
    if !response.status().is_success() {
        tracing::warn!(status = %response.status(), "traces: Langfuse refused");
        return unavailable(StatusCode::BAD_GATEWAY, "trace service error");
    }
    match response.json::<Value>().await {
        Ok(page) => Ok(ok_json(StatusCode::OK, page)),
        Err(e) if e.is_timeout() => unavailable(
            StatusCode::GATEWAY_TIMEOUT,
            "trace service did not answer in time",
        ),
        Err(_) => unavailable(StatusCode::BAD_GATEWAY, "trace service error"),
    }
}

/// `GET /workspaces/:id/transcript` query, forwarded to the agent as given.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TranscriptQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// `GET /workspaces/:id/transcript?since=&limit=`: the agent's own `/transcript`, fetched
/// through the A2A address policy (no redirects), with the caller's `Authorization`.
pub(crate) async fn transcript(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<TranscriptQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let ws = super::live_workspace(&state, id, "query failed").await?;
    let forwarded: Vec<(&str, String)> = [("since", query.since), ("limit", query.limit)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let fetched = state
        .a2a
        .fetch_from_agent(&ws, "/transcript", &forwarded, auth)
        .await
        .map_err(|e| {
            let status = match e {
                FetchError::NoUrl => StatusCode::SERVICE_UNAVAILABLE,
                FetchError::NotAllowed => StatusCode::BAD_REQUEST,
                FetchError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                FetchError::Unreachable | FetchError::BadAnswer => StatusCode::BAD_GATEWAY,
            };
            ApiError::new(status, e.to_string())
        })?;
    let status = StatusCode::from_u16(fetched.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, fetched.body).into_response();
    let content_type = fetched
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

fn time_param(
    value: Option<&str>,
    key: &str,
    example: &str,
) -> ApiResult<Option<time::OffsetDateTime>> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::bad_request(format!("{key} must be RFC 3339 (e.g. {example})"))
            })
        })
        .transpose()
}

/// `GET /workspaces/:id/audit` query; an empty parameter is an absent one.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    #[serde(default, deserialize_with = "non_empty")]
    agent_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    session_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    from: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    to: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    limit: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    offset: Option<String>,
}

/// `GET /workspaces/:id/audit?agent_id=&session_id=&from=&to=&limit=&offset=`: the ledger in
/// order, its total, and `chain_valid` — `null` when no salt is configured or the page is not
/// whole chains (an offset, a session or time window, or a truncating limit).
pub(crate) async fn audit(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Query(query): Query<AuditParams>,
) -> ApiResult<Response> {
    let int = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
    let q = AuditQuery {
        from: time_param(query.from.as_deref(), "from", "2026-04-17T00:00:00Z")?,
        to: time_param(query.to.as_deref(), "to", "2026-04-17T23:59:59Z")?,
        limit: int(&query.limit)
            .filter(|l| *l > 0)
            .map_or(AUDIT_LIMIT.0, |l| l.min(AUDIT_LIMIT.1)),
        offset: int(&query.offset).filter(|o| *o >= 0).unwrap_or(0),
        agent_id: query.agent_id,
        session_id: query.session_id,
    };
    let (events, total) = state
        .store
        .audit()
        .list(id, &q)
        .await
        .or_internal("query failed")?;
    let whole = q.offset == 0
        && q.session_id.is_none()
        && q.from.is_none()
        && q.to.is_none()
        && usize::try_from(total).is_ok_and(|t| t == events.len());
    let chain_valid = match &state.audit_key {
        Some(key) if whole => {
            let key = key.clone();
            let checked = events.clone();
            let valid = tokio::task::spawn_blocking(move || key.verify(&checked))
                .await
                .or_internal("query failed")?;
            Value::Bool(valid)
        }
        _ => Value::Null,
    };
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "timestamp": super::views::rfc3339(e.timestamp),
                "agent_id": e.agent_id,
                "session_id": e.session_id,
                "operation": e.operation,
                "input_hash": e.input_hash,
                "output_hash": e.output_hash,
                "model_used": e.model_used,
                "human_oversight_flag": e.human_oversight_flag,
                "risk_flag": e.risk_flag,
                "prev_hmac": e.prev_hmac,
                "hmac": e.hmac,
                "workspace_id": e.workspace_id,
            })
        })
        .collect();
    Ok(ok_json(
        StatusCode::OK,
        json!({ "events": rows, "total": total, "chain_valid": chain_valid }),
    ))
}
