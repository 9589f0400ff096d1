//! Safe YAML loading for org templates: a size cap before parsing, the parser's own alias
//! expansion limit (a billion-laughs document fails fast), `!include` expansion with a depth
//! limit, cycle detection and every included path kept inside the org template's directory; the
//! result is plain JSON, so a template given inline as JSON takes the same decoding path.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use yaml_serde::Value as Yaml;

use super::paths::inside_root;

/// Largest YAML file read (org.yaml or an included file), bytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Deepest include nesting.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files one template may include in all.
pub const MAX_INCLUDES: usize = 256;

/// Why a template could not be loaded. The text is for logs; handlers answer fixed messages.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is missing or unreadable.
    #[error("cannot read {0}")]
    Read(PathBuf),
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{0} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The YAML does not parse (or expands too much).
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// An include problem: cycle, depth, escape, empty path, too many files.
    #[error("include failed: {0}")]
    Include(String),
}

impl LoadError {
    /// Whether this is a failure of the top-level file itself being absent.
    pub fn is_missing(&self) -> bool {
        matches!(self, LoadError::Read(_))
    }
}

/// Reads a file of at most [`MAX_FILE_BYTES`].
fn read_capped(path: &Path) -> Result<Vec<u8>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|_| LoadError::Read(path.to_owned()))?;
    if !meta.is_file() {
        return Err(LoadError::Read(path.to_owned()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge(path.to_owned()));
    }
    let bytes = std::fs::read(path).map_err(|_| LoadError::Read(path.to_owned()))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge(path.to_owned()));
    }
    Ok(bytes)
}

/// Parses YAML text (size-capped) into JSON without expanding includes; an `!include` tag is
/// an error here (inline mode has no base directory).
pub fn parse_inline(text: &[u8]) -> Result<Value, LoadError> {
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge(PathBuf::from("<inline>")));
    }
    let yaml: Yaml = yaml_serde::from_slice(text).map_err(|e| LoadError::Parse {
        path: PathBuf::from("<inline>"),
        reason: e.to_string(),
    })?;
    let mut loader = Loader {
        root: None,
        stack: Vec::new(),
        count: 0,
    };
    loader.convert(yaml, Path::new(""))
}

/// Loads `file` (inside `root`) with its includes expanded, as JSON.
pub fn load(root: &Path, file: &Path) -> Result<Value, LoadError> {
    let mut loader = Loader {
        root: Some(root.to_owned()),
        stack: Vec::new(),
        count: 0,
    };
    loader.load_file(file)
}

struct Loader {
    root: Option<PathBuf>,
    stack: Vec<PathBuf>,
    count: usize,
}

impl Loader {
    fn load_file(&mut self, file: &Path) -> Result<Value, LoadError> {
        if self.stack.iter().any(|p| p == file) {
            return Err(LoadError::Include(format!(
                "include cycle through {}",
                file.display()
            )));
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(LoadError::Include(format!(
                "include depth over {MAX_INCLUDE_DEPTH}"
            )));
        }
        let bytes = read_capped(file)?;
        let yaml: Yaml = yaml_serde::from_slice(&bytes).map_err(|e| LoadError::Parse {
            path: file.to_owned(),
            reason: e.to_string(),
        })?;
        self.stack.push(file.to_owned());
        let dir = file.parent().unwrap_or(Path::new("")).to_owned();
        let out = self.convert(yaml, &dir);
        self.stack.pop();
        out
    }

    fn include(&mut self, target: &Yaml, dir: &Path) -> Result<Value, LoadError> {
        let Some(root) = self.root.clone() else {
            return Err(LoadError::Include(
                "!include needs a template directory (not inline)".into(),
            ));
        };
        let Yaml::String(rel) = target else {
            return Err(LoadError::Include("!include takes a path".into()));
        };
        let rel = rel.trim();
        if rel.is_empty() {
            return Err(LoadError::Include("!include with an empty path".into()));
        }
        self.count = self.count.saturating_add(1);
        if self.count > MAX_INCLUDES {
            return Err(LoadError::Include(format!(
                "more than {MAX_INCLUDES} includes"
            )));
        }
        // Relative to the including file, and still inside the org templates root.
        let rel_to_root = dir
            .strip_prefix(super::paths::absolute(&root).unwrap_or_default())
            .unwrap_or(dir)
            .join(rel);
        let resolved = inside_root(&root, &rel_to_root.to_string_lossy())
            .map_err(|e| LoadError::Include(format!("{rel}: {e}")))?;
        self.load_file(&resolved)
    }

    fn convert(&mut self, yaml: Yaml, dir: &Path) -> Result<Value, LoadError> {
        Ok(match yaml {
            Yaml::Null => Value::Null,
            Yaml::Bool(b) => Value::Bool(b),
            Yaml::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
            Yaml::String(s) => Value::String(s),
            Yaml::Sequence(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| self.convert(v, dir))
                    .collect::<Result<_, _>>()?,
            ),
            Yaml::Mapping(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let key = match k {
                        Yaml::String(s) => s,
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        _ => {
                            return Err(LoadError::Parse {
                                path: dir.to_owned(),
                                reason: "mapping key is not a scalar".into(),
                            });
                        }
                    };
                    out.insert(key, self.convert(v, dir)?);
                }
                Value::Object(out)
            }
            Yaml::Tagged(tagged) => {
                if tagged.tag == "include" {
                    self.include(&tagged.value, dir)?
                } else {
                    self.convert(tagged.value, dir)?
                }
            }
        })
    }
}
