//! The compose files of the README's "Deploy": `docker-compose config` accepts both with the
//! settings they require, refuses them without (naming what is missing), and what they
//! describe fits together: the server image, the Docker socket with its group, the network
//! the Docker backend attaches workspaces to (the server on it under the name agents call
//! back), one database shared by the PostgreSQL replicas with one secrets key.
//! The docker-compose v1 binary is required (never skipped); no Docker daemon is.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The settings the files require, as an operator's `.env` gives them.
const REQUIRED: &[(&str, &str)] = &[
    ("ADMIN_TOKEN", "admin-token-for-the-compose-test"),
    ("DOCKER_GID", "4242"),
    ("POSTGRES_PASSWORD", "pg-password"),
    (
        "SECRETS_ENCRYPTION_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ),
];

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

/// `docker-compose -f <file> config` with `env` (and none of the required settings beyond
/// it): success and stdout, or failure and stderr.
fn compose_config(file: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-f").arg(repo_file(file)).arg("config");
    for (name, _) in REQUIRED {
        cmd.env_remove(name);
    }
    for name in [
        "MOLECULE_BIND",
        "MOLECULE_PORT",
        "MOLECULE_NETWORK",
        "MOLECULE_WORKSPACE_IMAGE",
        "POSTGRES_IMAGE",
    ] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("docker-compose (v1, /usr/bin/docker-compose) cannot run: {e}"));
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(text).into_owned(),
    )
}

/// The resolved file as JSON.
fn resolved(file: &str) -> Value {
    let (ok, text) = compose_config(file, REQUIRED);
    assert!(ok, "{file} does not validate:\n{text}");
    yaml_serde::from_str(&text).unwrap()
}

/// Checks one server service: image, socket and group, on the workspaces' network under
/// the name its `PLATFORM_URL` uses; returns its environment.
fn check_server(doc: &Value, service: &str) -> Value {
    let s = &doc["services"][service];
    assert_eq!(s["image"], "molecule-server:dev", "{service}");
    let volumes: Vec<&str> = s["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with("/var/run/docker.sock:/var/run/docker.sock")),
        "{service}: {volumes:?}"
    );
    assert_eq!(s["group_add"], serde_json::json!(["4242"]), "{service}");
    let env = s["environment"].clone();
    assert_eq!(env["MOLECULE_BACKEND"], "docker");
    assert_eq!(env["ADMIN_TOKEN"], "admin-token-for-the-compose-test");
    // The Docker backend attaches workspaces to the network the server is on.
    let network = env["MOLECULE_DOCKER_NETWORK"].as_str().unwrap();
    let (key, _) = doc["networks"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, n)| n["name"] == network)
        .unwrap_or_else(|| panic!("{service}: no network named {network}"));
    let aliases = &s["networks"][key.as_str()]["aliases"];
    let platform = env["PLATFORM_URL"].as_str().unwrap();
    let host = platform
        .strip_prefix("http://")
        .and_then(|h| h.strip_suffix(":8080"))
        .unwrap_or_else(|| panic!("{service}: PLATFORM_URL {platform}"));
    assert!(
        aliases
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == host)),
        "{service}: agents call back {host}, not an alias on {network}: {aliases}"
    );
    env
}

#[test]
fn the_sqlite_compose_file_validates_and_fits_together() {
    let doc = resolved("docker-compose.yml");
    let services = doc["services"].as_object().unwrap();
    assert_eq!(services.len(), 1, "{services:?}");
    let env = check_server(&doc, "server");
    // SQLite: no DATABASE_URL, the default file in the data volume.
    assert!(env.get("DATABASE_URL").is_none(), "{env}");
    let volumes = doc["services"]["server"]["volumes"].to_string();
    assert!(volumes.contains("molecule-data:/data"), "{volumes}");
    assert_eq!(
        doc["services"]["server"]["ports"],
        serde_json::json!(["127.0.0.1:8080:8080/tcp"])
    );
}

#[test]
fn the_postgres_compose_file_has_two_replicas_on_one_database() {
    let doc = resolved("docker-compose.postgres.yml");
    let a = check_server(&doc, "server-a");
    let b = check_server(&doc, "server-b");
    assert_eq!(a["DATABASE_URL"], b["DATABASE_URL"]);
    assert_eq!(
        a["DATABASE_URL"],
        "postgres://molecule:pg-password@postgres:5432/molecule"
    );
    assert_eq!(a["SECRETS_ENCRYPTION_KEY"], b["SECRETS_ENCRYPTION_KEY"]);
    assert_ne!(a["PLATFORM_URL"], b["PLATFORM_URL"]);
    assert_ne!(
        doc["services"]["server-a"]["ports"],
        doc["services"]["server-b"]["ports"]
    );
    let pg = &doc["services"]["postgres"];
    assert_eq!(pg["environment"]["POSTGRES_PASSWORD"], "pg-password");
    for replica in ["server-a", "server-b"] {
        assert_eq!(
            doc["services"][replica]["depends_on"]["postgres"]["condition"],
            "service_healthy"
        );
    }
}

#[test]
fn a_missing_setting_is_named() {
    for (file, missing) in [
        ("docker-compose.yml", "ADMIN_TOKEN"),
        ("docker-compose.yml", "DOCKER_GID"),
        ("docker-compose.postgres.yml", "POSTGRES_PASSWORD"),
        ("docker-compose.postgres.yml", "SECRETS_ENCRYPTION_KEY"),
    ] {
        let env: Vec<(&str, &str)> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let (ok, text) = compose_config(file, &env);
        assert!(!ok, "{file} without {missing} validated");
        assert!(text.contains(&format!("set {missing}")), "{file}: {text}");
    }
}
