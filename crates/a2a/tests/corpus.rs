//! A2A payload normalisation: the corpus (spec `a2a.md` invariant 8) and the edge cases of
//! §1.2.2.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use molecule_a2a::normalize::{NormalizeError, Normalized, normalize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One corpus file: its annotations (keys starting with `_`) and the payload without them.
struct Fixture {
    name: String,
    annotations: Map<String, Value>,
    payload: Map<String, Value>,
}

fn corpus(kind: &str) -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Value::Object(all) = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
            else {
                panic!("{name}: not a JSON object");
            };
            let (annotations, payload) = all.into_iter().partition(|(k, _)| k.starts_with('_'));
            Fixture {
                name,
                annotations,
                payload,
            }
        })
        .collect()
}

fn run(payload: &Map<String, Value>) -> Result<Normalized, NormalizeError> {
    normalize(&serde_json::to_vec(payload).unwrap())
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok())
}

#[test]
fn every_valid_fixture_normalises_to_a_v0_3_json_rpc_request() {
    let fixtures = corpus("valid");
    assert!(fixtures.len() >= 11, "corpus shrank: {}", fixtures.len());
    for f in &fixtures {
        let name = &f.name;
        let n = run(&f.payload).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        let body = n.body.as_object().unwrap();

        // A JSON-RPC envelope, without any annotation key.
        assert_eq!(body["jsonrpc"], "2.0", "{name}");
        assert!(body["id"].is_string(), "{name}: id {:?}", body["id"]);
        assert!(body.keys().all(|k| !k.starts_with('_')), "{name}");
        if f.payload.contains_key("jsonrpc") {
            assert_eq!(body["id"], f.payload["id"], "{name}: id not preserved");
            let mut others = body.clone();
            let mut original = f.payload.clone();
            others.remove("params");
            original.remove("params");
            assert_eq!(others, original, "{name}: top-level keys changed");
        } else {
            assert!(is_uuid(&body["id"]), "{name}: new id is not a uuid");
            let keys: Vec<&str> = body.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 4, "{name}: {keys:?}");
        }

        // Method unchanged.
        assert_eq!(body["method"], f.payload["method"], "{name}");
        assert_eq!(n.method, f.payload["method"].as_str().unwrap(), "{name}");

        // params.message: non-empty parts, non-empty messageId, no content.
        let message = body["params"]["message"].as_object().unwrap();
        let parts = message["parts"].as_array().unwrap();
        assert!(!parts.is_empty(), "{name}: empty parts");
        assert!(!message.contains_key("content"), "{name}: content left");
        let message_id = message["messageId"].as_str().unwrap();
        assert!(!message_id.is_empty(), "{name}");
        assert_eq!(n.message_id.as_deref(), Some(message_id), "{name}");

        // The parts are the ones sent, or the ones derived from the v0.2 content.
        let sent = f.payload["params"]["message"].as_object().unwrap();
        let expected_parts = match (sent.get("parts"), sent.get("content")) {
            (Some(parts), _) => parts.clone(),
            (None, Some(Value::String(text))) => json!([{"kind": "text", "text": text}]),
            (None, Some(list)) => list.clone(),
            (None, None) => panic!("{name}: valid fixture without parts or content"),
        };
        assert_eq!(message["parts"], expected_parts, "{name}");
        match sent.get("messageId") {
            Some(id) => assert_eq!(&message["messageId"], id, "{name}"),
            None => assert!(is_uuid(&message["messageId"]), "{name}"),
        }
        // Nothing else in the message changed.
        for (k, v) in sent {
            if k != "content" && k != "parts" {
                assert_eq!(&message[k], v, "{name}: message.{k}");
            }
        }
    }
}

#[test]
fn every_invalid_fixture_gives_its_pinned_error() {
    let fixtures = corpus("invalid");
    assert!(fixtures.len() >= 3, "corpus shrank: {}", fixtures.len());
    for f in &fixtures {
        let name = &f.name;
        let expected_error = f.annotations["_expect_error"].as_str().unwrap();
        assert_eq!(f.annotations["_expect_status"], 400, "{name}");
        let err = run(&f.payload).expect_err(name);
        let body = err.body();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(expected_error),
            "{name}: {error:?} does not contain {expected_error:?}"
        );
        assert!(body["hint"].is_string(), "{name}: no hint");
    }
}

#[test]
fn error_bodies_are_the_exact_spec_bodies() {
    assert_eq!(
        NormalizeError::InvalidJson.body(),
        json!({"error": "invalid JSON"})
    );
    assert_eq!(
        NormalizeError::InvalidContentType.body(),
        json!({
            "error": "invalid params.message.content type",
            "hint": "content must be a string (v0.2 compat) or omitted in favour of parts (v0.3)"
        })
    );
    assert_eq!(
        NormalizeError::MissingPartsAndContent.body(),
        json!({
            "error": "params.message must contain either 'parts' (v0.3) or 'content' (v0.2 compat)",
            "hint": "v0.3 example: {\"parts\":[{\"kind\":\"text\",\"text\":\"...\"}]}"
        })
    );
    assert_eq!(
        NormalizeError::InvalidContentType.to_string(),
        "invalid params.message.content type"
    );
}

#[test]
fn bodies_that_are_not_a_json_object_are_invalid_json() {
    let bodies: &[&[u8]] = &[
        b"",
        b"   \n\t ",
        b"not json",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"message/send\"",
        b"[]",
        b"[{\"jsonrpc\":\"2.0\"}]",
        b"\"message/send\"",
        b"42",
        b"null",
        b"{} {}",
        b"\xff\xfe{}",
    ];
    for body in bodies {
        assert_eq!(
            normalize(body),
            Err(NormalizeError::InvalidJson),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn with_jsonrpc_the_object_is_kept_verbatim() {
    let body = json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "message/send",
        "extra": {"kept": true},
        "params": {"message": {"messageId": "m-1", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}},
    });
    let n = normalize(body.to_string().as_bytes()).unwrap();
    assert_eq!(n.body, body);
    assert_eq!(n.method, "message/send");
    assert_eq!(n.message_id.as_deref(), Some("m-1"));
}

#[test]
fn without_jsonrpc_other_keys_and_the_caller_id_are_dropped() {
    let body = json!({
        "id": "caller-id",
        "method": "message/send",
        "extra": 1,
        "params": {"message": {"messageId": "m-2", "parts": [{"kind": "text", "text": "hi"}]}},
    });
    let n = normalize(body.to_string().as_bytes()).unwrap();
    let id = n.body["id"].as_str().unwrap();
    assert_ne!(id, "caller-id");
    assert_eq!(Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(
        n.body,
        json!({"jsonrpc": "2.0", "id": id, "method": "message/send", "params": body["params"]})
    );

    // Two normalisations get two different ids.
    let again = normalize(body.to_string().as_bytes()).unwrap();
    assert_ne!(again.body["id"], n.body["id"]);

    // A bare object gets null method and params, and the method is "".
    let bare = normalize(b"{}").unwrap();
    assert_eq!(bare.body["method"], Value::Null);
    assert_eq!(bare.body["params"], Value::Null);
    assert_eq!(bare.method, "");
}

#[test]
fn message_id_is_added_only_when_absent() {
    let with_empty = json!({"jsonrpc": "2.0", "method": "message/send",
        "params": {"message": {"messageId": "", "content": "x"}}});
    let n = normalize(with_empty.to_string().as_bytes()).unwrap();
    assert_eq!(n.body["params"]["message"]["messageId"], "");
    assert_eq!(n.message_id.as_deref(), Some(""));

    let with_number = json!({"jsonrpc": "2.0", "method": "message/send",
        "params": {"message": {"messageId": 5, "content": "x"}}});
    let n = normalize(with_number.to_string().as_bytes()).unwrap();
    assert_eq!(n.body["params"]["message"]["messageId"], 5);
    assert_eq!(n.message_id, None);

    let absent = json!({"jsonrpc": "2.0", "method": "message/send",
        "params": {"message": {"content": "x"}}});
    let n = normalize(absent.to_string().as_bytes()).unwrap();
    let added = n.body["params"]["message"]["messageId"].as_str().unwrap();
    assert_eq!(Uuid::parse_str(added).unwrap().get_version_num(), 4);
    assert_eq!(n.message_id.as_deref(), Some(added));
}

#[test]
fn present_parts_are_untouched_even_empty_or_odd() {
    for parts in [
        json!([]),
        json!("text"),
        json!(null),
        json!({"kind": "text"}),
    ] {
        let body = json!({"jsonrpc": "2.0", "id": "1", "method": "message/send",
            "params": {"message": {"messageId": "m", "parts": parts, "content": "stray"}}});
        let n = normalize(body.to_string().as_bytes()).unwrap();
        assert_eq!(n.body, body, "parts {parts}");
    }
}

#[test]
fn content_becomes_parts() {
    let string = json!({"jsonrpc": "2.0", "method": "message/send",
        "params": {"message": {"messageId": "m", "role": "user", "content": "héllo 🚀"}}});
    let n = normalize(string.to_string().as_bytes()).unwrap();
    assert_eq!(
        n.body["params"]["message"],
        json!({"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "héllo 🚀"}]})
    );

    // An array is moved verbatim, even empty (only `parts` presence is checked).
    for list in [json!([{"type": "text", "text": "legacy"}]), json!([])] {
        let body = json!({"jsonrpc": "2.0", "method": "message/send",
            "params": {"message": {"messageId": "m", "content": list}}});
        let n = normalize(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            n.body["params"]["message"],
            json!({"messageId": "m", "parts": list})
        );
    }
}

#[test]
fn other_content_types_and_missing_content_are_refused() {
    for content in [
        json!(42),
        json!(1.5),
        json!(true),
        json!({"text": "x"}),
        json!(null),
    ] {
        let body = json!({"jsonrpc": "2.0", "method": "message/send",
            "params": {"message": {"messageId": "m", "content": content}}});
        assert_eq!(
            normalize(body.to_string().as_bytes()),
            Err(NormalizeError::InvalidContentType),
            "content {content}"
        );
    }
    // The same checks apply after the envelope is added.
    let bare = json!({"method": "message/send", "params": {"message": {"role": "user"}}});
    assert_eq!(
        normalize(bare.to_string().as_bytes()),
        Err(NormalizeError::MissingPartsAndContent)
    );
}

#[test]
fn requests_without_a_message_object_pass_unchecked() {
    for body in [
        json!({"jsonrpc": "2.0", "id": "t", "method": "tasks/get", "params": {"id": "task-1"}}),
        json!({"jsonrpc": "2.0", "id": "t", "method": "tasks/list"}),
        json!({"jsonrpc": "2.0", "id": "t", "method": "tasks/cancel", "params": "odd"}),
        json!({"jsonrpc": "2.0", "id": "t", "method": "message/send", "params": {"message": "text"}}),
        json!({"jsonrpc": "2.0", "id": "t", "method": "message/send", "params": {"message": null}}),
    ] {
        let n = normalize(body.to_string().as_bytes()).unwrap();
        assert_eq!(n.body, body);
        assert_eq!(n.message_id, None);
    }
    let bare = normalize(br#"{"method":"tasks/get","params":{"id":"task-1"}}"#).unwrap();
    assert_eq!(bare.method, "tasks/get");
    assert_eq!(bare.body["params"], json!({"id": "task-1"}));
}

#[test]
fn method_is_the_string_method_or_empty() {
    let n = normalize(br#"{"jsonrpc":"2.0","method":42}"#).unwrap();
    assert_eq!(n.method, "");
    assert_eq!(n.body["method"], 42);
    let n = normalize(br#"{"jsonrpc":"2.0"}"#).unwrap();
    assert_eq!(n.method, "");
    let n = normalize(br#"{"jsonrpc":"2.0","method":"no/such-method"}"#).unwrap();
    assert_eq!(n.method, "no/such-method");
}

#[test]
fn delegation_id_and_expiry_are_extracted() {
    let body = json!({"jsonrpc": "2.0", "method": "message/send", "params": {
        "expires_in_seconds": 3600,
        "message": {"messageId": "m", "parts": [], "metadata": {"delegation_id": "d-1"}}}});
    let n = normalize(body.to_string().as_bytes()).unwrap();
    assert_eq!(n.delegation_id.as_deref(), Some("d-1"));
    assert_eq!(n.expires_in_seconds, Some(3600));

    for (expiry, expected) in [
        (json!(0), None),
        (json!(-5), None),
        (json!(2.5), None),
        (json!("60"), None),
        (json!(null), None),
        (json!(1), Some(1)),
    ] {
        let body = json!({"jsonrpc": "2.0", "method": "message/send", "params": {
            "expires_in_seconds": expiry,
            "message": {"messageId": "m", "parts": [], "metadata": {"delegation_id": 9}}}});
        let n = normalize(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            n.expires_in_seconds, expected,
            "expires_in_seconds {expiry}"
        );
        assert_eq!(n.delegation_id, None);
    }
}
