//! External workspaces' connection details: `GET …/external/connection` shows the create
//! answer's `connection` block again without any token, `POST …/external/rotate` replaces every
//! live token by a new one (the old one is refused at once, the new one registers), and the
//! block's platform URL follows `EXTERNAL_PLATFORM_URL`, else the proxy's forwarded headers,
//! else `Host`, never echoing a host that could break out of the snippets.

use molecule_server::HttpSettings;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::{ADMIN, Options, TestServer, assert_error, assert_status, connection_of};

on_both_backends!(
    the_connection_is_shown_again_without_a_token,
    rotate_replaces_every_token_at_once,
    only_live_external_workspaces_have_connections,
);

/// `GET …/external/connection` as admin with extra headers.
async fn connection_with(s: &TestServer, id: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = s
        .http
        .get(format!("{}/workspaces/{id}/external/connection", s.base))
        .bearer_auth(ADMIN);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = request.send().await.unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

async fn the_connection_is_shown_again_without_a_token(db: TestStore) {
    let s = TestServer::strict(db).await;
    let created = s
        .create_reply(json!({"name": "it's mine", "external": true}))
        .await;
    let (id, token) = connection_of(&created);
    let shown = connection_with(&s, &id.to_string(), &[]).await;
    assert_eq!(shown["id"], id.to_string());
    assert_eq!(shown["external"], true);
    assert_eq!(shown["status"], "awaiting_agent");
    let connection = &shown["connection"];
    assert_eq!(connection["auth_token"], "");
    assert!(
        !shown.to_string().contains(&token),
        "the token is shown once"
    );
    // The same block as at create, less the token.
    let mut at_create = created["connection"].clone();
    at_create["auth_token"] = json!("");
    assert_eq!(*connection, at_create);
    assert_eq!(connection["platform_url"], s.base);
    for snippet in [
        "python_snippet",
        "claude_code_channel_snippet",
        "universal_mcp_snippet",
        "hermes_channel_snippet",
        "codex_snippet",
        "openclaw_snippet",
    ] {
        let text = connection[snippet].as_str().unwrap();
        assert!(text.contains(&s.base), "{snippet}: {text}");
        assert!(text.contains(&id.to_string()), "{snippet}: {text}");
        assert!(text.contains("{{AUTH_TOKEN}}"), "{snippet}: {text}");
    }
    // The name's quote cannot end the shell word of the curl template.
    let curl = connection["curl_register_template"].as_str().unwrap();
    assert!(curl.contains(r"it'\''s mine"), "{curl}");

    // Behind a TLS proxy: its forwarded scheme and host; a host that is not a plain host
    // name is not echoed.
    let forwarded = connection_with(
        &s,
        &id.to_string(),
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "molecule.example.com, inner"),
        ],
    )
    .await;
    assert_eq!(
        forwarded["connection"]["platform_url"],
        "https://molecule.example.com"
    );
    let bad = connection_with(
        &s,
        &id.to_string(),
        &[("X-Forwarded-Host", "evil.example/'; rm -rf ~ #")],
    )
    .await;
    assert_eq!(bad["connection"]["platform_url"], s.base);
}

async fn rotate_replaces_every_token_at_once(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, old) = s.external("byo", None).await;
    let register = |token: &str| {
        s.register(
            Some(token),
            json!({"id": id, "delivery_mode": "poll", "agent_card": {"name": "byo"}}),
        )
    };
    assert_status(register(&old).await, 200);
    // A second live token, issued by the operator: rotate replaces it too.
    let extra = assert_status(
        s.admin("POST", &format!("/workspaces/{id}/tokens"), None)
            .await,
        201,
    );
    let extra = extra["auth_token"].as_str().unwrap().to_owned();

    let rotated = assert_status(
        s.admin("POST", &format!("/workspaces/{id}/external/rotate"), None)
            .await,
        200,
    );
    let (_, new) = connection_of(&rotated);
    assert_eq!(new.len(), 43);
    assert_ne!(new, old);
    assert_eq!(rotated["status"], "online");
    for refused in [&old, &extra] {
        assert_eq!(register(refused).await.0, 401);
        let beat = json!({"workspace_id": id, "active_tasks": 0});
        assert_eq!(s.heartbeat(Some(refused), beat).await.0, 401);
    }
    assert_status(register(&new).await, 200);
    let listed = assert_status(
        s.admin("GET", &format!("/workspaces/{id}/tokens"), None)
            .await,
        200,
    );
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
}

async fn only_live_external_workspaces_have_connections(db: TestStore) {
    let s = TestServer::strict(db).await;
    let (id, token) = s.stored_workspace("inside").await;
    for (method, route) in [("GET", "connection"), ("POST", "rotate")] {
        let path = format!("/workspaces/{id}/external/{route}");
        assert_error(
            s.admin(method, &path, None).await,
            400,
            "workspace is not external",
        );
        // Admin only: the workspace's own token is not enough.
        assert_eq!(s.call(method, &path, Some(&token), None).await.0, 401);
        let unknown = format!("/workspaces/{}/external/{route}", uuid::Uuid::new_v4());
        assert_error(
            s.admin(method, &unknown, None).await,
            404,
            "workspace not found",
        );
    }
    let (gone, _) = s.external("gone", None).await;
    assert_status(
        s.admin("DELETE", &format!("/workspaces/{gone}?confirm=true"), None)
            .await,
        200,
    );
    let path = format!("/workspaces/{gone}/external/rotate");
    assert_error(
        s.admin("POST", &path, None).await,
        404,
        "workspace not found",
    );
}

#[tokio::test]
async fn the_configured_public_url_wins() {
    let s = TestServer::start_configured(TestStore::sqlite().await, Options::STRICT, |s| {
        s.with_http(HttpSettings {
            external_platform_url: Some("https://agents.example.org".into()),
            ..HttpSettings::default()
        })
    })
    .await;
    let created = s
        .create_reply(json!({"name": "byo", "external": true}))
        .await;
    let connection = &created["connection"];
    assert_eq!(connection["platform_url"], "https://agents.example.org");
    assert_eq!(
        connection["registry_endpoint"],
        "https://agents.example.org/registry/register"
    );
    let id = created["id"].as_str().unwrap();
    let shown = connection_with(&s, id, &[("X-Forwarded-Host", "other.example")]).await;
    assert_eq!(
        shown["connection"]["platform_url"],
        "https://agents.example.org"
    );
}
