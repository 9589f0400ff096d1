//! The Files API and the terminal on a real container (the echo image, which carries a static
//! busybox): write → list → read → delete, bulk replace, binary content, writes into a stopped
//! workspace's volume, a terminal session over a WebSocket, diagnose, and every bad input
//! (traversal, absolute paths, NUL, symlinks out of the root, oversize, shell metacharacters).

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use molecule_domain::WorkspaceId;
use molecule_provisioner_api::names::container_name;
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{Cleanup, SERIAL, container, docker, docker_cli, online, server};
use crate::common::{ADMIN, TestServer, assert_error, assert_status};

on_both_backends!(
    files_round_trip_in_a_real_container,
    files_of_a_stopped_workspace_go_to_its_volume,
    a_terminal_session_runs_a_command,
);

pub(super) fn files(id: WorkspaceId, rest: &str) -> String {
    format!("/workspaces/{id}/files{rest}")
}

/// Runs `argv` in the workspace's container as root; answers whether it exited 0 and its
/// output.
pub(super) fn exec(id: WorkspaceId, argv: &[&str]) -> (bool, String) {
    let name = container_name(id);
    let mut args = vec!["exec", "-u", "0", name.as_str()];
    args.extend_from_slice(argv);
    let out = docker_cli(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn started(s: &TestServer, name: &str, cleanup: &Cleanup) -> WorkspaceId {
    let id = s
        .create(json!({"name": name, "runtime": "langgraph"}))
        .await;
    cleanup.add(id);
    online(s, id).await;
    id
}

async fn files_round_trip_in_a_real_container(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let s = server(db, docker().await).await;
    let id = started(&s, "files-e2e", &cleanup).await;

    // Write → list → read → delete.
    let saved = s
        .admin(
            "PUT",
            &files(id, "/notes/a.txt"),
            Some(json!({"content": "hello\n"})),
        )
        .await;
    assert_eq!(
        assert_status(saved, 200),
        json!({"status": "saved", "path": "notes/a.txt"})
    );
    let listed = s.admin("GET", &files(id, "?path=notes"), None).await;
    assert_eq!(
        assert_status(listed, 200),
        json!([{"path": "a.txt", "size": 6, "dir": false}])
    );
    let deep = assert_status(s.admin("GET", &files(id, "?depth=2"), None).await, 200);
    let paths: Vec<&str> = deep
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"notes") && paths.contains(&"notes/a.txt"),
        "{deep}"
    );
    let read = s.admin("GET", &files(id, "/notes/a.txt"), None).await;
    assert_eq!(
        assert_status(read, 200),
        json!({"path": "notes/a.txt", "content": "hello\n", "size": 6})
    );
    // Owned by the agent, 0644 files and 0755 directories.
    let (_, stat) = exec(
        id,
        &[
            "stat",
            "-c",
            "%u:%g %a",
            "/configs/notes/a.txt",
            "/configs/notes",
        ],
    );
    assert_eq!(stat, "1000:1000 644\n1000:1000 755\n");
    assert_eq!(
        assert_status(
            s.admin("DELETE", &files(id, "/notes/a.txt"), None).await,
            200
        ),
        json!({"status": "deleted", "path": "notes/a.txt"})
    );
    assert_error(
        s.admin("GET", &files(id, "/notes/a.txt"), None).await,
        404,
        "file not found",
    );
    // Deleting what is not there succeeds; a directory goes with its content.
    assert_status(
        s.admin("DELETE", &files(id, "/notes/a.txt"), None).await,
        200,
    );
    assert_status(s.admin("DELETE", &files(id, "/notes"), None).await, 200);
    assert!(!exec(id, &["test", "-e", "/configs/notes"]).0);

    // Binary content round-trips as base64.
    let bytes = [0u8, 0xff, 0xfe, b'\n', 0x80];
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let put = json!({"content": b64, "encoding": "base64"});
    assert_status(s.admin("PUT", &files(id, "/bin.dat"), Some(put)).await, 200);
    let got = assert_status(s.admin("GET", &files(id, "/bin.dat"), None).await, 200);
    assert_eq!(
        got,
        json!({"path": "bin.dat", "content": b64, "size": 5, "encoding": "base64"})
    );

    // Bulk replace: every path checked before anything is written.
    let bad = json!({"files": {"ok.txt": "1", "../x": "2"}});
    assert_error(
        s.admin("PUT", &files(id, ""), Some(bad)).await,
        400,
        "invalid request body",
    );
    assert!(
        !exec(id, &["test", "-e", "/configs/ok.txt"]).0,
        "nothing written"
    );
    let bulk = json!({"files": {"x/1.txt": "one", "2.txt": "two"}});
    let replaced = assert_status(s.admin("PUT", &files(id, ""), Some(bulk)).await, 200);
    assert_eq!(
        replaced,
        json!({"status": "replaced", "workspace": id, "files": 2, "source": "container"})
    );
    let one = assert_status(s.admin("GET", &files(id, "/x/1.txt"), None).await, 200);
    assert_eq!(one["content"], "one");

    // A bulk replace that brings no config.yaml into a compute that has none gets the
    // generated one; an existing config.yaml is never overwritten.
    exec(id, &["rm", "-f", "/configs/config.yaml"]);
    let bulk = json!({"files": {"role.md": "be kind", "skills/s1/SKILL.md": "skill"}});
    let replaced = assert_status(s.admin("PUT", &files(id, ""), Some(bulk)).await, 200);
    assert_eq!(replaced["files"], 2);
    let (found, generated) = exec(id, &["cat", "/configs/config.yaml"]);
    assert!(found, "config.yaml generated");
    assert!(
        generated.starts_with("name: \"files-e2e\"\n"),
        "{generated}"
    );
    assert!(
        generated.contains("prompt_files:\n  - \"role.md\"\n"),
        "{generated}"
    );
    assert!(generated.contains("skills:\n  - \"s1\"\n"), "{generated}");
    let bulk = json!({"files": {"role.md": "be brief"}});
    exec(
        id,
        &["sh", "-c", "echo 'name: mine' > /configs/config.yaml"],
    );
    assert_status(s.admin("PUT", &files(id, ""), Some(bulk)).await, 200);
    assert_eq!(exec(id, &["cat", "/configs/config.yaml"]).1, "name: mine\n");

    // Shell metacharacters are a literal name; nothing runs.
    for name in ["a;touch /tmp/pwned", "$(touch /tmp/pwned2)", "`id`"] {
        let path = files(id, &format!("/{}", urlencode(name)));
        assert_status(
            s.admin("PUT", &path, Some(json!({"content": "x"}))).await,
            200,
        );
        let got = assert_status(s.admin("GET", &path, None).await, 200);
        assert_eq!(got["path"], name);
        assert!(
            exec(id, &["test", "-f", &format!("/configs/{name}")]).0,
            "{name}"
        );
        assert_status(s.admin("DELETE", &path, None).await, 200);
        assert!(
            !exec(id, &["test", "-e", &format!("/configs/{name}")]).0,
            "{name}"
        );
    }
    assert!(!exec(id, &["test", "-e", "/tmp/pwned"]).0);
    assert!(!exec(id, &["test", "-e", "/tmp/pwned2"]).0);

    // Bad paths and parameters.
    for bad in [
        "/..%2Fetc%2Fpasswd",
        "/foo..bar",
        "/a%00b",
        "//etc/passwd",
        "/x/%2E%2E%2F%2E%2E",
    ] {
        assert_error(
            s.admin("GET", &files(id, bad), None).await,
            400,
            "invalid path",
        );
        assert_error(
            s.admin("PUT", &files(id, bad), Some(json!({"content": "x"})))
                .await,
            400,
            "invalid path",
        );
    }
    assert_error(
        s.admin("DELETE", &files(id, "//etc/passwd"), None).await,
        400,
        "absolute paths not permitted",
    );
    assert_error(
        s.admin("DELETE", &files(id, "/a%00b"), None).await,
        400,
        "invalid path",
    );
    assert_error(
        s.admin("GET", &files(id, "?root=/etc"), None).await,
        400,
        "root must be one of: /configs, /workspace, /home, /plugins",
    );
    assert_error(
        s.admin("GET", &files(id, "?depth=6"), None).await,
        400,
        "depth must be 1-5",
    );
    assert_error(
        s.admin("GET", &files(id, "?path=../x"), None).await,
        400,
        "invalid path",
    );

    // A link out of the root is never followed: not to read, list, write or delete.
    assert!(exec(id, &["mkdir", "-p", "/tmp/outside"]).0);
    assert!(exec(id, &["sh", "-c", "echo secret > /tmp/outside/secret"]).0);
    assert!(exec(id, &["ln", "-s", "/tmp/outside", "/configs/out"]).0);
    assert!(
        exec(
            id,
            &["ln", "-s", "/tmp/outside/secret", "/configs/secret-link"]
        )
        .0
    );
    let link = "path goes through a symbolic link";
    assert_error(
        s.admin("GET", &files(id, "/out/secret"), None).await,
        400,
        link,
    );
    assert_error(
        s.admin("GET", &files(id, "/secret-link"), None).await,
        400,
        link,
    );
    assert_error(
        s.admin("GET", &files(id, "?path=out"), None).await,
        400,
        link,
    );
    let put = s
        .admin("PUT", &files(id, "/out/new"), Some(json!({"content": "x"})))
        .await;
    assert_error(put, 400, link);
    assert!(!exec(id, &["test", "-e", "/tmp/outside/new"]).0);
    assert_error(
        s.admin("DELETE", &files(id, "/out/secret"), None).await,
        400,
        link,
    );
    assert!(exec(id, &["test", "-f", "/tmp/outside/secret"]).0);
    // Deleting the link removes the link, not what it points to.
    assert_status(s.admin("DELETE", &files(id, "/out"), None).await, 200);
    assert!(!exec(id, &["test", "-L", "/configs/out"]).0);
    assert!(exec(id, &["test", "-f", "/tmp/outside/secret"]).0);
    // A write over a link replaces the link by the file.
    assert_status(
        s.admin(
            "PUT",
            &files(id, "/secret-link"),
            Some(json!({"content": "mine"})),
        )
        .await,
        200,
    );
    assert_eq!(exec(id, &["cat", "/tmp/outside/secret"]).1, "secret\n");
    assert!(!exec(id, &["test", "-L", "/configs/secret-link"]).0);

    // Oversize: a write over 5 MiB, and a read of a larger file made in the container.
    let big = "x".repeat(5 * 1024 * 1024 + 1);
    let put = s
        .admin("PUT", &files(id, "/big"), Some(json!({"content": big})))
        .await;
    assert_error(put, 413, "file too large (max 5 MiB)");
    assert!(
        exec(
            id,
            &[
                "dd",
                "if=/dev/zero",
                "of=/configs/huge",
                "bs=1048576",
                "count=6"
            ]
        )
        .0
    );
    assert_error(
        s.admin("GET", &files(id, "/huge"), None).await,
        413,
        "file too large (max 5 MiB)",
    );
    // Reading a directory is refused.
    assert_error(
        s.admin("GET", &files(id, "/x"), None).await,
        400,
        "path is a directory",
    );
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn files_of_a_stopped_workspace_go_to_its_volume(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let s = server(db, docker().await).await;
    let id = started(&s, "files-offline", &cleanup).await;
    assert_status(
        s.admin(
            "PUT",
            &files(id, "/gone.txt"),
            Some(json!({"content": "g"})),
        )
        .await,
        200,
    );
    assert_status(
        s.admin("POST", &format!("/workspaces/{id}/pause"), None)
            .await,
        200,
    );
    assert!(container(id).is_none(), "paused: no container");

    let put = s.admin(
        "PUT",
        &files(id, "/offline/a.txt"),
        Some(json!({"content": "while stopped"})),
    );
    assert_status(put.await, 200);
    let bulk = json!({"files": {"b.txt": "bulk"}});
    let replaced = assert_status(s.admin("PUT", &files(id, ""), Some(bulk)).await, 200);
    assert_eq!(replaced["source"], "volume");
    assert_status(s.admin("DELETE", &files(id, "/gone.txt"), None).await, 200);
    // Reads fall back to the template directory, and there is none.
    assert_error(
        s.admin("GET", &files(id, "/b.txt"), None).await,
        404,
        "file not found (container offline, no template)",
    );
    assert_eq!(
        assert_status(s.admin("GET", &files(id, ""), None).await, 200),
        json!([])
    );
    // No helper container is left behind.
    let left = docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=molecule.workspace.id={id}"),
    ]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "helpers removed"
    );

    assert_status(
        s.admin("POST", &format!("/workspaces/{id}/resume"), None)
            .await,
        200,
    );
    online(&s, id).await;
    let a = assert_status(
        s.admin("GET", &files(id, "/offline/a.txt"), None).await,
        200,
    );
    assert_eq!(a["content"], "while stopped");
    let b = assert_status(s.admin("GET", &files(id, "/b.txt"), None).await, 200);
    assert_eq!(b["content"], "bulk");
    assert_error(
        s.admin("GET", &files(id, "/gone.txt"), None).await,
        404,
        "file not found",
    );
    let (_, stat) = exec(
        id,
        &[
            "stat",
            "-c",
            "%u:%g %a",
            "/configs/offline/a.txt",
            "/configs/offline",
        ],
    );
    assert_eq!(stat, "1000:1000 644\n1000:1000 755\n");
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn terminal(s: &TestServer, id: WorkspaceId, origin: Option<&str>) -> Result<Socket, u16> {
    let url = s.base.replacen("http://", "ws://", 1) + &format!("/workspaces/{id}/terminal");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    if let Some(o) = origin {
        request.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio::time::timeout(
        crate::common::WITHIN,
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake in time")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket error: {e}"),
    }
}

/// Reads the shell's output until it contains `wanted` (bounded).
async fn read_until(socket: &mut Socket, wanted: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + crate::common::WITHIN;
    while !seen.contains(wanted) {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} in time; got {seen:?}"));
        match frame {
            Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Some(Ok(Message::Close(_))) | None => panic!("closed before {wanted:?}: {seen:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
    seen
}

async fn a_terminal_session_runs_a_command(db: TestStore) {
    let _serial = SERIAL.lock().await;
    let cleanup = Cleanup::default();
    let s = server(db, docker().await).await;
    let id = started(&s, "terminal-e2e", &cleanup).await;

    let diagnose = assert_status(
        s.admin("GET", &format!("/workspaces/{id}/terminal/diagnose"), None)
            .await,
        200,
    );
    assert_eq!(diagnose["ok"], true, "{diagnose}");
    assert_eq!(diagnose["remote"], false);
    let names: Vec<&str> = diagnose["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["docker-available", "container-found", "container-running"]
    );
    assert_eq!(diagnose["steps"][2]["detail"], "running");

    assert_eq!(
        terminal(&s, id, Some("http://evil.test")).await.err(),
        Some(403)
    );
    let mut socket = terminal(&s, id, Some("http://localhost:3000"))
        .await
        .unwrap();
    socket
        .send(Message::Text("echo hello-$((1+1))\n".into()))
        .await
        .unwrap();
    let out = read_until(&mut socket, "hello-2").await;
    assert!(out.contains("hello-2"), "{out}");
    // A resize frame changes the TTY's window before the input that follows it.
    socket
        .send(Message::Text(
            r#"{"type":"resize","cols":132,"rows":43}"#.into(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::Text("echo size=$(stty size)\n".into()))
        .await
        .unwrap();
    let out = read_until(&mut socket, "size=43 132").await;
    assert!(out.contains("size=43 132"), "{out}");
    // The shell exits: the server closes the socket normally.
    socket
        .send(Message::Binary(b"exit\n".to_vec().into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(crate::common::WITHIN, async {
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(frame)) = frame {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("closed in time");
    assert_eq!(closed, Some(1000));

    assert_status(
        s.admin("POST", &format!("/workspaces/{id}/pause"), None)
            .await,
        200,
    );
    assert_eq!(terminal(&s, id, None).await.err(), Some(404));
    let diagnose = assert_status(
        s.admin("GET", &format!("/workspaces/{id}/terminal/diagnose"), None)
            .await,
        200,
    );
    assert_eq!(diagnose["ok"], false);
    assert_eq!(diagnose["first_failure"], "container-found");
}
