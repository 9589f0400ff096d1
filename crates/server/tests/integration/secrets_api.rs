//! Secrets, model/provider and org API tokens over real HTTP against the real router, on both
//! databases: values encrypted at rest, the override order, who may read values, the merged
//! environment of the provision request, and org tokens' lifecycle.

use crate::common::{ADMIN, Options, TestServer};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

on_both_backends!(
    values_are_ciphertext_and_the_workspace_overrides_global,
    values_are_for_the_workspace_itself,
    a_restart_takes_changed_secrets,
    model_and_provider_routes,
    plaintext_rows_stay_readable_and_undecryptable_ones_fail_closed,
    org_tokens_are_admin_until_revoked,
    org_token_minting_is_rate_limited,
    secret_keys_must_be_environment_variable_names,
);

/// Secret keys become environment variable names of the workspace: anything else is a 400
/// with a clear message and nothing is stored (issue 11: NUL, newlines, `=`, `../`, bidi
/// controls and 900 KiB keys used to be stored, and `A=B` could inject a reserved variable).
async fn secret_keys_must_be_environment_variable_names(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "keys"})).await;
    let not_a_name = "key must be an environment variable name: a letter or '_' followed by \
                      letters, digits or '_'";
    let huge = "K".repeat(900 * 1024);
    let cases: Vec<(&str, &str)> = vec![
        ("A\u{0}B", not_a_name),
        ("A\nB", not_a_name),
        ("X=1\nWORKSPACE_ID", not_a_name),
        ("PLATFORM_URL=http://evil", not_a_name),
        ("A B", not_a_name),
        ("../etc/passwd", not_a_name),
        ("A\u{202e}B", not_a_name),
        ("9LIVES", not_a_name),
        (&huge, "key must be at most 128 characters"),
        (
            "WORKSPACE_ID",
            "key WORKSPACE_ID is reserved by the platform",
        ),
        (
            "PLATFORM_URL",
            "key PLATFORM_URL is reserved by the platform",
        ),
    ];
    for (key, error) in &cases {
        let shown = &key[..key.len().min(20)];
        for (path, scope) in [
            (format!("/workspaces/{id}/secrets"), "workspace"),
            ("/settings/secrets".to_owned(), "global"),
        ] {
            let (status, reply) = s
                .call(
                    "PUT",
                    &path,
                    Some(ADMIN),
                    Some(json!({"key": key, "value": "v"})),
                )
                .await;
            assert_eq!(
                (status, reply["error"].as_str()),
                (400, Some(*error)),
                "{scope} {shown:?}"
            );
        }
        let (status, reply) = s
            .call(
                "POST",
                "/workspaces",
                Some(ADMIN),
                Some(json!({"name": "with-bad-key", "secrets": {(*key): "v"}})),
            )
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(*error)),
            "create {shown:?}"
        );
    }
    let secrets = s.state.store.secrets();
    assert!(secrets.list_workspace(id).await.unwrap().is_empty());
    assert!(secrets.list_global().await.unwrap().is_empty());
    let (_, list) = s.call("GET", "/workspaces", Some(ADMIN), None).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "no workspace was created"
    );
    // Ordinary names pass.
    let (status, reply) = s
        .call(
            "PUT",
            &format!("/workspaces/{id}/secrets"),
            Some(ADMIN),
            Some(json!({"key": "OPENAI_API_KEY_2", "value": "v"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
}

async fn server(db: TestStore) -> TestServer {
    TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await
}

fn env_of(s: &TestServer, id: molecule_domain::WorkspaceId, nth: usize) -> Vec<(String, String)> {
    let starts = s.backend().starts.lock().unwrap();
    let req = starts
        .iter()
        .filter(|r| r.workspace_id == id)
        .nth(nth)
        .expect("a recorded start");
    req.env
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

async fn values_are_ciphertext_and_the_workspace_overrides_global(db: TestStore) {
    let s = server(db).await;
    for (key, value) in [
        ("SHARED", "global-shared-v"),
        ("ONLY_GLOBAL", "global-only-v"),
    ] {
        let (status, reply) = s
            .call(
                "PUT",
                "/settings/secrets",
                Some(ADMIN),
                Some(json!({"key": key, "value": value})),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(
            reply,
            json!({"status": "saved", "key": key, "scope": "global"})
        );
    }
    let id = s
        .create(json!({
            "name": "w",
            "model": "anthropic/claude-sonnet",
            "secrets": {"SHARED": "ws-shared-v", "ONLY_WS": "ws-only-v"},
        }))
        .await;
    // At rest: ciphertext with version 1, never the value.
    let secrets = s.state.store.secrets();
    let (bytes, version) = secrets.raw_workspace(id, "SHARED").await.unwrap().unwrap();
    assert_eq!(version, molecule_store::VERSION_AES_GCM);
    assert!(!String::from_utf8_lossy(&bytes).contains("ws-shared"));
    let (gbytes, gversion) = secrets.raw_global("ONLY_GLOBAL").await.unwrap().unwrap();
    assert_eq!(gversion, molecule_store::VERSION_AES_GCM);
    assert!(!String::from_utf8_lossy(&gbytes).contains("global-only"));
    // The provision request carries the merged environment, workspace over global.
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let env: std::collections::BTreeMap<_, _> = env_of(&s, id, 0).into_iter().collect();
    assert_eq!(env["SHARED"], "ws-shared-v");
    assert_eq!(env["ONLY_WS"], "ws-only-v");
    assert_eq!(env["ONLY_GLOBAL"], "global-only-v");
    assert_eq!(env["MODEL_PROVIDER"], "anthropic/claude-sonnet");
    assert_eq!(env["LLM_PROVIDER"], "anthropic");
    assert_eq!(env["MODEL"], "anthropic/claude-sonnet");
    {
        let starts = s.backend().starts.lock().unwrap();
        assert_eq!(starts[0].model.as_deref(), Some("anthropic/claude-sonnet"));
    }
    // Lists: keys and scopes, never values; overridden globals are not repeated.
    let (status, list) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/secrets"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains("-v\""), "a value was listed: {text}");
    let keys: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["has_value"], true);
            assert!(e["created_at"].is_string() && e["updated_at"].is_string());
            (
                e["key"].as_str().unwrap().to_owned(),
                e["scope"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, s)| (k.as_str(), s.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("LLM_PROVIDER", "workspace"),
            ("MODEL_PROVIDER", "workspace"),
            ("ONLY_WS", "workspace"),
            ("SHARED", "workspace"),
            ("ONLY_GLOBAL", "global"),
        ]
    );
    for path in ["/settings/secrets", "/admin/secrets"] {
        let (status, global) = s.call("GET", path, Some(ADMIN), None).await;
        assert_eq!(status, 200);
        assert_eq!(global.as_array().unwrap().len(), 2);
        assert!(!global.to_string().contains("global-only-v"));
    }
    // Delete: workspace then global, and their 404s.
    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{id}/secrets/ONLY_WS"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"status": "deleted", "key": "ONLY_WS"}))
    );
    let (status, reply) = s
        .call(
            "DELETE",
            &format!("/workspaces/{id}/secrets/ONLY_WS"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!((status, reply), (404, json!({"error": "secret not found"})));
    let (status, reply) = s
        .call("DELETE", "/admin/secrets/ONLY_GLOBAL", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"status": "deleted", "key": "ONLY_GLOBAL", "scope": "global"})
        )
    );
    let (status, _) = s
        .call("DELETE", "/settings/secrets/ONLY_GLOBAL", Some(ADMIN), None)
        .await;
    assert_eq!(status, 404);
    // Bad bodies.
    for body in [
        json!({"key": "K"}),
        json!({"key": "", "value": "v"}),
        json!({"value": "v"}),
    ] {
        let (status, reply) = s
            .call(
                "POST",
                &format!("/workspaces/{id}/secrets"),
                Some(ADMIN),
                Some(body),
            )
            .await;
        assert_eq!(
            (status, reply),
            (400, json!({"error": "invalid request body"}))
        );
    }
    let (status, reply) = s
        .call("GET", "/workspaces/not-a-uuid/secrets", Some(ADMIN), None)
        .await;
    assert_eq!(status, 400, "{reply}");
}

async fn values_are_for_the_workspace_itself(db: TestStore) {
    let s = server(db).await;
    let id = s
        .create(json!({"name": "w", "secrets": {"K": "own-value"}}))
        .await;
    let other = s.create(json!({"name": "o"})).await;
    s.backend()
        .wait_for(|b| b.started(id) >= 1 && b.started(other) >= 1)
        .await;
    let own_token = {
        let starts = s.backend().starts.lock().unwrap();
        let r = starts.iter().find(|r| r.workspace_id == id).unwrap();
        r.auth_token.as_ref().unwrap().expose().to_owned()
    };
    let other_token = s.state.store.tokens().issue(other).await.unwrap().token;
    let org = s
        .state
        .store
        .org_tokens()
        .issue(Some("ops"), "admin-token", None)
        .await
        .unwrap()
        .token;
    let path = format!("/workspaces/{id}/secrets/values");
    let (status, reply) = s.call("GET", &path, Some(&own_token), None).await;
    assert_eq!((status, reply), (200, json!({"K": "own-value"})));
    for (who, token) in [
        ("admin", Some(ADMIN)),
        ("org", Some(org.expose())),
        ("foreign", Some(other_token.expose())),
        ("nobody", None),
    ] {
        let (status, reply) = s.call("GET", &path, token, None).await;
        assert_eq!(status, 401, "{who}: {reply}");
        assert!(!reply.to_string().contains("own-value"));
    }
    // The org token is still a full workspace credential on the other routes.
    let (status, _) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/secrets"),
            Some(org.expose()),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

async fn a_restart_takes_changed_secrets(db: TestStore) {
    let s = server(db).await;
    let id = s
        .create(json!({"name": "w", "secrets": {"K": "first"}}))
        .await;
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let (status, reply) = s
        .call(
            "PUT",
            &format!("/workspaces/{id}/secrets"),
            Some(ADMIN),
            Some(json!({"key": "K", "value": "second"})),
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"status": "saved", "key": "K"}))
    );
    // Setting a secret restarts the workspace; the new start carries the new value.
    s.backend().wait_for(|b| b.started(id) >= 2).await;
    let env: std::collections::BTreeMap<_, _> = env_of(&s, id, 1).into_iter().collect();
    assert_eq!(env["K"], "second");
    // A global secret change restarts the workspaces that see it.
    let (status, _) = s
        .call(
            "POST",
            "/admin/secrets",
            Some(ADMIN),
            Some(json!({"key": "G", "value": "global"})),
        )
        .await;
    assert_eq!(status, 200);
    s.backend().wait_for(|b| b.started(id) >= 3).await;
    let env: std::collections::BTreeMap<_, _> = env_of(&s, id, 2).into_iter().collect();
    assert_eq!(env["G"], "global");
    assert_eq!(env["K"], "second");
}

async fn model_and_provider_routes(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "w", "model": "sonnet"})).await;
    let (status, reply) = s
        .call("GET", &format!("/workspaces/{id}/model"), Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"model": "sonnet", "source": "workspace_secrets"})
        )
    );
    // No known provider prefix: no LLM_PROVIDER row.
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/provider"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"provider": "", "source": "default"}))
    );
    let (status, reply) = s
        .call(
            "PUT",
            &format!("/workspaces/{id}/provider"),
            Some(ADMIN),
            Some(json!({"provider": "openrouter"})),
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"status": "saved", "provider": "openrouter"}))
    );
    let (status, reply) = s
        .call(
            "PUT",
            &format!("/workspaces/{id}/model"),
            Some(ADMIN),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, reply), (200, json!({"status": "cleared"})));
    let (_, reply) = s
        .call("GET", &format!("/workspaces/{id}/model"), Some(ADMIN), None)
        .await;
    assert_eq!(reply, json!({"model": "", "source": "default"}));
    let (_, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/provider"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        reply,
        json!({"provider": "openrouter", "source": "workspace_secrets"})
    );
    let (status, _) = s
        .call_raw(
            "PUT",
            &format!("/workspaces/{id}/model"),
            Some(ADMIN),
            "not json",
        )
        .await;
    assert_eq!(status, 400);
}

async fn plaintext_rows_stay_readable_and_undecryptable_ones_fail_closed(db: TestStore) {
    let s = server(db).await;
    let id = s.create(json!({"name": "w"})).await;
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let secrets = s.state.store.secrets();
    // A row written by an older server without a key.
    secrets
        .put_raw_workspace(id, "OLD", b"old-plain", molecule_store::VERSION_PLAINTEXT)
        .await
        .unwrap();
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/secrets/values"),
            Some(ADMIN),
            None,
        )
        .await;
    // The workspace has a live token (minted at provision): admin is refused.
    assert_eq!(status, 401, "{reply}");
    let token = s.state.store.tokens().issue(id).await.unwrap().token;
    let path = format!("/workspaces/{id}/secrets/values");
    let (status, reply) = s.call("GET", &path, Some(token.expose()), None).await;
    assert_eq!((status, reply), (200, json!({"OLD": "old-plain"})));
    // A value encrypted under another key: no partial bundle, and provisioning aborts with
    // the canned reason.
    secrets
        .put_raw_workspace(id, "BAD", &[0u8; 40], molecule_store::VERSION_AES_GCM)
        .await
        .unwrap();
    let (status, reply) = s.call("GET", &path, Some(token.expose()), None).await;
    assert_eq!(status, 500);
    assert_eq!(
        reply,
        json!({
            "error": "one or more secrets failed to decrypt; refusing to return partial bundle",
            "failed_keys": ["workspace:BAD"],
        })
    );
    let (status, _) = s
        .call(
            "POST",
            &format!("/workspaces/{id}/restart"),
            Some(ADMIN),
            None,
        )
        .await;
    assert!(status < 300, "{status}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ws = s.state.store.workspaces().get(id).await.unwrap().unwrap();
        if ws.status == molecule_domain::WorkspaceStatus::Failed {
            assert_eq!(
                ws.last_sample_error.as_deref(),
                Some("failed to decrypt workspace secret")
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not failed: {:?}",
            ws.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(s.backend().started(id), 1, "no start with a broken secret");
}

async fn org_tokens_are_admin_until_revoked(db: TestStore) {
    let s = server(db).await;
    let (status, minted) = s
        .call(
            "POST",
            "/org/tokens",
            Some(ADMIN),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert_eq!(minted["name"], "ci");
    assert_eq!(minted["prefix"], token[..8]);
    assert_eq!(
        minted["warning"],
        "copy this token now; it will not be shown again"
    );
    // Admin routes and any workspace's routes.
    let (status, _) = s.call("GET", "/workspaces", Some(&token), None).await;
    assert_eq!(status, 200);
    let id = s.create(json!({"name": "w"})).await;
    let (status, _) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/model"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // A token minted by an org token records it.
    let (status, child) = s.call_raw("POST", "/org/tokens", Some(&token), "").await;
    assert_eq!(status, 200);
    assert!(child.get("name").is_none());
    let (status, list) = s.call("GET", "/org/tokens", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 2);
    let text = list.to_string();
    assert!(!text.contains(&token), "the token text was listed");
    let newest = &list["tokens"][0];
    assert_eq!(newest["id"], child["id"]);
    assert_eq!(newest["created_by"], format!("org-token:{}", &token[..8]));
    assert_eq!(list["tokens"][1]["created_by"], "admin-token");
    assert!(list["tokens"][1]["last_used_at"].is_string());
    // Name too long.
    let (status, reply) = s
        .call(
            "POST",
            "/org/tokens",
            Some(ADMIN),
            Some(json!({"name": "x".repeat(101)})),
        )
        .await;
    assert_eq!(
        (status, reply),
        (400, json!({"error": "name too long (max 100 chars)"}))
    );
    // Revoked: refused at once, everywhere.
    let tid = minted["id"].as_str().unwrap();
    let (status, reply) = s
        .call("DELETE", &format!("/org/tokens/{tid}"), Some(ADMIN), None)
        .await;
    assert_eq!((status, reply), (200, json!({"revoked": tid})));
    let (status, reply) = s.call("GET", "/workspaces", Some(&token), None).await;
    assert_eq!(
        (status, reply),
        (401, json!({"error": "invalid admin auth token"}))
    );
    let (status, reply) = s
        .call(
            "GET",
            &format!("/workspaces/{id}/model"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, reply),
        (401, json!({"error": "invalid workspace auth token"}))
    );
    let (status, _) = s
        .call("DELETE", &format!("/org/tokens/{tid}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .call("DELETE", "/org/tokens/junk", Some(ADMIN), None)
        .await;
    assert_eq!(status, 404);
    // A workspace token is never admin, so it cannot mint.
    let wtoken = s.state.store.tokens().issue(id).await.unwrap().token;
    let (status, _) = s
        .call("POST", "/org/tokens", Some(wtoken.expose()), None)
        .await;
    assert_eq!(status, 401);
}

async fn org_token_minting_is_rate_limited(db: TestStore) {
    let s = server(db).await;
    for n in 0..10 {
        let (status, reply) = s.call("POST", "/org/tokens", Some(ADMIN), None).await;
        assert_eq!(status, 200, "mint {n}: {reply}");
    }
    let (status, reply) = s.call("POST", "/org/tokens", Some(ADMIN), None).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"], "rate limit exceeded");
    // Listing is not limited.
    let (status, list) = s.call("GET", "/org/tokens", Some(ADMIN), None).await;
    assert_eq!((status, list["count"].as_i64()), (200, Some(10)));
}
