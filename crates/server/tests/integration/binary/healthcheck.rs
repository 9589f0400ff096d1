//! `molecule-server healthcheck` (the server image's `HEALTHCHECK`): exit 0 when the server
//! on `MOLECULE_HOST`/`PORT` answers `GET /health` with 200, 1 when nothing listens there or
//! it answers something else.

use std::io::{Read, Write};
use std::process::Command;

use super::{Server, command};

/// `molecule-server healthcheck` against `port` on loopback: its exit status and stderr.
fn healthcheck(port: u16) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .arg("healthcheck")
        // As in the image: listening on all addresses, asked on loopback.
        .env("MOLECULE_HOST", "0.0.0.0")
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_serving_server_is_healthy_and_a_stopped_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--port", "0"]);
    let server = Server::start(cmd);
    let port = port_of(&server.base);
    let (healthy, stderr) = healthcheck(port);
    assert!(healthy, "{stderr}");

    let (status, _) = server.terminate();
    assert!(status.success());
    let (healthy, stderr) = healthcheck(port);
    assert!(!healthy);
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
}

#[test]
fn a_server_answering_an_error_is_unhealthy() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answering = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 512];
        let n = stream.read(&mut request).unwrap();
        stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    let (healthy, stderr) = healthcheck(port);
    assert!(!healthy);
    assert!(stderr.contains("503"), "{stderr}");
    let request = answering.join().unwrap();
    assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
}

#[test]
fn healthcheck_is_listed_in_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_molecule-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("healthcheck"), "{help}");
}
