//! The EC2 backend against a local EC2 API (`moto_server`, started by the test; a missing moto
//! fails the test) and, for faults moto cannot produce (throttling, terminate failing then
//! succeeding), a local server answering EC2 Query API errors.
#![cfg(feature = "ec2")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use molecule_domain::{Tier, WorkspaceId};
use molecule_provisioner_api::ec2::user_data::BootstrapDocument;
use molecule_provisioner_api::ec2::{Ec2Config, Ec2Provisioner, MANAGED_LABEL, TAG_WORKSPACE};
use molecule_provisioner_api::names::container_name;
use molecule_provisioner_api::{BackendKind, ProvisionError, Provisioner, Running};
use support::{
    FaultServer, backend, closed_endpoint, config, described, ec2_error, moto, request, terminated,
};

#[tokio::test]
async fn launch_with_tags_user_data_and_network_then_terminate() {
    let moto = moto();
    let probe = backend(&moto.endpoint()).await;
    let client = probe.client();
    // The network parts an operator configures: a subnet of the default VPC, a security group
    // and a key pair.
    let subnets = client.describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].clone();
    let group = client
        .create_security_group()
        .group_name("molecule-workspaces")
        .description("workspace instances")
        .vpc_id(subnet.vpc_id().unwrap())
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    client
        .create_key_pair()
        .key_name("molecule-ops")
        .send()
        .await
        .unwrap();
    let mut cfg = config(&moto.endpoint());
    cfg.subnet_id = subnet.subnet_id().map(str::to_owned);
    cfg.security_group_ids = vec![group.clone()];
    cfg.key_name = Some("molecule-ops".into());
    cfg.org_id = Some("org-1".into());
    let ec2 = Ec2Provisioner::new(cfg).await.unwrap();
    assert_eq!(ec2.kind(), BackendKind::Ec2);
    assert!(!ec2.delivers_credentials(), "user-data carries no token");

    let id = WorkspaceId::new();
    let started = ec2
        .start(&request(id, Tier::Privileged, "hermes"))
        .await
        .unwrap();
    assert_eq!(started.agent_url, None, "the agent reports its own URL");
    let instance_id = started.instance_id.clone().unwrap();
    assert!(instance_id.starts_with("i-"), "{instance_id}");

    let info = ec2.instance(&instance_id).await.unwrap().unwrap();
    assert_eq!(info.state, "running");
    assert_eq!(info.tags[TAG_WORKSPACE], id.to_string());
    assert_eq!(info.tags[MANAGED_LABEL], "true");
    assert_eq!(info.tags["Runtime"], "hermes");
    assert_eq!(info.tags["Role"], "workspace");
    assert_eq!(info.tags["OrgID"], "org-1");
    assert!(info.tags["Name"].starts_with(&container_name(id)));
    assert_eq!(info.instance_type.as_deref(), Some("t3.medium"), "tier 3");
    assert_eq!(info.image_id.as_deref(), Some("ami-0hermes0test0"));
    assert_eq!(info.subnet_id, subnet.subnet_id().map(str::to_owned));
    assert_eq!(info.security_group_ids, vec![group]);
    assert_eq!(info.key_name.as_deref(), Some("molecule-ops"));
    assert!(info.private_ip.is_some());

    // User-data: what the control-plane request carried, and no secret.
    let script = ec2.user_data(&instance_id).await.unwrap().unwrap();
    for secret in [
        "sk-secret-value-123",
        "tok-secret-456",
        "inbound-secret-789",
    ] {
        assert!(!script.contains(secret), "{secret} is in the user-data");
    }
    let doc = BootstrapDocument::parse(&script).unwrap();
    assert_eq!(doc.workspace_id, id.to_string());
    assert_eq!(doc.runtime, "hermes");
    assert_eq!(doc.tier, 3);
    assert_eq!(doc.platform_url, "http://platform.test:8080");
    assert_eq!(doc.org_id.as_deref(), Some("org-1"));
    assert_eq!(
        doc.image,
        "ghcr.io/molecule-ai/workspace-template-hermes:latest"
    );
    assert_eq!(doc.env["MODEL"], "model-x");
    assert_eq!(doc.secret_env_keys, vec!["OPENAI_API_KEY"]);

    // The running check by the stored id, and by tag when none is stored.
    assert_eq!(ec2.running(id, Some(&instance_id)).await, Running::Yes);
    assert_eq!(ec2.running(id, None).await, Running::Yes);
    let console = ec2.console_output(id, Some(&instance_id)).await.unwrap();
    assert!(console.contains("Linux"), "{console}");

    // Stop: terminated (the stop waits for it), not running, not managed; again: fine.
    ec2.stop(id, Some(&instance_id)).await.unwrap();
    let info = ec2.instance(&instance_id).await.unwrap().unwrap();
    assert_eq!(info.state, "terminated");
    assert_eq!(ec2.running(id, Some(&instance_id)).await, Running::No);
    assert_eq!(ec2.running(id, None).await, Running::No);
    assert!(!ec2.managed_workspaces().await.unwrap().contains(&id));
    ec2.stop(id, Some(&instance_id)).await.unwrap();
    ec2.stop(id, None).await.unwrap();
    assert!(ec2.leak_suspects().is_empty());
}

#[tokio::test]
async fn a_start_replaces_and_a_stop_without_id_finds_instances_by_tag() {
    let moto = moto();
    let ec2 = backend(&moto.endpoint()).await;
    let id = WorkspaceId::new();
    let other = WorkspaceId::new();
    let first = ec2
        .start(&request(id, Tier::FullAccess, "langgraph"))
        .await
        .unwrap()
        .instance_id
        .unwrap();
    let info = ec2.instance(&first).await.unwrap().unwrap();
    assert_eq!(info.instance_type.as_deref(), Some("t3.large"), "tier 4");
    assert_eq!(info.image_id.as_deref(), Some("ami-0molecule0test0"));
    let neighbour = ec2
        .start(&request(other, Tier::Privileged, "langgraph"))
        .await
        .unwrap()
        .instance_id
        .unwrap();

    // A second start of the same workspace terminates the first instance.
    let second = ec2
        .start(&request(id, Tier::FullAccess, "langgraph"))
        .await
        .unwrap()
        .instance_id
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(
        ec2.instance(&first).await.unwrap().unwrap().state,
        "terminated"
    );
    let live = ec2.workspace_instances(id, false).await.unwrap();
    assert_eq!(
        live.iter()
            .map(|i| i.instance_id.as_str())
            .collect::<Vec<_>>(),
        vec![second.as_str()]
    );
    let managed = ec2.managed_workspaces().await.unwrap();
    assert!(
        managed.contains(&id) && managed.contains(&other),
        "{managed:?}"
    );

    // The orphan sweep's stop has no instance id: the tag finds it; the neighbour stays.
    ec2.stop(id, None).await.unwrap();
    assert_eq!(
        ec2.instance(&second).await.unwrap().unwrap().state,
        "terminated"
    );
    assert_eq!(ec2.running(other, Some(&neighbour)).await, Running::Yes);
    assert_eq!(ec2.managed_workspaces().await.unwrap(), vec![other]);

    // An instance id EC2 does not know is not running, and stopping it succeeds.
    let unknown = "i-0123456789abcdef0";
    assert_eq!(ec2.running(id, Some(unknown)).await, Running::No);
    ec2.stop(id, Some(unknown)).await.unwrap();
    assert_eq!(ec2.running(WorkspaceId::new(), None).await, Running::No);
    assert!(matches!(
        ec2.console_output(WorkspaceId::new(), None).await,
        Err(ProvisionError::NotFound(_))
    ));
}

#[tokio::test]
async fn instances_of_another_tenant_are_not_managed_here() {
    let moto = moto();
    let mut mine = config(&moto.endpoint());
    mine.org_id = Some("org-mine".into());
    let mut theirs = mine.clone();
    theirs.org_id = Some("org-theirs".into());
    let mine = Ec2Provisioner::new(mine).await.unwrap();
    let theirs = Ec2Provisioner::new(theirs).await.unwrap();
    let a = WorkspaceId::new();
    let b = WorkspaceId::new();
    mine.start(&request(a, Tier::Standard, "langgraph"))
        .await
        .unwrap();
    theirs
        .start(&request(b, Tier::Standard, "langgraph"))
        .await
        .unwrap();
    assert_eq!(mine.managed_workspaces().await.unwrap(), vec![a]);
    assert_eq!(theirs.managed_workspaces().await.unwrap(), vec![b]);
    // A tag lookup of another tenant's workspace finds nothing to stop.
    mine.stop(b, None).await.unwrap();
    assert_eq!(theirs.running(b, None).await, Running::Yes);
}

#[tokio::test]
async fn no_ami_refuses_to_build_the_backend() {
    let mut cfg = config("http://127.0.0.1:9");
    cfg.ami = None;
    cfg.runtime_amis.clear();
    assert!(matches!(
        Ec2Provisioner::new(cfg).await,
        Err(ProvisionError::Rejected(_))
    ));
    // A runtime without an AMI of its own or a default cannot start (no call is made).
    let mut cfg = config(&closed_endpoint());
    cfg.ami = None;
    let ec2 = Ec2Provisioner::new(cfg).await.unwrap();
    assert!(matches!(
        ec2.start(&request(WorkspaceId::new(), Tier::Standard, "langgraph"))
            .await,
        Err(ProvisionError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_throttled_endpoint_is_unknown_and_a_stop_fails_loudly() {
    let faults = FaultServer::start(|_, _| ec2_error(503, "RequestLimitExceeded")).await;
    let ec2 = backend(&faults.endpoint).await;
    let id = WorkspaceId::new();
    assert!(matches!(
        ec2.running(id, Some("i-0aaaaaaaaaaaaaaa1")).await,
        Running::Unknown(_)
    ));
    assert!(matches!(ec2.running(id, None).await, Running::Unknown(_)));
    assert!(matches!(
        ec2.managed_workspaces().await,
        Err(ProvisionError::Unavailable(_))
    ));
    assert!(matches!(
        ec2.start(&request(id, Tier::Standard, "langgraph")).await,
        Err(ProvisionError::Unavailable(_))
    ));

    // Terminate: three attempts, then the error is returned and the instance is a suspect.
    let before = faults.count("TerminateInstances");
    let err = ec2.stop(id, Some("i-0aaaaaaaaaaaaaaa1")).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("3 attempt"), "{err}");
    assert_eq!(faults.count("TerminateInstances") - before, 3);
    let suspects = ec2.leak_suspects();
    assert_eq!(suspects.len(), 1);
    assert_eq!(suspects[0].instance_id, "i-0aaaaaaaaaaaaaaa1");
    assert_eq!(suspects[0].workspace_id, id);
    assert_eq!(suspects[0].attempts, 3);
}

#[tokio::test]
async fn terminate_failures_are_retried_until_one_succeeds() {
    let instance = "i-0bbbbbbbbbbbbbbb2";
    let faults = FaultServer::start(move |action, n| match action {
        // Two failures, then success.
        "TerminateInstances" if n < 2 => ec2_error(500, "InternalError"),
        "TerminateInstances" => terminated(instance),
        "DescribeInstances" => described(instance, "terminated"),
        _ => ec2_error(400, "UnsupportedOperation"),
    })
    .await;
    let ec2 = backend(&faults.endpoint).await;
    let id = WorkspaceId::new();
    ec2.stop(id, Some(instance)).await.unwrap();
    assert_eq!(faults.count("TerminateInstances"), 3);
    assert!(faults.count("DescribeInstances") >= 1, "waited for the end");
    assert!(ec2.leak_suspects().is_empty());
}

#[tokio::test]
async fn a_suspect_is_cleared_by_a_later_successful_terminate() {
    let instance = "i-0ccccccccccccccc3";
    // Fails for the first three attempts (one whole stop), then works.
    let faults = FaultServer::start(move |action, n| match action {
        "TerminateInstances" if n < 3 => ec2_error(403, "UnauthorizedOperation"),
        "TerminateInstances" => terminated(instance),
        _ => described(instance, "terminated"),
    })
    .await;
    let ec2 = backend(&faults.endpoint).await;
    let id = WorkspaceId::new();
    assert!(matches!(
        ec2.stop(id, Some(instance)).await,
        Err(ProvisionError::Rejected(_))
    ));
    assert_eq!(ec2.leak_suspects().len(), 1);
    ec2.stop(id, Some(instance)).await.unwrap();
    assert!(ec2.leak_suspects().is_empty());
}

#[tokio::test]
async fn a_stop_that_never_sees_terminated_fails_at_its_deadline() {
    let instance = "i-0ddddddddddddddd4";
    let faults = FaultServer::start(move |action, _| match action {
        "TerminateInstances" => terminated(instance),
        _ => described(instance, "shutting-down"),
    })
    .await;
    let mut cfg = config(&faults.endpoint);
    cfg.stop.wait_terminated = Some(std::time::Duration::from_millis(300));
    let ec2 = Ec2Provisioner::new(cfg).await.unwrap();
    let err = ec2
        .stop(WorkspaceId::new(), Some(instance))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not terminated"), "{err}");
    assert!(faults.count("DescribeInstances") >= 2);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unknown_never_no() {
    let ec2 = backend(&closed_endpoint()).await;
    let id = WorkspaceId::new();
    assert!(matches!(
        ec2.running(id, Some("i-0eeeeeeeeeeeeeee5")).await,
        Running::Unknown(_)
    ));
    assert!(matches!(ec2.running(id, None).await, Running::Unknown(_)));
    assert!(matches!(
        ec2.stop(id, Some("i-0eeeeeeeeeeeeeee5")).await,
        Err(ProvisionError::Unavailable(_))
    ));
    assert!(matches!(
        ec2.start(&request(id, Tier::Standard, "langgraph")).await,
        Err(ProvisionError::Unavailable(_))
    ));
    assert!(matches!(
        ec2.console_output(id, Some("i-0eeeeeeeeeeeeeee5")).await,
        Err(ProvisionError::Unavailable(_))
    ));
}

#[tokio::test]
async fn configuration_from_the_environment_names() {
    let c = Ec2Config::from_lookup(|k| {
        (k == "MOLECULE_EC2_ENDPOINT").then(|| "http://127.0.0.1:5000".to_owned())
    });
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    assert_eq!(c.static_keys, None, "credentials come from the AWS chain");
}
