//! Plugin source strings: `<scheme>://<spec>`, or a bare name meaning `local://<name>`.

/// The schemes this server resolves, sorted.
pub const SCHEMES: [&str; 2] = ["github", "local"];

/// A parsed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The scheme (`local`, `github`, or an unknown one).
    pub scheme: String,
    /// What follows `://`, trimmed.
    pub spec: String,
}

impl Source {
    /// Parses a source; `None` when it is empty or has an empty spec.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        if let Some((scheme, spec)) = raw.split_once("://") {
            let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
            if valid_scheme {
                let spec = spec.trim();
                return (!spec.is_empty()).then(|| Self {
                    scheme: scheme.to_owned(),
                    spec: spec.to_owned(),
                });
            }
        }
        Some(Self {
            scheme: "local".to_owned(),
            spec: raw.to_owned(),
        })
    }

    /// `<scheme>://<spec>`.
    pub fn canonical(&self) -> String {
        format!("{}://{}", self.scheme, self.spec)
    }
}

/// A `github://owner/repo[#ref]` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSpec {
    /// Owner.
    pub owner: String,
    /// Repository (the plugin's name).
    pub repo: String,
    /// Tag, branch or commit.
    pub reference: Option<String>,
}

fn segment_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && !s.contains("..")
}

fn ref_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && (b[0].is_ascii_alphanumeric() || matches!(b[0], b'_' | b'.'))
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'))
        && !s.contains("..")
}

impl GithubSpec {
    /// Parses `owner/repo[#ref]`; `None` for any other shape.
    pub fn parse(spec: &str) -> Option<Self> {
        let (path, reference) = match spec.split_once('#') {
            Some((p, r)) => (p, Some(r)),
            None => (spec, None),
        };
        let (owner, repo) = path.split_once('/')?;
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        if !segment_ok(owner) || !segment_ok(repo) || reference.is_some_and(|r| !ref_ok(r)) {
            return None;
        }
        Some(Self {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            reference: reference.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        let s = Source::parse("  my-plugin ").unwrap();
        assert_eq!(s.canonical(), "local://my-plugin");
        assert_eq!(Source::parse("github://o/r#v1").unwrap().scheme, "github");
        assert!(Source::parse("").is_none());
        assert!(Source::parse("   ").is_none());
        assert!(Source::parse("github://").is_none());
        assert_eq!(
            Source::parse("weirdscheme://x").unwrap().scheme,
            "weirdscheme"
        );
    }

    #[test]
    fn github_specs() {
        let g = GithubSpec::parse("org/repo#v1.0.0").unwrap();
        assert_eq!((g.owner.as_str(), g.repo.as_str()), ("org", "repo"));
        assert_eq!(g.reference.as_deref(), Some("v1.0.0"));
        assert!(GithubSpec::parse("org/repo").unwrap().reference.is_none());
        for bad in [
            "",
            "single-segment",
            "too/many/segments",
            "/leading-slash",
            "trailing/",
            "bad char/repo",
            "org/repo#bad ref",
            "org/repo#-exec=/evil",
            "org/repo#",
            "org/..",
        ] {
            assert!(GithubSpec::parse(bad).is_none(), "{bad}");
        }
    }
}
