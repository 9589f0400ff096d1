//! Secrets (spec: auth-router §5): workspace secrets, global secrets, and the model/provider
//! choice stored as the reserved workspace secrets `MODEL_PROVIDER` / `LLM_PROVIDER`.
//!
//! Listing never returns values; `GET …/secrets/values` (merged, workspace over global) is for
//! the workspace's own token only. Every change restarts the workspaces it affects, in the
//! background, so their containers get the new environment.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::WorkspaceId;
use molecule_store::{SecretInfo, SecretRead, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::rfc3339;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json};
use crate::extract::{INVALID_BODY, JsonBody, WorkspacePath};
use crate::state::AppState;

/// The workspace secret holding the model choice.
pub(crate) const MODEL_KEY: &str = "MODEL_PROVIDER";
/// The workspace secret holding the LLM provider.
pub(crate) const PROVIDER_KEY: &str = "LLM_PROVIDER";

/// `{"key", "value"}`; no `Debug`, so the value cannot be printed.
#[derive(Deserialize)]
pub(crate) struct SecretBody {
    key: Option<String>,
    value: Option<String>,
}

impl SecretBody {
    fn into_parts(self) -> ApiResult<(String, String)> {
        match (self.key, self.value) {
            (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => {
                molecule_domain::validation::env_key(&k)?;
                Ok((k, v))
            }
            _ => Err(ApiError::bad_request(INVALID_BODY)),
        }
    }
}

fn listed(info: &SecretInfo, scope: &str) -> Value {
    json!({
        "key": info.key,
        "has_value": true,
        "scope": scope,
        "created_at": rfc3339(info.created_at),
        "updated_at": rfc3339(info.updated_at),
    })
}

async fn exists(state: &AppState, id: WorkspaceId) -> ApiResult<()> {
    match state.store.workspaces().get(id).await {
        Ok(Some(ws)) if !ws.status.is_removed() => Ok(()),
        Ok(_) => Err(ApiError::not_found("workspace not found")),
        Err(e) => Err(ApiError::internal("query failed", &e)),
    }
}

/// Restarts a workspace in the background after one of its secrets changed.
fn restart_after_change(state: &AppState, id: WorkspaceId) {
    let _ = state.lifecycle.request_restart(id);
}

/// Restarts, in the background, every workspace that sees the global secret `key` now. The
/// list is taken before the answer, so a workspace created afterwards (which already starts
/// with the new value) is not restarted.
async fn restart_users_of_global(state: &AppState, key: &str) {
    match state.store.secrets().workspaces_using_global(key).await {
        Ok(ids) => {
            for id in ids {
                let _ = state.lifecycle.request_restart(id);
            }
        }
        Err(e) => tracing::error!(error = %e, "global secret changed: cannot list workspaces"),
    }
}

/// `GET /workspaces/:id/secrets`: workspace rows, then global rows not overridden; no values.
pub(crate) async fn list(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let secrets = state.store.secrets();
    let own = secrets
        .list_workspace(id)
        .await
        .or_internal("query failed")?;
    let mut items: Vec<Value> = own.iter().map(|s| listed(s, "workspace")).collect();
    match secrets.list_global().await {
        Ok(global) => items.extend(
            global
                .iter()
                .filter(|g| !own.iter().any(|o| o.key == g.key))
                .map(|g| listed(g, "global")),
        ),
        Err(e) => tracing::error!(error = %e, "global secrets not listed"),
    }
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

/// The merged environment of a workspace: global secrets, then its own (which win). `Err`
/// names every value that failed to decrypt, as `global:K` / `workspace:K`.
pub(crate) async fn merged(
    state: &AppState,
    id: WorkspaceId,
) -> Result<Result<BTreeMap<String, molecule_store::Secret>, Vec<String>>, StoreError> {
    let secrets = state.store.secrets();
    let global = secrets.global_values().await?;
    let own = secrets.workspace_values(id).await?;
    Ok(merge(global, own))
}

fn merge(
    global: Vec<SecretRead>,
    own: Vec<SecretRead>,
) -> Result<BTreeMap<String, molecule_store::Secret>, Vec<String>> {
    let mut env = BTreeMap::new();
    let mut failed = Vec::new();
    for (scope, reads) in [("global", global), ("workspace", own)] {
        for (key, value) in reads {
            match value {
                Ok(v) => {
                    env.insert(key, v);
                }
                Err(e) => {
                    tracing::error!(scope, key = %key, error = %e, "secret failed to decrypt");
                    failed.push(format!("{scope}:{key}"));
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(env)
    } else {
        Err(failed)
    }
}

/// `GET /workspaces/:id/secrets/values` (own token only): the merged values.
pub(crate) async fn values(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let env = merged(&state, id).await.or_internal("query failed")?;
    match env {
        Ok(env) => {
            let map: serde_json::Map<String, Value> = env
                .into_iter()
                .map(|(k, v)| (k, Value::String(v.into_exposed())))
                .collect();
            Ok(ok_json(StatusCode::OK, Value::Object(map)))
        }
        Err(failed) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "one or more secrets failed to decrypt; refusing to return partial bundle",
        )
        .with("failed_keys", failed)),
    }
}

/// `POST|PUT /workspaces/:id/secrets` `{"key","value"}`; restarts the workspace.
pub(crate) async fn set(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(body): JsonBody<SecretBody>,
) -> ApiResult<Response> {
    let (key, value) = body.into_parts()?;
    exists(&state, id).await?;
    state
        .store
        .secrets()
        .set_workspace(id, &key, &value)
        .await
        .map_err(|e| match e {
            StoreError::Cipher(_) => ApiError::internal("failed to encrypt secret", &e),
            _ => ApiError::internal("failed to save secret", &e),
        })?;
    restart_after_change(&state, id);
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "saved", "key": key }),
    ))
}

/// `DELETE /workspaces/:id/secrets/:key`; restarts the workspace.
pub(crate) async fn delete(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    Path((_, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let deleted = state
        .store
        .secrets()
        .delete_workspace(id, &key)
        .await
        .or_internal("failed to delete secret")?;
    if !deleted {
        return Err(ApiError::not_found("secret not found"));
    }
    restart_after_change(&state, id);
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "deleted", "key": key }),
    ))
}

/// `GET /settings/secrets` (= `GET /admin/secrets`): the global secrets, no values.
pub(crate) async fn list_global(State(state): State<AppState>) -> ApiResult<Response> {
    let global = state
        .store
        .secrets()
        .list_global()
        .await
        .or_internal("query failed")?;
    let items: Vec<Value> = global.iter().map(|g| listed(g, "global")).collect();
    Ok(ok_json(StatusCode::OK, Value::Array(items)))
}

/// `PUT|POST /settings/secrets` (= `POST /admin/secrets`); restarts the workspaces that see it.
pub(crate) async fn set_global(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SecretBody>,
) -> ApiResult<Response> {
    let (key, value) = body.into_parts()?;
    state
        .store
        .secrets()
        .set_global(&key, &value)
        .await
        .map_err(|e| match e {
            StoreError::Cipher(_) => ApiError::internal("failed to encrypt", &e),
            _ => ApiError::internal("failed to save", &e),
        })?;
    restart_users_of_global(&state, &key).await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "saved", "key": key, "scope": "global" }),
    ))
}

/// `DELETE /settings/secrets/:key` (= `/admin/secrets/:key`).
pub(crate) async fn delete_global(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    let deleted = state
        .store
        .secrets()
        .delete_global(&key)
        .await
        .or_internal("failed to delete")?;
    if !deleted {
        return Err(ApiError::not_found("secret not found"));
    }
    restart_users_of_global(&state, &key).await;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "status": "deleted", "key": key, "scope": "global" }),
    ))
}

/// Which reserved secret a model/provider route reads and writes.
#[derive(Clone, Copy)]
struct Reserved {
    key: &'static str,
    field: &'static str,
    clear_failed: &'static str,
    save_failed: &'static str,
}

const MODEL: Reserved = Reserved {
    key: MODEL_KEY,
    field: "model",
    clear_failed: "failed to clear model",
    save_failed: "failed to save model",
};

const PROVIDER: Reserved = Reserved {
    key: PROVIDER_KEY,
    field: "provider",
    clear_failed: "failed to clear provider",
    save_failed: "failed to save provider",
};

async fn get_reserved(state: &AppState, id: WorkspaceId, which: Reserved) -> ApiResult<Response> {
    let value = state
        .store
        .secrets()
        .get_workspace(id, which.key)
        .await
        .map_err(|e| match e {
            StoreError::Cipher(_) => ApiError::internal("failed to decrypt", &e),
            _ => ApiError::internal("query failed", &e),
        })?;
    let body = match value {
        None => json!({ which.field: "", "source": "default" }),
        Some(v) => json!({ which.field: v.expose(), "source": "workspace_secrets" }),
    };
    Ok(ok_json(StatusCode::OK, body))
}

async fn set_reserved(
    state: &AppState,
    id: WorkspaceId,
    body: serde_json::Map<String, Value>,
    which: Reserved,
) -> ApiResult<Response> {
    let value = match body.get(which.field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(_) => return Err(ApiError::bad_request(INVALID_BODY)),
    };
    let secrets = state.store.secrets();
    let reply = if value.is_empty() {
        secrets
            .delete_workspace(id, which.key)
            .await
            .or_internal(which.clear_failed)?;
        json!({ "status": "cleared" })
    } else {
        exists(state, id).await?;
        secrets
            .set_workspace(id, which.key, &value)
            .await
            .or_internal(which.save_failed)?;
        json!({ "status": "saved", which.field: value })
    };
    restart_after_change(state, id);
    Ok(ok_json(StatusCode::OK, reply))
}

/// `GET /workspaces/:id/model`.
pub(crate) async fn get_model(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    get_reserved(&state, id, MODEL).await
}

/// `PUT /workspaces/:id/model` `{"model": "…"}` (empty clears).
pub(crate) async fn set_model(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult<Response> {
    set_reserved(&state, id, body, MODEL).await
}

/// `GET /workspaces/:id/provider`.
pub(crate) async fn get_provider(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    get_reserved(&state, id, PROVIDER).await
}

/// `PUT /workspaces/:id/provider` `{"provider": "…"}` (empty clears).
pub(crate) async fn set_provider(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult<Response> {
    set_reserved(&state, id, body, PROVIDER).await
}

/// The LLM provider a model name implies (spec: auth-router §5.6): the text before the first
/// `/`, mapped through the hermes template's list; `None` when unknown or absent.
pub(crate) fn derive_provider(model: &str) -> Option<&'static str> {
    let (prefix, _) = model.split_once('/')?;
    Some(match prefix {
        "minimax" => "minimax",
        "minimax-cn" => "minimax-cn",
        "anthropic" => "anthropic",
        "gemini" => "gemini",
        "deepseek" => "deepseek",
        "zai" => "zai",
        "kimi-coding" => "kimi-coding",
        "kimi-coding-cn" => "kimi-coding-cn",
        "ollama-cloud" => "ollama-cloud",
        "kilocode" => "kilocode",
        "opencode-zen" => "opencode-zen",
        "opencode-go" => "opencode-go",
        "openrouter" => "openrouter",
        "custom" => "custom",
        "gmi" => "gmi",
        "qwen-oauth" => "qwen-oauth",
        "minimax-oauth" => "minimax-oauth",
        "alibaba-coding-plan" => "alibaba-coding-plan",
        "google-gemini-cli" => "google-gemini-cli",
        "openai-codex" => "openai-codex",
        "copilot-acp" => "copilot-acp",
        "copilot" => "copilot",
        "alibaba" | "dashscope" | "qwen" => "alibaba",
        "xiaomi" | "mimo" => "xiaomi",
        "arcee" | "arcee-ai" => "arcee",
        "nvidia" | "nim" => "nvidia",
        "huggingface" | "hf" => "huggingface",
        "ai-gateway" | "aigateway" => "ai-gateway",
        "xai" | "grok" => "xai",
        "bedrock" | "aws" => "bedrock",
        "tencent" | "tencent-tokenhub" => "tencent-tokenhub",
        "lmstudio" | "lm-studio" => "lmstudio",
        "nousresearch" | "openai" => "openrouter",
        _ => return None,
    })
}

/// Stores the model choice of a new workspace (`MODEL_PROVIDER`, and `LLM_PROVIDER` when the
/// model names a known provider). Non-fatal: failures are logged.
pub(crate) async fn store_model_choice(state: &AppState, id: WorkspaceId, model: &str) {
    if model.is_empty() {
        return;
    }
    let secrets = state.store.secrets();
    if let Err(e) = secrets.set_workspace(id, MODEL_KEY, model).await {
        tracing::error!(workspace = %id, error = %e, "create: model not stored");
    }
    if let Some(provider) = derive_provider(model)
        && let Err(e) = secrets.set_workspace(id, PROVIDER_KEY, provider).await
    {
        tracing::error!(workspace = %id, error = %e, "create: provider not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_from_the_model_prefix() {
        assert_eq!(derive_provider("anthropic/claude"), Some("anthropic"));
        assert_eq!(derive_provider("qwen/x"), Some("alibaba"));
        assert_eq!(derive_provider("openai/gpt-5"), Some("openrouter"));
        assert_eq!(derive_provider("grok/x/y"), Some("xai"));
        assert_eq!(derive_provider("sonnet"), None);
        assert_eq!(derive_provider("/x"), None);
        assert_eq!(derive_provider("unknown/x"), None);
    }
}
