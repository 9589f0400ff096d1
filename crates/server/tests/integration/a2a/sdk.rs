//! The proxy between real A2A SDK peers: an agent and a client written with the Python
//! `a2a-sdk` (pinned in `tests/a2a_sdk/requirements.txt`), a real server in between, both
//! databases. The client exits 0 only when the SDK accepted every answer the proxy passed on.
//!
//! Python 3 with the pinned SDK is required: without it these tests fail (never skip).
//! `cargo xtask ci` installs it (step `a2a-sdk (Python A2A SDK)`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use molecule_domain::WorkspaceId;
use molecule_store::testing::TestStore;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_status};

/// How to get the SDK when it is missing.
const INSTALL_HINT: &str = "the A2A SDK tests need python3 with the pins of \
     crates/server/tests/a2a_sdk/requirements.txt: run `cargo xtask ci` (its step \
     `a2a-sdk (Python A2A SDK)` installs them) or \
     `python3 -m pip install -r crates/server/tests/a2a_sdk/requirements.txt`";

/// How long the agent may take to say READY (Python start-up on a busy machine).
const AGENT_START: Duration = Duration::from_secs(60);

/// The agent's pause between two events of a task (see `agent.py`).
const AGENT_STEP: f64 = 0.3;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/a2a_sdk")
        .join(name)
}

/// Runs a blocking command off the async workers and waits for it.
async fn output(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {shown} ({e}): {INSTALL_HINT}"))
}

/// Fails the test, naming the xtask step, unless python3 has the pinned SDK.
async fn require_sdk() {
    let mut cmd = Command::new("python3");
    cmd.arg(script("../python_pins.py")).arg(script(""));
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "{}{}\n{INSTALL_HINT}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// `agent.py` running on a loopback port; killed on drop.
struct SdkAgent {
    /// Its A2A URL (JSON-RPC at the root).
    url: String,
    child: Child,
}

impl Drop for SdkAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SdkAgent {
    /// Starts the agent and waits (bounded) for its READY line. A port taken between
    /// `free_port` and the agent's bind makes the agent exit: then another port is tried.
    async fn start() -> SdkAgent {
        tokio::task::spawn_blocking(|| {
            let mut last = String::new();
            for _ in 0..3 {
                match Self::try_start() {
                    Ok(agent) => return agent,
                    Err(e) => last = e,
                }
            }
            panic!("the SDK agent did not start: {last}\n{INSTALL_HINT}")
        })
        .await
        .unwrap()
    }

    fn try_start() -> Result<SdkAgent, String> {
        let port = molecule_testkit::free_port().unwrap();
        let mut child = Command::new("python3")
            .arg(script("agent.py"))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads every line until the agent ends, so its stdout never fills up.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Nobody listens after READY: the line is dropped.
                let _ = tx.send(line);
            }
        });
        let agent = SdkAgent {
            url: format!("http://127.0.0.1:{port}/"),
            child,
        };
        let deadline = Instant::now() + AGENT_START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.trim() == format!("READY {port}") => return Ok(agent),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("no READY line within {AGENT_START:?}"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("it exited before READY (its stderr is above)".into());
                }
            }
        }
    }
}

/// What `client.py` did: exit status, stdout as JSON lines, and both streams for messages.
struct ClientRun {
    ok: bool,
    lines: Vec<Value>,
    shown: String,
}

/// Runs `client.py URL MODE TEXT` speaking A2A 0.3 (`message/send`, `message/stream`).
async fn client(url: &str, mode: &str, text: &str) -> ClientRun {
    client_as(url, mode, text, "0.3").await
}

/// Runs `client.py URL MODE TEXT --protocol PROTOCOL`.
async fn client_as(url: &str, mode: &str, text: &str, protocol: &str) -> ClientRun {
    let mut cmd = Command::new("python3");
    cmd.arg(script("client.py"))
        .args([url, mode, text, "--protocol", protocol])
        .stdin(Stdio::null());
    let out = output(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    ClientRun {
        ok: out.status.success(),
        lines,
        shown: format!(
            "client.py {mode} exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The events a client run printed (lines with an `event`).
fn events(run: &ClientRun) -> Vec<&Value> {
    run.lines
        .iter()
        .filter(|l| l.get("event").is_some())
        .collect()
}

fn texts(event: &Value) -> Vec<&str> {
    event["texts"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// An external workspace registered in dev mode: pushed to `url`, or polling when `url` is
/// `None`.
async fn register(s: &TestServer, name: &str, url: Option<&str>) -> WorkspaceId {
    if let Some(url) = url {
        return s.registered(name, url, None).await.0;
    }
    let (id, token) = s.external(name, None).await;
    let body = json!({ "id": id, "agent_card": {}, "delivery_mode": "poll" });
    assert_status(s.register(Some(&token), body).await, 200);
    id
}

fn proxy_url(s: &TestServer, id: WorkspaceId) -> String {
    format!("{}/workspaces/{id}/a2a", s.base)
}

async fn an_sdk_client_accepts_the_answer_of_an_sdk_agent(db: TestStore) {
    require_sdk().await;
    let s = TestServer::dev(db).await;
    let agent = SdkAgent::start().await;
    let id = register(&s, "sdk-echo", Some(&agent.url)).await;
    let run = client(&proxy_url(&s, id), "send", "hello sdk").await;
    assert!(run.ok, "{}", run.shown);
    let answer = events(&run);
    assert_eq!(answer.len(), 1, "{}", run.shown);
    assert!(
        texts(answer[0]).contains(&"echo: hello sdk"),
        "{}",
        run.shown
    );
    assert_eq!(answer[0]["state"], "completed", "{}", run.shown);
}

async fn an_sdk_client_receives_the_stream_of_an_sdk_agent_event_by_event(db: TestStore) {
    require_sdk().await;
    let s = TestServer::dev(db).await;
    let agent = SdkAgent::start().await;
    let id = register(&s, "sdk-streamer", Some(&agent.url)).await;
    let run = client(&proxy_url(&s, id), "stream", "hello stream").await;
    assert!(run.ok, "{}", run.shown);
    let events = events(&run);
    // The agent sends: task submitted, status working, artifact, status completed.
    assert!(events.len() >= 3, "{}", run.shown);
    assert!(
        events.iter().any(|e| e["state"] == "working"),
        "no working status: {}",
        run.shown
    );
    assert!(
        events
            .iter()
            .any(|e| texts(e).contains(&"echo: hello stream")),
        "no echo: {}",
        run.shown
    );
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "status_update", "{}", run.shown);
    assert_eq!(last["state"], "completed", "{}", run.shown);
    // Streamed, not buffered: the events came at the agent's pace, in separate bursts.
    let times: Vec<f64> = events.iter().map(|e| e["t"].as_f64().unwrap()).collect();
    let spread = times.last().unwrap() - times.first().unwrap();
    assert!(
        spread >= AGENT_STEP * 2.0 * 0.8,
        "all events arrived within {spread:.3} s ({times:?}): the proxy buffered the stream\n{}",
        run.shown
    );
    let bursts = 1 + times
        .windows(2)
        .filter(|w| w[1] - w[0] >= AGENT_STEP / 3.0)
        .count();
    assert!(
        bursts >= 3,
        "the events arrived in {bursts} bursts ({times:?}), not one by one\n{}",
        run.shown
    );
}

async fn an_sdk_client_accepts_the_answer_for_a_poll_mode_target(db: TestStore) {
    require_sdk().await;
    let s = TestServer::dev(db).await;
    let id = register(&s, "sdk-poller", None).await;
    let run = client(&proxy_url(&s, id), "send-expect-submitted", "pick me up").await;
    assert!(run.ok, "{}", run.shown);
    let summary = run
        .lines
        .iter()
        .find(|l| l.get("task_id").is_some() && l.get("event").is_none())
        .unwrap_or_else(|| panic!("no task line: {}", run.shown));
    assert_eq!(summary["state"], "submitted", "{}", run.shown);
    assert!(
        summary["task_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{}",
        run.shown
    );
}

molecule_store::on_both_backends!(
    an_sdk_client_speaking_a2a_1_0_is_served,
    an_sdk_client_accepts_the_answer_of_an_sdk_agent,
    an_sdk_client_receives_the_stream_of_an_sdk_agent_event_by_event,
    an_sdk_client_accepts_the_answer_for_a_poll_mode_target,
);

/// An SDK client speaking A2A 1.0 (`SendMessage`, `SendStreamingMessage`, `A2A-Version: 1.0`)
/// through the proxy: the proxy tells the agent the version, so the agent serves the 1.0
/// methods, and a poll-mode target's queued answer is a 1.0 Task.
async fn an_sdk_client_speaking_a2a_1_0_is_served(db: TestStore) {
    require_sdk().await;
    let s = TestServer::dev(db).await;
    let agent = SdkAgent::start().await;
    let id = register(&s, "sdk-v1", Some(&agent.url)).await;
    let url = proxy_url(&s, id);
    let run = client_as(&url, "send", "hello one", "1.0").await;
    assert!(run.ok, "{}", run.shown);
    assert!(
        events(&run)
            .iter()
            .any(|e| texts(e).contains(&"echo: hello one")),
        "{}",
        run.shown
    );
    let run = client_as(&url, "stream", "hello stream one", "1.0").await;
    assert!(run.ok, "{}", run.shown);
    let streamed = events(&run);
    assert!(streamed.len() >= 3, "{}", run.shown);
    assert!(
        streamed
            .iter()
            .any(|e| texts(e).contains(&"echo: hello stream one")),
        "{}",
        run.shown
    );
    let poller = register(&s, "sdk-v1-poller", None).await;
    let run = client_as(
        &proxy_url(&s, poller),
        "send-expect-submitted",
        "later",
        "1.0",
    )
    .await;
    assert!(run.ok, "{}", run.shown);
}
