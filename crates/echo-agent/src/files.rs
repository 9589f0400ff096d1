//! The agent's internal file endpoints the platform forwards chat attachments to (spec
//! observability §1.17), both behind the platform inbound secret:
//!
//! - `POST /internal/chat/uploads/ingest`: a `multipart/form-data` body; every part with a
//!   file name is stored under `<files root>/workspace/.molecule/chat-uploads/` and answered
//!   as `{"files":[{"uri":"workspace:/workspace/.molecule/chat-uploads/<stored>","name",
//!   "size","mime_type"}]}`;
//! - `GET /internal/file/read?path=<absolute>`: the file at `<files root><path>` with its
//!   `Content-Type` and `Content-Disposition`; 404 when missing.
//!
//! The files root stands for the container's `/` (`FILES_ROOT`, default `/`), so the agent
//! can run outside a container in tests.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Where uploads are stored, as a container path.
pub const UPLOADS_DIR: &str = "/workspace/.molecule/chat-uploads";

/// One file part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The file name the client gave.
    pub file_name: String,
    /// The part's `Content-Type` (default `application/octet-stream`).
    pub content_type: String,
    /// The content.
    pub data: Vec<u8>,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut pieces = content_type.split(';');
    if !pieces
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    pieces.find_map(|p| {
        let (key, value) = p.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// The file parts of a whole multipart body (parts without a file name are skipped); `None`
/// when the body is not well formed.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut rest = body.get(find(body, &delimiter)? + delimiter.len()..)?;
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let content = &rest[head_end + 4..];
        let mut next = b"\r\n".to_vec();
        next.extend_from_slice(&delimiter);
        let end = find(content, &next)?;
        let mut file_name = None;
        let mut content_type = "application/octet-stream".to_owned();
        for line in head.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                file_name = disposition_file_name(value);
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                content_type = value.trim().to_owned();
            }
        }
        if let Some(file_name) = file_name {
            parts.push(Part {
                file_name,
                content_type,
                data: content[..end].to_vec(),
            });
        }
        rest = &content[end + next.len()..];
    }
}

fn disposition_file_name(value: &str) -> Option<String> {
    value.split(';').find_map(|p| {
        let (key, v) = p.trim().split_once('=')?;
        (key.trim() == "filename").then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A stored file name from a client's: its last path piece, `[A-Za-z0-9._-]` kept (others
/// become `_`), no leading dots; `upload` when nothing is left.
pub fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "upload".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// Stores `parts` under the uploads directory of `root`; the answer's `files` entries.
pub fn store_uploads(root: &Path, parts: &[Part], unique: u128) -> std::io::Result<Value> {
    let dir = host_path(root, UPLOADS_DIR);
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for (n, part) in parts.iter().enumerate() {
        let stored = format!("{unique:x}-{n}-{}", safe_name(&part.file_name));
        std::fs::write(dir.join(&stored), &part.data)?;
        files.push(json!({
            "uri": format!("workspace:{UPLOADS_DIR}/{stored}"),
            "name": part.file_name,
            "size": part.data.len(),
            "mime_type": part.content_type,
        }));
    }
    Ok(json!({ "files": files }))
}

/// A container path (absolute, clean: no `..`, `.` or empty pieces) on the host under
/// `root`; `None` for any other path.
pub fn readable_path(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = path.strip_prefix('/')?;
    let clean = !rel.is_empty()
        && !path.contains('\0')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    clean.then(|| host_path(root, path))
}

fn host_path(root: &Path, container_path: &str) -> PathBuf {
    root.join(container_path.trim_start_matches('/'))
}

/// A content type from a file name's extension.
pub fn content_type_of(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("txt" | "md" | "log") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_parse() {
        let body =
            b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a b.txt\"\r\n\
            Content-Type: text/plain\r\n\r\nline1\r\n--X\r\nline2\r\n--XyZ--\r\n";
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        assert_eq!(boundary("text/plain; boundary=x"), None);
        let parts = parse_multipart(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].file_name, "a b.txt");
        assert_eq!(parts[0].content_type, "text/plain");
        assert_eq!(parts[0].data, b"line1\r\n--X\r\nline2");
        assert_eq!(parse_multipart(b"--XyZ\r\nno end", "XyZ"), None);
    }

    #[test]
    fn names_and_paths_stay_inside() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..hidden $(x).sh"), "hidden___x_.sh");
        assert_eq!(safe_name("/"), "upload");
        let root = Path::new("/srv/root");
        assert_eq!(
            readable_path(root, "/workspace/a.txt"),
            Some(PathBuf::from("/srv/root/workspace/a.txt"))
        );
        for bad in ["workspace/a", "/workspace/../x", "/a//b", "/", "/a/./b"] {
            assert_eq!(readable_path(root, bad), None, "{bad}");
        }
    }
}
