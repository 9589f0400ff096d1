//! Generated files of an imported workspace (spec §1.0.11 and §1.3): the default
//! `config.yaml` with its appended blocks, `.env` parsing and `${VAR}` expansion. Every value
//! is emitted as a quoted scalar or a block, so no name can inject a YAML key.

use std::collections::BTreeMap;

use molecule_domain::Runtime;

/// `sanitize_runtime` (§1.0.8) over the built-in registry: empty → `default`; a known runtime
/// → itself; anything else → `claude-code`.
pub fn sanitize_runtime(runtime: &str, default: &str) -> String {
    let r = runtime.trim();
    if r.is_empty() {
        return default.to_owned();
    }
    if Runtime::BUILTIN.contains(&r) {
        r.to_owned()
    } else {
        tracing::warn!(
            runtime = r,
            "org import: unknown runtime replaced by claude-code"
        );
        "claude-code".to_owned()
    }
}

/// The default model of a runtime.
pub fn default_model(runtime: &str) -> &'static str {
    if runtime == "claude-code" {
        "sonnet"
    } else {
        "anthropic:claude-opus-4-7"
    }
}

/// A double-quoted YAML scalar: newlines become spaces, CRs are dropped, escaped like JSON.
pub fn quote(value: &str) -> String {
    let flat: String = value
        .chars()
        .filter(|c| *c != '\r')
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    serde_json::Value::String(flat).to_string()
}

/// The generated `config.yaml` (§1.0.11), exactly in this order.
pub fn default_config(
    name: &str,
    description: &str,
    tier: i32,
    runtime: &str,
    model: &str,
) -> String {
    format!(
        "name: {}\ndescription: {}\nversion: 1.0.0\ntier: {tier}\nruntime: {runtime}\nmodel: {}\nruntime_config:\n  timeout: 0\n",
        quote(name),
        quote(description),
        quote(model)
    )
}

fn newline(buf: &mut String) {
    if !buf.ends_with('\n') {
        buf.push('\n');
    }
}

/// Appends `category_routing:` (keys sorted, values as flow sequences); nothing when empty.
pub fn append_routing(buf: &mut String, routing: &BTreeMap<String, Vec<String>>) {
    if routing.is_empty() {
        return;
    }
    newline(buf);
    buf.push_str("category_routing:\n");
    for (k, v) in routing {
        let items: Vec<String> = v
            .iter()
            .map(|s| serde_json::Value::String(s.clone()).to_string())
            .collect();
        buf.push_str(&format!(
            "  {}: [{}]\n",
            serde_json::Value::String(k.clone()),
            items.join(", ")
        ));
    }
}

/// Appends `<key>: |` with the prompt trimmed, trailing blanks of each line removed, indented
/// two spaces.
pub fn append_block(buf: &mut String, key: &str, text: &str) {
    newline(buf);
    buf.push_str(key);
    buf.push_str(": |\n");
    for line in text.trim().lines() {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() {
            buf.push('\n');
        } else {
            buf.push_str("  ");
            buf.push_str(line);
            buf.push('\n');
        }
    }
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments and blanks skipped, one pair of
/// matching surrounding quotes stripped, empty keys or values skipped.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_start_matches("export ").trim();
        let mut v = v.trim();
        for q in ['"', '\''] {
            if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
                v = &v[1..v.len() - 1];
                break;
            }
        }
        if !k.is_empty() && !v.is_empty() {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// What an expansion found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded text.
    pub text: String,
    /// Whether the input referenced a variable at all.
    pub had_reference: bool,
    /// Whether some reference had no value.
    pub unresolved: bool,
}

/// Expands `${VAR}` and `$VAR` from `vars` only (never the platform's own environment, which
/// holds its secrets); an unset variable becomes `""`. `$5` and a lone `$` stay literal.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> Expanded {
    let mut out = String::new();
    let mut had = false;
    let mut unresolved = false;
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => (&body[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let len = after
                .char_indices()
                .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
                .map(|(j, c)| j + c.len_utf8())
                .last()
                .unwrap_or(0);
            let n = &after[..len];
            if n.starts_with(|c: char| c.is_ascii_digit()) {
                ("", 0)
            } else {
                (n, len)
            }
        };
        if consumed == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        had = true;
        match vars.get(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(v),
            None => unresolved = true,
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Expanded {
        text: out,
        had_reference: had,
        unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_resists_injection() {
        for name in [
            "legit-agent\nmodel: malicious:model",
            "legit-agent\r\nmalicious_key: value",
            "x\nfoo: bar\nbaz: qux",
            "\"; evil_key: pwned; #",
        ] {
            let cfg = default_config(name, "role: x", 2, "claude-code", "sonnet");
            let v: yaml_serde::Value = yaml_serde::from_str(&cfg).unwrap();
            let flat = name.replace('\r', "").replace('\n', " ");
            assert_eq!(v["name"].as_str(), Some(flat.as_str()));
            assert_eq!(v["model"].as_str(), Some("sonnet"));
            assert!(v.get("malicious_key").is_none() && v.get("evil_key").is_none());
        }
    }

    #[test]
    fn blocks_parse() {
        let mut cfg = default_config("a", "", 2, "langgraph", "m");
        let routing = BTreeMap::from([
            ("b: \"x\"\nz".to_owned(), vec!["r:1".to_owned()]),
            ("a".to_owned(), vec!["q".to_owned(), "p".to_owned()]),
        ]);
        append_routing(&mut cfg, &routing);
        append_block(
            &mut cfg,
            "initial_prompt",
            "  use ${GITHUB_TOKEN} \"quoted\"  \n\n  next\t\n",
        );
        let v: yaml_serde::Value = yaml_serde::from_str(&cfg).unwrap();
        assert_eq!(v["category_routing"]["a"][1].as_str(), Some("p"));
        assert_eq!(
            v["category_routing"]["b: \"x\"\nz"][0].as_str(),
            Some("r:1")
        );
        assert_eq!(
            v["initial_prompt"].as_str(),
            Some("use ${GITHUB_TOKEN} \"quoted\"\n\n  next\n")
        );
    }

    #[test]
    fn env_and_expansion() {
        let env = parse_env("# c\nA=1\nB=\"two\"\nC=\nexport D='x y'\n=z\n");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("two"));
        assert_eq!(env.get("D").map(String::as_str), Some("x y"));
        assert!(!env.contains_key("C"));
        let e = expand(
            "/data/${A}/$B/$5/$",
            &BTreeMap::from([("A".into(), "x".into())]),
        );
        assert_eq!(e.text, "/data/x//$5/$");
        assert!(e.had_reference && e.unresolved);
        let e = expand("plain", &BTreeMap::new());
        assert!(!e.had_reference && !e.unresolved);
    }
}
