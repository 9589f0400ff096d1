//! The echo agent binary as a real process serving one external workspace, and multipart
//! bodies as a browser sends them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use molecule_domain::WorkspaceId;

use crate::common::{TestServer, eventually};

/// The echo agent binary: `MOLECULE_ECHO_AGENT`, else built (once per test process) with
/// the cargo running the tests, into the same target directory.
fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("MOLECULE_ECHO_AGENT") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .args([
                "build",
                "-p",
                "molecule-echo-agent",
                "--bin",
                "molecule-echo-agent",
            ])
            .arg("--message-format=json-render-diagnostics")
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "building the echo agent failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "molecule-echo-agent"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo built the echo agent")
    })
    .clone()
}

/// A running echo agent, killed on drop.
pub struct EchoAgent {
    /// Its URL.
    pub url: String,
    files: tempfile::TempDir,
    _configs: tempfile::TempDir,
    child: Child,
}

impl Drop for EchoAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback URL nothing listens on.
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

impl EchoAgent {
    /// The agent of workspace `id` (with its `token`), registered with `s` and online.
    pub async fn start(s: &TestServer, id: WorkspaceId, token: &str) -> EchoAgent {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let files = tempfile::tempdir().unwrap();
        let configs = tempfile::tempdir().unwrap();
        let child = Command::new(binary())
            .env_clear()
            .env("WORKSPACE_ID", id.to_string())
            .env("PLATFORM_URL", &s.base)
            .env("PORT", port.to_string())
            .env("AGENT_URL", &url)
            .env("MOLECULE_WORKSPACE_TOKEN", token)
            .env("CONFIGS_DIR", configs.path())
            .env("FILES_ROOT", files.path())
            .env("HEARTBEAT_SECONDS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the echo agent starts");
        let agent = EchoAgent {
            url: url.clone(),
            files,
            _configs: configs,
            child,
        };
        let store = s.state.store.clone();
        eventually("the echo agent registered", || {
            let (store, url) = (store.clone(), url.clone());
            async move {
                let ws = store.workspaces().get(id).await.unwrap().unwrap();
                ws.url.as_deref() == Some(url.as_str())
            }
        })
        .await;
        agent
    }

    /// The files the agent stored as uploads.
    pub fn uploads(&self) -> Vec<String> {
        let dir = self.files.path().join("workspace/.molecule/chat-uploads");
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A `multipart/form-data` body with one `files` part per `(name, content)`, and its
/// content type.
pub fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "molecule-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, content) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; \
                 filename=\"{name}\"\r\nContent-Type: application/pdf\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
