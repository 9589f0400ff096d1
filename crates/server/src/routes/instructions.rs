//! Platform instructions (`observability.md` §1.16): rules an admin writes for every
//! workspace, a team or one workspace, resolved into one Markdown text that agents read at
//! boot. Team scope (reserved but refused by the reference) is supported: a `team` rule
//! targets a team lead and applies to it and its direct children.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use molecule_domain::InstructionScope;
use molecule_domain::memory::{INSTRUCTION_CONTENT_MAX, INSTRUCTION_TITLE_MAX};
use molecule_store::{Instruction, InstructionUpdate, NewInstruction};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::body;
use super::views::rfc3339;
use crate::error::{ApiError, ApiResult, OrInternal, ok_json, ok_list, status_body};
use crate::extract::{INVALID_WORKSPACE_ID, JsonBody, Query, WorkspacePath, non_empty};
use crate::state::AppState;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default, deserialize_with = "non_empty")]
    workspace_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty")]
    scope: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    scope_target: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    priority: i32,
}

#[derive(Deserialize)]
struct UpdateBody {
    title: Option<String>,
    content: Option<String>,
    priority: Option<i32>,
    enabled: Option<bool>,
}

fn item(i: &Instruction) -> Value {
    json!({
        "id": i.id,
        "scope": i.scope,
        "scope_target": i.scope_target,
        "title": i.title,
        "content": i.content,
        "priority": i.priority,
        "enabled": i.enabled,
        "created_at": i.created_at.map(rfc3339),
        "updated_at": i.updated_at.map(rfc3339),
    })
}

fn check_lengths(title: Option<&str>, content: Option<&str>) -> ApiResult<()> {
    if content.is_some_and(|c| c.len() > INSTRUCTION_CONTENT_MAX) {
        return Err(ApiError::bad_request(format!(
            "content exceeds {INSTRUCTION_CONTENT_MAX} chars"
        )));
    }
    if title.is_some_and(|t| t.len() > INSTRUCTION_TITLE_MAX) {
        return Err(ApiError::bad_request(format!(
            "title exceeds {INSTRUCTION_TITLE_MAX} chars"
        )));
    }
    Ok(())
}

/// `GET /instructions[?workspace_id=|?scope=]` (admin): those that apply to one workspace in
/// resolution order, or all (of one scope), by scope, priority, age.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    let instructions = state.store.instructions();
    let rows = if let Some(ws) = query.workspace_id {
        let ws = ws
            .parse()
            .map_err(|_| ApiError::bad_request(INVALID_WORKSPACE_ID))?;
        let parent = state
            .store
            .workspaces()
            .get(ws)
            .await
            .or_internal("query failed")?
            .and_then(|w| w.parent_id);
        instructions.for_workspace(ws, parent).await
    } else {
        match query.scope.map(|s| s.parse::<InstructionScope>()) {
            Some(Err(_)) => Ok(Vec::new()),
            Some(Ok(scope)) => instructions.list(Some(scope)).await,
            None => instructions.list(None).await,
        }
    }
    .or_internal("query failed")?;
    Ok(ok_list(&rows, item))
}

/// `POST /instructions` (admin) `{scope, title, content, scope_target?, priority?}` → 201
/// `{id}`.
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    if body.scope.is_empty() || body.title.is_empty() || body.content.is_empty() {
        return Err(ApiError::bad_request(
            "scope, title, and content are required",
        ));
    }
    let scope: InstructionScope = body
        .scope
        .parse()
        .map_err(|_| ApiError::bad_request("scope must be global, team, or workspace"))?;
    let scope_target = match scope {
        InstructionScope::Global => None,
        InstructionScope::Team | InstructionScope::Workspace => {
            let target = body.scope_target.filter(|t| !t.is_empty()).ok_or_else(|| {
                ApiError::bad_request(format!("scope_target required for {scope} scope"))
            })?;
            let id: Uuid = target
                .parse()
                .map_err(|_| ApiError::bad_request("scope_target must be a workspace ID"))?;
            Some(id.to_string())
        }
    };
    check_lengths(Some(&body.title), Some(&body.content))?;
    let id = state
        .store
        .instructions()
        .create(&NewInstruction {
            scope,
            scope_target,
            title: body.title,
            content: body.content,
            priority: body.priority,
        })
        .await
        .or_internal("insert failed")?;
    Ok(ok_json(StatusCode::CREATED, json!({ "id": id })))
}

/// `PUT /instructions/:id` (admin) `{title?, content?, priority?, enabled?}`; scope and target
/// cannot change.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("instruction not found");
    let body: UpdateBody = body::json(&bytes, "invalid request")?;
    if body.title.as_deref() == Some("") || body.content.as_deref() == Some("") {
        return Err(ApiError::bad_request("title and content must not be empty"));
    }
    check_lengths(body.title.as_deref(), body.content.as_deref())?;
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let found = state
        .store
        .instructions()
        .update(
            id,
            &InstructionUpdate {
                title: body.title,
                content: body.content,
                priority: body.priority,
                enabled: body.enabled,
            },
        )
        .await
        .or_internal("update failed")?;
    if !found {
        return Err(not_found());
    }
    Ok(ok_json(StatusCode::OK, status_body("updated")))
}

/// `DELETE /instructions/:id` (admin).
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let not_found = || ApiError::not_found("instruction not found");
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    if !state
        .store
        .instructions()
        .delete(id)
        .await
        .or_internal("delete failed")?
    {
        return Err(not_found());
    }
    Ok(ok_json(StatusCode::OK, status_body("deleted")))
}

/// The Markdown of resolved instructions: per scope group (global, team, workspace) its
/// header, then `### <title>\n<content>\n\n` per rule; empty when nothing applies.
fn render(rows: &[Instruction]) -> String {
    let mut out = String::new();
    let mut group = None;
    for row in rows {
        if group != Some(row.scope) {
            group = Some(row.scope);
            out.push_str(match row.scope {
                InstructionScope::Global => "\n## Platform-Wide Rules\n\n",
                InstructionScope::Team => "\n## Team Rules\n\n",
                InstructionScope::Workspace => "\n## Role-Specific Rules\n\n",
            });
        }
        out.push_str(&format!("### {}\n{}\n\n", row.title, row.content));
    }
    out
}

/// `GET /workspaces/:id/instructions/resolve` → `{workspace_id, instructions}` (Markdown).
pub(crate) async fn resolve(
    State(state): State<AppState>,
    WorkspacePath(id): WorkspacePath,
) -> ApiResult<Response> {
    let ws = super::live_workspace(&state, id, "query failed").await?;
    let rows = state
        .store
        .instructions()
        .for_workspace(id, ws.parent_id)
        .await
        .or_internal("query failed")?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "workspace_id": id, "instructions": render(&rows) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(scope: InstructionScope, title: &str) -> Instruction {
        Instruction {
            id: Uuid::nil(),
            scope,
            scope_target: None,
            title: title.into(),
            content: format!("{title} body"),
            priority: 0,
            enabled: true,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn markdown_groups_by_scope() {
        assert_eq!(render(&[]), "");
        let rows = [
            rule(InstructionScope::Global, "a"),
            rule(InstructionScope::Global, "b"),
            rule(InstructionScope::Workspace, "c"),
        ];
        assert_eq!(
            render(&rows),
            "\n## Platform-Wide Rules\n\n### a\na body\n\n### b\nb body\n\n\
             \n## Role-Specific Rules\n\n### c\nc body\n\n"
        );
    }
}
