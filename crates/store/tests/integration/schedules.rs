//! Conformance of the schedules repository: every test runs on SQLite and PostgreSQL.

use std::collections::HashSet;

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use molecule_store::{
    NewSchedule, NewWorkspace, RunOutcome, ScheduleUpdate, StoreError, on_both_backends,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

on_both_backends!(
    schedules_are_scoped_to_their_workspace,
    a_removed_workspace_s_schedules_are_disabled,
    a_duplicate_name_is_duplicate_and_a_missing_workspace_not_found,
    concurrent_claims_hand_each_due_run_out_once,
    a_claim_advances_next_run_and_holds_the_row_until_finished,
    an_expired_lease_is_taken_over_and_says_whether_it_was_sent,
    a_lost_claim_records_nothing,
    three_empty_replies_make_a_schedule_stale,
    history_lists_a_schedules_runs_newest_first,
);

const LEASE: Duration = Duration::minutes(10);

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
}

async fn workspace(s: &TestStore, name: &str) -> WorkspaceId {
    s.workspaces()
        .create(NewWorkspace::named(name))
        .await
        .unwrap()
        .id
}

fn new(ws: WorkspaceId, name: &str, next: Option<OffsetDateTime>) -> NewSchedule {
    NewSchedule {
        workspace_id: ws,
        name: name.into(),
        cron_expr: "* * * * *".into(),
        timezone: "UTC".into(),
        prompt: format!("prompt of {name}"),
        enabled: true,
        next_run_at: next,
        source: "runtime".into(),
    }
}

fn ok(empty: bool, id: Uuid) -> RunOutcome {
    RunOutcome {
        status: "ok".into(),
        error: String::new(),
        empty_reply: empty,
        summary: "Cron: s".into(),
        request: json!({ "schedule_id": id }),
    }
}

async fn schedules_are_scoped_to_their_workspace(s: TestStore) {
    let (a, b) = (workspace(&s, "a").await, workspace(&s, "b").await);
    let repo = s.schedules();
    let first = repo.create(&new(a, "first", Some(at(60)))).await.unwrap();
    let second = repo.create(&new(a, "second", None)).await.unwrap();
    assert_eq!(first.source, "runtime");
    assert_eq!(first.next_run_at, Some(at(60)));
    let listed: Vec<Uuid> = repo.list(a).await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![first.id, second.id]);
    assert!(repo.list(b).await.unwrap().is_empty());
    // Another workspace can neither read, change nor delete it.
    assert_eq!(repo.get(b, first.id).await.unwrap(), None);
    let rename = ScheduleUpdate {
        name: Some("renamed".into()),
        ..ScheduleUpdate::default()
    };
    assert!(!repo.update(b, first.id, &rename).await.unwrap());
    assert!(!repo.delete(b, first.id).await.unwrap());
    assert_eq!(repo.get(a, first.id).await.unwrap().unwrap().name, "first");
    // Its own workspace can; absent fields keep their values.
    assert!(repo.update(a, first.id, &rename).await.unwrap());
    let renamed = repo.get(a, first.id).await.unwrap().unwrap();
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.prompt, "prompt of first");
    assert_eq!(renamed.next_run_at, Some(at(60)));
    assert!(repo.delete(a, first.id).await.unwrap());
    assert_eq!(repo.get(a, first.id).await.unwrap(), None);
}

async fn a_removed_workspace_s_schedules_are_disabled(s: TestStore) {
    let (a, b) = (workspace(&s, "a").await, workspace(&s, "b").await);
    let repo = s.schedules();
    let gone = repo.create(&new(a, "gone", Some(at(-60)))).await.unwrap();
    let kept = repo.create(&new(b, "kept", Some(at(-60)))).await.unwrap();
    assert!(gone.enabled && kept.enabled);
    s.workspaces().remove_all(&[a]).await.unwrap();
    assert!(!repo.get(a, gone.id).await.unwrap().unwrap().enabled);
    assert!(repo.get(b, kept.id).await.unwrap().unwrap().enabled);
}

async fn a_duplicate_name_is_duplicate_and_a_missing_workspace_not_found(s: TestStore) {
    let a = workspace(&s, "a").await;
    let repo = s.schedules();
    repo.create(&new(a, "daily", None)).await.unwrap();
    assert!(matches!(
        repo.create(&new(a, "daily", None)).await,
        Err(StoreError::Duplicate)
    ));
    assert!(matches!(
        repo.create(&new(WorkspaceId::new(), "x", None)).await,
        Err(StoreError::NotFound)
    ));
}

async fn concurrent_claims_hand_each_due_run_out_once(s: TestStore) {
    let a = workspace(&s, "a").await;
    let repo = s.schedules();
    let mut due = HashSet::new();
    for n in 0..30 {
        let sched = repo
            .create(&new(a, &format!("s{n}"), Some(at(-n))))
            .await
            .unwrap();
        due.insert(sched.id);
    }
    repo.create(&new(a, "later", Some(at(3600)))).await.unwrap();
    let mut disabled = new(a, "off", Some(at(-5)));
    disabled.enabled = false;
    repo.create(&disabled).await.unwrap();
    let claimers = (0..4).map(|_| {
        let store = (*s).clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .schedules()
                    .claim_due(at(0), 4, LEASE, |_| at(60))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.schedule.id));
            }
        })
    });
    let mut seen = Vec::new();
    for claimer in claimers {
        seen.extend(claimer.await.unwrap());
    }
    assert_eq!(seen.len(), due.len(), "a run was handed out twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), due);
}

async fn a_claim_advances_next_run_and_holds_the_row_until_finished(s: TestStore) {
    let a = workspace(&s, "a").await;
    let repo = s.schedules();
    let sched = repo.create(&new(a, "s", Some(at(-30)))).await.unwrap();
    let claims = repo.claim_due(at(0), 50, LEASE, |_| at(60)).await.unwrap();
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.slot, at(-30));
    assert!(!claim.sent_before);
    assert_eq!(claim.schedule.next_run_at, Some(at(60)));
    // Held: even once due again, nobody else gets it while the lease lasts.
    assert!(
        repo.claim_due(at(120), 50, LEASE, |_| at(180))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        repo.claim_one(a, sched.id, at(120), LEASE).await.unwrap(),
        None
    );
    let status = repo
        .finish(sched.id, claim.token, at(1), &ok(false, sched.id))
        .await;
    assert_eq!(status.unwrap().as_deref(), Some("ok"));
    let row = repo.get(a, sched.id).await.unwrap().unwrap();
    assert_eq!(row.run_count, 1);
    assert_eq!(row.last_run_at, Some(at(1)));
    assert_eq!(row.next_run_at, Some(at(60)));
    // Released: the next slot is claimed normally.
    let next = repo
        .claim_due(at(120), 50, LEASE, |_| at(180))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].slot, at(60));
}

async fn an_expired_lease_is_taken_over_and_says_whether_it_was_sent(s: TestStore) {
    let a = workspace(&s, "a").await;
    let repo = s.schedules();
    let unsent = repo.create(&new(a, "unsent", Some(at(-10)))).await.unwrap();
    let sent = repo.create(&new(a, "sent", Some(at(-20)))).await.unwrap();
    let dead = repo
        .claim_due(at(0), 50, LEASE, |_| at(3600))
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    let sent_claim = dead.iter().find(|c| c.schedule.id == sent.id).unwrap();
    assert!(repo.mark_sent(sent.id, sent_claim.token).await.unwrap());
    // The replica dies here. Before the lease ends nothing is handed out again.
    assert!(
        repo.claim_due(at(599), 50, LEASE, |_| at(3600))
            .await
            .unwrap()
            .is_empty()
    );
    let taken = repo
        .claim_due(at(601), 50, LEASE, |_| at(7200))
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    for claim in &taken {
        let old = dead
            .iter()
            .find(|c| c.schedule.id == claim.schedule.id)
            .unwrap();
        assert_ne!(claim.token, old.token);
        assert_eq!(claim.slot, old.slot, "the same run, not a new one");
        assert_eq!(claim.sent_before, claim.schedule.id == sent.id);
        // next_run_at was advanced once, by the first claim.
        assert_eq!(claim.schedule.next_run_at, Some(at(3600)));
    }
    assert!(taken.iter().any(|c| c.schedule.id == unsent.id));
    // The dead replica's token no longer writes anything.
    let stale = repo
        .finish(sent.id, sent_claim.token, at(602), &ok(false, sent.id))
        .await;
    assert_eq!(stale.unwrap(), None);
}

async fn a_lost_claim_records_nothing(s: TestStore) {
    let a = workspace(&s, "a").await;
    let repo = s.schedules();
    let sched = repo.create(&new(a, "s", Some(at(-1)))).await.unwrap();
    let claim = repo
        .claim_due(at(0), 1, LEASE, |_| at(60))
        .await
        .unwrap()
        .remove(0);
    assert!(repo.delete(a, sched.id).await.unwrap());
    assert!(!repo.mark_sent(sched.id, claim.token).await.unwrap());
    let status = repo
        .finish(sched.id, claim.token, at(1), &ok(false, sched.id))
        .await;
    assert_eq!(status.unwrap(), None);
    assert!(repo.history(a, sched.id, 20).await.unwrap().is_empty());
}

async fn three_empty_replies_make_a_schedule_stale(s: TestStore) {
    let a = workspace(&s, "a").await;
    let repo = s.schedules();
    let sched = repo.create(&new(a, "s", None)).await.unwrap();
    let mut statuses = Vec::new();
    for (n, empty) in [true, true, true, true, false, true]
        .into_iter()
        .enumerate()
    {
        let claim = repo
            .claim_one(a, sched.id, at(n as i64), LEASE)
            .await
            .unwrap()
            .unwrap();
        let status = repo
            .finish(sched.id, claim.token, at(n as i64), &ok(empty, sched.id))
            .await
            .unwrap()
            .unwrap();
        statuses.push(status);
    }
    assert_eq!(statuses, ["ok", "ok", "stale", "stale", "ok", "ok"]);
    let row = repo.get(a, sched.id).await.unwrap().unwrap();
    assert_eq!(row.consecutive_empty_runs, 1);
    assert_eq!(row.run_count, 6);
    // An error leaves the counter alone.
    let claim = repo
        .claim_one(a, sched.id, at(10), LEASE)
        .await
        .unwrap()
        .unwrap();
    let error = RunOutcome {
        status: "error".into(),
        error: "HTTP 500".into(),
        ..ok(false, sched.id)
    };
    repo.finish(sched.id, claim.token, at(10), &error)
        .await
        .unwrap();
    let row = repo.get(a, sched.id).await.unwrap().unwrap();
    assert_eq!(
        (row.last_status.as_str(), row.consecutive_empty_runs),
        ("error", 1)
    );
    assert_eq!(row.last_error, "HTTP 500");
}

async fn history_lists_a_schedules_runs_newest_first(s: TestStore) {
    let (a, b) = (workspace(&s, "a").await, workspace(&s, "b").await);
    let repo = s.schedules();
    let one = repo.create(&new(a, "one", None)).await.unwrap();
    let two = repo.create(&new(a, "two", None)).await.unwrap();
    for (n, id) in [(1, one.id), (2, two.id), (3, one.id)] {
        let claim = repo.claim_one(a, id, at(n), LEASE).await.unwrap().unwrap();
        let outcome = RunOutcome {
            error: format!("run {n}"),
            ..ok(false, id)
        };
        repo.finish(id, claim.token, at(n), &outcome).await.unwrap();
    }
    let runs = repo.history(a, one.id, 20).await.unwrap();
    let details: Vec<&str> = runs.iter().map(|r| r.error_detail.as_str()).collect();
    assert_eq!(details, ["run 3", "run 1"]);
    assert_eq!(runs[0].timestamp, at(3));
    assert_eq!(runs[0].request["schedule_id"], json!(one.id));
    assert_eq!(runs[0].duration_ms, None);
    assert!(repo.history(b, one.id, 20).await.unwrap().is_empty());
    assert_eq!(repo.history(a, one.id, 1).await.unwrap().len(), 1);
}
