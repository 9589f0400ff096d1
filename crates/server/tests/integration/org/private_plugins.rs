//! `github://` plugins from a private repository: with a GitHub App configured, the tarball
//! download carries the App's installation token (minted from the same `GITHUB_API_URL`);
//! without one the same source is not found.

use std::collections::HashMap;
use std::path::PathBuf;

use molecule_server::github_app::AppSettings;
use molecule_store::testing::TestStore;
use serde_json::json;

use super::plugins::{fake_github, installed, registry, started_workspace, tarball};
use super::with_dirs;
use crate::common::{Options, TestServer, assert_error};

molecule_store::on_both_backends!(a_private_repo_installs_with_the_app_token);

async fn a_private_repo_installs_with_the_app_token(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    registry(dir.path());
    let archive = tarball(
        "private-secret-1",
        &[("plugin.yaml", Some("name: secret\n"))],
    );
    let github = fake_github(HashMap::from([("private/secret#v1".to_owned(), archive)])).await;
    let app = AppSettings {
        app_id: "424242".into(),
        installation_id: 777,
        private_key_file: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github_app_test_key.pem"),
        api_url: github.clone(),
    };
    let dirs = with_dirs(dir.path(), Some(github.clone()));
    let s = TestServer::start_configured(db, Options::STRICT, move |st| {
        dirs(st).with_github_app(Some(app))
    })
    .await;
    let id = started_workspace(&s, json!({"name": "W"})).await;
    let path = format!("/workspaces/{id}/plugins");
    let source = json!({"source": "github://private/secret#v1"});
    let reply = s.admin("POST", &path, Some(source.clone())).await;
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(
        installed(&s, id, "secret"),
        ["/configs/plugins/secret/plugin.yaml"]
    );

    // The same source without an App: GitHub does not show the repository.
    let anonymous = TestServer::start_configured(
        TestStore::sqlite().await,
        Options::STRICT,
        with_dirs(dir.path(), Some(github)),
    )
    .await;
    let other = started_workspace(&anonymous, json!({"name": "W"})).await;
    assert_error(
        anonymous
            .admin(
                "POST",
                &format!("/workspaces/{other}/plugins"),
                Some(source),
            )
            .await,
        404,
        "failed to fetch plugin from github",
    );
    assert!(installed(&anonymous, other, "secret").is_empty());
}
