//! Walks the whole route table in strict mode: every guarded route refuses a missing
//! credential, a token of another workspace, and (on admin routes) a workspace token, and
//! accepts the right credential (the admin token and org tokens on admin and workspace
//! routes; only the workspace's own token on own-token routes). In dev mode the guards let
//! everything through.

use molecule_server::{Guard, HttpSettings, ROUTES, Route};
use molecule_store::testing::TestStore;
use molecule_store::{PlainToken, on_both_backends};
use serde_json::json;

use crate::common::{ADMIN, Options, TestServer};

on_both_backends!(strict_mode_matrix, dev_mode_lets_everything_through);

fn concrete(path: &str, id: &str) -> String {
    path.replace("{id}", id)
        .replace("{token_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{key}", "SOME_KEY")
        .replace("{queue_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{delegation_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{channel_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{type}", "unknown-type")
        .replace("{*path}", "config.yaml")
}

async fn strict_mode_matrix(db: TestStore) {
    // Every route several times from one address: the per-IP limit is raised out of the way.
    let s = TestServer::start_configured(db, Options::STRICT, |s| {
        s.with_http(HttpSettings {
            rate_limit: 100_000,
            ..HttpSettings::default()
        })
    })
    .await;
    let target = s.create(json!({"name": "target"})).await;
    let other = s.create(json!({"name": "other"})).await;
    // The tokens their starts carried: a token issued before the start would be rotated by it.
    let target_token = PlainToken::new(s.backend().token_of(target).await);
    let other_token = PlainToken::new(s.backend().token_of(other).await);
    let org_token = s
        .state
        .store
        .org_tokens()
        // Anchored to the target (a root, so its own org): `/orgs/{id}/…` routes refuse an
        // org token of another org or of none (spec templates §1.6).
        .issue(Some("matrix"), "admin-token", Some(target.as_uuid()))
        .await
        .unwrap()
        .token;
    let id = target.to_string();
    // Own-token routes: only the workspace's own token, never the admin token or an org
    // token (checked before the matrix below removes the workspace).
    for Route {
        method,
        path: template,
        guard,
        ..
    } in ROUTES
    {
        if *guard != Guard::WorkspaceOwn {
            continue;
        }
        // Provisioning revokes older tokens: take one issued after it.
        s.backend().wait_for(|b| b.started(target) >= 1).await;
        let own = s.state.store.tokens().issue(target).await.unwrap().token;
        let path = concrete(template, &id);
        let (status, reply) = s.call(method, &path, Some(own.expose()), None).await;
        assert!(
            status != 401 && status != 403,
            "{method} {template} with its own token: {status} {reply}"
        );
        for token in [ADMIN, org_token.expose()] {
            let (status, reply) = s.call(method, &path, Some(token), None).await;
            assert_eq!(status, 401, "{method} {template}: {reply}");
            assert_eq!(reply["error"], "invalid workspace auth token");
        }
    }
    // The workspace's own token passes its workspace routes (checked first: the matrix below
    // deletes the workspace with the admin token).
    for Route {
        method,
        path: template,
        guard,
        ..
    } in ROUTES
    {
        if *guard != Guard::Workspace || *method != "GET" {
            continue;
        }
        let fresh = s.state.store.tokens().issue(target).await.unwrap().token;
        let (status, reply) = s
            .call(method, &concrete(template, &id), Some(fresh.expose()), None)
            .await;
        assert!(
            status != 401 && status != 403,
            "{method} {template} with its own token: {status} {reply}"
        );
    }
    let mut checked = 0;
    for Route {
        method,
        path: template,
        guard,
        ..
    } in ROUTES
    {
        let path = concrete(template, &id);
        let body = match *template {
            "/registry/register" => {
                Some(json!({"id": id, "url": "http://a.test:1", "agent_card": {}}))
            }
            "/registry/heartbeat" => Some(json!({"workspace_id": id})),
            "/registry/update-card" => Some(json!({"workspace_id": id, "agent_card": {}})),
            _ if *method == "GET" || *method == "DELETE" => None,
            _ => Some(json!({})),
        };
        let call = async |token: Option<&str>| s.call(method, &path, token, body.clone()).await;
        let refused = |status: u16| status == 401 || status == 403;
        match guard {
            Guard::Public => {
                let (status, reply) = call(None).await;
                assert!(
                    !refused(status),
                    "{method} {template} is public: {status} {reply}"
                );
            }
            Guard::Admin | Guard::Workspace => {
                // Refused without credentials and with the wrong token; the org and admin
                // tokens pass.
                let (missing, wrong, wrong_token, invalid) = if *guard == Guard::Admin {
                    let target = target_token.expose();
                    (
                        "admin auth required",
                        "a workspace token",
                        target,
                        "invalid admin auth token",
                    )
                } else {
                    let other = other_token.expose();
                    (
                        "missing workspace auth token",
                        "another workspace's token",
                        other,
                        "invalid workspace auth token",
                    )
                };
                let (status, reply) = call(None).await;
                assert_eq!(
                    status, 401,
                    "{method} {template} without credentials: {reply}"
                );
                assert_eq!(reply["error"], missing);
                let (status, reply) = call(Some(wrong_token)).await;
                assert_eq!(status, 401, "{method} {template} with {wrong}: {reply}");
                assert_eq!(reply["error"], invalid);
                for (who, token) in [
                    ("an org token", org_token.expose()),
                    ("the admin token", ADMIN),
                ] {
                    let (status, reply) = call(Some(token)).await;
                    assert!(
                        !refused(status),
                        "{method} {template} with {who}: {status} {reply}"
                    );
                }
            }
            Guard::WorkspaceOwn => {
                let (status, reply) = call(None).await;
                assert_eq!(status, 401, "{method} {template}: {reply}");
                assert_eq!(reply["error"], "missing workspace auth token");
                let (status, reply) = call(Some(other_token.expose())).await;
                assert_eq!(status, 401, "{method} {template}: {reply}");
                assert_eq!(reply["error"], "invalid workspace auth token");
            }
            Guard::OwnTokenInBody => {
                let (status, _) = call(None).await;
                assert_eq!(status, 401, "{method} {template} without credentials");
                let (status, _) = call(Some(other_token.expose())).await;
                assert_eq!(
                    status, 401,
                    "{method} {template} with another workspace's token"
                );
                let (status, _) = call(Some(ADMIN)).await;
                assert_eq!(
                    status, 401,
                    "{method} {template}: the admin token is not the agent's"
                );
            }
            Guard::CallerToken => {
                // The caller is the path's workspace (peers) or X-Workspace-ID (discover,
                // which answers 400 without it); another workspace's token never passes.
                let (status, _) = call(None).await;
                assert!(
                    refused(status) || status == 400,
                    "{method} {template}: {status}"
                );
                let (status, _) = call(Some(other_token.expose())).await;
                assert!(
                    refused(status) || status == 400,
                    "{method} {template}: {status}"
                );
            }
            Guard::A2a => {
                // An identity is needed outside dev mode; the queue-status route answers 404
                // (never 401) to anyone who is not the sender or target of the message.
                let (status, reply) = call(None).await;
                assert!(
                    refused(status) || status == 404,
                    "{method} {template} without credentials: {status} {reply}"
                );
                let (status, reply) = call(Some(ADMIN)).await;
                assert!(
                    !refused(status),
                    "{method} {template} with the admin token: {status} {reply}"
                );
            }
            Guard::WebSocket => {
                // A WebSocket needs an upgrade: the `events` tests cover its refusals with a
                // real client. A plain request from nobody is still refused.
                let (status, _) = call(None).await;
                assert!(
                    refused(status) || status == 400,
                    "{method} {template}: {status}"
                );
            }
            Guard::TestToken => {
                let (status, _) = call(None).await;
                assert_eq!(status, 401);
                let (status, _) = call(Some(target_token.expose())).await;
                assert_eq!(status, 401, "a workspace token is never admin");
                let (status, _) = call(Some(org_token.expose())).await;
                assert_eq!(status, 401, "an org token is not the admin token here");
                let (status, _) = call(Some(ADMIN)).await;
                assert_eq!(status, 200);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, ROUTES.len());
}

async fn dev_mode_lets_everything_through(db: TestStore) {
    let s = TestServer::dev(db).await;
    let target = s.create_dev(json!({"name": "target"})).await;
    for Route {
        method,
        path: template,
        guard,
        ..
    } in ROUTES
    {
        if matches!(
            *guard,
            // Own-token checks hold in dev mode too once the workspace has a token (it got
            // one at provisioning), as in the reference.
            Guard::OwnTokenInBody | Guard::WebSocket | Guard::CallerToken | Guard::WorkspaceOwn
        ) {
            continue;
        }
        let path = concrete(template, &target.to_string());
        let body = (*method != "GET" && *method != "DELETE").then(|| json!({}));
        let (status, reply) = s.call(method, &path, None, body).await;
        if template.contains("/mcp") {
            // The MCP limiter keys on the bearer: none is a 401 even in dev mode (RL-MCP).
            assert_eq!(status, 401, "{method} {template} in dev mode: {reply}");
            assert_eq!(reply["error"], "missing bearer token");
            continue;
        }
        assert!(
            status != 401 && status != 403,
            "{method} {template} in dev mode: {status} {reply}"
        );
    }
}
