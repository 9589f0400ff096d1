//! Just enough of Rust's lexical structure for the tidy checks: the text with comments and
//! literals blanked out, its words and `::`, the `mod` items of a file and the module paths it
//! uses (`crate::…`, `self::…`, `super::…`, grouped `use` trees included).

/// The text with comments, string, byte-string and char literals replaced by spaces. Newlines
/// are kept, so line numbers stay as they were.
pub fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let after_word = i > 0 && is_word(c[i - 1]);
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !after_word && let Some((hashes, start)) = raw_string_start(&c, i) {
            // r"…", r#"…"#, br"…", cr"…": no escapes, ends at `"` and as many `#`.
            let mut j = start + 1;
            while j < c.len()
                && !(c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')))
            {
                j += 1;
            }
            let end = (j + 1 + hashes).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '"' || (!after_word && matches!(c[i], 'b' | 'c') && next == Some('"')) {
            let mut j = if c[i] == '"' { i + 1 } else { i + 2 };
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '\'' || (!after_word && c[i] == 'b' && next == Some('\'')) {
            let q = if c[i] == '\'' { i } else { i + 1 };
            let end = match (c.get(q + 1), c.get(q + 2)) {
                // '\n', '\'', '\u{1F600}'
                (Some('\\'), _) => (q + 3..c.len()).find(|&j| c[j] == '\'').map(|j| j + 1),
                // 'a'
                (Some(&ch), Some('\'')) if ch != '\'' => Some(q + 3),
                // a lifetime or a label
                _ => None,
            };
            match end {
                Some(end) => {
                    for &ch in &c[i..end] {
                        blank(&mut out, ch);
                    }
                    i = end;
                }
                None => {
                    out.push(c[i]);
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// At a raw string's prefix (`r`, `br`, `cr` then `#`s and `"`): its `#` count and the
/// position of its opening quote.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if matches!(c[j], 'b' | 'c') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes))
}

fn is_word(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// A token of stripped text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An identifier, keyword or number (`r#` of raw identifiers dropped).
    Word(String),
    /// `::`
    PathSep,
    /// Any other character that is not white space.
    Punct(char),
}

/// A token and its line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its line.
    pub line: usize,
}

/// The tokens of stripped text (see [`strip`]).
pub fn tokens(stripped: &str) -> Vec<Token> {
    let c: Vec<char> = stripped.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_word(ch) {
            let mut j = i;
            while j < c.len() && is_word(c[j]) {
                j += 1;
            }
            // r#ident
            if j - i == 1
                && ch == 'r'
                && c.get(j) == Some(&'#')
                && c.get(j + 1).is_some_and(|&n| is_word(n))
            {
                i = j + 1;
                continue;
            }
            out.push(Token {
                tok: Tok::Word(c[i..j].iter().collect()),
                line,
            });
            i = j;
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// A `mod name;` item: a module whose body is another file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModDecl {
    /// The inline modules it stands in (`mod a { mod b; }`: `["a"]`), usually none.
    pub inline: Vec<String>,
    /// Its name.
    pub name: String,
}

/// A module path a file uses, made absolute: the crate-relative segments (the last ones may
/// name an item rather than a module) and the line where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    /// The segments from the crate root.
    pub segments: Vec<String>,
    /// The line of its last segment.
    pub line: usize,
}

/// What one file declares and uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileItems {
    /// Its `mod name;` items.
    pub mods: Vec<ModDecl>,
    /// Every `crate::`, `self::` and `super::` path in it, `use` trees expanded.
    pub paths: Vec<PathRef>,
}

fn word(tokens: &[Token], k: usize) -> Option<&str> {
    match tokens.get(k).map(|t| &t.tok) {
        Some(Tok::Word(w)) => Some(w),
        _ => None,
    }
}

fn punct(tokens: &[Token], k: usize) -> Option<char> {
    match tokens.get(k).map(|t| &t.tok) {
        Some(Tok::Punct(p)) => Some(*p),
        _ => None,
    }
}

fn is_sep(tokens: &[Token], k: usize) -> bool {
    matches!(tokens.get(k).map(|t| &t.tok), Some(Tok::PathSep))
}

/// The `mod` items and module paths of a file whose module is `module` (its segments from the
/// crate root). Paths inside inline modules (`mod tests { use super::*; }`) resolve from the
/// inline module.
pub fn file_items(text: &str, module: &[String]) -> FileItems {
    let t = tokens(&strip(text));
    let mut items = FileItems::default();
    // The inline modules open at this point, with the brace depth inside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut k = 0;
    while k < t.len() {
        match &t[k].tok {
            Tok::Punct('{') => {
                depth += 1;
                k += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                k += 1;
            }
            Tok::Word(w) if w == "mod" && !is_sep(&t, k.wrapping_sub(1)) => {
                match (word(&t, k + 1), punct(&t, k + 2)) {
                    (Some(name), Some(';')) => items.mods.push(ModDecl {
                        inline: inline.iter().map(|(n, _)| n.clone()).collect(),
                        name: name.to_owned(),
                    }),
                    (Some(name), Some('{')) => {
                        depth += 1;
                        inline.push((name.to_owned(), depth));
                        k += 1;
                    }
                    _ => {
                        k += 1;
                        continue;
                    }
                }
                k += 2;
            }
            Tok::Word(w)
                if matches!(w.as_str(), "crate" | "self" | "super")
                    && is_sep(&t, k + 1)
                    && !is_sep(&t, k.wrapping_sub(1)) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let base = match w.as_str() {
                    "crate" => Vec::new(),
                    "self" => here,
                    _ => {
                        here.pop();
                        here
                    }
                };
                k = path_tree(&t, k + 1, base, t[k].line, &mut items.paths);
            }
            _ => k += 1,
        }
    }
    items
}

/// Reads a path from `k` (a `::` or the end of the path) with `prefix` read so far; pushes
/// each complete path and answers the index after it.
fn path_tree(
    t: &[Token],
    mut k: usize,
    mut prefix: Vec<String>,
    mut line: usize,
    out: &mut Vec<PathRef>,
) -> usize {
    while is_sep(t, k) {
        match (t.get(k + 1).map(|t| &t.tok), word(t, k + 1)) {
            (_, Some("super")) => {
                prefix.pop();
                line = t[k + 1].line;
                k += 2;
            }
            (_, Some("self")) => {
                line = t[k + 1].line;
                k += 2;
            }
            (_, Some(w)) => {
                prefix.push(w.to_owned());
                line = t[k + 1].line;
                k += 2;
            }
            (Some(Tok::Punct('{')), _) => return group(t, k + 2, &prefix, out),
            (Some(Tok::Punct('*')), _) => {
                out.push(PathRef {
                    segments: prefix,
                    line,
                });
                return k + 2;
            }
            // `::<T>` and the like end the path.
            _ => break,
        }
    }
    out.push(PathRef {
        segments: prefix,
        line,
    });
    k
}

/// Reads a `{ a, b::c, self, d::{e, f} }` group from after its `{`; answers the index after
/// its `}`.
fn group(t: &[Token], mut k: usize, prefix: &[String], out: &mut Vec<PathRef>) -> usize {
    while k < t.len() {
        match (&t[k].tok, word(t, k)) {
            (Tok::Punct('}'), _) => return k + 1,
            (_, Some("as")) => k += 2,
            (_, Some("self")) => {
                out.push(PathRef {
                    segments: prefix.to_vec(),
                    line: t[k].line,
                });
                k += 1;
            }
            (_, Some("super")) => {
                let mut p = prefix.to_vec();
                p.pop();
                k = path_tree(t, k + 1, p, t[k].line, out);
            }
            (_, Some(w)) => {
                let mut p = prefix.to_vec();
                p.push(w.to_owned());
                k = path_tree(t, k + 1, p, t[k].line, out);
            }
            (Tok::Punct('{'), _) => k = group(t, k + 1, prefix, out),
            _ => k += 1,
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str, module: &[&str]) -> Vec<(String, usize)> {
        let module: Vec<String> = module.iter().map(|s| (*s).to_owned()).collect();
        file_items(text, &module)
            .paths
            .into_iter()
            .map(|p| (p.segments.join("::"), p.line))
            .collect()
    }

    #[test]
    fn comments_and_literals_are_blanked() {
        let text = "a // crate::x\nb /* c /* d */ e */ \"crate::y\\\"\" r#\"crate::z\"# 'c' '\\'' x<'a> b'q'\n";
        let s = strip(text);
        assert_eq!(s.lines().count(), 2);
        assert!(!s.contains("crate"), "{s}");
        assert!(s.contains("x<'a>"), "{s}");
        assert!(!s.contains('q'), "{s}");
        assert_eq!(s.len(), text.len());
    }

    #[test]
    fn grouped_use_trees_expand() {
        let text = "use crate::{a, b::c, d::{self, e::f as g}, h::*};\nuse super::{i, super::j};";
        assert_eq!(
            paths(text, &["m", "n"]),
            [
                ("a", 1),
                ("b::c", 1),
                ("d", 1),
                ("d::e::f", 1),
                ("h", 1),
                ("m::i", 2),
                ("j", 2)
            ]
            .map(|(p, l)| (p.to_owned(), l))
        );
    }

    #[test]
    fn inline_paths_and_relative_starts() {
        let text = "fn f() {\n    crate::foo::bar::<u8>();\n    let x = self::child::C;\n    \
                    super::super::top::T\n}\n";
        assert_eq!(
            paths(text, &["a", "b"]),
            [("foo::bar", 2), ("a::b::child::C", 3), ("top::T", 4)].map(|(p, l)| (p.to_owned(), l))
        );
        // `pub(crate)`, `$crate::` in a macro, a path inside a comment or string.
        let text =
            "pub(crate) fn f() { $crate::db::Sql; } // crate::no\nconst S: &str = \"crate::no\";";
        assert_eq!(paths(text, &["m"]), [("db::Sql".to_owned(), 1)]);
    }

    #[test]
    fn inline_modules_resolve_from_themselves() {
        let text = "mod a;\npub(crate) mod b;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    \
                    use super::sibling::x;\n    mod deeper;\n}\nuse self::a::y;\n";
        let items = file_items(text, &["m".to_owned()]);
        let mods: Vec<(Vec<String>, String)> =
            items.mods.into_iter().map(|d| (d.inline, d.name)).collect();
        assert_eq!(
            mods,
            [
                (vec![], "a".to_owned()),
                (vec![], "b".to_owned()),
                (vec!["tests".to_owned()], "deeper".to_owned())
            ]
        );
        assert_eq!(
            paths(text, &["m"]),
            [("m", 5), ("m::sibling::x", 6), ("m::a::y", 9)].map(|(p, l)| (p.to_owned(), l))
        );
    }
}
