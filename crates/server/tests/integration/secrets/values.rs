//! Secret values: ciphertext at rest with the workspace's over the global ones, read only by
//! the workspace itself, taken by a restart when they change; older plaintext rows stay
//! readable and undecryptable ones fail closed; keys are environment variable names; the
//! model and provider routes.

use std::collections::BTreeMap;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;

use crate::common::{ADMIN, TestServer, assert_json, assert_status};

on_both_backends!(
    values_are_ciphertext_and_the_workspace_overrides_global,
    values_are_for_the_workspace_itself,
    a_restart_takes_changed_secrets,
    plaintext_rows_stay_readable_and_undecryptable_ones_fail_closed,
    secret_keys_must_be_environment_variable_names,
    model_and_provider_routes,
);

/// The environment of the `nth` start of `id` (0: the first), values exposed.
fn env_of(s: &TestServer, id: WorkspaceId, nth: usize) -> BTreeMap<String, String> {
    let start = s.backend().starts_of(id).remove(nth);
    let env = start.env.iter();
    env.map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

async fn values_are_ciphertext_and_the_workspace_overrides_global(db: TestStore) {
    let s = TestServer::strict(db).await;
    for (key, value) in [
        ("SHARED", "global-shared-v"),
        ("ONLY_GLOBAL", "global-only-v"),
    ] {
        let secret = Some(json!({"key": key, "value": value}));
        let saved = s.admin("PUT", "/settings/secrets", secret).await;
        assert_json(
            saved,
            200,
            json!({"status": "saved", "key": key, "scope": "global"}),
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
    let env = env_of(&s, id, 0);
    assert_eq!(env["SHARED"], "ws-shared-v");
    assert_eq!(env["ONLY_WS"], "ws-only-v");
    assert_eq!(env["ONLY_GLOBAL"], "global-only-v");
    assert_eq!(env["MODEL_PROVIDER"], "anthropic/claude-sonnet");
    assert_eq!(env["LLM_PROVIDER"], "anthropic");
    assert_eq!(env["MODEL"], "anthropic/claude-sonnet");
    let first = s.backend().starts_of(id).remove(0);
    assert_eq!(first.model.as_deref(), Some("anthropic/claude-sonnet"));
    // Lists: keys and scopes, never values; overridden globals are not repeated.
    let path = format!("/workspaces/{id}/secrets");
    let (status, list) = s.admin("GET", &path, None).await;
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
        let (status, global) = s.admin("GET", path, None).await;
        assert_eq!(status, 200);
        assert_eq!(global.as_array().unwrap().len(), 2);
        assert!(!global.to_string().contains("global-only-v"));
    }
    // Delete: workspace then global, and their 404s.
    let only_ws = format!("{path}/ONLY_WS");
    let deleted = s.admin("DELETE", &only_ws, None).await;
    assert_json(deleted, 200, json!({"status": "deleted", "key": "ONLY_WS"}));
    let again = s.admin("DELETE", &only_ws, None).await;
    assert_json(again, 404, json!({"error": "secret not found"}));
    assert_json(
        s.admin("DELETE", "/admin/secrets/ONLY_GLOBAL", None).await,
        200,
        json!({"status": "deleted", "key": "ONLY_GLOBAL", "scope": "global"}),
    );
    let again = s.admin("DELETE", "/settings/secrets/ONLY_GLOBAL", None);
    assert_status(again.await, 404);
    // Bad bodies.
    for body in [
        json!({"key": "K"}),
        json!({"key": "", "value": "v"}),
        json!({"value": "v"}),
    ] {
        let refused = s.admin("POST", &path, Some(body)).await;
        assert_json(refused, 400, json!({"error": "invalid request body"}));
    }
    let invalid = s.admin("GET", "/workspaces/not-a-uuid/secrets", None);
    assert_status(invalid.await, 400);
}

async fn values_are_for_the_workspace_itself(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s
        .create(json!({"name": "w", "secrets": {"K": "own-value"}}))
        .await;
    let other = s.create(json!({"name": "o"})).await;
    s.backend()
        .wait_for(|b| b.started(id) >= 1 && b.started(other) >= 1)
        .await;
    let first = s.backend().starts_of(id).remove(0);
    let own_token = first.auth_token.unwrap().expose().to_owned();
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
    let own = s.call("GET", &path, Some(&own_token), None).await;
    assert_json(own, 200, json!({"K": "own-value"}));
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
    let keys = s.call(
        "GET",
        &format!("/workspaces/{id}/secrets"),
        Some(org.expose()),
        None,
    );
    assert_status(keys.await, 200);
}

async fn a_restart_takes_changed_secrets(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s
        .create(json!({"name": "w", "secrets": {"K": "first"}}))
        .await;
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let second = Some(json!({"key": "K", "value": "second"}));
    let saved = s.admin("PUT", &format!("/workspaces/{id}/secrets"), second);
    assert_json(saved.await, 200, json!({"status": "saved", "key": "K"}));
    // Setting a secret restarts the workspace; the new start carries the new value.
    s.backend().wait_for(|b| b.started(id) >= 2).await;
    let env = env_of(&s, id, 1);
    assert_eq!(env["K"], "second");
    // A global secret change restarts the workspaces that see it.
    let global = Some(json!({"key": "G", "value": "global"}));
    assert_status(s.admin("POST", "/admin/secrets", global).await, 200);
    s.backend().wait_for(|b| b.started(id) >= 3).await;
    let env = env_of(&s, id, 2);
    assert_eq!(env["G"], "global");
    assert_eq!(env["K"], "second");
}

async fn plaintext_rows_stay_readable_and_undecryptable_ones_fail_closed(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "w"})).await;
    s.backend().wait_for(|b| b.started(id) >= 1).await;
    let secrets = s.state.store.secrets();
    // A row written by an older server without a key.
    secrets
        .put_raw_workspace(id, "OLD", b"old-plain", molecule_store::VERSION_PLAINTEXT)
        .await
        .unwrap();
    let path = format!("/workspaces/{id}/secrets/values");
    // The workspace has a live token (minted at provision): admin is refused.
    assert_status(s.admin("GET", &path, None).await, 401);
    let token = s.state.store.tokens().issue(id).await.unwrap().token;
    let token = Some(token.expose());
    let read = s.call("GET", &path, token, None).await;
    assert_json(read, 200, json!({"OLD": "old-plain"}));
    // A value encrypted under another key: no partial bundle, and provisioning aborts with
    // the canned reason.
    secrets
        .put_raw_workspace(id, "BAD", &[0u8; 40], molecule_store::VERSION_AES_GCM)
        .await
        .unwrap();
    assert_json(
        s.call("GET", &path, token, None).await,
        500,
        json!({
            "error": "one or more secrets failed to decrypt; refusing to return partial bundle",
            "failed_keys": ["workspace:BAD"],
        }),
    );
    let (status, _) = s
        .admin("POST", &format!("/workspaces/{id}/restart"), None)
        .await;
    assert!(status < 300, "{status}");
    let failed = s.wait_row(id, "failed", |w| w.status == WorkspaceStatus::Failed);
    assert_eq!(
        failed.await.last_sample_error.as_deref(),
        Some("failed to decrypt workspace secret")
    );
    assert_eq!(s.backend().started(id), 1, "no start with a broken secret");
}

/// Secret keys become environment variable names of the workspace: anything else is a 400
/// with a clear message and nothing is stored (issue 11: NUL, newlines, `=`, `../`, bidi
/// controls and 900 KiB keys used to be stored, and `A=B` could inject a reserved variable).
async fn secret_keys_must_be_environment_variable_names(db: TestStore) {
    let s = TestServer::strict(db).await;
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
    let path = format!("/workspaces/{id}/secrets");
    for (key, error) in &cases {
        let shown = &key[..key.len().min(20)];
        for (path, scope) in [
            (path.as_str(), "workspace"),
            ("/settings/secrets", "global"),
        ] {
            let secret = Some(json!({"key": key, "value": "v"}));
            let (status, reply) = s.admin("PUT", path, secret).await;
            assert_eq!(
                (status, reply["error"].as_str()),
                (400, Some(*error)),
                "{scope} {shown:?}"
            );
        }
        let create = Some(json!({"name": "with-bad-key", "secrets": {(*key): "v"}}));
        let (status, reply) = s.admin("POST", "/workspaces", create).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(*error)),
            "create {shown:?}"
        );
    }
    let secrets = s.state.store.secrets();
    assert!(secrets.list_workspace(id).await.unwrap().is_empty());
    assert!(secrets.list_global().await.unwrap().is_empty());
    let (_, list) = s.admin("GET", "/workspaces", None).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "no workspace was created"
    );
    // Ordinary names pass.
    let ordinary = Some(json!({"key": "OPENAI_API_KEY_2", "value": "v"}));
    assert_status(s.admin("PUT", &path, ordinary).await, 200);
}

async fn model_and_provider_routes(db: TestStore) {
    let s = TestServer::strict(db).await;
    let id = s.create(json!({"name": "w", "model": "sonnet"})).await;
    let model = format!("/workspaces/{id}/model");
    let provider = format!("/workspaces/{id}/provider");
    assert_json(
        s.admin("GET", &model, None).await,
        200,
        json!({"model": "sonnet", "source": "workspace_secrets"}),
    );
    // No known provider prefix: no LLM_PROVIDER row.
    assert_json(
        s.admin("GET", &provider, None).await,
        200,
        json!({"provider": "", "source": "default"}),
    );
    let openrouter = Some(json!({"provider": "openrouter"}));
    assert_json(
        s.admin("PUT", &provider, openrouter).await,
        200,
        json!({"status": "saved", "provider": "openrouter"}),
    );
    let cleared = s.admin("PUT", &model, Some(json!({}))).await;
    assert_json(cleared, 200, json!({"status": "cleared"}));
    let (_, reply) = s.admin("GET", &model, None).await;
    assert_eq!(reply, json!({"model": "", "source": "default"}));
    let (_, reply) = s.admin("GET", &provider, None).await;
    assert_eq!(
        reply,
        json!({"provider": "openrouter", "source": "workspace_secrets"})
    );
    let (status, _) = s.call_raw("PUT", &model, Some(ADMIN), "not json").await;
    assert_eq!(status, 400);
}
