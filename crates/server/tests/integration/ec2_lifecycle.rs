//! The server's lifecycle with the real EC2 backend against a local EC2 API (`moto_server`,
//! started by the test; a missing moto fails the test). moto runs no instance, so the agent's
//! registration is done by the test, as the agent on the box would do it.
#![cfg(feature = "ec2")]

use std::sync::Arc;
use std::time::Duration;

use molecule_domain::{WorkspaceId, WorkspaceStatus};
use molecule_provisioner_api::ec2::user_data::BootstrapDocument;
use molecule_provisioner_api::ec2::{
    Ec2Config, Ec2Provisioner, MANAGED_LABEL, StaticKeys, StopPolicy, TAG_WORKSPACE,
};
use molecule_provisioner_api::{Provisioner, SecretValue};
use molecule_store::on_both_backends;
use molecule_store::testing::TestStore;
use molecule_testkit::MotoServer;
use serde_json::json;

use crate::binary::{Server, post_json};
use crate::common::{ADMIN, TestServer, assert_status, id_of, poll, provision_request};

on_both_backends!(
    a_workspace_lives_on_an_ec2_instance,
    an_unreachable_ec2_endpoint_changes_no_workspace,
);

fn moto() -> MotoServer {
    MotoServer::start().unwrap_or_else(|e| {
        panic!(
            "the EC2 lifecycle tests need moto_server (CI={}): {e}",
            molecule_testkit::in_ci()
        )
    })
}

fn config(endpoint: &str) -> Ec2Config {
    Ec2Config {
        endpoint: Some(endpoint.to_owned()),
        static_keys: Some(StaticKeys {
            access_key_id: "testing".into(),
            secret_access_key: SecretValue::new("testing"),
        }),
        ami: Some("ami-0molecule0server0".into()),
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(20),
        stop: StopPolicy {
            attempts: 2,
            first_backoff: Duration::from_millis(10),
            wait_terminated: Some(Duration::from_secs(10)),
            poll_every: Duration::from_millis(50),
        },
        ..Ec2Config::default()
    }
}

/// The agent's first register, as the box does it: it presents the one-time bootstrap token
/// of the instance's user-data and receives its auth token. Anything else is refused, and the
/// bootstrap token works once.
async fn register(s: &TestServer, ec2: &Ec2Provisioner, id: WorkspaceId, instance: &str) -> String {
    let script = ec2.user_data(instance).await.unwrap().unwrap();
    let doc = BootstrapDocument::parse(&script).unwrap();
    let bootstrap = doc
        .bootstrap_token
        .expect("a bootstrap token in the user-data");
    assert!(
        script.contains(&format!("printf '%s' '{bootstrap}' > /configs/.auth_token")),
        "the runtime finds it where it reads its token"
    );
    let body = json!({"id": id, "url": "http://93.184.216.34:8000", "agent_card": {"name": "ec2"}});
    for bearer in [None, Some(ADMIN.to_owned()), Some("x".repeat(43))] {
        let (status, reply) = s.register(bearer.as_deref(), body.clone()).await;
        assert_eq!(status, 401, "{bearer:?}: {reply}");
    }
    // A heartbeat cannot use the bootstrap token.
    let beat = json!({"workspace_id": id});
    assert_status(s.heartbeat(Some(&bootstrap), beat).await, 401);
    let reply = assert_status(s.register(Some(&bootstrap), body.clone()).await, 200);
    assert!(reply["platform_inbound_secret"].is_string(), "{reply}");
    let token = reply["auth_token"]
        .as_str()
        .expect("the first register hands out the token")
        .to_owned();
    let (status, reply) = s.register(Some(&bootstrap), body).await;
    assert_eq!(status, 401, "the bootstrap token is spent: {reply}");
    token
}

async fn a_workspace_lives_on_an_ec2_instance(db: TestStore) {
    let moto = moto();
    let ec2 = Arc::new(Ec2Provisioner::new(config(&moto.endpoint())).await.unwrap());
    let s =
        TestServer::start_with_backend(db, false, Some(ec2.clone() as Arc<dyn Provisioner>), |s| s)
            .await;
    // Stored directly: through the route, the secret change's background restart of the
    // workspaces that use it could race the create below and start a second instance.
    s.state
        .store
        .secrets()
        .set_global("OPENAI_API_KEY", "sk-never-in-user-data")
        .await
        .unwrap();

    // Create → an instance with the workspace's tags and user-data; its id is on the row.
    let id = s
        .create(json!({"name": "on-ec2", "runtime": "langgraph", "tier": 3}))
        .await;
    let ws = s
        .wait_row(id, "instance id stored", |w| w.instance_id.is_some())
        .await;
    let first = ws.instance_id.unwrap();
    assert_eq!(ws.status, WorkspaceStatus::Provisioning);
    let info = ec2.instance(&first).await.unwrap().unwrap();
    assert_eq!(info.state, "running");
    assert_eq!(info.tags[TAG_WORKSPACE], id.to_string());
    assert_eq!(info.tags[MANAGED_LABEL], "true");
    assert_eq!(info.instance_type.as_deref(), Some("t3.medium"));
    let script = ec2.user_data(&first).await.unwrap().unwrap();
    assert!(!script.contains("sk-never-in-user-data"));
    let doc = BootstrapDocument::parse(&script).unwrap();
    assert_eq!(doc.workspace_id, id.to_string());
    assert_eq!(doc.runtime, "langgraph");
    assert_eq!(doc.tier, 3);
    assert_eq!(doc.platform_url, "http://platform.test:8080");
    assert_eq!(doc.secret_env_keys, vec!["OPENAI_API_KEY"]);
    // No token was issued for an EC2 start: the agent gets one when it registers.
    assert_eq!(s.state.store.tokens().count_live(id).await.unwrap(), 0);

    // The agent registers with its bootstrap token and reads its secrets with the token it
    // receives; the workspace is online.
    let token = register(&s, &ec2, id, &first).await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);
    let values = format!("/workspaces/{id}/secrets/values");
    let values = assert_status(s.call("GET", &values, Some(&token), None).await, 200);
    assert_eq!(values["OPENAI_API_KEY"], "sk-never-in-user-data");
    assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 0);
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);

    // The console of the instance.
    let console = s.admin("GET", &format!("/workspaces/{id}/console"), None);
    let reply = assert_status(console.await, 200);
    assert!(
        reply["output"].as_str().unwrap().contains("Linux"),
        "{reply}"
    );

    // Restart → a new instance, the old one terminated; the agent registers again.
    let restart = format!("/workspaces/{id}/restart");
    let (status, reply) = s.admin("POST", &restart, None).await;
    assert!(status < 300, "{status} {reply}");
    let ws = s
        .wait_row(id, "a new instance", |w| {
            w.instance_id.as_deref().is_some_and(|i| i != first)
        })
        .await;
    let second = ws.instance_id.unwrap();
    assert_eq!(
        ec2.instance(&first).await.unwrap().unwrap().state,
        "terminated"
    );
    assert_eq!(
        ec2.instance(&second).await.unwrap().unwrap().state,
        "running"
    );
    s.wait_row(id, "provisioning after restart", |w| {
        w.status == WorkspaceStatus::Provisioning
    })
    .await;
    register(&s, &ec2, id, &second).await;
    assert_eq!(s.status_of(id).await, WorkspaceStatus::Online);

    // An instance of a workspace this server does not know is an orphan: terminated.
    let stray = WorkspaceId::new();
    let orphan = ec2
        .start(&provision_request(stray, "stray", "http://elsewhere.test"))
        .await
        .unwrap()
        .instance_id
        .unwrap();
    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 1);
    assert_eq!(
        ec2.instance(&orphan).await.unwrap().unwrap().state,
        "terminated"
    );
    assert_eq!(
        ec2.instance(&second).await.unwrap().unwrap().state,
        "running",
        "a live workspace's instance is no orphan"
    );

    // Delete → terminated.
    assert_status(
        s.admin("DELETE", &format!("/workspaces/{id}"), None).await,
        200,
    );
    assert_eq!(
        ec2.instance(&second).await.unwrap().unwrap().state,
        "terminated"
    );
    assert!(ec2.managed_workspaces().await.unwrap().is_empty());
    assert!(ec2.leak_suspects().is_empty());
}

async fn an_unreachable_ec2_endpoint_changes_no_workspace(db: TestStore) {
    // Nobody listens on this port: every call is a transport error.
    let closed = format!(
        "http://127.0.0.1:{}",
        molecule_testkit::free_port().unwrap()
    );
    let ec2 = Arc::new(Ec2Provisioner::new(config(&closed)).await.unwrap());
    let s =
        TestServer::start_with_backend(db, false, Some(ec2 as Arc<dyn Provisioner>), |s| s).await;
    // A workspace that runs on an instance (the row as a provisioned one).
    let workspaces = s.state.store.workspaces();
    let id = workspaces
        .create(molecule_store::NewWorkspace::named("steady"))
        .await
        .unwrap()
        .id;
    workspaces
        .set_instance_id(id, Some("i-0123456789abcdef0"))
        .await
        .unwrap();
    s.set_status(id, WorkspaceStatus::Online).await;
    for _ in 0..3 {
        assert_eq!(s.state.lifecycle.sweep_health().await.unwrap(), 0);
    }
    let ws = workspaces.get(id).await.unwrap().unwrap();
    assert_eq!(
        ws.status,
        WorkspaceStatus::Online,
        "unknown is never offline"
    );
    assert_eq!(ws.instance_id.as_deref(), Some("i-0123456789abcdef0"));
    assert_eq!(s.state.lifecycle.sweep_orphans().await.unwrap(), 0);

    // A delete whose terminate fails is reported, not swallowed.
    let reply = s.admin("DELETE", &format!("/workspaces/{id}"), None).await;
    let reply = assert_status(reply, 500);
    assert!(
        reply["error"].as_str().unwrap().contains("stop call"),
        "{reply}"
    );
}

/// The binary as a process with `MOLECULE_BACKEND=ec2` and the endpoint, AMI and credentials
/// from the environment: a created workspace gets an instance. Without an AMI it refuses to
/// start.
#[tokio::test]
async fn the_binary_runs_workspaces_on_ec2_from_its_environment() {
    use std::process::{Command, Stdio};

    let moto = moto();
    let dir = tempfile::tempdir().unwrap();
    let command = |ami: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_molecule-server"));
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("MOLECULE_ENV", "dev")
            .env("PORT", "0")
            .env("MOLECULE_BACKEND", "ec2")
            .env("MOLECULE_EC2_ENDPOINT", moto.endpoint())
            .env("AWS_REGION", "us-east-2")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-aws-credentials"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ami) = ami {
            cmd.env("MOLECULE_EC2_AMI", ami);
        }
        cmd
    };

    let refused = command(None).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("MOLECULE_EC2_AMI"), "{stderr}");

    let server = Server::start(command(Some("ami-0from0env0")));
    let (base, log) = (&server.base, &server.log);
    assert!(log.iter().any(|l| l.contains("backend: ec2")), "{log:?}");

    let body = json!({"name": "from-binary", "runtime": "langgraph"});
    let (_, reply) = post_json(&format!("{base}/workspaces"), None, &body).await;
    let id = id_of(&reply);
    let inspector = Ec2Provisioner::new(config(&moto.endpoint())).await.unwrap();
    let instance = poll("an instance launched", || async {
        inspector
            .workspace_instances(id, false)
            .await
            .unwrap()
            .pop()
    })
    .await;
    assert_eq!(instance.image_id.as_deref(), Some("ami-0from0env0"));
    assert_eq!(instance.state, "running");
}
