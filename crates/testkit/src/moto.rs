//! A throwaway `moto_server` (a local implementation of the AWS APIs, EC2 included) on a free
//! loopback port, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

/// How long moto may take to answer after it was spawned.
const STARTUP: Duration = Duration::from_secs(60);

/// Why moto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// Neither `moto_server` nor `python3 -m moto.server` could be run.
    #[error(
        "moto_server not found (tried `moto_server` and `python3 -m moto.server`): install it \
         with `pip install 'moto[server]'`"
    )]
    NotInstalled,
    /// A file-system or process error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server exited or never answered; its log is attached.
    #[error("moto_server did not come up ({why}); its log:\n{log}")]
    NotAnswering {
        /// What was seen.
        why: String,
        /// What it printed.
        log: String,
    },
}

/// A running `moto_server` on 127.0.0.1. Killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    log: NamedTempFile,
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` (else `python3 -m moto.server`) and
    /// waits until it answers HTTP.
    pub fn start() -> Result<Self, MotoError> {
        let mut last = MotoError::NotInstalled;
        for _ in 0..3 {
            let port = crate::free_port().map_err(|e| io("find a free port", e))?;
            match Self::start_on(port) {
                Ok(server) => return Ok(server),
                Err(MotoError::NotInstalled) => return Err(MotoError::NotInstalled),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn start_on(port: u16) -> Result<Self, MotoError> {
        let log = NamedTempFile::new().map_err(|e| io("create the moto log", e))?;
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
        let spawn = |program: &str, prefix: &[&str]| -> std::io::Result<Child> {
            let out = log.reopen()?;
            let err = log.reopen()?;
            Command::new(program)
                .args(prefix)
                .args(args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
        };
        let child = match spawn("moto_server", &[]) {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match spawn("python3", &["-m", "moto.server"]) {
                    Ok(child) => child,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(MotoError::NotInstalled);
                    }
                    Err(e) => return Err(io("spawn python3 -m moto.server", e)),
                }
            }
            Err(e) => return Err(io("spawn moto_server", e)),
        };
        let mut server = MotoServer { child, port, log };
        server.wait_until_answering()?;
        Ok(server)
    }

    /// Polls until an HTTP request gets an answer, the process exits, or the deadline passes.
    fn wait_until_answering(&mut self) -> Result<(), MotoError> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if answers(self.port) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(MotoError::NotAnswering {
                    why: format!("it exited with {status}"),
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                return Err(MotoError::NotAnswering {
                    why: format!("no answer within {}s", STARTUP.as_secs()),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The endpoint URL: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something on the port answers an HTTP request with an HTTP status line.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

fn io(what: &str, source: std::io::Error) -> MotoError {
    MotoError::Io {
        what: what.to_owned(),
        source,
    }
}
