//! Operator-configured observability: Langfuse (traces, `observability.md` §1.6) and the
//! audit ledger's HMAC chain (§1.8). The ledger key is
//! PBKDF2-HMAC-SHA256 of `AUDIT_LEDGER_SALT` (derived once), each record's HMAC is over its
//! canonical JSON exactly as the Python runtime writes it, and each record names the previous
//! HMAC of the same agent.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use molecule_store::AuditEvent;
use sha2::Sha256;

/// Langfuse, when configured (`LANGFUSE_HOST`, `LANGFUSE_PUBLIC_KEY`, `LANGFUSE_SECRET_KEY`).
#[derive(Clone)]
pub struct Langfuse {
    /// Base URL.
    pub host: String,
    /// Public key (HTTP Basic user).
    pub public_key: String,
    /// Secret key (HTTP Basic password).
    pub secret_key: String,
}

impl std::fmt::Debug for Langfuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Langfuse")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// The PBKDF2 salt of the ledger key.
const KEY_SALT: &[u8] = b"molecule-audit-ledger-v1";
/// PBKDF2 iterations of the ledger key.
const KEY_ROUNDS: u32 = 210_000;

/// The ledger key, derived from the salt on first use.
#[derive(Clone)]
pub struct AuditKey {
    salt: Arc<String>,
    key: Arc<OnceLock<[u8; 32]>>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// The key of this salt (not derived until needed).
    pub fn new(salt: String) -> Self {
        AuditKey {
            salt: Arc::new(salt),
            key: Arc::new(OnceLock::new()),
        }
    }

    fn key(&self) -> &[u8; 32] {
        self.key.get_or_init(|| {
            let mut key = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(self.salt.as_bytes(), KEY_SALT, KEY_ROUNDS, &mut key);
            key
        })
    }

    /// The HMAC (lowercase hex) a record must carry.
    pub fn expected(&self, e: &AuditEvent) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.key()) else {
            return String::new();
        };
        mac.update(canonical(e).as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `events` (in ledger order, each agent's chain from its start) are intact: each
    /// HMAC matches, and each record's `prev_hmac` is the previous HMAC of the same agent
    /// (none for its first record). The first failure is logged with short prefixes only.
    pub fn verify(&self, events: &[AuditEvent]) -> bool {
        let mut last: HashMap<&str, &str> = HashMap::new();
        for e in events {
            let expected = self.expected(e);
            let hmac_ok = constant_time_eq(expected.as_bytes(), e.hmac.as_bytes());
            let prev_ok = last.get(e.agent_id.as_str()).copied() == e.prev_hmac.as_deref();
            if !hmac_ok || !prev_ok {
                tracing::warn!(
                    event = %e.id,
                    hmac = %prefix(&e.hmac),
                    prev = %prefix(e.prev_hmac.as_deref().unwrap_or("")),
                    "audit ledger: chain broken"
                );
                return false;
            }
            last.insert(e.agent_id.as_str(), e.hmac.as_str());
        }
        true
    }
}

fn prefix(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The record as `json.dumps(…, sort_keys=True, separators=(",", ":"))` writes it: the
/// eleven fields in key order, `null` for missing strings, the time as
/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, strings escaped as Python's `ensure_ascii` does.
pub fn canonical(e: &AuditEvent) -> String {
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "null".to_owned(), py_string);
    let t = e.timestamp.to_offset(time::UtcOffset::UTC);
    let timestamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    format!(
        "{{\"agent_id\":{},\"human_oversight_flag\":{},\"id\":{},\"input_hash\":{},\
         \"model_used\":{},\"operation\":{},\"output_hash\":{},\"prev_hmac\":{},\
         \"risk_flag\":{},\"session_id\":{},\"timestamp\":{}}}",
        py_string(&e.agent_id),
        e.human_oversight_flag,
        py_string(&e.id),
        opt(&e.input_hash),
        opt(&e.model_used),
        py_string(&e.operation),
        opt(&e.output_hash),
        opt(&e.prev_hmac),
        e.risk_flag,
        py_string(&e.session_id),
        py_string(&timestamp),
    )
}

/// A JSON string as Python's `json.dumps` with `ensure_ascii=True` writes it.
fn py_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e && (c as u32) != 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_python_does() {
        // json.dumps("a\"b\\c\n\u0001é😀<>&\x7f", ensure_ascii=True)
        assert_eq!(
            py_string("a\"b\\c\n\u{1}é😀<>&\u{7f}"),
            "\"a\\\"b\\\\c\\n\\u0001\\u00e9\\ud83d\\ude00<>&\u{7f}\""
        );
    }
}
