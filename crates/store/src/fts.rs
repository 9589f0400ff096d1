//! A memory recall query as an SQLite FTS5 `MATCH` expression, read the way PostgreSQL's
//! `websearch_to_tsquery('english', …)` reads it: words are ANDed, `"quoted words"` are a
//! phrase, `or` between two terms is OR, a leading `-` excludes a term; English stop words are
//! dropped. Every word is quoted, so no FTS5 syntax in the user's text is ever interpreted.

/// Words PostgreSQL's `english` configuration ignores (the common part of its list).
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because",
    "been", "before", "being", "but", "by", "can", "did", "do", "does", "doing", "for", "from",
    "had", "has", "have", "having", "he", "her", "here", "him", "his", "how", "i", "if", "in",
    "into", "is", "it", "its", "just", "me", "my", "no", "nor", "not", "of", "off", "on", "once",
    "only", "or", "other", "our", "out", "over", "own", "same", "she", "should", "so", "some",
    "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "you", "your",
];

/// One term of the query: a word or a phrase, possibly excluded.
struct Term {
    words: Vec<String>,
    negated: bool,
    /// Joined to the previous term with OR instead of AND.
    or: bool,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

fn quoted(words: &[String]) -> String {
    // Words hold only alphanumeric characters: no quote to escape.
    format!("\"{}\"", words.join(" "))
}

/// The FTS5 expression for `q`, or `None` when it has no searchable word (only stop words or
/// punctuation), in which case the caller falls back to a substring match.
pub(crate) fn fts5_query(q: &str) -> Option<String> {
    let mut terms: Vec<Term> = Vec::new();
    let mut pending_or = false;
    let mut rest = q.trim();
    while !rest.is_empty() {
        let (chunk, phrase, negated);
        let (neg, body) = match rest.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        if let Some(after) = body.strip_prefix('"') {
            let end = after.find('"').unwrap_or(after.len());
            chunk = &after[..end];
            rest = after.get(end + 1..).unwrap_or("").trim_start();
            phrase = true;
        } else {
            let end = body.find(char::is_whitespace).unwrap_or(body.len());
            chunk = &body[..end];
            rest = body[end..].trim_start();
            phrase = false;
        }
        negated = neg;
        if !phrase && !negated && chunk.eq_ignore_ascii_case("or") {
            pending_or = !terms.is_empty();
            continue;
        }
        let ws = words(chunk);
        if ws.is_empty() {
            continue;
        }
        terms.push(Term {
            words: ws,
            negated,
            or: std::mem::take(&mut pending_or),
        });
    }
    let mut out = String::new();
    for term in terms.iter().filter(|t| !t.negated) {
        if !out.is_empty() {
            out.push_str(if term.or { " OR " } else { " AND " });
        }
        out.push_str(&quoted(&term.words));
    }
    if out.is_empty() {
        return None;
    }
    let mut out = format!("({out})");
    for term in terms.iter().filter(|t| t.negated) {
        out.push_str(" NOT ");
        out.push_str(&quoted(&term.words));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_anded_and_quoted() {
        assert_eq!(
            fts5_query("Deploy the pipeline").as_deref(),
            Some(r#"("deploy" AND "pipeline")"#)
        );
    }

    #[test]
    fn phrases_or_and_exclusions() {
        assert_eq!(
            fts5_query(r#""blue green" or canary -rollback"#).as_deref(),
            Some(r#"("blue green" OR "canary") NOT "rollback""#)
        );
    }

    #[test]
    fn fts_syntax_in_the_text_is_never_interpreted() {
        assert_eq!(
            fts5_query("NEAR(a b) col:x*").as_deref(),
            Some(r#"("near" AND "b" AND "col x")"#)
        );
        assert_eq!(fts5_query("the of and"), None);
        assert_eq!(fts5_query("!! --"), None);
        assert_eq!(fts5_query("-only"), None);
    }
}
