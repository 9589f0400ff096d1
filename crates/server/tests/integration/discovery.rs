//! Discovery routes over real HTTP on both databases: who may see whom, and where.

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use molecule_store::{PlainToken, on_both_backends};
use serde_json::json;

use crate::common::{TestServer, assert_error, assert_json, assert_status};

on_both_backends!(
    discover_peers_and_check_access,
    poll_mode_peers_are_reached_through_the_platform,
);

async fn discover_peers_and_check_access(db: TestStore) {
    let s = TestServer::strict(db).await;
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
    // The tokens their starts carried: a token issued before the start would be rotated by it.
    let a_token = PlainToken::new(s.backend().token_of(a).await);
    let a1_token = PlainToken::new(s.backend().token_of(a1).await);
    let peers = |id: WorkspaceId| format!("/registry/{id}/peers");

    // Peers of a: sibling b, child a1, parent lead — in that order.
    let reply = s.get_as(&peers(a), None, Some(a_token.expose())).await;
    let reply = assert_status(reply, 200);
    let names: Vec<_> = reply
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["beta", "a1", "lead"]);
    let filtered = format!("{}?q=BET", peers(a));
    let (_, filtered) = s.get_as(&filtered, None, Some(a_token.expose())).await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    // Roots see the other roots as siblings.
    let (status, _) = s.get_as(&peers(other), None, None).await;
    assert_eq!(
        status, 401,
        "provisioning gave it a token, which it must present"
    );
    let other_token = PlainToken::new(s.backend().token_of(other).await);
    let roots = s.get_as(&peers(other), None, Some(other_token.expose()));
    assert_eq!(assert_status(roots.await, 200)[0]["name"], "lead");
    let (status, _) = s.get_as(&peers(a), None, Some(a1_token.expose())).await;
    assert_eq!(status, 401, "another workspace's token");
    let (status, _) = s.get_as(&peers(WorkspaceId::new()), None, None).await;
    assert_eq!(
        status, 401,
        "no credential can be bound to an unknown workspace"
    );

    // Discovery: a1 may discover its grandparent but not its cousin's... b is a1's uncle,
    // which the rules deny (different subtrees, not an ancestor).
    let discover = |id: WorkspaceId| format!("/registry/discover/{id}");
    let as_a1 = a1.to_string();
    let as_a1 = Some(as_a1.as_str());
    let anonymous = s.get_as(&discover(lead), None, None).await;
    assert_error(anonymous, 400, "X-Workspace-ID header is required");
    let uncle = s.get_as(&discover(b), as_a1, Some(a1_token.expose())).await;
    assert_error(uncle, 403, "not authorized to discover this workspace");
    let (status, reply) = s
        .get_as(&discover(lead), as_a1, Some(a1_token.expose()))
        .await;
    assert_eq!(status, 503, "lead is not online yet: {reply}");
    assert_eq!(reply["status"], "provisioning");
    let lead_token = s.backend().token_of(lead).await;
    let register = json!({"id": lead, "url": "http://lead.test:8000", "agent_card": {}});
    assert_status(s.register(Some(&lead_token), register).await, 200);
    assert_json(
        s.get_as(&discover(lead), as_a1, Some(a1_token.expose()))
            .await,
        200,
        json!({"id": lead, "url": format!("http://ws-{}:8000", lead.short()), "name": "lead"}),
    );
    let (status, _) = s.get_as(&discover(lead), as_a1, None).await;
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
    let no_target = Some(json!({"caller_id": "x"}));
    let (status, _) = s.admin("POST", "/registry/check-access", no_target).await;
    assert_eq!(status, 400);
}

/// A poll-mode peer (or an external one without a URL) has no address of its own: discover
/// answers the platform's A2A endpoint for it (issue 14 item 3) — the configured platform URL
/// for a caller in a container, the request's origin for an external caller.
async fn poll_mode_peers_are_reached_through_the_platform(db: TestStore) {
    let s = TestServer::strict(db).await;
    let lead = s.create(json!({"name": "lead"})).await;
    // Provisioning revokes older tokens: issue the test's own once it has run.
    s.backend().wait_for(|b| b.started(lead) == 1).await;
    let lead_token = s.state.store.tokens().issue(lead).await.unwrap().token;
    let as_lead = lead.to_string();
    let (poller, poller_token) = s.external("poller", Some(lead)).await;
    let discover = format!("/registry/discover/{poller}");
    // Not online yet: not available.
    let early = s.get_as(&discover, Some(&as_lead), Some(lead_token.expose()));
    assert_error(early.await, 503, "workspace not available");
    let poll = json!({"id": poller, "agent_card": {"name": "poller"}, "delivery_mode": "poll"});
    assert_status(s.register(Some(&poller_token), poll).await, 200);
    let found = s.get_as(&discover, Some(&as_lead), Some(lead_token.expose()));
    assert_json(
        found.await,
        200,
        json!({"id": poller, "name": "poller",
               "url": format!("http://platform.test:8080/workspaces/{poller}/a2a")}),
    );
    // An external caller is told the address it reached the server at.
    let (sibling, sibling_token) = s.external("sibling", Some(lead)).await;
    let as_sibling = sibling.to_string();
    let reply = s.get_as(&discover, Some(&as_sibling), Some(&sibling_token));
    let reply = assert_status(reply.await, 200);
    let origin = s.base.clone();
    assert_eq!(reply["url"], format!("{origin}/workspaces/{poller}/a2a"));
}
