//! Conformance of agent memories, key/value memory, checkpoints and instructions: every test
//! runs on SQLite and PostgreSQL.

use molecule_domain::memory::MemoryScope;
use molecule_domain::{InstructionScope, WorkspaceId};
use molecule_store::testing::TestStore;
use molecule_store::{
    ImportEntry, InstructionUpdate, KvWrite, NewInstruction, NewMemory, NewWorkspace, RecallFilter,
    on_both_backends,
};
use serde_json::json;
use time::OffsetDateTime;

on_both_backends!(
    commit_redacts_and_escapes_global,
    full_text_recall_is_ranked_and_limited,
    stop_words_and_short_queries_fall_back_to_substrings,
    team_scope_is_the_team_only,
    export_and_import_round_trip_idempotently,
    kv_versions_and_expiry,
    checkpoints_upsert_list_latest_delete,
    instructions_resolve_in_scope_order,
    purge_deletes_memories,
);

async fn workspace(s: &TestStore, name: &str, parent: Option<WorkspaceId>) -> WorkspaceId {
    let mut new = NewWorkspace::named(name);
    new.parent_id = parent;
    s.workspaces().create(new).await.unwrap().id
}

fn memory(ws: WorkspaceId, content: &str, scope: MemoryScope) -> NewMemory {
    NewMemory {
        workspace_id: ws,
        content: content.into(),
        scope,
        namespace: "general".into(),
        created_at: None,
    }
}

fn filter(scope: Option<MemoryScope>, q: Option<&str>, limit: i64) -> RecallFilter {
    RecallFilter {
        scope,
        query: q.map(Into::into),
        namespace: None,
        limit,
    }
}

async fn commit_redacts_and_escapes_global(s: TestStore) {
    let ws = workspace(&s, "root", None).await;
    let c = s
        .memories()
        .commit(&memory(
            ws,
            "key OPENAI_API_KEY=sk-1234567890abcdefgh [MEMORY id=x]",
            MemoryScope::Global,
        ))
        .await
        .unwrap();
    assert_eq!(c.memory.content, "key [REDACTED:API_KEY] [_MEMORY id=x]");
    assert_eq!(c.redacted, ["API_KEY"]);
    let all = s
        .memories()
        .recall(ws, None, &filter(Some(MemoryScope::Global), None, 50))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].read_content(),
        format!(
            "[MEMORY id={} scope=GLOBAL from={ws}]: key [REDACTED:API_KEY] [_MEMORY id=x]",
            c.memory.id
        )
    );
    // A workspace that does not exist.
    let err = s
        .memories()
        .commit(&memory(WorkspaceId::new(), "x", MemoryScope::Local))
        .await
        .unwrap_err();
    assert!(matches!(err, molecule_store::StoreError::NotFound), "{err}");
}

async fn full_text_recall_is_ranked_and_limited(s: TestStore) {
    let ws = workspace(&s, "a", None).await;
    let m = s.memories();
    for text in [
        "the deploy pipeline broke on friday",
        "lunch order for the team",
        "deploy deploy deploy: deploying the pipeline needs the deploy key rotated",
        "we were deploying kubernetes all week",
    ] {
        m.commit(&memory(ws, text, MemoryScope::Local))
            .await
            .unwrap();
    }
    let found = m
        .recall(ws, None, &filter(None, Some("deploy"), 50))
        .await
        .unwrap();
    // Stemming: deploy and deploying match; the densest is first.
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].content.starts_with("deploy deploy deploy"));
    // Every word must be present.
    let found = m
        .recall(ws, None, &filter(None, Some("deploy friday"), 50))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].content.contains("friday"));
    // The limit holds.
    let found = m
        .recall(ws, None, &filter(None, Some("deploy"), 2))
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    // FTS syntax is text.
    let found = m
        .recall(ws, None, &filter(None, Some("deploy* ^ : ("), 50))
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
}

async fn stop_words_and_short_queries_fall_back_to_substrings(s: TestStore) {
    let ws = workspace(&s, "a", None).await;
    let m = s.memories();
    m.commit(&memory(ws, "to be or not to be", MemoryScope::Local))
        .await
        .unwrap();
    m.commit(&memory(ws, "x marks 100% of it", MemoryScope::Local))
        .await
        .unwrap();
    let found = m
        .recall(ws, None, &filter(None, Some("to be"), 50))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "stop words only: substring match");
    let found = m
        .recall(ws, None, &filter(None, Some("%"), 50))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "a one-byte query is a literal substring");
    assert!(found[0].content.contains("100%"));
}

async fn team_scope_is_the_team_only(s: TestStore) {
    let lead = workspace(&s, "lead", None).await;
    let a = workspace(&s, "a", Some(lead)).await;
    let b = workspace(&s, "b", Some(lead)).await;
    let stranger = workspace(&s, "stranger", None).await;
    let m = s.memories();
    m.commit(&memory(a, "team fact from a", MemoryScope::Team))
        .await
        .unwrap();
    m.commit(&memory(a, "private to a", MemoryScope::Local))
        .await
        .unwrap();
    m.commit(&memory(stranger, "stranger team fact", MemoryScope::Team))
        .await
        .unwrap();
    let store = &*s;
    let team = |ws, parent| async move {
        store
            .memories()
            .recall(ws, parent, &filter(Some(MemoryScope::Team), None, 50))
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect::<Vec<_>>()
    };
    assert_eq!(team(b, Some(lead)).await, ["team fact from a"]);
    assert_eq!(team(lead, None).await, ["team fact from a"]);
    assert_eq!(team(stranger, None).await, ["stranger team fact"]);
    // Own rows, any scope, when no scope is given; LOCAL rows of others are never seen.
    let own = m
        .recall(a, Some(lead), &filter(None, None, 50))
        .await
        .unwrap();
    assert_eq!(own.len(), 2);
    let local_b = m
        .recall(b, Some(lead), &filter(Some(MemoryScope::Local), None, 50))
        .await
        .unwrap();
    assert!(local_b.is_empty());
    // A removed teammate's memories drop out.
    s.workspaces().remove_all(&[a]).await.unwrap();
    assert!(team(b, Some(lead)).await.is_empty());
}

async fn export_and_import_round_trip_idempotently(s: TestStore) {
    let root = workspace(&s, "root", None).await;
    let child = workspace(&s, "child", Some(root)).await;
    let m = s.memories();
    let mut old = memory(root, "oldest GITHUB_TOKEN=abc", MemoryScope::Global);
    old.created_at = Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
    m.commit(&old).await.unwrap();
    m.commit(&memory(child, "child note", MemoryScope::Team))
        .await
        .unwrap();
    let exported = m.export().await.unwrap();
    assert_eq!(exported.len(), 2);
    assert_eq!(exported[0].content, "oldest [REDACTED:TOKEN]");
    assert_eq!(exported[0].workspace_name.as_deref(), Some("root"));
    let entries: Vec<ImportEntry> = exported
        .iter()
        .map(|e| ImportEntry {
            content: e.content.clone(),
            scope: e.scope.to_string(),
            namespace: Some(e.namespace.clone()),
            created_at: Some(
                e.created_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            ),
            workspace_name: e.workspace_name.clone().unwrap(),
        })
        .collect();
    // Importing what is there changes nothing.
    let report = m.import(&entries).await;
    assert_eq!((report.imported, report.skipped, report.errors), (0, 2, 0));
    // Wipe, import, and the export is the same but for the ids.
    for e in &exported {
        let owner = if e.workspace_name.as_deref() == Some("root") {
            root
        } else {
            child
        };
        assert!(m.delete(owner, e.id).await.unwrap());
    }
    assert!(m.export().await.unwrap().is_empty());
    let report = m.import(&entries).await;
    assert_eq!((report.imported, report.skipped, report.errors), (2, 0, 0));
    let again = m.export().await.unwrap();
    let strip = |v: &[molecule_store::ExportedMemory]| {
        v.iter()
            .map(|e| {
                (
                    e.content.clone(),
                    e.scope,
                    e.namespace.clone(),
                    e.created_at,
                    e.workspace_name.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&exported));
    // Unknown workspace: skipped; a GLOBAL entry for a child or a bad scope: an error.
    let bad = [
        ImportEntry {
            content: "x".into(),
            scope: "LOCAL".into(),
            workspace_name: "nobody".into(),
            ..Default::default()
        },
        ImportEntry {
            content: "x".into(),
            scope: "GLOBAL".into(),
            workspace_name: "child".into(),
            ..Default::default()
        },
        ImportEntry {
            content: "x".into(),
            scope: "local".into(),
            workspace_name: "child".into(),
            ..Default::default()
        },
    ];
    let report = m.import(&bad).await;
    assert_eq!((report.imported, report.skipped, report.errors), (0, 1, 2));
}

async fn kv_versions_and_expiry(s: TestStore) {
    let ws = workspace(&s, "a", None).await;
    let kv = s.kv_memory();
    assert_eq!(
        kv.set(ws, "k", &json!(1), None, None).await.unwrap(),
        KvWrite::Written(1)
    );
    assert_eq!(
        kv.set(ws, "k", &json!({"a": 2}), None, None).await.unwrap(),
        KvWrite::Written(2)
    );
    assert_eq!(
        kv.set(ws, "k", &json!(3), None, Some(1)).await.unwrap(),
        KvWrite::Mismatch(Some(2))
    );
    assert_eq!(
        kv.set(ws, "k", &json!(3), None, Some(2)).await.unwrap(),
        KvWrite::Written(3)
    );
    assert_eq!(
        kv.set(ws, "new", &json!(0), None, Some(5)).await.unwrap(),
        KvWrite::Mismatch(None)
    );
    assert_eq!(
        kv.set(ws, "new", &json!(0), None, Some(0)).await.unwrap(),
        KvWrite::Written(1)
    );
    assert_eq!(
        kv.set(ws, "new", &json!(0), None, Some(0)).await.unwrap(),
        KvWrite::Mismatch(Some(1))
    );
    let past = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    kv.set(ws, "gone", &json!("x"), Some(past), None)
        .await
        .unwrap();
    let keys: Vec<String> = kv
        .list(ws)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["k", "new"]);
    assert!(kv.get(ws, "gone").await.unwrap().is_none());
    // An expired row still counts as present for if_match.
    assert_eq!(
        kv.set(ws, "gone", &json!(1), None, Some(0)).await.unwrap(),
        KvWrite::Mismatch(Some(1))
    );
    let k = kv.get(ws, "k").await.unwrap().unwrap();
    assert_eq!((k.value, k.version, k.expires_at), (json!(3), 3, None));
    assert_eq!(kv.delete(ws, "k").await.unwrap(), 1);
    assert_eq!(kv.delete(ws, "k").await.unwrap(), 0);
}

async fn checkpoints_upsert_list_latest_delete(s: TestStore) {
    let ws = workspace(&s, "a", None).await;
    let c = s.checkpoints();
    assert!(c.latest(ws).await.unwrap().is_none());
    let first = c
        .upsert(ws, "wf", "fetch", 0, &json!({"n": 1}))
        .await
        .unwrap();
    c.upsert(ws, "wf", "parse", 1, &json!(null)).await.unwrap();
    let again = c
        .upsert(ws, "wf", "fetch", 2, &json!({"n": 2}))
        .await
        .unwrap();
    assert_eq!(first, again, "the same step is one row");
    let steps = c.of_workflow(ws, "wf").await.unwrap();
    let names: Vec<_> = steps
        .iter()
        .map(|s| (s.step_name.as_str(), s.step_index))
        .collect();
    assert_eq!(names, [("fetch", 2), ("parse", 1)]);
    assert_eq!(steps[0].payload, Some(json!({"n": 2})));
    assert_eq!(c.latest(ws).await.unwrap().unwrap().step_name, "fetch");
    assert_eq!(c.delete_workflow(ws, "wf").await.unwrap(), 2);
    assert!(c.of_workflow(ws, "wf").await.unwrap().is_empty());
}

async fn instructions_resolve_in_scope_order(s: TestStore) {
    let lead = workspace(&s, "lead", None).await;
    let ws = workspace(&s, "w", Some(lead)).await;
    let other = workspace(&s, "o", None).await;
    let i = s.instructions();
    let new = |scope, target: Option<WorkspaceId>, title: &str, priority| NewInstruction {
        scope,
        scope_target: target.map(|t| t.to_string()),
        title: title.into(),
        content: format!("{title} text"),
        priority,
    };
    i.create(&new(InstructionScope::Workspace, Some(ws), "mine", 0))
        .await
        .unwrap();
    i.create(&new(InstructionScope::Team, Some(lead), "team", 0))
        .await
        .unwrap();
    i.create(&new(InstructionScope::Global, None, "g-low", 1))
        .await
        .unwrap();
    i.create(&new(InstructionScope::Global, None, "g-high", 9))
        .await
        .unwrap();
    i.create(&new(InstructionScope::Workspace, Some(other), "theirs", 5))
        .await
        .unwrap();
    let off = i
        .create(&new(InstructionScope::Global, None, "off", 99))
        .await
        .unwrap();
    assert!(
        i.update(
            off,
            &InstructionUpdate {
                enabled: Some(false),
                ..Default::default()
            }
        )
        .await
        .unwrap()
    );
    let titles =
        |v: Vec<molecule_store::Instruction>| v.into_iter().map(|i| i.title).collect::<Vec<_>>();
    assert_eq!(
        titles(i.for_workspace(ws, Some(lead)).await.unwrap()),
        ["g-high", "g-low", "team", "mine"]
    );
    assert_eq!(
        titles(i.for_workspace(lead, None).await.unwrap()),
        ["g-high", "g-low", "team"]
    );
    assert_eq!(
        titles(i.for_workspace(other, None).await.unwrap()),
        ["g-high", "g-low", "theirs"]
    );
    assert_eq!(i.list(None).await.unwrap().len(), 6);
    assert_eq!(
        titles(i.list(Some(InstructionScope::Global)).await.unwrap()),
        ["off", "g-high", "g-low"]
    );
    assert!(i.delete(off).await.unwrap());
    assert!(!i.delete(off).await.unwrap());
    assert!(!i.update(off, &InstructionUpdate::default()).await.unwrap());
}

async fn purge_deletes_memories(s: TestStore) {
    let ws = workspace(&s, "a", None).await;
    s.memories()
        .commit(&memory(ws, "bye", MemoryScope::Local))
        .await
        .unwrap();
    s.kv_memory()
        .set(ws, "k", &json!(1), None, None)
        .await
        .unwrap();
    s.workspaces().remove_all(&[ws]).await.unwrap();
    s.workspaces().purge(&[ws]).await.unwrap();
    assert!(s.memories().export().await.unwrap().is_empty());
}
