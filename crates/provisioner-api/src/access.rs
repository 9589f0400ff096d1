//! The container access layer: files and an interactive shell inside a workspace's compute
//! (spec provisioner §1.9–1.10). The types here are what [`crate::Provisioner`]'s access
//! methods take and answer; every path has passed the domain's guards ([`RelPath`],
//! [`FileRoot`]), so a backend never builds a command or an archive entry from raw input.

use molecule_domain::WorkspaceId;
pub use molecule_domain::{FileRoot, RelPath};
use tokio::sync::mpsc;

/// Which workspace's compute an access call is for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The backend's id of its compute (EC2 instance id), when it has one.
    pub instance_id: Option<&'a str>,
    /// The workspace's runtime (EC2 picks the managed-config directory by it).
    pub runtime: &'a str,
}

/// One entry of a listing: its path relative to the listed directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// Relative to the listed directory, `/`-separated.
    pub path: String,
    /// Bytes; 0 for a directory.
    pub size: u64,
    /// Whether it is a directory.
    pub dir: bool,
}

/// The largest depth a listing may ask for.
pub const MAX_LIST_DEPTH: u8 = 5;

/// Names a listing leaves out (and never descends into).
pub const LIST_EXCLUDED: [&str; 4] = [".git", "__pycache__", "node_modules", ".DS_Store"];

/// The largest file [`crate::Provisioner::read_path`] answers; a larger one is
/// [`crate::ProvisionError::TooLarge`].
pub const MAX_READ_BYTES: u64 = 5 * 1024 * 1024;

/// The most entries [`crate::Provisioner::list_files`] answers; a larger listing is
/// [`crate::ProvisionError::TooLarge`] (list a subdirectory or a lower depth).
pub const MAX_LIST_ENTRIES: usize = 5_000;

/// Why a backend refused a path that passed the domain's guards
/// ([`crate::ProvisionError::Refused`]). Its `Display` is safe to show to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A directory on the way to the path, or the path itself where the operation does not
    /// replace it, is a symbolic link: following it could leave the root, so it is never
    /// followed.
    #[error("path goes through a symbolic link")]
    Symlink,
    /// The path is a directory where a file is expected (a read, or a write that would
    /// replace the directory).
    #[error("path is a directory")]
    IsDirectory,
    /// A directory on the way to the path is a file (or other non-directory), or one path of
    /// a write is the parent directory of another.
    #[error("a parent of the path is not a directory")]
    NotADirectory,
    /// The path is neither a regular file nor a directory (a socket, a device, …).
    #[error("not a regular file")]
    NotAFile,
}

/// Where a write landed, the Files API's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenTo {
    /// Into the running container (`"container"`).
    Container,
    /// Into the stopped workspace's config volume (`"volume"`).
    Volume,
    /// Over SSH onto the workspace's instance (`"ec2-ssh"`).
    Remote,
}

impl WrittenTo {
    /// The Files API's `source` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Volume => "volume",
            Self::Remote => "ec2-ssh",
        }
    }
}

/// An interactive shell with a TTY inside a workspace's compute. Bytes sent on `input` reach
/// its stdin; its output arrives on `output` and ends (the channel closes) when the shell
/// exits. Dropping `input` ends the session. Input is applied in the order it is sent, window
/// changes included.
#[derive(Debug)]
pub struct Terminal {
    /// To the shell: keystrokes for its stdin, and window changes of its TTY.
    pub input: mpsc::Sender<TerminalInput>,
    /// From the shell's TTY (stdout and stderr interleaved).
    pub output: mpsc::Receiver<Vec<u8>>,
}

/// What a client sends a [`Terminal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalInput {
    /// Bytes for the shell's stdin.
    Data(Vec<u8>),
    /// A new TTY window size.
    Resize(TerminalSize),
}

/// A TTY window size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// One step of a terminal diagnosis (spec provisioner §1.9 "Diagnose").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnoseStep {
    /// The step's name (`docker-available`, `container-found`, `send-ssh-public-key`, …).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// Why it failed (safe to show: no secrets, no internal addresses beyond the target's).
    pub error: Option<String>,
    /// What it found.
    pub detail: Option<String>,
}
