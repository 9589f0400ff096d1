//! Templates on a real container: a template imported over the API seeds the config volume
//! of a workspace created from it.

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use super::files::{exec, files};
use super::{Cleanup, SERIAL, docker, gateway, online};
use crate::common::{TestServer, assert_status};

on_both_backends!(a_template_seeds_the_config_volume);

/// A template imported over the API, then a workspace created from it: the template's files are
/// in `/configs`, owned by the agent, and the agent (which reads its secrets from there too)
/// comes online.
async fn a_template_seeds_the_config_volume(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let configs = tempfile::tempdir().unwrap();
    let dir = configs.path().to_path_buf();
    let s = TestServer::start_reachable(db, docker().await, gateway(), move |st| {
        st.with_configs_dir(Some(dir))
    })
    .await;
    // The template arrives the way the canvas imports one.
    let import = json!({"name": "e2e-writer", "files": {
        "config.yaml": "name: Writer\nruntime: langgraph\n",
        "skills/edit/SKILL.md": "edit well",
    }});
    assert_status(
        s.admin("POST", "/templates/import", Some(import)).await,
        201,
    );
    let id = s
        .create(json!({"name": "templated-e2e", "template": "e2e-writer"}))
        .await;
    cleanup.add(id);
    online(&s, id).await;
    assert_eq!(
        exec(id, &["cat", "/configs/config.yaml"]).1,
        "name: Writer\nruntime: langgraph\n"
    );
    assert_eq!(
        exec(id, &["cat", "/configs/skills/edit/SKILL.md"]).1,
        "edit well"
    );
    assert_eq!(
        exec(id, &["stat", "-c", "%u", "/configs/skills/edit/SKILL.md"])
            .1
            .trim(),
        "1000"
    );
    // And through the Files API.
    let got = assert_status(
        s.admin("GET", &files(id, "/skills/edit/SKILL.md"), None)
            .await,
        200,
    );
    assert_eq!(got["content"], "edit well");
}
