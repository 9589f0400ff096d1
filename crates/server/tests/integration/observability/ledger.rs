//! The audit ledger: the chain of HMACs the Python runtime writes (computed here by Python
//! itself, the byte-for-byte contract) is verified per agent; a tampered record breaks it, and
//! without a salt nothing is judged.

use molecule_domain::WorkspaceId;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use super::observed;
use crate::common::{TestServer, assert_error, assert_status};

on_both_backends!(the_audit_chain_is_verified_as_the_runtime_writes_it);

/// The records' HMACs as the Python runtime computes them (PBKDF2 key, `json.dumps` with
/// sorted keys and compact separators): the byte-for-byte contract of the ledger.
fn python_hmacs(salt: &str, rows: &Value) -> Vec<String> {
    let script = r#"
import hashlib, hmac, json, sys
salt, rows = sys.argv[1], json.loads(sys.argv[2])
key = hashlib.pbkdf2_hmac("sha256", salt.encode(), b"molecule-audit-ledger-v1", 210000, 32)
for r in rows:
    print(hmac.new(key, json.dumps(r, sort_keys=True, separators=(",", ":")).encode(), hashlib.sha256).hexdigest())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, salt, &rows.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A ledger record from the runtime's JSON form of it (its time a quarter second past the
/// whole second the JSON names, which the canonical form truncates).
fn audit_event(row: &Value, hmac: &str, ws: WorkspaceId) -> molecule_store::AuditEvent {
    let text = |k: &str| row[k].as_str().map(str::to_owned);
    molecule_store::AuditEvent {
        id: text("id").unwrap(),
        timestamp: time::OffsetDateTime::parse(
            row["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
            + time::Duration::milliseconds(250),
        agent_id: text("agent_id").unwrap(),
        session_id: text("session_id").unwrap(),
        operation: text("operation").unwrap(),
        input_hash: text("input_hash"),
        output_hash: text("output_hash"),
        model_used: text("model_used"),
        human_oversight_flag: row["human_oversight_flag"].as_bool().unwrap(),
        risk_flag: row["risk_flag"].as_bool().unwrap(),
        prev_hmac: text("prev_hmac"),
        hmac: hmac.to_owned(),
        workspace_id: ws,
    }
}

async fn the_audit_chain_is_verified_as_the_runtime_writes_it(db: TestStore) {
    const SALT: &str = "ledger-salt";
    let s = observed(db, None, Some(SALT)).await;
    let ws = s.create(json!({"name": "audited"})).await;
    // Two agents interleaved; non-ASCII and quotes in a field.
    let mut rows = Vec::new();
    let mut prev: std::collections::HashMap<&str, String> = Default::default();
    let specs = [
        ("a1", "task_start", "é\"<>&"),
        ("a2", "llm_call", "m"),
        ("a1", "task_end", "x"),
    ];
    for (n, (agent, op, model)) in specs.iter().enumerate() {
        let row = json!({
            "agent_id": agent, "human_oversight_flag": n == 1, "id": format!("ev-{n}"),
            "input_hash": "ih", "model_used": model, "operation": op, "output_hash": null,
            "prev_hmac": prev.get(agent).cloned(), "risk_flag": false, "session_id": "s1",
            "timestamp": format!("2026-12-02T10:00:0{n}Z"),
        });
        let hmac = python_hmacs(SALT, &json!([row])).remove(0);
        prev.insert(agent, hmac.clone());
        rows.push((row, hmac));
    }
    for (row, hmac) in &rows {
        let event = audit_event(row, hmac, ws);
        s.state.store.audit().record(&event).await.unwrap();
    }
    let path = format!("/workspaces/{ws}/audit");
    let reply = assert_status(s.admin("GET", &path, None).await, 200);
    assert_eq!(reply["total"], 3);
    assert_eq!(reply["events"].as_array().unwrap().len(), 3);
    assert_eq!(reply["events"][0]["id"], "ev-0");
    assert_eq!(reply["chain_valid"], true, "{reply}");
    // One agent's whole chain verifies too; windows and pages are not judged.
    let (_, reply) = s.admin("GET", &format!("{path}?agent_id=a1"), None).await;
    assert_eq!(
        (reply["total"].as_i64(), reply["chain_valid"].as_bool()),
        (Some(2), Some(true))
    );
    for q in [
        "?offset=1",
        "?limit=1",
        "?session_id=s1",
        "?from=2026-12-02T10:00:01Z",
    ] {
        let (status, reply) = s.admin("GET", &format!("{path}{q}"), None).await;
        assert_eq!(status, 200);
        assert!(reply["chain_valid"].is_null(), "{q}: {reply}");
    }
    let window = format!("{path}?from=2026-12-02T10:00:01Z&to=2026-12-02T10:00:02Z");
    let (_, reply) = s.admin("GET", &window, None).await;
    assert_eq!(reply["total"], 1);
    assert_error(
        s.admin("GET", &format!("{path}?from=yesterday"), None)
            .await,
        400,
        "from must be RFC 3339 (e.g. 2026-04-17T00:00:00Z)",
    );
    // A tampered record breaks the chain.
    let forged = json!({
        "agent_id": "a2", "human_oversight_flag": false, "id": "ev-9", "input_hash": null,
        "model_used": null, "operation": "tool_call", "output_hash": null,
        "prev_hmac": rows[1].1, "risk_flag": false, "session_id": "s1",
        "timestamp": "2026-12-02T10:00:09Z",
    });
    let tampered = audit_event(&forged, &"0".repeat(64), ws);
    s.state.store.audit().record(&tampered).await.unwrap();
    let (_, reply) = s.admin("GET", &path, None).await;
    assert_eq!(reply["chain_valid"], false);
    // Without a salt nothing is judged.
    let other = TestServer::strict(TestStore::sqlite().await).await;
    let id = other.create(json!({"name": "x"})).await;
    let (_, reply) = other
        .admin("GET", &format!("/workspaces/{id}/audit"), None)
        .await;
    assert_eq!(
        reply,
        json!({"events": [], "total": 0, "chain_valid": null})
    );
}
