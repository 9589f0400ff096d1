//! Throwaway PostgreSQL clusters: `initdb` into a temporary directory, `pg_ctl start` on a free
//! loopback port, and stop and delete everything on drop.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No `initdb`/`pg_ctl` was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL or set PG_BIN_DIR"
    )]
    BinariesNotFound,
    /// A file-system or process error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PostgreSQL tool exited with an error.
    #[error("{tool} failed: {output}")]
    Tool {
        /// The tool that failed.
        tool: &'static str,
        /// What it printed (and the server log, for `pg_ctl start`).
        output: String,
    },
}

/// A running throwaway PostgreSQL cluster. Stopped and deleted when dropped.
#[derive(Debug)]
pub struct PgCluster {
    tools: Tools,
    data: PathBuf,
    port: u16,
    // Dropped last: the directory goes after the server has stopped.
    dir: TempDir,
}

impl PgCluster {
    /// Initialises and starts a cluster on a free port of 127.0.0.1 with trust authentication
    /// for the `postgres` superuser. When run as root, the server runs as the `postgres` user.
    pub fn start() -> Result<Self, PgError> {
        let bin = find_bin_dir().ok_or(PgError::BinariesNotFound)?;
        let dir = tempfile::Builder::new()
            .prefix("molecule-pg-")
            .tempdir()
            .map_err(|e| io("create a temporary directory", e))?;
        let as_postgres_user = std::fs::metadata(dir.path())
            .map_err(|e| io("inspect the temporary directory", e))?
            .uid()
            == 0;
        if as_postgres_user {
            run_tool(
                "chown",
                Command::new("chown").arg("postgres:").arg(dir.path()),
            )?;
        }
        let tools = Tools {
            bin,
            as_postgres_user,
        };
        let data = dir.path().join("data");
        run_tool(
            "initdb",
            tools
                .command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
                .args(["--no-instructions", "--locale=C"]),
        )?;
        // A free port can be taken by someone else before the server binds it: try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let port = crate::free_port().map_err(|e| io("find a free port", e))?;
            match tools.start(dir.path(), &data, port) {
                Ok(()) => {
                    return Ok(PgCluster {
                        tools,
                        data,
                        port,
                        dir,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(PgError::BinariesNotFound))
    }

    /// The connection URL of the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The connection URL of another database of this cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory that holds the cluster (data, socket and server log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Where the PostgreSQL binaries are and whom they run as.
#[derive(Debug)]
struct Tools {
    bin: PathBuf,
    as_postgres_user: bool,
}

impl Tools {
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn start(&self, dir: &Path, data: &Path, port: u16) -> Result<(), PgError> {
        let log = dir.join("server.log");
        let options = format!(
            "-p {port} -h 127.0.0.1 -k {} -F -c max_connections=300 -c full_page_writes=off \
             -c synchronous_commit=off",
            dir.display()
        );
        run_tool(
            "pg_ctl start",
            self.command("pg_ctl")
                .arg("-D")
                .arg(data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"]),
        )
        .map_err(|e| match e {
            PgError::Tool { tool, output } => PgError::Tool {
                tool,
                output: format!(
                    "{output}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            },
            other => other,
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .tools
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn io(what: &str, source: std::io::Error) -> PgError {
    PgError::Io {
        what: what.to_owned(),
        source,
    }
}

fn run_tool(tool: &'static str, cmd: &mut Command) -> Result<(), PgError> {
    let out = cmd.output().map_err(|e| io(&format!("run {tool}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PgError::Tool {
            tool,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// `PG_BIN_DIR`, else the newest `/usr/lib/postgresql/<v>/bin`, else the directory of `initdb`
/// on `PATH`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| has_tools(d))
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").exists() && dir.join("pg_ctl").exists()
}
