//! Test support for the EC2 backend: a backend on a moto server, and a fault server that
//! answers EC2 Query API errors (throttling, failures) for what moto cannot produce.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{Tier, WorkspaceAccess, WorkspaceId};
use molecule_provisioner_api::ec2::{Ec2Config, Ec2Provisioner, StaticKeys, StopPolicy};
use molecule_provisioner_api::{ProvisionRequest, SecretValue};
use molecule_testkit::MotoServer;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A moto server; the test fails (never skips) when it cannot start.
pub fn moto() -> MotoServer {
    MotoServer::start().unwrap_or_else(|e| {
        panic!(
            "the EC2 tests need moto_server (CI={}): {e}",
            molecule_testkit::in_ci()
        )
    })
}

/// A configuration for a local endpoint: static test keys, a test AMI, fast retries.
pub fn config(endpoint: &str) -> Ec2Config {
    Ec2Config {
        region: "us-east-2".into(),
        endpoint: Some(endpoint.to_owned()),
        static_keys: Some(StaticKeys {
            access_key_id: "testing".into(),
            secret_access_key: SecretValue::new("testing"),
        }),
        ami: Some("ami-0molecule0test0".into()),
        runtime_amis: BTreeMap::from([("hermes".into(), "ami-0hermes0test0".into())]),
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(20),
        stop: StopPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(10),
            wait_terminated: Some(Duration::from_secs(10)),
            poll_every: Duration::from_millis(50),
        },
        ..Ec2Config::default()
    }
}

/// A backend on `endpoint`.
pub async fn backend(endpoint: &str) -> Ec2Provisioner {
    Ec2Provisioner::new(config(endpoint)).await.unwrap()
}

/// A provision request with secrets that must never reach user-data.
pub fn request(id: WorkspaceId, tier: Tier, runtime: &str) -> ProvisionRequest {
    ProvisionRequest {
        workspace_id: id,
        name: "ec2-test".into(),
        role: Some("tester".into()),
        tier,
        runtime: runtime.into(),
        parent_id: None,
        model: Some("model-x".into()),
        template: None,
        config_files: Vec::new(),
        workspace_dir: None,
        workspace_access: WorkspaceAccess::None,
        platform_url: "http://platform.test:8080".into(),
        env: BTreeMap::from([(
            "OPENAI_API_KEY".to_owned(),
            SecretValue::new("sk-secret-value-123"),
        )]),
        auth_token: Some(SecretValue::new("tok-secret-456")),
        platform_inbound_secret: Some(SecretValue::new("inbound-secret-789")),
        bootstrap_token: None,
    }
}

/// What the fault server answers to one request: status and body.
pub type Answer = (u16, String);

/// A local HTTP server that plays an EC2 endpoint returning chosen answers: a test double
/// only for faults moto cannot produce. It records the `Action` of every request.
pub struct FaultServer {
    pub endpoint: String,
    pub actions: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    /// Serves `answer(action, n)` where `n` counts the requests of that action so far (from 0).
    pub async fn start(answer: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let actions = Arc::new(Mutex::new(Vec::new()));
        let recorded = actions.clone();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut socket).await else {
                        return;
                    };
                    let action = body
                        .split('&')
                        .find_map(|p| p.strip_prefix("Action="))
                        .unwrap_or("")
                        .to_owned();
                    let n = {
                        let mut all = recorded.lock();
                        let n = all.iter().filter(|a| **a == action).count();
                        all.push(action.clone());
                        n
                    };
                    let (status, body) = answer(&action, n);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        FaultServer {
            endpoint,
            actions,
            task,
        }
    }

    /// How many requests of an action arrived.
    pub fn count(&self, action: &str) -> usize {
        self.actions.lock().iter().filter(|a| *a == action).count()
    }
}

/// Reads one HTTP request and returns its body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some(
                    String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned(),
                );
            }
        }
    }
}

/// An EC2 Query API error answer.
pub fn ec2_error(status: u16, code: &str) -> Answer {
    (
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>{code} (test double)</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
        ),
    )
}

/// A successful `TerminateInstances` answer.
pub fn terminated(instance: &str) -> Answer {
    (
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TerminateInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>req-2</requestId><instancesSet><item><instanceId>{instance}</instanceId>\
             <currentState><code>32</code><name>shutting-down</name></currentState>\
             <previousState><code>16</code><name>running</name></previousState></item></instancesSet>\
             </TerminateInstancesResponse>"
        ),
    )
}

/// A `DescribeInstances` answer with one instance in `state`.
pub fn described(instance: &str, state: &str) -> Answer {
    (
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>req-3</requestId><reservationSet><item><reservationId>r-1</reservationId>\
             <instancesSet><item><instanceId>{instance}</instanceId>\
             <instanceState><code>48</code><name>{state}</name></instanceState>\
             </item></instancesSet></item></reservationSet></DescribeInstancesResponse>"
        ),
    )
}

/// A port on 127.0.0.1 that nobody listens on (connection refused).
pub fn closed_endpoint() -> String {
    format!(
        "http://127.0.0.1:{}",
        molecule_testkit::free_port().unwrap()
    )
}
