//! The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from the route table:
//! one operation per route (method, path with its `{param}`s, the guard as security
//! requirements, a tag by area) plus the schemas every route shares. The builder takes the routes
//! as [`Operation`]s and does not know the router (`app::openapi_document` hands it `ROUTES`).

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, Required, ResponseBuilder,
    SchemaFormat,
};

/// The security scheme of the admin token and org API tokens.
pub const ADMIN_SCHEME: &str = "adminToken";
/// The security scheme of a workspace's own auth token.
pub const WORKSPACE_SCHEME: &str = "workspaceToken";

/// Who may call an operation, as OpenAPI security requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential.
    Public,
    /// The admin token or an org token.
    Admin,
    /// A workspace's own token.
    WorkspaceOnly,
    /// The admin token, an org token or the workspace's token.
    AdminOrWorkspace,
    /// A workspace's own token once it has one; none before.
    WorkspaceIfAny,
}

/// One route as the document describes it.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// The path template with `{param}` segments.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// A one-line note on the guard (the route table's name for it).
    pub guard: String,
}

/// `document` serialised once (in `cell`) and served as `application/json`; a document that
/// cannot be serialised is a 500 (its error logged).
pub fn json_response(
    cell: &'static std::sync::OnceLock<Result<String, String>>,
    document: fn() -> OpenApi,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match cell.get_or_init(|| document().to_json().map_err(|e| e.to_string())) {
        Ok(json) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            json.clone(),
        )
            .into_response(),
        Err(e) => crate::error::ApiError::internal("failed to build the OpenAPI document", e)
            .into_response(),
    }
}

/// The document for `operations`: every operation under its path, with the shared components.
pub fn document(operations: impl IntoIterator<Item = Operation>) -> OpenApi {
    let mut paths = Paths::new();
    let mut tags = std::collections::BTreeSet::new();
    for op in operations {
        let Some(method) = http_method(op.method) else {
            continue;
        };
        let tag = tag_of(op.path);
        tags.insert(tag.clone());
        paths.add_path_operation(document_path(op.path), vec![method], operation(op, tag));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("molecule-rs workspace server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The control plane of the Molecule agent platform. Generated from the \
                     server's route table; errors are `{\"error\": \"...\"}`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components()))
        .tags(Some(
            tags.into_iter().map(|t| TagBuilder::new().name(t).build()),
        ))
        .build()
}

fn http_method(method: &str) -> Option<HttpMethod> {
    Some(match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        "HEAD" => HttpMethod::Head,
        "OPTIONS" => HttpMethod::Options,
        _ => return None,
    })
}

/// The area of a path: `/workspaces/{id}/<area>/…` → `<area>`, `/admin/…` → `admin`, otherwise
/// the first segment (`/workspaces/{id}` itself is `workspaces`).
pub fn tag_of(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["workspaces", id, area, ..] if id.starts_with('{') => (*area).to_owned(),
        [first, ..] => (*first).trim_end_matches(".json").to_owned(),
        [] => "system".to_owned(),
    }
}

fn operation(op: Operation, tag: String) -> utoipa::openapi::path::Operation {
    let id = operation_id(op.method, op.path);
    let mut builder = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(format!("{} {}", op.method, document_path(op.path))))
        .description(Some(format!("Guard: {}.", op.guard)))
        .tag(tag)
        .securities(Some(security(op.access)))
        .response(
            "2XX",
            ResponseBuilder::new()
                .description("Success")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(success_schema(op.method, op.path).map(Ref::from_schema_name))
                        .build(),
                )
                .build(),
        )
        .response(
            "default",
            ResponseBuilder::new()
                .description("An error")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build(),
        );
    for name in path_params(op.path) {
        let format_uuid = name == "id" || name.ends_with("_id") && name != "workflow_id";
        let mut schema = ObjectBuilder::new().schema_type(Type::String);
        if format_uuid {
            schema = schema.format(Some(SchemaFormat::Custom("uuid".to_owned())));
        }
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema)),
        );
    }
    builder.build()
}

/// The named schema of a route's success answer, where one is described.
fn success_schema(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("GET", "/health") => Some("Health"),
        ("GET" | "PUT", "/canvas/viewport") => Some("Viewport"),
        _ => None,
    }
}

/// `GET /workspaces/{id}/tokens` → `get_workspaces_id_tokens`: unique per method and path.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            segment
                .chars()
                .filter(|c| !matches!(c, '{' | '}'))
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The `{param}` names of a path template, in order (a catch-all `{*rest}` is `rest`).
pub fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| {
        let name = s.strip_prefix('{')?.strip_suffix('}')?;
        Some(name.strip_prefix('*').unwrap_or(name))
    })
}

/// A route's path as the document writes it: the router's catch-all `{*rest}` is the OpenAPI
/// parameter `{rest}` (its value may contain `/`).
pub fn document_path(path: &str) -> String {
    path.replace("{*", "{")
}

fn security(access: Access) -> Vec<SecurityRequirement> {
    let admin = || SecurityRequirement::new(ADMIN_SCHEME, Vec::<String>::new());
    let workspace = || SecurityRequirement::new(WORKSPACE_SCHEME, Vec::<String>::new());
    match access {
        // An empty requirement: no credential needed.
        Access::Public => vec![SecurityRequirement::default()],
        Access::Admin => vec![admin()],
        Access::WorkspaceOnly => vec![workspace()],
        Access::AdminOrWorkspace => vec![admin(), workspace()],
        Access::WorkspaceIfAny => vec![workspace(), SecurityRequirement::default()],
    }
}

fn components() -> utoipa::openapi::Components {
    let bearer = |text: &str| {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(text.to_owned());
        SecurityScheme::Http(http)
    };
    let string = || ObjectBuilder::new().schema_type(Type::String);
    ComponentsBuilder::new()
        .security_scheme(
            ADMIN_SCHEME,
            bearer("`ADMIN_TOKEN` (or the generated `<data dir>/admin_token`) or an org API token"),
        )
        .security_scheme(
            WORKSPACE_SCHEME,
            bearer("a workspace's auth token (issued at creation or by `POST …/tokens`)"),
        )
        .schema(
            "Error",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("error", string())
                .required("error"),
        )
        .schema(
            "Health",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("status", string())
                .required("status"),
        )
        .schema(
            "Viewport",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("x", ObjectBuilder::new().schema_type(Type::Number))
                .property("y", ObjectBuilder::new().schema_type(Type::Number))
                .property("zoom", ObjectBuilder::new().schema_type(Type::Number))
                .required("x")
                .required("y")
                .required("zoom"),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_ids() {
        assert_eq!(tag_of("/workspaces/{id}/tokens/{token_id}"), "tokens");
        assert_eq!(tag_of("/workspaces/{id}"), "workspaces");
        assert_eq!(tag_of("/admin/liveness"), "admin");
        assert_eq!(tag_of("/openapi.json"), "openapi");
        assert_eq!(
            operation_id("DELETE", "/workspaces/{id}/tokens/{token_id}"),
            "delete_workspaces_id_tokens_token_id"
        );
        assert_eq!(
            path_params("/a/{id}/b/{key}").collect::<Vec<_>>(),
            ["id", "key"]
        );
        assert_eq!(
            path_params("/workspaces/{id}/files/{*path}").collect::<Vec<_>>(),
            ["id", "path"]
        );
        assert_eq!(
            document_path("/workspaces/{id}/files/{*path}"),
            "/workspaces/{id}/files/{path}"
        );
    }
}
