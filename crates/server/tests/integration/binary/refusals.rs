//! A clear error and a non-zero exit for each kind of bad configuration, before anything is
//! written: the secrets key in production (and a valid one, kept private), the database URL,
//! the port, the data directory and the backend.

use super::{Server, command, run_failing};

#[test]
fn production_without_a_usable_secrets_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // No key at all.
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_ENV", "production")
        .env("ADMIN_TOKEN", "a");
    let err = run_failing(cmd);
    assert!(err.contains("SECRETS_ENCRYPTION_KEY is required"), "{err}");
    // A malformed key (32 base64 characters decode to 24 bytes), in production or not.
    for env in ["production", "staging"] {
        let mut cmd = command(dir.path());
        cmd.env("MOLECULE_ENV", env)
            .env("ADMIN_TOKEN", "a")
            .env("SECRETS_ENCRYPTION_KEY", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB");
        let err = run_failing(cmd);
        assert!(err.contains("invalid SECRETS_ENCRYPTION_KEY"), "{err}");
        assert!(
            !err.contains("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"),
            "the key reached the log: {err}"
        );
    }
    // Nothing was created: the refusal comes before the database.
    assert!(!dir.path().join("data/molecule.db").exists());
}

#[test]
fn a_valid_production_key_starts_and_a_generated_key_is_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_ENV", "production")
        .env("ADMIN_TOKEN", "a")
        .env(
            "SECRETS_ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .args(["--port", "0"]);
    let server = Server::start(cmd);
    assert!(!dir.path().join("data/secrets_key").exists());
    let (exit, _) = server.terminate();
    assert!(exit.success());
    // Outside production without a key: one is generated into the data directory.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("ADMIN_TOKEN", "a").args(["--port", "0"]);
    let server = Server::start(cmd);
    let key = std::fs::read_to_string(dir.path().join("data/secrets_key")).unwrap();
    assert_eq!(key.trim().len(), 44);
    assert!(!server.log.iter().any(|l| l.contains(key.trim())));
    assert!(server.log.iter().any(|l| l.contains("secrets_key")));
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn an_unparsable_database_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("DATABASE_URL", "mysql://root:hunter2@localhost/db");
    let err = run_failing(cmd);
    assert!(err.contains("invalid DATABASE_URL"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password reached the log: {err}"
    );
}

#[test]
fn an_unreachable_postgres_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound and released just now.
    let port = molecule_testkit::free_port().unwrap();
    let mut cmd = command(dir.path());
    cmd.env(
        "DATABASE_URL",
        format!("postgres://u:hunter2@127.0.0.1:{port}/molecule"),
    );
    let err = run_failing(cmd);
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password reached the log: {err}"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = command(dir.path());
    cmd.args(["--port", &port]);
    let err = run_failing(cmd);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file can never be created, even by root.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["--data-dir", "file/data"]);
    let err = run_failing(cmd);
    assert!(
        err.contains("data directory file/data is not usable"),
        "{err}"
    );
}

#[test]
fn an_unknown_backend_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.env("MOLECULE_BACKEND", "kubernetes")
        .args(["--port", "0"]);
    let err = run_failing(cmd);
    assert!(
        err.contains("MOLECULE_BACKEND must be docker, ec2 or none"),
        "{err}"
    );
}
