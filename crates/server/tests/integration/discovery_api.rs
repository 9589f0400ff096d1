//! Discovery routes over real HTTP on both databases: who may see whom, and where.

use molecule_store::on_both_backends;

use crate::common::{ADMIN, Options, TestServer};
use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

on_both_backends!(
    discover_peers_and_check_access,
    poll_mode_peers_are_reached_through_the_platform,
);

async fn get_as(
    s: &TestServer,
    path: &str,
    caller: Option<WorkspaceId>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = s.http.get(format!("{}{path}", s.base));
    if let Some(c) = caller {
        req = req.header("X-Workspace-ID", c.to_string());
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn discover_peers_and_check_access(db: TestStore) {
    let s = TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await;
    // lead ── a ── a1
    //      └─ b
    // other (a second root)      cousin: a1 vs b is allowed? no: different subtrees
    let lead = s.create(json!({"name": "lead"})).await;
    let a = s
        .create(json!({"name": "alpha", "role": "Writer", "parent_id": lead}))
        .await;
    let a1 = s.create(json!({"name": "a1", "parent_id": a})).await;
    let b = s.create(json!({"name": "beta", "parent_id": lead})).await;
    let other = s.create(json!({"name": "other"})).await;
    let a_token = s.state.store.tokens().issue(a).await.unwrap().token;
    let a1_token = s.state.store.tokens().issue(a1).await.unwrap().token;

    // Peers of a: sibling b, child a1, parent lead — in that order.
    let (status, reply) = get_as(
        &s,
        &format!("/registry/{a}/peers"),
        None,
        Some(a_token.expose()),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let names: Vec<_> = reply
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["beta", "a1", "lead"]);
    let (_, filtered) = get_as(
        &s,
        &format!("/registry/{a}/peers?q=BET"),
        None,
        Some(a_token.expose()),
    )
    .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    // Roots see the other roots as siblings.
    let (status, _) = get_as(&s, &format!("/registry/{other}/peers"), None, None).await;
    assert_eq!(
        status, 401,
        "provisioning gave it a token, which it must present"
    );
    let other_token = s.state.store.tokens().issue(other).await.unwrap().token;
    let (status, roots) = get_as(
        &s,
        &format!("/registry/{other}/peers"),
        None,
        Some(other_token.expose()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(roots.as_array().unwrap()[0]["name"], "lead");
    let (status, _) = get_as(
        &s,
        &format!("/registry/{a}/peers"),
        None,
        Some(a1_token.expose()),
    )
    .await;
    assert_eq!(status, 401, "another workspace's token");
    let (status, _) = get_as(
        &s,
        &format!("/registry/{}/peers", WorkspaceId::new()),
        None,
        None,
    )
    .await;
    assert_eq!(
        status, 401,
        "no credential can be bound to an unknown workspace"
    );

    // Discovery: a1 may discover its grandparent but not its cousin's... b is a1's uncle,
    // which the rules deny (different subtrees, not an ancestor).
    let (status, reply) = get_as(&s, &format!("/registry/discover/{lead}"), None, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("X-Workspace-ID header is required"))
    );
    let (status, reply) = get_as(
        &s,
        &format!("/registry/discover/{b}"),
        Some(a1),
        Some(a1_token.expose()),
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (403, Some("not authorized to discover this workspace"))
    );
    let (status, reply) = get_as(
        &s,
        &format!("/registry/discover/{lead}"),
        Some(a1),
        Some(a1_token.expose()),
    )
    .await;
    assert_eq!(status, 503, "lead is not online yet: {reply}");
    assert_eq!(reply["status"], "provisioning");
    let lead_token = s
        .backend()
        .starts
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r.workspace_id == lead)
        .unwrap()
        .auth_token
        .clone()
        .unwrap();
    let (status, _) = s
        .call(
            "POST",
            "/registry/register",
            Some(lead_token.expose()),
            Some(json!({"id": lead, "url": "http://lead.test:8000", "agent_card": {}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = get_as(
        &s,
        &format!("/registry/discover/{lead}"),
        Some(a1),
        Some(a1_token.expose()),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"id": lead, "url": format!("http://ws-{}:8000", lead.short()), "name": "lead"})
    );
    let (status, _) = get_as(&s, &format!("/registry/discover/{lead}"), Some(a1), None).await;
    assert_eq!(status, 401, "a1 has a token, so it must present it");

    for (caller, target, allowed) in [
        (a1, lead, true),
        (a1, b, false),
        (lead, other, true),
        (a, a, true),
        (a1, other, false),
    ] {
        let (status, reply) = s
            .call(
                "POST",
                "/registry/check-access",
                None,
                Some(json!({"caller_id": caller, "target_id": target})),
            )
            .await;
        assert_eq!(
            (status, reply["allowed"].as_bool()),
            (200, Some(allowed)),
            "{caller} -> {target}"
        );
    }
    let (status, _) = s
        .call(
            "POST",
            "/registry/check-access",
            Some(ADMIN),
            Some(json!({"caller_id": "x"})),
        )
        .await;
    assert_eq!(status, 400);
}

/// A poll-mode peer (or an external one without a URL) has no address of its own: discover
/// answers the platform's A2A endpoint for it (issue 14 item 3) — the configured platform URL
/// for a caller in a container, the request's origin for an external caller.
async fn poll_mode_peers_are_reached_through_the_platform(db: TestStore) {
    let s = TestServer::start(
        db,
        Options {
            backend: true,
            dev: false,
        },
    )
    .await;
    let lead = s.create(json!({"name": "lead"})).await;
    // Provisioning revokes older tokens: issue the test's own once it has run.
    s.backend().wait_for(|b| b.started(lead) == 1).await;
    let lead_token = s.state.store.tokens().issue(lead).await.unwrap().token;
    let create_external = async |name: &str| {
        let (status, reply) = s
            .call(
                "POST",
                "/workspaces",
                Some(ADMIN),
                Some(json!({"name": name, "runtime": "external", "parent_id": lead})),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
        let id: WorkspaceId = reply["id"].as_str().unwrap().parse().unwrap();
        (
            id,
            reply["connection"]["auth_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };
    let (poller, poller_token) = create_external("poller").await;
    // Not online yet: not available.
    let (status, reply) = get_as(
        &s,
        &format!("/registry/discover/{poller}"),
        Some(lead),
        Some(lead_token.expose()),
    )
    .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (503, Some("workspace not available"))
    );
    let (status, reply) = s
        .call(
            "POST",
            "/registry/register",
            Some(&poller_token),
            Some(json!({"id": poller, "agent_card": {"name": "poller"}, "delivery_mode": "poll"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = get_as(
        &s,
        &format!("/registry/discover/{poller}"),
        Some(lead),
        Some(lead_token.expose()),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"id": poller, "name": "poller",
               "url": format!("http://platform.test:8080/workspaces/{poller}/a2a")})
    );
    // An external caller is told the address it reached the server at.
    let (sibling, sibling_token) = create_external("sibling").await;
    let (status, reply) = get_as(
        &s,
        &format!("/registry/discover/{poller}"),
        Some(sibling),
        Some(&sibling_token),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let origin = s.base.clone();
    assert_eq!(reply["url"], format!("{origin}/workspaces/{poller}/a2a"));
}
