//! Plugin routes: the registry, install from `local://` and from a local server speaking the
//! GitHub tarball API, the sha256 pin, the org allowlist, uninstall (CLAUDE.md blocks
//! stripped), the `.tar.gz` download, and every bad source refused with nothing installed.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use flate2::Compression;
use flate2::write::GzEncoder;
use molecule_domain::WorkspaceId;
use molecule_provisioner_api::Running;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{with_dirs, write_tree};
use crate::common::{Options, TestServer, assert_error, assert_status};

molecule_store::on_both_backends!(
    local_install_uninstall_and_download,
    github_sources_and_the_allowlist,
    bad_sources_install_nothing,
);

const MANIFEST: &str = "name: my-plugin\nversion: 1.0.0\ndescription: helps\nskills: [helper]\nruntimes: [langgraph]\n";

fn sha(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn registry(dir: &std::path::Path) {
    write_tree(
        &dir.join("plugins/my-plugin"),
        &[
            ("plugin.yaml", MANIFEST),
            ("rules/style.md", "be tidy"),
            ("skills/helper/SKILL.md", "# helper"),
        ],
    );
    write_tree(
        &dir.join("plugins/other"),
        &[("plugin.yaml", "name: other\nruntimes: [hermes]\n")],
    );
}

/// Plugin files under `/configs/plugins/<name>/` of `id`.
pub(super) fn installed(s: &TestServer, id: WorkspaceId, name: &str) -> Vec<String> {
    s.backend().paths(id, &format!("/configs/plugins/{name}/"))
}

pub(super) async fn started_workspace(s: &TestServer, body: Value) -> WorkspaceId {
    let id = s.create(body).await;
    s.backend().wait_for(|b| b.started(id) == 1).await;
    id
}

async fn local_install_uninstall_and_download(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    registry(dir.path());
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let listed = assert_status(s.call("GET", "/plugins", None, None).await, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["name"], "my-plugin");
    assert_eq!(listed[0]["skills"], json!(["helper"]));
    let hermes = assert_status(
        s.call("GET", "/plugins?runtime=hermes", None, None).await,
        200,
    );
    assert_eq!(hermes.as_array().unwrap().len(), 1);
    assert_eq!(
        s.call("GET", "/plugins/sources", None, None).await,
        (200, json!({"schemes": ["github", "local"]}))
    );
    let id = started_workspace(&s, json!({"name": "Worker"})).await;
    let available = assert_status(
        s.admin("GET", &format!("/workspaces/{id}/plugins/available"), None)
            .await,
        200,
    );
    assert_eq!(available.as_array().unwrap().len(), 1, "{available}");
    assert_eq!(
        s.admin("GET", &format!("/workspaces/{id}/plugins"), None)
            .await,
        (200, json!([]))
    );

    let path = format!("/workspaces/{id}/plugins");
    // A wrong pin installs nothing.
    let (status, body) = s
        .admin(
            "POST",
            &path,
            Some(json!({"source": "local://my-plugin", "sha256": "0".repeat(64)})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("sha256 mismatch: expected 000"),
        "{body}"
    );
    assert_eq!(body["source"], "local://my-plugin");
    assert!(installed(&s, id, "my-plugin").is_empty());
    let reply = s
        .admin(
            "POST",
            &path,
            Some(json!({"source": "my-plugin", "sha256": sha(MANIFEST)})),
        )
        .await;
    assert_eq!(
        reply,
        (
            200,
            json!({"status": "installed", "plugin": "my-plugin", "source": "local://my-plugin"})
        )
    );
    assert_eq!(
        installed(&s, id, "my-plugin"),
        [
            "/configs/plugins/my-plugin/plugin.yaml",
            "/configs/plugins/my-plugin/rules/style.md",
            "/configs/plugins/my-plugin/skills/helper/SKILL.md",
        ]
    );
    // The workspace restarts to load it.
    s.backend().wait_for(|b| b.started(id) == 2).await;
    let list = assert_status(s.admin("GET", &path, None).await, 200);
    assert_eq!(list[0]["name"], "my-plugin");
    assert_eq!(list[0]["supported_on_runtime"], true);
    let compat = assert_status(
        s.admin("GET", &format!("{path}/compatibility?runtime=hermes"), None)
            .await,
        200,
    );
    assert_eq!(compat["all_compatible"], false);
    assert_eq!(compat["incompatible"][0]["name"], "my-plugin");
    assert_error(
        s.admin("GET", &format!("{path}/compatibility"), None).await,
        400,
        "runtime query parameter is required",
    );

    // Download: the workspace's own token, a gzip'd tar of the plugin's files.
    let token = s
        .backend()
        .starts_of(id)
        .pop()
        .unwrap()
        .auth_token
        .unwrap()
        .expose()
        .to_owned();
    let response = s
        .http
        .get(format!("{}{path}/my-plugin/download", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/gzip");
    assert_eq!(response.headers()["x-plugin-source"], "local://my-plugin");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"my-plugin.tar.gz\""
    );
    let bytes = response.bytes().await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_ref()));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('/') && !name.contains(".."), "{name}");
        if name == "plugin.yaml" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            assert_eq!(text, MANIFEST);
        }
        names.push(name);
    }
    assert!(names.contains(&"rules/style.md".to_owned()), "{names:?}");
    let (status, _) = s
        .admin("GET", &format!("{path}/my-plugin/download"), None)
        .await;
    assert_eq!(status, 401, "the admin token is not the workspace's own");
    let (status, body) = s
        .call(
            "GET",
            &format!("{path}/other/download?source=local://my-plugin"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["resolved_name"].as_str()),
        (400, Some("my-plugin")),
        "{body}"
    );

    // Uninstall strips the plugin's CLAUDE.md blocks and its skills, keeps the rest.
    let b = s.backend();
    b.put_file(
        id,
        "/configs/CLAUDE.md",
        "mine\n\n# Plugin: my-plugin / rules\nrule\n\n\n# Plugin: keep / x\nkept\n",
    );
    b.put_file(id, "/configs/skills/helper/SKILL.md", "# helper");
    b.put_file(id, "/configs/skills/own/SKILL.md", "# own");
    let reply = s.admin("DELETE", &format!("{path}/my-plugin"), None).await;
    assert_eq!(
        reply,
        (200, json!({"status": "uninstalled", "plugin": "my-plugin"}))
    );
    assert!(installed(&s, id, "my-plugin").is_empty());
    assert_eq!(
        b.file(id, "/configs/CLAUDE.md").as_deref(),
        Some("mine\n\n\n# Plugin: keep / x\nkept\n")
    );
    assert_eq!(
        b.paths(id, "/configs/skills/"),
        ["/configs/skills/own/SKILL.md"]
    );
    assert_error(
        s.admin("DELETE", &format!("{path}/Bad.Name"), None).await,
        400,
        "invalid plugin name",
    );
    // A stopped workspace: 503, nothing written.
    b.answer_running(Running::No);
    assert_error(
        s.admin("POST", &path, Some(json!({"source": "local://my-plugin"})))
            .await,
        503,
        "workspace container not running",
    );
    b.answer_running(Running::Unknown("socket EOF".into()));
    assert_error(
        s.admin("POST", &path, Some(json!({"source": "local://my-plugin"})))
            .await,
        503,
        "could not determine workspace container state; retry",
    );
    assert!(installed(&s, id, "my-plugin").is_empty());
}

/// The installation token the stand-in GitHub mints, and requires for `private/…` repos.
pub(super) const INSTALLATION_TOKEN: &str = "ghs_plugin_token";

/// A server answering `GET /repos/{owner}/{repo}/tarball/{ref}` from a map (a repo of owner
/// `private` only with the installation token, else 404 as GitHub answers), and minting
/// [`INSTALLATION_TOKEN`] at `POST /app/installations/{id}/access_tokens`.
pub(super) async fn fake_github(tarballs: HashMap<String, Vec<u8>>) -> String {
    async fn tarball(
        State(map): State<Arc<HashMap<String, Vec<u8>>>>,
        Path((owner, repo, reference)): Path<(String, String, String)>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        let bearer = format!("Bearer {INSTALLATION_TOKEN}");
        let authorized = headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == bearer.as_bytes());
        match map.get(&format!("{owner}/{repo}#{reference}")) {
            Some(bytes) if owner != "private" || authorized => {
                (StatusCode::OK, bytes.clone()).into_response()
            }
            _ => (StatusCode::NOT_FOUND, "{\"message\":\"Not Found\"}").into_response(),
        }
    }
    async fn access_tokens() -> axum::response::Response {
        let at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body = json!({"token": INSTALLATION_TOKEN, "expires_at": at});
        (StatusCode::CREATED, axum::Json(body)).into_response()
    }
    let app = axum::Router::new()
        .route(
            "/repos/{owner}/{repo}/tarball/{reference}",
            axum::routing::get(tarball),
        )
        .route(
            "/app/installations/{id}/access_tokens",
            axum::routing::post(access_tokens),
        )
        .with_state(Arc::new(tarballs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A GitHub-style tarball: everything under `<top>/`; `(path, None)` is a symlink.
pub(super) fn tarball(top: &str, files: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        let name = format!("{top}/{path}");
        match content {
            Some(c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len() as u64);
                h.set_mode(0o644);
                let old = h.as_old_mut();
                old.name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, c.as_bytes()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_link_name("/etc/passwd").unwrap();
                b.append_data(&mut h, &name, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

async fn github_sources_and_the_allowlist(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    registry(dir.path());
    let good = tarball(
        "acme-good-plugin-abc123",
        &[
            ("plugin.yaml", Some("name: good-plugin\n")),
            ("rules/a.md", Some("A")),
        ],
    );
    let github = fake_github(HashMap::from([
        ("acme/good-plugin#v1.0.0".to_owned(), good),
        (
            "acme/evil#v1".to_owned(),
            tarball(
                "acme-evil-1",
                &[
                    ("plugin.yaml", Some("x")),
                    ("../../escape.sh", Some("boom")),
                ],
            ),
        ),
        (
            "acme/linky#v1".to_owned(),
            tarball(
                "acme-linky-1",
                &[("plugin.yaml", Some("x")), ("passwd", None)],
            ),
        ),
    ]))
    .await;
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), Some(github)))
        .await;
    let org = started_workspace(&s, json!({"name": "Org"})).await;
    let team = started_workspace(&s, json!({"name": "Team", "parent_id": org.to_string()})).await;
    let id = started_workspace(&s, json!({"name": "Dev", "parent_id": team.to_string()})).await;
    let allow = format!("/orgs/{org}/plugins/allowlist");
    let empty = assert_status(s.admin("GET", &allow, None).await, 200);
    assert_eq!(
        (empty["allow_all"].clone(), empty["plugins"].clone()),
        (json!(true), json!([]))
    );
    let put = s
        .admin(
            "PUT",
            &allow,
            Some(json!({"plugins": ["good-plugin"], "enabled_by": "ops"})),
        )
        .await;
    assert_eq!(
        put,
        (
            200,
            json!({"org_id": org, "plugins": ["good-plugin"], "allow_all": false})
        )
    );
    let got = assert_status(s.admin("GET", &allow, None).await, 200);
    assert_eq!(got["plugins"][0]["plugin_name"], "good-plugin");
    assert_eq!(got["plugins"][0]["enabled_by"], "ops");

    let path = format!("/workspaces/{id}/plugins");
    let reply = s
        .admin(
            "POST",
            &path,
            Some(json!({"source": "github://acme/good-plugin#v1.0.0"})),
        )
        .await;
    assert_eq!(
        reply,
        (
            200,
            json!({"status": "installed", "plugin": "good-plugin", "source": "github://acme/good-plugin#v1.0.0"})
        )
    );
    assert_eq!(
        installed(&s, id, "good-plugin"),
        [
            "/configs/plugins/good-plugin/plugin.yaml",
            "/configs/plugins/good-plugin/rules/a.md"
        ]
    );
    // The grandchild's org is the root: a plugin off its list is refused before any fetch.
    assert_error(
        s.admin("POST", &path, Some(json!({"source": "local://my-plugin"})))
            .await,
        403,
        "plugin \"my-plugin\" is not in the org allowlist",
    );
    assert!(installed(&s, id, "my-plugin").is_empty());
    // Hostile archives are refused whole.
    s.admin(
        "PUT",
        &allow,
        Some(json!({"plugins": [], "enabled_by": "ops"})),
    )
    .await;
    for repo in ["evil", "linky"] {
        let (status, body) = s
            .admin(
                "POST",
                &path,
                Some(json!({"source": format!("github://acme/{repo}#v1")})),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("plugin archive rejected"),
            "{body}"
        );
        assert!(installed(&s, id, repo).is_empty());
    }
    assert_error(
        s.admin(
            "POST",
            &path,
            Some(json!({"source": "github://acme/missing#v1"})),
        )
        .await,
        404,
        "failed to fetch plugin from github",
    );
    // Allowlist input checks.
    let (status, body) = s
        .admin(
            "PUT",
            &allow,
            Some(json!({"plugins": ["../../evil"], "enabled_by": "ops"})),
        )
        .await;
    assert_eq!(
        (status, body["plugin_name"].as_str()),
        (400, Some("../../evil")),
        "{body}"
    );
    assert_error(
        s.admin("PUT", &allow, Some(json!({"plugins": []}))).await,
        400,
        "enabled_by is required",
    );
    assert_error(
        s.admin(
            "GET",
            &format!("/orgs/{}/plugins/allowlist", WorkspaceId::new()),
            None,
        )
        .await,
        404,
        "org not found",
    );
}

async fn bad_sources_install_nothing(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    registry(dir.path());
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let id = started_workspace(&s, json!({"name": "W"})).await;
    let path = format!("/workspaces/{id}/plugins");
    let install = |body: Value| s.admin("POST", &path, Some(body));
    assert_error(
        install(json!({"source": ""})).await,
        400,
        "'source' is required (e.g. \"local://my-plugin\" or \"github://owner/repo\")",
    );
    assert_error(
        install(json!({"source": "github://"})).await,
        400,
        "invalid plugin source",
    );
    assert_error(
        install(json!({"source": "github://o/r#-exec=/evil"})).await,
        400,
        "invalid plugin source",
    );
    let (status, body) = install(json!({"source": "weirdscheme://x"})).await;
    assert_eq!(
        (status, body["available_schemes"].clone()),
        (400, json!(["github", "local"])),
        "{body}"
    );
    for name in [
        "local://../etc/passwd",
        "local://MyPlugin",
        "local://a/b",
        "local://..",
    ] {
        assert_error(
            install(json!({"source": name})).await,
            400,
            "invalid plugin name",
        );
    }
    let (status, body) = install(json!({"source": "github://owner/repo"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["source"], "github://owner/repo");
    assert_error(
        install(json!({"source": "local://missing"})).await,
        404,
        "failed to fetch plugin from local",
    );
    let big = "x".repeat(70 * 1024);
    assert_error(
        install(json!({"source": big})).await,
        400,
        "invalid request body",
    );
    let ext = s.create(json!({"name": "E", "external": true})).await;
    let (status, body) = s
        .admin(
            "POST",
            &format!("/workspaces/{ext}/plugins"),
            Some(json!({"source": "my-plugin"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["hint"].as_str().unwrap().contains("download"),
        "{body}"
    );
    assert!(s.backend().paths(id, "/configs/plugins/").is_empty());
    assert_eq!(
        s.backend().started(id),
        1,
        "no restart after a refused install"
    );
}
