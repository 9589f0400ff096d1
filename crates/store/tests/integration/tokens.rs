//! Tokens: workspace tokens (issued, bound, listed, revoked; dead with their workspace),
//! single-use bootstrap tokens, and org tokens.

use molecule_domain::WorkspaceStatus;
use molecule_store::testing::TestStore;
use molecule_store::{PlainToken, on_both_backends};

use crate::common::named;

on_both_backends!(
    tokens_issue_validate_list_revoke,
    tokens_of_removed_workspaces_are_dead,
    bootstrap_tokens_are_single_use_bound_and_expire,
    org_tokens_issue_validate_list_revoke,
);

async fn tokens_issue_validate_list_revoke(s: TestStore) {
    let a = named(&s, "a").await;
    let b = named(&s, "b").await;
    let t = s.tokens();
    let first = t.issue(a.id).await.unwrap();
    let second = t.issue(a.id).await.unwrap();
    let other = t.issue(b.id).await.unwrap();
    assert_eq!(first.token.expose().len(), 43);
    assert_ne!(first.token, second.token);

    assert!(t.validate(a.id, &first.token).await.unwrap());
    assert!(
        !t.validate(b.id, &first.token).await.unwrap(),
        "bound to its workspace"
    );
    assert!(!t.validate(a.id, &other.token).await.unwrap());
    assert!(
        !t.validate(a.id, &PlainToken::new("x".repeat(43)))
            .await
            .unwrap()
    );
    assert_eq!(t.workspace_of(&other.token).await.unwrap(), Some(b.id));

    let listed = t.list(a.id, 50, 0).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, second.id, "newest first");
    assert_eq!(listed[0].prefix, &second.token.expose()[..8]);
    assert!(
        listed[1].last_used_at.is_some(),
        "validation bumps last_used_at"
    );
    assert_eq!(t.list(a.id, 1, 1).await.unwrap()[0].id, first.id);
    assert_eq!(t.count_live(a.id).await.unwrap(), 2);

    assert!(t.revoke(a.id, first.id).await.unwrap());
    assert!(!t.revoke(a.id, first.id).await.unwrap(), "already revoked");
    assert!(!t.revoke(b.id, second.id).await.unwrap(), "not b's token");
    assert!(!t.validate(a.id, &first.token).await.unwrap());
    assert!(t.validate(a.id, &second.token).await.unwrap());
    assert_eq!(t.revoke_all(a.id).await.unwrap(), 1);
    assert_eq!(t.count_live(a.id).await.unwrap(), 0);
    assert!(
        t.validate(b.id, &other.token).await.unwrap(),
        "b is untouched"
    );
}

async fn tokens_of_removed_workspaces_are_dead(s: TestStore) {
    let a = named(&s, "a").await;
    let issued = s.tokens().issue(a.id).await.unwrap();
    s.workspaces()
        .transition(a.id, WorkspaceStatus::Removed, None)
        .await
        .unwrap();
    assert!(!s.tokens().validate(a.id, &issued.token).await.unwrap());
    assert_eq!(s.tokens().workspace_of(&issued.token).await.unwrap(), None);
}

async fn bootstrap_tokens_are_single_use_bound_and_expire(s: TestStore) {
    let a = named(&s, "a").await;
    let b = named(&s, "b").await;
    let t = s.tokens();
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let first = t.issue_bootstrap(a.id, later).await.unwrap();
    assert_eq!(first.expose().len(), 43);
    // A new bootstrap replaces the old one.
    let boot = t.issue_bootstrap(a.id, later).await.unwrap();
    assert!(!t.bootstrap_valid(a.id, &first).await.unwrap());
    assert!(t.bootstrap_valid(a.id, &boot).await.unwrap());
    assert!(!t.bootstrap_valid(b.id, &boot).await.unwrap(), "bound to a");
    assert!(!t.consume_bootstrap(b.id, &boot).await.unwrap());
    assert_eq!(t.count_live(a.id).await.unwrap(), 0, "never an auth token");
    assert!(
        !t.validate(a.id, &boot).await.unwrap(),
        "a bootstrap token is not an auth token"
    );
    // Consumed once, for one caller.
    let (x, y) = tokio::join!(
        t.consume_bootstrap(a.id, &boot),
        t.consume_bootstrap(a.id, &boot)
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one consumer");
    assert!(!t.bootstrap_valid(a.id, &boot).await.unwrap());
    // Expired: neither valid nor consumable.
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let old = t.issue_bootstrap(b.id, past).await.unwrap();
    assert!(!t.bootstrap_valid(b.id, &old).await.unwrap());
    assert!(!t.consume_bootstrap(b.id, &old).await.unwrap());
    // Revoking a workspace's tokens drops its bootstrap token too.
    let again = t.issue_bootstrap(b.id, later).await.unwrap();
    t.revoke_all(b.id).await.unwrap();
    assert!(!t.bootstrap_valid(b.id, &again).await.unwrap());
}

async fn org_tokens_issue_validate_list_revoke(s: TestStore) {
    let org = named(&s, "org").await.id;
    let tokens = s.org_tokens();
    let a = tokens.issue(Some("a"), "admin-token", None).await.unwrap();
    let b = tokens
        .issue(None, "org-token:abcdefgh", Some(org.as_uuid()))
        .await
        .unwrap();
    assert_eq!(a.token.expose().len(), 43);
    assert_ne!(a.token.expose(), b.token.expose());
    let who = tokens.validate(&b.token).await.unwrap().unwrap();
    assert_eq!(who.id, b.info.id);
    assert_eq!(who.org_id, Some(org.as_uuid()));
    assert_eq!(who.prefix, &b.token.expose()[..8]);
    assert!(
        tokens
            .validate(&molecule_store::PlainToken::new("nope"))
            .await
            .unwrap()
            .is_none()
    );
    let list = tokens.list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, b.info.id, "newest first");
    assert!(list[0].last_used_at.is_some());
    assert_eq!(list[1].name.as_deref(), Some("a"));
    // A workspace token is not an org token, and the other way round.
    let wtoken = s.tokens().issue(org).await.unwrap().token;
    assert!(tokens.validate(&wtoken).await.unwrap().is_none());
    assert_eq!(s.tokens().workspace_of(&a.token).await.unwrap(), None);
    assert!(tokens.revoke(a.info.id).await.unwrap());
    assert!(!tokens.revoke(a.info.id).await.unwrap());
    assert!(tokens.validate(&a.token).await.unwrap().is_none());
    assert_eq!(tokens.list().await.unwrap().len(), 1);
}
