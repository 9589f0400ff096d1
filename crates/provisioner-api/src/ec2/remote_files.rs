//! Files on a workspace instance over SSH (spec provisioner §1.10 "EIC path"). Every remote
//! command is a fixed program or script; the one value that comes from the caller, the
//! absolute path built from a [`RelPath`], is passed as a single-quoted word (`'` → `'\''`)
//! and, for the scripts, as a positional argument (`sh -c '<script>' sh '<path>'`), so no
//! file name is ever parsed as shell syntax.

use std::future::Future;

use super::Ec2Provisioner;
use super::session::{ExecOutput, SshSession};
use crate::ProvisionError;
use crate::access::{FileEntry, FileRoot, RelPath, Target, WrittenTo};

/// The largest file a read returns (the Files API's exec output cap); a larger one is an error,
/// never a silent truncation.
pub const MAX_READ_BYTES: usize = 5 * 1024 * 1024;
/// The largest listing output accepted.
const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;
/// The output accepted of a command that should print nothing.
const QUIET_BYTES: usize = 64 * 1024;
/// The exit status the read script gives for a path that is not a regular file.
const NOT_A_FILE: u32 = 44;
/// Reads `$1` when it is a regular file, exits [`NOT_A_FILE`] otherwise.
const READ_SCRIPT: &str = "[ -f \"$1\" ] || exit 44; exec cat -- \"$1\"";
/// Lists `$1` to depth `$2`: `type|size|relative path` records, NUL-terminated, leaving out
/// (and not descending into) the excluded names; a missing directory lists nothing.
const LIST_SCRIPT: &str = "[ -d \"$1\" ] || exit 0; exec find -H \"$1\" -mindepth 1 -maxdepth \"$2\" \
\\( -name .git -o -name __pycache__ -o -name node_modules -o -name .DS_Store \\) -prune \
-o -printf \"%y|%s|%P\\0\"";

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The managed-config directory of a runtime on an instance: `hermes` runs on the host with
/// its config in `/home/ubuntu/.hermes`; every other runtime runs in a container with the
/// host's `/configs` bind-mounted (the bootstrap of [`super::user_data`]).
pub fn config_dir(runtime: &str) -> &'static str {
    if runtime.trim().eq_ignore_ascii_case("hermes") {
        "/home/ubuntu/.hermes"
    } else {
        "/configs"
    }
}

/// The absolute path on the instance of `path` (the base itself when `None`) under `root`.
pub fn remote_path(root: FileRoot, runtime: &str, path: Option<&RelPath>) -> String {
    let base = match root {
        FileRoot::Configs => config_dir(runtime),
        other => other.as_str(),
    };
    match path {
        Some(p) => format!("{base}/{}", p.as_str()),
        None => base.to_owned(),
    }
}

fn sudo(on: bool) -> &'static str {
    if on { "sudo -n " } else { "" }
}

/// Writes stdin to `abs` (parents created, mode 0644).
pub fn write_command(use_sudo: bool, abs: &str) -> String {
    format!(
        "{}install -D -m 0644 /dev/stdin {}",
        sudo(use_sudo),
        shell_quote(abs)
    )
}

/// Prints `abs`; exit [`NOT_A_FILE`] when it is not a regular file.
pub fn read_command(use_sudo: bool, abs: &str) -> String {
    format!(
        "{}sh -c {} sh {}",
        sudo(use_sudo),
        shell_quote(READ_SCRIPT),
        shell_quote(abs)
    )
}

/// Removes `abs`, recursively; a missing path is no error.
pub fn delete_command(use_sudo: bool, abs: &str) -> String {
    format!("{}rm -rf -- {}", sudo(use_sudo), shell_quote(abs))
}

/// Lists `abs` to `depth` levels.
pub fn list_command(use_sudo: bool, abs: &str, depth: u8) -> String {
    format!(
        "{}sh -c {} sh {} {depth}",
        sudo(use_sudo),
        shell_quote(LIST_SCRIPT),
        shell_quote(abs)
    )
}

/// The entries of a listing's output, sorted by path.
pub fn parse_listing(out: &[u8]) -> Vec<FileEntry> {
    let mut entries: Vec<FileEntry> = out
        .split(|b| *b == 0)
        .filter_map(|record| {
            let record = String::from_utf8_lossy(record);
            let mut fields = record.splitn(3, '|');
            let kind = fields.next()?;
            let size = fields.next()?;
            let path = fields.next().filter(|p| !p.is_empty())?;
            let dir = kind == "d";
            Some(FileEntry {
                path: path.to_owned(),
                size: if dir { 0 } else { size.parse().unwrap_or(0) },
                dir,
            })
        })
        .collect();
    entries.sort();
    entries
}

fn failed(what: &str, abs: &str, out: &ExecOutput) -> ProvisionError {
    ProvisionError::Failed(format!(
        "ssh {what} {abs}: exit {:?}: {}",
        out.status,
        out.stderr_text()
    ))
}

impl Ec2Provisioner {
    /// [`remote_path`] under the configured path prefix.
    fn remote_abs(&self, root: FileRoot, runtime: &str, path: Option<&RelPath>) -> String {
        let abs = remote_path(root, runtime, path);
        match &self.config.ssh.path_prefix {
            Some(prefix) => format!("{}{abs}", prefix.trim_end_matches('/')),
            None => abs,
        }
    }

    /// The workspace's instance id: the target's, else the live instance with its tag.
    async fn target_instance(&self, target: &Target<'_>) -> Result<String, ProvisionError> {
        self.targets(target.workspace_id, target.instance_id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ProvisionError::NotFound(format!(
                    "no instance of workspace {}",
                    target.workspace_id
                ))
            })
    }

    /// Lookup, key push and login for one operation on the target's instance.
    pub(super) async fn open_session(
        &self,
        target: &Target<'_>,
        comment: &str,
    ) -> Result<SshSession, ProvisionError> {
        let instance_id = self.target_instance(target).await?;
        let address = self.ssh_address(&instance_id).await?;
        let key = super::session::SessionKey::generate(comment)?;
        self.push_key(&instance_id, &key).await?;
        self.connect(&instance_id, &address, &key).await
    }

    /// Runs `op` within the operation budget.
    pub(super) async fn within_budget<T>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, ProvisionError>>,
    ) -> Result<T, ProvisionError> {
        let budget = self.config.ssh.operation_timeout;
        tokio::time::timeout(budget, op).await.unwrap_or_else(|_| {
            Err(ProvisionError::Unavailable(format!(
                "ec2 {what}: timed out after {}s",
                budget.as_secs()
            )))
        })
    }

    pub(super) async fn remote_list(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        dir: Option<&RelPath>,
        depth: u8,
    ) -> Result<Vec<FileEntry>, ProvisionError> {
        let depth = depth.clamp(1, crate::access::MAX_LIST_DEPTH);
        let abs = self.remote_abs(root, target.runtime, dir);
        self.within_budget("list", async {
            let session = self.open_session(target, "molecule-eic").await?;
            let command = list_command(self.config.ssh.sudo, &abs, depth);
            let out = session.exec(&command, &[], MAX_LIST_BYTES).await;
            session.close().await;
            let out = out?;
            if out.status != Some(0) {
                return Err(failed("list", &abs, &out));
            }
            Ok(parse_listing(&out.stdout))
        })
        .await
    }

    pub(super) async fn remote_read(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<Vec<u8>, ProvisionError> {
        let abs = self.remote_abs(root, target.runtime, Some(path));
        self.within_budget("read", async {
            let session = self.open_session(target, "molecule-eic").await?;
            let command = read_command(self.config.ssh.sudo, &abs);
            let out = session.exec(&command, &[], MAX_READ_BYTES).await;
            session.close().await;
            let out = out?;
            match out.status {
                Some(0) => Ok(out.stdout),
                Some(NOT_A_FILE) => Err(ProvisionError::NotFound(format!("{abs}: no such file"))),
                _ => Err(failed("read", &abs, &out)),
            }
        })
        .await
    }

    pub(super) async fn remote_write(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        files: &[(RelPath, Vec<u8>)],
    ) -> Result<WrittenTo, ProvisionError> {
        let session = self
            .within_budget("write", self.open_session(target, "molecule-eic"))
            .await?;
        let mut result = Ok(WrittenTo::Remote);
        for (path, content) in files {
            let abs = self.remote_abs(root, target.runtime, Some(path));
            let command = write_command(self.config.ssh.sudo, &abs);
            let written = self
                .within_budget("write", async {
                    let out = session.exec(&command, content, QUIET_BYTES).await?;
                    if out.status == Some(0) {
                        Ok(())
                    } else {
                        Err(failed("write", &abs, &out))
                    }
                })
                .await;
            if let Err(e) = written {
                result = Err(e);
                break;
            }
        }
        session.close().await;
        result
    }

    pub(super) async fn remote_delete(
        &self,
        target: &Target<'_>,
        root: FileRoot,
        path: &RelPath,
    ) -> Result<(), ProvisionError> {
        let abs = self.remote_abs(root, target.runtime, Some(path));
        self.within_budget("delete", async {
            let session = self.open_session(target, "molecule-eic").await?;
            let command = delete_command(self.config.ssh.sudo, &abs);
            let out = session.exec(&command, &[], QUIET_BYTES).await;
            session.close().await;
            let out = out?;
            if out.status == Some(0) {
                Ok(())
            } else {
                Err(failed("delete", &abs, &out))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        assert_eq!(shell_quote("$(x) `y` ;z"), "'$(x) `y` ;z'");
    }

    #[test]
    fn paths_per_runtime_and_root() {
        let p = rel("sub/./a.txt");
        assert_eq!(
            remote_path(FileRoot::Configs, " HERMES ", Some(&p)),
            "/home/ubuntu/.hermes/sub/a.txt"
        );
        assert_eq!(
            remote_path(FileRoot::Configs, "claude-code", Some(&p)),
            "/configs/sub/a.txt"
        );
        assert_eq!(remote_path(FileRoot::Configs, "", None), "/configs");
        assert_eq!(
            remote_path(FileRoot::Workspace, "hermes", Some(&p)),
            "/workspace/sub/a.txt"
        );
        assert_eq!(remote_path(FileRoot::Home, "x", None), "/home");
        assert_eq!(
            remote_path(FileRoot::Plugins, "x", Some(&p)),
            "/plugins/sub/a.txt"
        );
    }

    #[test]
    fn commands() {
        assert_eq!(
            write_command(true, "/configs/it's"),
            "sudo -n install -D -m 0644 /dev/stdin '/configs/it'\\''s'"
        );
        assert_eq!(
            delete_command(false, "/configs/a b"),
            "rm -rf -- '/configs/a b'"
        );
        assert_eq!(
            read_command(true, "/configs/x"),
            "sudo -n sh -c '[ -f \"$1\" ] || exit 44; exec cat -- \"$1\"' sh '/configs/x'"
        );
        let list = list_command(false, "/configs", 3);
        assert!(list.starts_with("sh -c '[ -d \"$1\" ]"), "{list}");
        assert!(list.ends_with("' sh '/configs' 3"), "{list}");
    }

    #[test]
    fn listing_records() {
        let out = b"f|12|b.txt\0d|4096|sub\0f|3|sub/x|y\0f|oops|z\0|0|\0";
        assert_eq!(
            parse_listing(out),
            vec![
                FileEntry {
                    path: "b.txt".into(),
                    size: 12,
                    dir: false
                },
                FileEntry {
                    path: "sub".into(),
                    size: 0,
                    dir: true
                },
                FileEntry {
                    path: "sub/x|y".into(),
                    size: 3,
                    dir: false
                },
                FileEntry {
                    path: "z".into(),
                    size: 0,
                    dir: false
                },
            ]
        );
        assert!(parse_listing(b"").is_empty());
    }
}
