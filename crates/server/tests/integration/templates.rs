//! Workspace templates over real HTTP, both databases (spec templates §1.1): the catalogue of
//! a configs directory (sorted, unparsable templates skipped, optional keys left out) and
//! imports (generated config.yaml that parses back to the name sent, 409 on an existing
//! directory, every bad path refused with nothing written); and new workspaces starting from a
//! template's files, `<runtime>-default`'s, or a generated config.yaml.

use std::path::Path;

use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::{Options, TestServer, assert_error, assert_json, assert_status};

on_both_backends!(
    the_catalogue_lists_parsable_templates_in_order,
    an_import_writes_the_files_and_a_generated_config,
    bad_imports_write_nothing,
    new_workspaces_start_from_their_template,
    restarts_keep_the_config_unless_a_template_is_applied,
);

async fn server(db: TestStore, dir: &Path) -> TestServer {
    let dir = dir.to_path_buf();
    TestServer::start_configured(db, Options::STRICT, move |st| {
        st.with_configs_dir(Some(dir))
    })
    .await
}

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Every file under `dir` (relative paths), sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

async fn the_catalogue_lists_parsable_templates_in_order(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b-full/config.yaml",
        "name: Full\ndescription: everything\ntier: 2\nruntime: hermes\nmodel: top\n\
         skills: [s1, s2]\nproviders:\n  - name: anthropic\n    auth_mode: api_key\n    \
         model_prefixes: [claude]\n    base_url: null\n    auth_env: [ANTHROPIC_API_KEY]\n\
         runtime_config:\n  model: ignored\n  models:\n    - {id: m1, name: M1, required_env: [K]}\n  \
         required_env: [K]\n  providers: [anthropic]\n  provision_timeout_seconds: 900\n",
    );
    write(
        dir.path(),
        "a-min/config.yaml",
        "runtime_config:\n  model: rc\n",
    );
    write(
        dir.path(),
        "c-broken/config.yaml",
        "name: x\ntier: [a, b]\n",
    );
    write(dir.path(), "d-no-config/readme.md", "none");
    write(dir.path(), "plain-file", "not a dir");
    let s = server(db, dir.path()).await;
    assert_status(s.call("GET", "/templates", None, None).await, 401);
    let list = assert_status(s.admin("GET", "/templates", None).await, 200);
    assert_eq!(
        list,
        json!([
            {"id": "a-min", "name": "a-min", "description": "", "tier": 0, "runtime": "",
             "model": "rc", "skills": [], "skill_count": 0},
            {"id": "b-full", "name": "Full", "description": "everything", "tier": 2,
             "runtime": "hermes", "model": "top",
             "models": [{"id": "m1", "name": "M1", "required_env": ["K"]}],
             "required_env": ["K"], "providers": ["anthropic"],
             "provider_registry": [{"name": "anthropic", "auth_mode": "api_key",
                 "model_prefixes": ["claude"], "model_aliases": [], "base_url": "",
                 "auth_env": ["ANTHROPIC_API_KEY"]}],
             "skills": ["s1", "s2"], "skill_count": 2, "provision_timeout_seconds": 900},
        ])
    );
}

async fn an_import_writes_the_files_and_a_generated_config(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = server(db, dir.path()).await;
    let name = "My \"Agent\"\nruntime: evil\\ v2.0";
    let body = json!({"name": name, "files": {
        "system-prompt.md": "be nice",
        "AGENTS.md": "agents",
        "skills/search/SKILL.md": "# search",
        "./notes/a;$(touch pwned).txt": "literal",
    }});
    let reply = s
        .admin("POST", "/templates/import", Some(body.clone()))
        .await;
    assert_json(
        reply,
        201,
        json!({"status": "imported", "id": "my-agentruntime-evil-v20", "name": name}),
    );
    let root = dir.path().join("my-agentruntime-evil-v20");
    assert_eq!(
        tree(&root),
        [
            "AGENTS.md",
            "config.yaml",
            "notes/a;$(touch pwned).txt",
            "skills/search/SKILL.md",
            "system-prompt.md"
        ]
    );
    assert!(!dir.path().join("pwned").exists() && !root.join("pwned").exists());
    let config = std::fs::read_to_string(root.join("config.yaml")).unwrap();
    let parsed: yaml_serde::Mapping = yaml_serde::from_str(&config).unwrap();
    assert_eq!(parsed.get("name").and_then(|v| v.as_str()), Some(name));
    assert!(parsed.get("runtime").is_none(), "{config}");
    let prompts: Vec<&str> = parsed["prompt_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(prompts, ["AGENTS.md", "system-prompt.md"]);
    assert_eq!(parsed["skills"][0].as_str(), Some("search"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root.join("AGENTS.md"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The imported template is in the catalogue; a second import of the same name is 409.
    let list = assert_status(s.admin("GET", "/templates", None).await, 200);
    assert_eq!(list[0]["name"], name);
    assert_eq!(list[0]["skills"], json!(["search"]));
    let again = assert_status(s.admin("POST", "/templates/import", Some(body)).await, 409);
    assert_eq!(
        again,
        json!({"error": "template already exists", "id": "my-agentruntime-evil-v20"})
    );
    // A config.yaml sent is kept as sent.
    let own = json!({"name": "Own", "files": {"config.yaml": "name: kept\n"}});
    assert_status(s.admin("POST", "/templates/import", Some(own)).await, 201);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("own/config.yaml")).unwrap(),
        "name: kept\n"
    );
}

async fn bad_imports_write_nothing(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = server(db, dir.path()).await;
    let import = |body: Value| s.admin("POST", "/templates/import", Some(body));
    for bad in [
        json!({"files": {}}),
        json!({"name": "", "files": {}}),
        json!({"name": "x"}),
        json!({"name": "x", "files": {"a": 1}}),
        json!({"name": "x", "files": {"ok.md": "fine", "../escape.md": "no"}}),
        json!({"name": "x", "files": {"ok.md": "fine", "/etc/passwd": "no"}}),
        json!({"name": "x", "files": {"ok.md": "fine", "a/../../b": "no"}}),
        json!({"name": "x", "files": {"ok.md": "fine", "foo..bar": "no"}}),
        json!({"name": "x", "files": {"ok.md": "fine", "a\u{0}b": "no"}}),
        json!({"name": "x", "files": {"ok.md": "fine", ".": "no"}}),
        json!({"name": "x", "files": {"dir": "file", "dir/inner.md": "clash"}}),
    ] {
        assert_error(import(bad.clone()).await, 400, "invalid request body");
    }
    let many: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("f{i}.md"), json!(""))).collect();
    assert_error(
        import(json!({"name": "x", "files": many})).await,
        400,
        "too many files (201), max 200",
    );
    assert_eq!(tree(dir.path()), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Without a configs directory: an empty catalogue, and imports cannot land anywhere.
    let none = TestServer::strict(TestStore::sqlite().await).await;
    assert_json(none.admin("GET", "/templates", None).await, 200, json!([]));
    let reply = none
        .admin(
            "POST",
            "/templates/import",
            Some(json!({"name": "x", "files": {}})),
        )
        .await;
    assert_eq!(reply.0, 503);
}

/// The config files of the first provision request of `id`, as `(path, text)`.
async fn provisioned_files(
    s: &TestServer,
    id: molecule_domain::WorkspaceId,
) -> Vec<(String, String)> {
    let backend = s.backend.as_ref().unwrap();
    backend.wait_for(|b| b.started(id) >= 1).await;
    let request = backend.starts_of(id).remove(0);
    request
        .config_files
        .iter()
        .map(|(p, b)| {
            (
                p.as_str().to_owned(),
                String::from_utf8_lossy(b).into_owned(),
            )
        })
        .collect()
}

async fn new_workspaces_start_from_their_template(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "writer/config.yaml",
        "name: Writer\nruntime: hermes\nruntime_config:\n  model: \"x:y\"\n",
    );
    write(dir.path(), "writer/system-prompt.md", "Write well.");
    write(dir.path(), "writer/skills/edit/SKILL.md", "edit");
    write(
        dir.path(),
        "langgraph-default/config.yaml",
        "name: default\n",
    );
    let s = server(db, dir.path()).await;

    // A template fills in the runtime and model the request leaves out, and its files go to
    // the backend.
    let id = s.create(json!({"name": "W", "template": "writer"})).await;
    let files = provisioned_files(&s, id).await;
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["config.yaml", "system-prompt.md", "skills/edit/SKILL.md"]
    );
    let ws = assert_status(
        s.admin("GET", &format!("/workspaces/{id}"), None).await,
        200,
    );
    assert_eq!(ws["runtime"], "hermes");
    let request = s.backend.as_ref().unwrap().starts_of(id).remove(0);
    assert_eq!(request.runtime, "hermes");
    assert_eq!(
        request.env.get("MODEL").map(|m| m.expose().to_owned()),
        Some("x:y".to_owned())
    );

    // What the request names wins over the template.
    let id = s
        .create(json!({"name": "W2", "template": "writer", "runtime": "langgraph", "model": "m:n"}))
        .await;
    provisioned_files(&s, id).await;
    let request = s.backend.as_ref().unwrap().starts_of(id).remove(0);
    assert_eq!(request.runtime, "langgraph");
    assert_eq!(
        request.env.get("MODEL").map(|m| m.expose().to_owned()),
        Some("m:n".to_owned())
    );

    // No template directory: `<runtime>-default`, else a generated config.yaml.
    let id = s.create(json!({"name": "D", "template": "missing"})).await;
    assert_eq!(
        provisioned_files(&s, id).await,
        [("config.yaml".to_owned(), "name: default\n".to_owned())]
    );
    let id = s
        .create(json!({"name": "Gen", "role": "helper", "runtime": "hermes", "tier": 2}))
        .await;
    let files = provisioned_files(&s, id).await;
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].1,
        "name: \"Gen\"\ndescription: \"helper\"\nversion: 1.0.0\ntier: 2\nruntime: \"hermes\"\n\
         model: \"anthropic:claude-opus-4-7\"\nruntime_config:\n  timeout: 0\n"
    );

    // A template name that leaves the directory is refused before anything is created.
    for bad in ["../writer", "a/b", ".hidden"] {
        assert_error(
            s.admin(
                "POST",
                "/workspaces",
                Some(json!({"name": "X", "template": bad})),
            )
            .await,
            400,
            "invalid template",
        );
    }
    let all = assert_status(s.admin("GET", "/workspaces", None).await, 200);
    assert_eq!(all.as_array().unwrap().len(), 4);
}

async fn restarts_keep_the_config_unless_a_template_is_applied(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "my-agent/config.yaml", "name: My Agent\n");
    write(dir.path(), "other/config.yaml", "name: other\n");
    write(dir.path(), "other/extra.md", "x");
    let s = server(db, dir.path()).await;
    let id = s.create(json!({"name": "My Agent"})).await;
    let backend = s.backend.as_ref().unwrap();
    backend.wait_for(|b| b.started(id) >= 1).await;
    let path = format!("/workspaces/{id}/restart");
    let restart = |body: Value| s.admin("POST", &path, Some(body));
    let files_of_start = |n: usize| {
        backend.starts_of(id)[n]
            .config_files
            .iter()
            .map(|(p, _)| p.as_str().to_owned())
            .collect::<Vec<_>>()
    };

    // A plain restart (Save + Restart) keeps the config storage as it is.
    let reply = assert_status(restart(json!({})).await, 200);
    assert_eq!(reply["config_dir"], "existing-volume");
    backend.wait_for(|b| b.started(id) >= 2).await;
    assert!(files_of_start(1).is_empty());

    // apply_template: the workspace's own template, by name.
    let reply = assert_status(restart(json!({"apply_template": true})).await, 200);
    assert_eq!(reply["config_dir"], "my-agent");
    backend.wait_for(|b| b.started(id) >= 3).await;
    assert_eq!(files_of_start(2), ["config.yaml"]);

    // An explicit template wins; one that leaves the directory is ignored.
    let reply = assert_status(restart(json!({"template": "other"})).await, 200);
    assert_eq!(reply["config_dir"], "other");
    backend.wait_for(|b| b.started(id) >= 4).await;
    assert_eq!(files_of_start(3), ["config.yaml", "extra.md"]);
    let reply = assert_status(restart(json!({"template": "../my-agent"})).await, 200);
    assert_eq!(reply["config_dir"], "existing-volume");
    backend.wait_for(|b| b.started(id) >= 5).await;
    assert!(files_of_start(4).is_empty());
}
