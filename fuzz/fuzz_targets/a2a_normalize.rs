//! A2A payload normalisation (`molecule_a2a::normalize::normalize`, spec `a2a.md` §1.2.2) on
//! arbitrary bytes: never panics; an accepted body keeps the documented shape and the fields
//! read from it agree with it; normalising the normalised body again changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_a2a::normalize::normalize;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(n) = normalize(data) else {
        return;
    };
    let Value::Object(body) = &n.body else {
        panic!("a normalised body is not an object: {}", n.body);
    };
    assert!(body.contains_key("jsonrpc"), "no jsonrpc key");
    assert_eq!(
        n.method,
        body.get("method")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        "method"
    );
    let message = body.get("params").and_then(|p| p.get("message"));
    if let Some(Value::Object(message)) = message {
        assert!(message.contains_key("messageId"), "no messageId");
        assert!(message.contains_key("parts"), "no parts");
        assert_eq!(
            n.message_id.as_deref(),
            message.get("messageId").and_then(Value::as_str),
            "message_id"
        );
    }
    assert!(
        n.expires_in_seconds.is_none_or(|s| s > 0),
        "expires_in_seconds"
    );

    // Idempotence: the normalised body, as dispatched/queued/logged, normalises to itself
    // (the ids it added are kept, since it has `jsonrpc` and a `messageId`).
    let bytes = serde_json::to_vec(&n.body).expect("a JSON value serialises");
    let again = normalize(&bytes).expect("a normalised body is accepted again");
    assert_eq!(again, n, "normalisation is not idempotent");
});
