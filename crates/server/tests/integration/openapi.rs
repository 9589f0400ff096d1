//! `GET /openapi.json`: the document the server serves covers every route of `ROUTES` (method
//! and path, with its guard as security) and validates as OpenAPI 3.1 with the Python
//! `openapi-spec-validator` (pinned in `tests/openapi/requirements.txt`; without it this test
//! fails, never skips: `cargo xtask ci` installs it).

use molecule_server::openapi::{document_path, path_params};
use molecule_server::{Guard, ROUTES};
use molecule_store::testing::TestStore;
use serde_json::Value;

use crate::common::TestServer;
use crate::common::python::PythonDir;

const PYTHON: PythonDir = PythonDir {
    dir: "openapi",
    install_hint: "the OpenAPI test needs python3 with the pins of \
     crates/server/tests/openapi/requirements.txt: run `cargo xtask ci` or \
     `python3 -m pip install -r crates/server/tests/openapi/requirements.txt`",
};

async fn served_document() -> Value {
    let s = TestServer::strict(TestStore::sqlite().await).await;
    // Public: no credential.
    let (status, doc) = s.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    doc
}

/// What `doc` gets wrong about `ROUTES`: a route missing (path or method), its guard not its
/// security, a path parameter not described, no tag, or an operation no route has.
fn coverage_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(paths) = doc["paths"].as_object() else {
        return vec!["no paths".to_owned()];
    };
    for route in ROUTES {
        let op = &doc["paths"][document_path(route.path)][route.method.to_ascii_lowercase()];
        if !op.is_object() {
            problems.push(format!("{route:?}: missing from /openapi.json"));
            continue;
        }
        let security = op["security"].as_array().cloned().unwrap_or_default();
        let schemes: Vec<String> = security
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|s| s.keys().cloned())
            .collect();
        let guarded = match route.guard {
            Guard::Public => security.len() == 1 && schemes.is_empty(),
            Guard::Admin => schemes == ["adminToken"],
            Guard::WorkspaceOwn => schemes == ["workspaceToken"],
            _ => !schemes.is_empty(),
        };
        if !guarded {
            problems.push(format!("{route:?}: security {security:?}"));
        }
        for param in path_params(route.path) {
            let described = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == param && p["in"] == "path"));
            if !described {
                problems.push(format!("{route:?}: path parameter {param} not described"));
            }
        }
        if !op["tags"][0].is_string() {
            problems.push(format!("{route:?}: no tag"));
        }
    }
    // Nothing more than the table either.
    for (path, item) in paths {
        for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
            let known = ROUTES
                .iter()
                .any(|r| document_path(r.path) == *path && r.method.eq_ignore_ascii_case(method));
            if !known {
                problems.push(format!("{method} {path}: no such route"));
            }
        }
    }
    problems
}

#[tokio::test]
async fn every_route_is_described() {
    let doc = served_document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(coverage_problems(&doc), Vec::<String>::new());
    // Routes added to ROUTES are covered without listing them here: e.g. the catch-all file
    // paths, with their `{*path}` as the parameter `path`.
    let read = &doc["paths"]["/workspaces/{id}/files/{path}"]["get"];
    assert_eq!(read["parameters"][1]["name"], "path", "{read}");
    assert!(doc["components"]["securitySchemes"]["adminToken"].is_object());
    assert_eq!(
        doc["paths"]["/health"]["get"]["responses"]["2XX"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/Health"
    );
}

/// The coverage check is not vacuous: a document without one route, or with a parameter
/// undescribed, or with an extra operation, is reported.
#[tokio::test]
async fn a_missing_route_is_reported() {
    let mut doc = served_document().await;
    let paths = doc["paths"].as_object_mut().expect("paths");
    paths.remove("/workspaces/{id}/terminal");
    paths["/workspaces/{id}/files/{path}"]["delete"]["parameters"] = Value::Array(vec![]);
    paths["/health"]["delete"] = serde_json::json!({});
    let problems = coverage_problems(&doc).join("\n");
    assert!(
        problems.contains("GET /workspaces/{id}/terminal"),
        "{problems}"
    );
    assert!(
        problems.contains("DELETE /workspaces/{id}/files/{*path}"),
        "{problems}"
    );
    assert!(
        problems.contains("delete /health: no such route"),
        "{problems}"
    );
}

#[tokio::test]
async fn document_validates_as_openapi_3_1() {
    let doc = served_document().await;
    let out =
        tokio::task::spawn_blocking(move || PYTHON.run("validate.py", doc.to_string().as_bytes()))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "the document does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
