//! Secret redaction of agent memories (`observability.md` §1.10): the one function every
//! memory write path (commit, seeding, admin import) and the admin export run content through.

use std::sync::LazyLock;

use regex_lite::Regex;

/// The patterns, in the order they are applied, with their labels.
const PATTERNS: &[(&str, &str)] = &[
    (r"(?i)\b[A-Z][A-Z0-9_]*_API_KEY\s*=\s*\S+", "API_KEY"),
    (r"(?i)\b[A-Z][A-Z0-9_]*_TOKEN\s*=\s*\S+", "TOKEN"),
    (r"(?i)\b[A-Z][A-Z0-9_]*_SECRET\s*=\s*\S+", "SECRET"),
    (r"Bearer\s+\S+", "BEARER_TOKEN"),
    (r"sk-[A-Za-z0-9\-_]{16,}", "SK_TOKEN"),
    (r"ctx7_[A-Za-z0-9]+", "CTX7_TOKEN"),
    (r"[A-Za-z0-9+/]{33,}={0,2}", "BASE64_BLOB"),
];

/// The compiled patterns; `None` if any failed to compile (then everything is redacted).
static COMPILED: LazyLock<Option<Vec<(Regex, &'static str)>>> = LazyLock::new(|| {
    PATTERNS
        .iter()
        .map(|(pattern, label)| Regex::new(pattern).ok().map(|re| (re, *label)))
        .collect()
});

/// Content after redaction, with the labels of the patterns that matched (to log; never the
/// values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The content with each match replaced by `[REDACTED:<LABEL>]`.
    pub text: String,
    /// The labels that matched, in pattern order.
    pub labels: Vec<&'static str>,
}

/// Replaces every secret-looking part of `content` with `[REDACTED:<LABEL>]`, pattern by
/// pattern in the spec's order. Fails closed: if the patterns could not be compiled the whole
/// content is replaced.
pub fn redact_secrets(content: &str) -> Redacted {
    let Some(patterns) = COMPILED.as_ref() else {
        tracing::error!("memory redaction patterns did not compile: redacting the whole content");
        return Redacted {
            text: "[REDACTED:UNAVAILABLE]".to_owned(),
            labels: vec!["UNAVAILABLE"],
        };
    };
    let mut text = content.to_owned();
    let mut labels = Vec::new();
    for (re, label) in patterns {
        if re.is_match(&text) {
            text = re
                .replace_all(&text, format!("[REDACTED:{label}]").as_str())
                .into_owned();
            labels.push(*label);
        }
    }
    Redacted { text, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(COMPILED.as_ref().map(Vec::len), Some(PATTERNS.len()));
    }

    #[test]
    fn the_spec_examples() {
        let r = redact_secrets("OPENAI_API_KEY=sk-1234567890abcdefgh");
        assert_eq!(r.text, "[REDACTED:API_KEY]");
        assert_eq!(r.labels, ["API_KEY"]);
        assert_eq!(
            redact_secrets("DATABASE_SECRET=supersecret").text,
            "[REDACTED:SECRET]"
        );
        let plain = redact_secrets("The answer is 42");
        assert_eq!(plain.text, "The answer is 42");
        assert!(plain.labels.is_empty());
    }

    #[test]
    fn each_pattern_by_label() {
        let cases = [
            ("use my_api_key = abc123 now", "use [REDACTED:API_KEY] now"),
            ("GITHUB_TOKEN=ghp_x1 done", "[REDACTED:TOKEN] done"),
            ("aws_secret= s3cr3t!", "[REDACTED:SECRET]"),
            (
                "header Authorization: Bearer eyJhbGciOi.x.y ok",
                "header Authorization: [REDACTED:BEARER_TOKEN] ok",
            ),
            (
                "key sk-abcdefghijklmnop1234 end",
                "key [REDACTED:SK_TOKEN] end",
            ),
            ("ctx7_AbC123 there", "[REDACTED:CTX7_TOKEN] there"),
            (
                "blob QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn== end",
                "blob [REDACTED:BASE64_BLOB] end",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_secrets(input).text, want, "{input}");
        }
        // 32 characters are not a blob; a short sk- is not a key.
        let short = "a".repeat(32);
        assert_eq!(redact_secrets(&short).text, short);
        assert_eq!(redact_secrets("sk-short").text, "sk-short");
        // The variable name must start with a letter at a word boundary.
        assert_eq!(redact_secrets("_API_KEY=x").text, "_API_KEY=x");
    }
}
