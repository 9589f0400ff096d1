//! The Files API and terminal routes without a real backend (the recording double, on both
//! databases): the order of the checks, the 400/404/422/503 answers, the template fallback
//! while the compute is not running, the shared context, and the terminal's cross-workspace
//! check. The real container paths are in `docker_e2e::files`.

use molecule_provisioner_api::Running;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{ADMIN, Options, TestServer, assert_error, assert_status};

on_both_backends!(
    checks_run_in_the_spec_order,
    a_stopped_workspace_reads_its_template,
    the_terminal_checks_its_caller,
);

const BAD_ROOT: &str = "root must be one of: /configs, /workspace, /home, /plugins";
const TRANSIENT: &str = "could not determine workspace container state; retry";

async fn checks_run_in_the_spec_order(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "files-order"})).await;
    let unknown = molecule_domain::WorkspaceId::new();
    let f = |ws: &dyn std::fmt::Display, rest: &str| format!("/workspaces/{ws}/files{rest}");

    // List: root → path → depth → lookup.
    assert_error(
        s.admin("GET", &f(&unknown, "?root=/etc&path=../x"), None)
            .await,
        400,
        BAD_ROOT,
    );
    let r = s
        .admin("GET", &f(&unknown, "?path=../x&depth=9"), None)
        .await;
    assert_error(r, 400, "invalid path");
    for depth in ["0", "6", "x", "-1"] {
        let r = s
            .admin("GET", &f(&unknown, &format!("?depth={depth}")), None)
            .await;
        assert_error(r, 400, "depth must be 1-5");
    }
    assert_error(
        s.admin("GET", &f(&unknown, ""), None).await,
        404,
        "workspace not found",
    );
    // Read: path → root → lookup.
    let r = s
        .admin("GET", &f(&unknown, "/..%2Fx?root=/etc"), None)
        .await;
    assert_error(r, 400, "invalid path");
    assert_error(
        s.admin("GET", &f(&unknown, "/a%00b"), None).await,
        400,
        "invalid path",
    );
    assert_error(
        s.admin("GET", &f(&unknown, "/a?root=/etc"), None).await,
        400,
        BAD_ROOT,
    );
    assert_error(
        s.admin("GET", &f(&unknown, "/a"), None).await,
        404,
        "workspace not found",
    );
    // Write: path → body → lookup.
    let r = s
        .call_raw("PUT", &f(&unknown, "/..%2Fx"), Some(ADMIN), "not json")
        .await;
    assert_error(r, 400, "invalid path");
    let r = s
        .call_raw("PUT", &f(&unknown, "/a"), Some(ADMIN), "{}")
        .await;
    assert_error(r, 400, "invalid request body");
    let r = s.admin(
        "PUT",
        &f(&unknown, "/a"),
        Some(json!({"content": "x", "encoding": "rot13"})),
    );
    assert_error(r.await, 400, "invalid request body");
    let r = s
        .admin("PUT", &f(&unknown, "/a"), Some(json!({"content": "x"})))
        .await;
    assert_error(r, 404, "workspace not found");
    // Delete: validation before anything else.
    let r = s.admin("DELETE", &f(&unknown, "//etc/passwd"), None).await;
    assert_error(r, 400, "absolute paths not permitted");
    assert_error(
        s.admin("DELETE", &f(&unknown, "/a..b"), None).await,
        400,
        "invalid path",
    );
    assert_error(
        s.admin("DELETE", &f(&unknown, "/a"), None).await,
        404,
        "workspace not found",
    );
    // Bulk: size → lookup → paths.
    let many: serde_json::Map<_, _> = (0..201).map(|i| (format!("f{i}"), json!("x"))).collect();
    let r = s
        .admin("PUT", &f(&unknown, ""), Some(json!({"files": many})))
        .await;
    assert_error(r, 400, "too many files (201), max 200");
    let r = s
        .admin(
            "PUT",
            &f(&unknown, ""),
            Some(json!({"files": {"../x": "1"}})),
        )
        .await;
    assert_error(r, 404, "workspace not found");
    let r = s
        .admin("PUT", &f(&id, ""), Some(json!({"files": {"../x": "1"}})))
        .await;
    assert_error(r, 400, "invalid request body");
    let r = s
        .admin("PUT", &f(&id, ""), Some(json!({"files": ["a"]})))
        .await;
    assert_error(r, 400, "invalid request body");

    // An oversize file is refused before the backend is asked.
    let big = "x".repeat(5 * 1024 * 1024 + 1);
    let r = s
        .admin("PUT", &f(&id, "/big"), Some(json!({"content": big})))
        .await;
    assert_error(r, 413, "file too large (max 5 MiB)");

    // A transient backend failure is a 503 of its own, never "not running" or a fallback.
    for (method, path) in [
        ("GET", f(&id, "/a")),
        ("GET", f(&id, "")),
        ("DELETE", f(&id, "/a")),
    ] {
        s.backend()
            .answer_running(Running::Unknown("daemon timeout".into()));
        assert_error(s.admin(method, &path, None).await, 503, TRANSIENT);
    }
    s.backend()
        .answer_running(Running::Unknown("daemon timeout".into()));
    let r = s
        .admin("PUT", &f(&id, "/a"), Some(json!({"content": "x"})))
        .await;
    assert_error(r, 503, TRANSIENT);
    // A backend without file access says so.
    *s.backend().no_file_access.lock().unwrap() = true;
    let r = s.admin("GET", &f(&id, "/a"), None).await;
    assert_error(
        r,
        501,
        "file access is not supported by this workspace's backend",
    );

    // External workspaces: no writes, no terminal.
    let (ext, _) = s.external("files-ext", None).await;
    let r = s
        .admin("PUT", &f(&ext, "/a"), Some(json!({"content": "x"})))
        .await;
    assert_error(r, 422, "file access is not supported for external runtimes");
    let r = s.admin("DELETE", &f(&ext, "/a"), None).await;
    assert_error(r, 422, "file access is not supported for external runtimes");
    let r = s
        .admin("GET", &format!("/workspaces/{ext}/terminal/diagnose"), None)
        .await;
    assert_error(r, 422, "terminal is not supported for external runtimes");
}

async fn a_stopped_workspace_reads_its_template(db: TestStore) {
    let configs = tempfile::tempdir().unwrap();
    let tpl = configs.path().join("files-tpl");
    std::fs::create_dir_all(tpl.join("notes/deep")).unwrap();
    std::fs::create_dir_all(tpl.join(".git")).unwrap();
    std::fs::write(
        tpl.join("config.yaml"),
        "name: Files Tpl\nshared_context:\n  - notes/a.md\n  - ../etc/passwd\n  - missing.md\n  - bin.dat\n",
    )
    .unwrap();
    std::fs::write(tpl.join("notes/a.md"), "# A\n").unwrap();
    std::fs::write(tpl.join("notes/deep/b.md"), "b").unwrap();
    std::fs::write(tpl.join("bin.dat"), [0u8, 0xff]).unwrap();
    std::fs::write(tpl.join(".git/HEAD"), "ref").unwrap();
    std::os::unix::fs::symlink("/etc", tpl.join("etc-link")).unwrap();
    let dir = configs.path().to_path_buf();
    let s = TestServer::start_configured(db, Options::STRICT, |st| st.with_configs_dir(Some(dir)))
        .await;
    let id = s.create(json!({"name": "Files Tpl"})).await;
    let f = |rest: &str| format!("/workspaces/{id}/files{rest}");
    let stopped = || s.backend().answer_running(Running::No);
    let config_size = std::fs::metadata(tpl.join("config.yaml")).unwrap().len();

    stopped();
    let listed = assert_status(s.admin("GET", &f(""), None).await, 200);
    assert_eq!(
        listed,
        json!([
            {"path": "bin.dat", "size": 2, "dir": false},
            {"path": "config.yaml", "size": config_size, "dir": false},
            {"path": "etc-link", "size": 0, "dir": false},
            {"path": "notes", "size": 0, "dir": true},
        ])
    );
    stopped();
    let deep = assert_status(s.admin("GET", &f("?path=notes&depth=2"), None).await, 200);
    assert_eq!(
        deep,
        json!([
            {"path": "a.md", "size": 4, "dir": false},
            {"path": "deep", "size": 0, "dir": true},
            {"path": "deep/b.md", "size": 1, "dir": false},
        ])
    );
    stopped();
    let a = assert_status(s.admin("GET", &f("/notes/a.md"), None).await, 200);
    assert_eq!(
        a,
        json!({"path": "notes/a.md", "content": "# A\n", "size": 4})
    );
    stopped();
    let bin = assert_status(s.admin("GET", &f("/bin.dat"), None).await, 200);
    assert_eq!(
        bin,
        json!({"path": "bin.dat", "content": "AP8=", "size": 2, "encoding": "base64"})
    );
    // A link in the template is not followed.
    stopped();
    assert_error(
        s.admin("GET", &f("/etc-link/passwd"), None).await,
        404,
        "file not found",
    );
    stopped();
    assert_eq!(
        assert_status(s.admin("GET", &f("?path=etc-link"), None).await, 200),
        json!([])
    );
    stopped();
    assert_error(
        s.admin("GET", &f("/missing"), None).await,
        404,
        "file not found",
    );

    stopped();
    let shared = assert_status(
        s.admin("GET", &format!("/workspaces/{id}/shared-context"), None)
            .await,
        200,
    );
    assert_eq!(
        shared,
        json!([
            {"path": "notes/a.md", "content": "# A\n"},
            {"path": "bin.dat", "content": "AP8=", "encoding": "base64"},
        ])
    );

    // A workspace without a template.
    let other = s.create(json!({"name": "no template here"})).await;
    stopped();
    let r = s
        .admin("GET", &format!("/workspaces/{other}/files/a"), None)
        .await;
    assert_error(r, 404, "file not found (container offline, no template)");
    stopped();
    let r = s
        .admin("GET", &format!("/workspaces/{other}/files"), None)
        .await;
    assert_eq!(assert_status(r, 200), json!([]));
    stopped();
    let r = s
        .admin("GET", &format!("/workspaces/{other}/shared-context"), None)
        .await;
    assert_eq!(assert_status(r, 200), json!([]));
}

async fn the_terminal_checks_its_caller(db: TestStore) {
    let s = TestServer::start(
        db,
        Options {
            backend: false,
            dev: false,
        },
    )
    .await;
    let parent = s.create(json!({"name": "term-parent"})).await;
    let child = s
        .create(json!({"name": "term-child", "parent_id": parent}))
        .await;
    let stranger_parent = s.create(json!({"name": "term-other"})).await;
    let stranger = s
        .create(json!({"name": "term-stranger", "parent_id": stranger_parent}))
        .await;
    let term = |id: &dyn std::fmt::Display| format!("/workspaces/{id}/terminal");
    let diag = |id: &dyn std::fmt::Display| format!("/workspaces/{id}/terminal/diagnose");

    // A bearer that is not the claimed caller's token (and not an org token).
    let r = s
        .get_as(&term(&child), Some(&stranger.to_string()), Some(ADMIN))
        .await;
    assert_error(r, 401, "invalid token for claimed workspace");
    // With an org token, the hierarchy decides.
    let org = s
        .state
        .store
        .org_tokens()
        .issue(Some("term"), "admin-token", None)
        .await
        .unwrap()
        .token;
    let r = s
        .get_as(
            &term(&child),
            Some(&stranger.to_string()),
            Some(org.expose()),
        )
        .await;
    assert_error(r, 403, "not authorized to access this workspace's terminal");
    let r = s
        .get_as(
            &diag(&child),
            Some(&stranger.to_string()),
            Some(org.expose()),
        )
        .await;
    assert_error(
        r,
        403,
        "not authorized to diagnose this workspace's terminal",
    );
    // A parent may reach its child; the same id in the header is no cross-workspace call.
    let r = s
        .get_as(&term(&child), Some(&parent.to_string()), Some(org.expose()))
        .await;
    assert_error(r, 503, "Docker not available");
    let r = s
        .get_as(&term(&child), Some(&child.to_string()), Some(ADMIN))
        .await;
    assert_error(r, 503, "Docker not available");
    let r = s
        .get_as(
            &term(&molecule_domain::WorkspaceId::new()),
            None,
            Some(ADMIN),
        )
        .await;
    assert_error(r, 404, "workspace not found");

    // No backend: the diagnosis says so at its first step.
    let report = assert_status(s.admin("GET", &diag(&child), None).await, 200);
    assert_eq!(report["ok"], false);
    assert_eq!(report["remote"], false);
    assert_eq!(report["first_failure"], "docker-available");
    assert_eq!(report["workspace_id"], child.to_string());
}
