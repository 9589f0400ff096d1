//! A real OpenSSH server (Debian's `openssh-server`) on a free loopback port, with its own
//! host key and configuration, accepting only the keys in its `authorized_keys` file, and a
//! recording HTTP proxy in front of moto_server that writes each key pushed with
//! `SendSSHPublicKey` into that file: so a login succeeds only with the key just pushed.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{HashAlg, PrivateKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `sshd` the tests run.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed on drop.
pub struct Sshd {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub endpoint: String,
    /// The `SHA256:…` fingerprint of its host key.
    pub host_key: String,
    /// The file it reads authorized keys from.
    pub authorized_keys: PathBuf,
    /// The user it lets in (the one running the tests).
    pub user: String,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Starts one; the test fails (never skips) when sshd is missing or does not come up.
    pub fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "the EC2 SSH tests need {SSHD} (Debian openssh-server; `cargo xtask ci` installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let key = PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)),
            "molecule-test-host",
        )
        .unwrap();
        let host_key = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let key_path = dir.path().join("host_key");
        std::fs::write(
            &key_path,
            key.to_openssh(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, "").unwrap();
        let user = current_user();
        let port = molecule_testkit::free_port().unwrap();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
                key_path.display(),
                authorized_keys.display()
            ),
        )
        .unwrap();
        // sshd started as root wants its privilege separation directory.
        if user == "root" {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut sshd = Sshd {
            child,
            endpoint: format!("127.0.0.1:{port}"),
            host_key,
            authorized_keys,
            user,
            dir,
        };
        sshd.wait_listening();
        sshd
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(&self.endpoint).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What sshd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One `SendSSHPublicKey` the proxy saw.
#[derive(Debug, Clone)]
pub struct PushedKey {
    pub instance_id: String,
    pub os_user: String,
    pub public_key: String,
}

/// An HTTP proxy in front of moto_server recording every pushed key and, while `install` is
/// on, making it the only key in the sshd's `authorized_keys`.
pub struct KeyProxy {
    pub endpoint: String,
    pub pushed: Arc<Mutex<Vec<PushedKey>>>,
    pub install: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyProxy {
    pub async fn start(moto: &str, authorized_keys: PathBuf) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let pushed = Arc::new(Mutex::new(Vec::new()));
        let install = Arc::new(AtomicBool::new(true));
        let (moto, record, on) = (moto.to_owned(), pushed.clone(), install.clone());
        let http = reqwest::Client::new();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (moto, record, on, http) =
                    (moto.clone(), record.clone(), on.clone(), http.clone());
                let keys_file = authorized_keys.clone();
                tokio::spawn(async move {
                    serve(socket, &moto, &http, |target, body| {
                        if !target.ends_with("SendSSHPublicKey") {
                            return;
                        }
                        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                        let key = PushedKey {
                            instance_id: v["InstanceId"].as_str().unwrap_or("").to_owned(),
                            os_user: v["InstanceOSUser"].as_str().unwrap_or("").to_owned(),
                            public_key: v["SSHPublicKey"].as_str().unwrap_or("").to_owned(),
                        };
                        if on.load(Ordering::SeqCst) {
                            std::fs::write(&keys_file, format!("{}\n", key.public_key)).unwrap();
                        }
                        record.lock().push(key);
                    })
                    .await;
                });
            }
        });
        KeyProxy {
            endpoint,
            pushed,
            install,
            task,
        }
    }

    pub fn pushed(&self) -> Vec<PushedKey> {
        self.pushed.lock().clone()
    }
}

/// Reads one request, shows it to `inspect` (its `X-Amz-Target` and body), forwards it to moto
/// and writes moto's answer back.
async fn serve(
    mut socket: tokio::net::TcpStream,
    moto: &str,
    http: &reqwest::Client,
    inspect: impl FnOnce(&str, &[u8]),
) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body) = loop {
        let Ok(n) = socket.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let length = header(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            break (head, data[end + 4..end + 4 + length].to_vec());
        }
    };
    inspect(&header(&head, "x-amz-target").unwrap_or_default(), &body);
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("POST");
    let path = parts.next().unwrap_or("/");
    let mut forward = http.request(method.parse().unwrap(), format!("{moto}{path}"));
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim();
            if !["host", "content-length", "connection"].contains(&k.to_ascii_lowercase().as_str())
            {
                forward = forward.header(k, v.trim());
            }
        }
    }
    let answer = forward.body(body).send().await.unwrap();
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_owned();
    let bytes = answer.bytes().await.unwrap();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        bytes.len()
    );
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.write_all(&bytes).await;
    let _ = socket.shutdown().await;
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}
