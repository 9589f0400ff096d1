//! `GET /org/templates` and `POST /org/import`.

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::{with_dirs, write_tree};
use crate::common::{ADMIN, Options, TestServer, assert_error, assert_status};

molecule_store::on_both_backends!(
    a_template_tree_imports_parents_first_with_its_files,
    bad_templates_are_refused_and_nothing_is_created,
    required_env_is_checked_against_global_secrets,
    a_failure_half_way_leaves_no_half_imported_org,
);

const ORG: &str = r#"
name: Dev Team
description: A small team
template_schema_version: 3
required_env: []
recommended_env: [GITHUB_TOKEN]
defaults:
  runtime: claude-code
  tier: 2
  initial_prompt_file: welcome.md
  category_routing:
    bugs: [qa]
workspaces:
  - name: Lead
    role: lead engineer
    files_dir: lead
    initial_prompt_file: initial-prompt.md
    canvas: {x: 100, y: 50}
    schedules:
      - name: standup
        cron_expr: "0 9 * * 1-5"
        prompt_file: standup.md
      - name: broken
        cron_expr: not-a-cron-expr
        prompt: never
    children: !include teams/dev.yaml
"#;

const TEAM: &str = r#"
- name: Backend
  role: backend
  system_prompt: "You write Rust."
  runtime: langgraph
- name: QA
  idle_prompt: check the build
  children:
    - name: Fuzzer
"#;

async fn count(s: &TestServer) -> usize {
    s.state.store.workspaces().list().await.unwrap().len()
}

async fn a_template_tree_imports_parents_first_with_its_files(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        &dir.path().join("org-templates/dev"),
        &[
            ("org.yaml", ORG),
            ("teams/dev.yaml", TEAM),
            ("welcome.md", "Welcome, read the README."),
            ("lead/initial-prompt.md", "Lead the team.\n  Carefully.  \n"),
            ("lead/standup.md", "Post the standup."),
            ("lead/notes/guide.md", "a guide"),
            ("lead/.env", "LEAD_KEY=lead-secret\n"),
        ],
    );
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let listed = assert_status(s.admin("GET", "/org/templates", None).await, 200);
    assert_eq!(
        listed,
        json!([{"dir": "dev", "name": "Dev Team", "description": "A small team",
            "workspaces": 4, "required_env": [], "recommended_env": ["GITHUB_TOKEN"]}])
    );
    // A legacy `force` changes nothing.
    let reply = assert_status(
        s.admin(
            "POST",
            "/org/import",
            Some(json!({"dir": "dev", "force": true})),
        )
        .await,
        201,
    );
    assert_eq!(reply["org"], "Dev Team");
    assert_eq!(reply["count"], 4);
    let names: Vec<&str> = reply["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Lead", "Backend", "QA", "Fuzzer"]);
    let id = |i: usize| -> WorkspaceId {
        reply["workspaces"][i]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (lead, backend, qa, fuzzer) = (id(0), id(1), id(2), id(3));
    assert_eq!(s.row(lead).await.parent_id, None);
    assert_eq!(s.row(backend).await.parent_id, Some(lead));
    assert_eq!(s.row(qa).await.parent_id, Some(lead));
    assert_eq!(s.row(fuzzer).await.parent_id, Some(qa));
    assert_eq!(s.row(lead).await.role.as_deref(), Some("lead engineer"));
    assert_eq!(s.row(backend).await.runtime, "langgraph");
    assert_eq!(s.row(lead).await.runtime, "claude-code");
    // Every workspace is started through the lifecycle service, with its files written first.
    let b = s.backend();
    b.wait_for(|b| {
        [lead, backend, qa, fuzzer]
            .iter()
            .all(|w| b.started(*w) == 1)
    })
    .await;
    let cfg = b.file(lead, "/configs/config.yaml").unwrap();
    let parsed: yaml_serde::Value = yaml_serde::from_str(&cfg).unwrap();
    assert_eq!(parsed["name"].as_str(), Some("Lead"));
    assert_eq!(parsed["description"].as_str(), Some("lead engineer"));
    assert_eq!(parsed["runtime"].as_str(), Some("claude-code"));
    assert_eq!(parsed["model"].as_str(), Some("sonnet"));
    assert_eq!(
        parsed["initial_prompt"].as_str(),
        Some("Lead the team.\n  Carefully.\n")
    );
    assert_eq!(parsed["category_routing"]["bugs"][0].as_str(), Some("qa"));
    assert_eq!(
        b.file(lead, "/configs/notes/guide.md").as_deref(),
        Some("a guide")
    );
    assert_eq!(
        b.file(lead, "/configs/.env"),
        None,
        "the .env is a secret, never a file"
    );
    assert_eq!(
        b.file(backend, "/configs/system-prompt.md").as_deref(),
        Some("You write Rust.")
    );
    // Defaults-level prompt file, resolved at the org root.
    let qa_cfg: yaml_serde::Value =
        yaml_serde::from_str(&b.file(qa, "/configs/config.yaml").unwrap()).unwrap();
    assert_eq!(
        qa_cfg["initial_prompt"].as_str(),
        Some("Welcome, read the README.\n")
    );
    assert_eq!(qa_cfg["idle_interval_seconds"].as_i64(), Some(600));
    assert_eq!(qa_cfg["idle_prompt"].as_str(), Some("check the build\n"));
    // The files_dir .env became a workspace secret; the valid schedule exists, the bad one not.
    let secrets = s.state.store.secrets().list_workspace(lead).await.unwrap();
    assert!(secrets.iter().any(|k| k.key == "LEAD_KEY"));
    let schedules = s.state.store.schedules().list(lead).await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].prompt, "Post the standup.");
    assert_eq!(schedules[0].source, "template");
    // Canvas: the root at its YAML position, children in the grid under it.
    let layouts = s.state.store.layouts().all().await.unwrap();
    let at = |w: WorkspaceId| {
        let l = &layouts[&w];
        (l.x, l.y)
    };
    assert_eq!(at(lead), (100.0, 50.0));
    assert_eq!(at(backend), (116.0, 180.0));
}

async fn bad_templates_are_refused_and_nothing_is_created(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n\
        name: bomb\nworkspaces: []\n";
    write_tree(
        &dir.path().join("org-templates"),
        &[
            ("bomb/org.yaml", bomb),
            ("cycle/org.yaml", "name: c\nworkspaces: !include a.yaml\n"),
            ("cycle/a.yaml", "!include b.yaml\n"),
            ("cycle/b.yaml", "!include a.yaml\n"),
            (
                "escape/org.yaml",
                "name: e\nworkspaces: !include ../secret.yaml\n",
            ),
            (
                "prompt-escape/org.yaml",
                "name: p\nworkspaces:\n  - name: A\n    files_dir: role\n    initial_prompt_file: ../../secret.md\n",
            ),
            (
                "files-escape/org.yaml",
                "name: f\nworkspaces:\n  - name: A\n    files_dir: ../../etc\n",
            ),
            (
                "template-escape/org.yaml",
                "name: t\nworkspaces:\n  - name: A\n    template: ../../etc\n",
            ),
            (
                "bad-plugin/org.yaml",
                "name: b\nworkspaces:\n  - name: A\n    plugins: [\"../../etc\"]\n",
            ),
            (
                "late-error/org.yaml",
                "name: l\nworkspaces:\n  - name: A\n  - name: B\n    workspace_dir: /etc/x\n",
            ),
            ("shape/org.yaml", "name: s\nworkspaces: {not: a list}\n"),
            ("anyof/org.yaml", "name: s\nrequired_env: [{any_of: []}]\n"),
            ("secret.yaml", "[]\n"),
            ("secret.md", "no"),
        ],
    );
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let import = |body: Value| s.admin("POST", "/org/import", Some(body));
    let started = std::time::Instant::now();
    assert_error(
        import(json!({"dir": "bomb"})).await,
        400,
        "org template expansion failed",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the bomb was not refused fast"
    );
    assert_error(
        import(json!({"dir": "cycle"})).await,
        400,
        "org template expansion failed",
    );
    assert_error(
        import(json!({"dir": "escape"})).await,
        400,
        "org template expansion failed",
    );
    assert_error(
        import(json!({"dir": "shape"})).await,
        400,
        "invalid org template",
    );
    assert_error(
        import(json!({"dir": "anyof"})).await,
        400,
        "invalid org template",
    );
    for (dir, message) in [
        (
            "prompt-escape",
            "workspace A: prompt file \"../../secret.md\" is outside the template directory",
        ),
        (
            "files-escape",
            "workspace A: files_dir is outside the template",
        ),
        (
            "template-escape",
            "workspace A: template is outside the templates directory",
        ),
        ("late-error", "workspace B: invalid workspace_dir"),
    ] {
        assert_error(import(json!({"dir": dir})).await, 400, message);
    }
    let (status, body) = import(json!({"dir": "bad-plugin"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("workspace A: plugin"),
        "{body}"
    );
    assert_error(
        import(json!({"dir": "../org-templates/bomb/.."})).await,
        400,
        "invalid org directory",
    );
    assert_error(
        import(json!({"dir": "/etc"})).await,
        400,
        "invalid org directory",
    );
    assert_error(
        import(json!({"dir": "missing"})).await,
        404,
        "org template not found: missing",
    );
    assert_error(import(json!({})).await, 400, "provide 'dir' or 'template'");
    assert_error(
        s.call_raw("POST", "/org/import", Some(ADMIN), "{").await,
        400,
        "invalid request body",
    );
    // An inline template may not reference files.
    let inline = json!({"template": {"name": "x", "workspaces": [{"name": "A", "initial_prompt_file": "p.md"}]}});
    let (status, body) = import(inline).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("inline-template"),
        "{body}"
    );
    assert_eq!(count(&s).await, 0, "a refused import created workspaces");
    assert_eq!(s.backend().start_count(), 0);
    // The listing skips the broken ones and keeps the good.
    let listed = assert_status(s.admin("GET", "/org/templates", None).await, 200);
    let dirs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["dir"].as_str().unwrap())
        .collect();
    assert!(
        !dirs.contains(&"bomb") && !dirs.contains(&"cycle") && dirs.contains(&"late-error"),
        "{listed}"
    );
}

async fn required_env_is_checked_against_global_secrets(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let template = json!({"template": {"name": "Inline", "required_env": ["API_KEY", {"any_of": ["A_TOKEN", "B_TOKEN"]}],
        "workspaces": [{"name": "Solo", "external": true, "url": "http://agent.test:9000"}]}});
    let (status, body) = s.admin("POST", "/org/import", Some(template.clone())).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(
        body["missing_env"],
        json!(["API_KEY", {"any_of": ["A_TOKEN", "B_TOKEN"]}])
    );
    assert_eq!(body["template"], "Inline");
    assert_eq!(count(&s).await, 0);
    s.state
        .store
        .secrets()
        .set_global("API_KEY", "k")
        .await
        .unwrap();
    s.state
        .store
        .secrets()
        .set_global("B_TOKEN", "t")
        .await
        .unwrap();
    let reply = assert_status(s.admin("POST", "/org/import", Some(template)).await, 201);
    let id: WorkspaceId = reply["workspaces"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reply["workspaces"][0]["auth_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(
        s.row(id).await.url.as_deref(),
        Some("http://agent.test:9000")
    );
    assert_eq!(
        s.backend().start_count(),
        0,
        "an external workspace is not provisioned"
    );
}

/// Makes every insert of a workspace named `name` fail in the database itself (a trigger: a
/// real database refusing a row, which no template can provoke once the plan is validated).
async fn refuse_inserts_named(db: &TestStore, name: &str) {
    let sql = if db.url().starts_with("sqlite") {
        format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON workspaces WHEN NEW.name = '{name}' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    } else {
        format!(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
             IF NEW.name = '{name}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END \
             $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON workspaces FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    };
    db.execute_raw(&sql).await;
}

async fn a_failure_half_way_leaves_no_half_imported_org(db: TestStore) {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        &dir.path().join("org-templates/dev"),
        &[
            ("org.yaml", ORG),
            ("teams/dev.yaml", TEAM),
            ("welcome.md", "Welcome."),
            ("lead/initial-prompt.md", "Lead."),
            ("lead/standup.md", "Post the standup."),
            ("lead/.env", "LEAD_KEY=lead-secret\n"),
        ],
    );
    // The last of the four nodes fails: three rows (with a secret and a schedule) exist by then.
    refuse_inserts_named(&db, "Fuzzer").await;
    let s = TestServer::start_configured(db, Options::STRICT, with_dirs(dir.path(), None)).await;
    let (status, body) = s
        .admin("POST", "/org/import", Some(json!({"dir": "dev"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("org import failed; nothing was created")),
        "{body}"
    );
    assert!(
        !body.to_string().contains("refused"),
        "the database's text leaked: {body}"
    );
    // Rolled back by removal: no rows at all (purged), nothing started.
    let rows = s.db().query_i64("SELECT COUNT(*) FROM workspaces").await;
    assert_eq!(rows, 0, "a half-imported org is left");
    assert_eq!(count(&s).await, 0);
    assert_eq!(
        s.backend().start_count(),
        0,
        "nothing starts before every row exists"
    );
}
