//! Files and the terminal of the EC2 backend, end to end: instances on moto_server, keys
//! pushed with EC2 Instance Connect through a recording proxy that installs each pushed key
//! into a real local OpenSSH server, and the backend's own SSH client logging in with it.
//! The sshd shares this machine's file system, so the backend's remote paths are placed under
//! a temporary directory ([`SshSettings::path_prefix`]); its user cannot be assumed to have
//! sudo, so `sudo -n` is off (its command text is covered by the unit tests).
#![cfg(feature = "ec2")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod sshd;
#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use molecule_domain::{Tier, WorkspaceId};
use molecule_provisioner_api::access::{
    FileEntry, FileRoot, RelPath, Target, TerminalInput, TerminalSize, WrittenTo,
};
use molecule_provisioner_api::ec2::terminal::PROBE_MARKER;
use molecule_provisioner_api::ec2::{Ec2Config, Ec2Provisioner};
use molecule_provisioner_api::{ProvisionError, Provisioner};
use molecule_testkit::MotoServer;
use sshd::{KeyProxy, Sshd};
use support::{closed_endpoint, config, moto, request};

/// moto, an instance on it, the recording proxy, the sshd and a backend wired to all three.
struct Rig {
    _moto: MotoServer,
    proxy: KeyProxy,
    sshd: Sshd,
    files: tempfile::TempDir,
    ec2: Ec2Provisioner,
    workspace_id: WorkspaceId,
    instance_id: String,
}

impl Rig {
    async fn start() -> Self {
        let moto = moto();
        let sshd = Sshd::start();
        let proxy = KeyProxy::start(&moto.endpoint(), sshd.authorized_keys.clone()).await;
        let files = tempfile::tempdir().unwrap();
        let cfg = ssh_config(
            &proxy.endpoint,
            &sshd,
            files.path(),
            Some(sshd.host_key.clone()),
        );
        let ec2 = Ec2Provisioner::new(cfg).await.unwrap();
        let workspace_id = WorkspaceId::new();
        let instance_id = ec2
            .start(&request(workspace_id, Tier::Privileged, "claude-code"))
            .await
            .unwrap()
            .instance_id
            .unwrap();
        Rig {
            _moto: moto,
            proxy,
            sshd,
            files,
            ec2,
            workspace_id,
            instance_id,
        }
    }

    fn target(&self) -> Target<'_> {
        Target {
            workspace_id: self.workspace_id,
            instance_id: Some(&self.instance_id),
            runtime: "claude-code",
        }
    }
}

fn ssh_config(endpoint: &str, sshd: &Sshd, files: &Path, pin: Option<String>) -> Ec2Config {
    let mut cfg = config(endpoint);
    cfg.ssh.os_user = sshd.user.clone();
    cfg.ssh.endpoint = Some(sshd.endpoint.clone());
    cfg.ssh.sudo = false;
    cfg.ssh.host_keys = pin.into_iter().collect();
    cfg.ssh.path_prefix = Some(files.display().to_string());
    cfg.ssh.operation_timeout = Duration::from_secs(30);
    cfg
}

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

#[tokio::test]
async fn key_push_reaches_ec2_instance_connect_on_moto() {
    let moto = moto();
    let mut cfg = config(&moto.endpoint());
    // Nothing listens there: the diagnosis gets as far as the connect.
    cfg.ssh.endpoint = Some(closed_endpoint().trim_start_matches("http://").to_owned());
    let ec2 = Ec2Provisioner::new(cfg).await.unwrap();
    let id = WorkspaceId::new();
    let instance = ec2
        .start(&request(id, Tier::Privileged, "hermes"))
        .await
        .unwrap()
        .instance_id
        .unwrap();
    let target = Target {
        workspace_id: id,
        instance_id: Some(&instance),
        runtime: "hermes",
    };
    let steps = ec2.diagnose_terminal(&target).await.unwrap();
    let names: Vec<(&str, bool)> = steps.iter().map(|s| (s.name.as_str(), s.ok)).collect();
    assert_eq!(
        names,
        vec![
            ("instance-running", true),
            ("generate-key", true),
            ("send-ssh-public-key", true),
            ("connect", false),
        ],
        "{steps:?}"
    );
    assert_eq!(steps[2].detail.as_deref(), Some("user=ubuntu"));

    // An instance EC2 does not know: the first step fails and nothing is pushed.
    let gone = Target {
        instance_id: Some("i-0123456789abcdef0"),
        ..target
    };
    let steps = ec2.diagnose_terminal(&gone).await.unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(!steps[0].ok);
    let err = ec2
        .read_path(&gone, FileRoot::Configs, &rel("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn files_round_trip_over_ssh_with_the_pushed_key() {
    let rig = Rig::start().await;
    let t = rig.target();
    // Shell metacharacters in a name: written as that literal name, nothing executed. An
    // injected `touch` would run in the login's working directory, the user's home.
    let canary_name = format!("pwned-{}", uuid::Uuid::new_v4().simple());
    let canary = Path::new(&std::env::var("HOME").unwrap()).join(&canary_name);
    let evil = format!(
        "it's $(touch {c}) `touch {c}`; touch {c} & \"q\" |x| *.txt\n$HOME",
        c = canary_name
    );
    let binary: Vec<u8> = vec![0, 159, 146, 150, b'\n', 0xff, b'\'', 0];
    let files = vec![
        (rel("config.yaml"), b"name: ec2\n".to_vec()),
        (rel("sub/deep/bin.dat"), binary.clone()),
        (rel(&evil), b"literal\n".to_vec()),
    ];
    let written = rig
        .ec2
        .write_files(&t, FileRoot::Configs, &files)
        .await
        .unwrap();
    assert_eq!(written, WrittenTo::Remote);
    assert!(!canary.exists(), "a file name ran as a command");
    let on_disk = rig.files.path().join("configs").join(rel(&evil).as_str());
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"literal\n");

    // The pushed key was the one used, once per operation, and never the same twice.
    let pushed = rig.proxy.pushed();
    assert_eq!(pushed.len(), 1, "one session for the whole write");
    assert_eq!(pushed[0].instance_id, rig.instance_id);
    assert_eq!(pushed[0].os_user, rig.sshd.user);
    assert!(
        pushed[0].public_key.starts_with("ssh-ed25519 "),
        "{pushed:?}"
    );

    let listed = rig
        .ec2
        .list_files(&t, FileRoot::Configs, None, 5)
        .await
        .unwrap();
    let top = rig
        .ec2
        .list_files(&t, FileRoot::Configs, None, 1)
        .await
        .unwrap();
    let evil_rel = rel(&evil);
    assert!(listed.contains(&FileEntry {
        path: "config.yaml".into(),
        size: 10,
        dir: false
    }));
    assert!(listed.contains(&FileEntry {
        path: "sub/deep/bin.dat".into(),
        size: 8,
        dir: false
    }));
    assert!(listed.contains(&FileEntry {
        path: evil_rel.to_string(),
        size: 8,
        dir: false
    }));
    assert_eq!(
        top.iter()
            .map(|e| (e.path.as_str(), e.dir))
            .collect::<Vec<_>>(),
        {
            let mut want = vec![
                ("config.yaml", false),
                ("sub", true),
                (evil.as_str(), false),
            ];
            want.sort();
            want
        },
        "{top:?}"
    );
    let sub = rig
        .ec2
        .list_files(&t, FileRoot::Configs, Some(&rel("sub")), 1)
        .await
        .unwrap();
    assert_eq!(
        sub,
        vec![FileEntry {
            path: "deep".into(),
            size: 0,
            dir: true
        }]
    );
    let none = rig
        .ec2
        .list_files(&t, FileRoot::Configs, Some(&rel("nope")), 2)
        .await
        .unwrap();
    assert!(none.is_empty());

    assert_eq!(
        rig.ec2
            .read_path(&t, FileRoot::Configs, &rel("sub/deep/bin.dat"))
            .await
            .unwrap(),
        binary,
        "bytes unchanged"
    );
    assert_eq!(
        rig.ec2
            .read_path(&t, FileRoot::Configs, &evil_rel)
            .await
            .unwrap(),
        b"literal\n"
    );
    for missing in ["missing.txt", "sub"] {
        let err = rig
            .ec2
            .read_path(&t, FileRoot::Configs, &rel(missing))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProvisionError::NotFound(_)),
            "{missing}: {err:?}"
        );
    }

    // Roots are literal paths; hermes keeps its config in its home directory.
    let other = Target {
        runtime: "hermes",
        ..t
    };
    rig.ec2
        .write_files(&other, FileRoot::Configs, &[(rel("h.txt"), b"h".to_vec())])
        .await
        .unwrap();
    assert!(rig.files.path().join("home/ubuntu/.hermes/h.txt").exists());
    rig.ec2
        .write_files(&t, FileRoot::Workspace, &[(rel("w.txt"), b"w".to_vec())])
        .await
        .unwrap();
    assert!(rig.files.path().join("workspace/w.txt").exists());

    rig.ec2
        .delete_path(&t, FileRoot::Configs, &evil_rel)
        .await
        .unwrap();
    assert!(!on_disk.exists());
    rig.ec2
        .delete_path(&t, FileRoot::Configs, &rel("sub"))
        .await
        .unwrap();
    assert!(!rig.files.path().join("configs/sub").exists(), "recursive");
    rig.ec2
        .delete_path(&t, FileRoot::Configs, &rel("sub"))
        .await
        .unwrap();
    let err = rig
        .ec2
        .read_path(&t, FileRoot::Configs, &rel("sub/deep/bin.dat"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProvisionError::NotFound(_)), "{err:?}");
    assert!(!canary.exists());

    let keys: Vec<String> = rig
        .proxy
        .pushed()
        .into_iter()
        .map(|k| k.public_key)
        .collect();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "a throwaway key per operation");
    assert_eq!(keys.len(), 15);
}

#[tokio::test]
async fn only_the_pushed_key_and_the_pinned_host_key_get_in() {
    let rig = Rig::start().await;
    let t = rig.target();
    // The proxy stops installing keys: the key the backend pushes is not in authorized_keys
    // (an old one is), and the login is refused.
    rig.ec2
        .list_files(&t, FileRoot::Configs, None, 1)
        .await
        .unwrap();
    rig.proxy.install.store(false, Ordering::SeqCst);
    let err = rig
        .ec2
        .list_files(&t, FileRoot::Configs, None, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProvisionError::Failed(ref m) if m.contains("refused the pushed key")),
        "{err:?}"
    );
    rig.proxy.install.store(true, Ordering::SeqCst);

    // A host key other than the pinned one is refused.
    let cfg = ssh_config(
        &rig.proxy.endpoint,
        &rig.sshd,
        rig.files.path(),
        Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
    );
    let pinned = Ec2Provisioner::new(cfg).await.unwrap();
    let err = pinned
        .list_files(&t, FileRoot::Configs, None, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProvisionError::Failed(ref m) if m.contains("host key refused")),
        "{err:?}"
    );

    // Without pins the first host key is trusted and remembered.
    let cfg = ssh_config(&rig.proxy.endpoint, &rig.sshd, rig.files.path(), None);
    let tofu = Ec2Provisioner::new(cfg).await.unwrap();
    tofu.list_files(&t, FileRoot::Configs, None, 1)
        .await
        .unwrap();
    let steps = tofu.diagnose_terminal(&t).await.unwrap();
    assert!(steps.iter().all(|s| s.ok), "{steps:?}");
    let connect = steps.iter().find(|s| s.name == "connect").unwrap();
    assert_eq!(
        connect.detail.as_deref(),
        Some(format!("host key {}", rig.sshd.host_key).as_str())
    );
}

#[tokio::test]
async fn terminal_runs_a_command_and_diagnose_passes() {
    let rig = Rig::start().await;
    let t = rig.target();
    let steps = rig.ec2.diagnose_terminal(&t).await.unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "instance-running",
            "generate-key",
            "send-ssh-public-key",
            "connect",
            "ssh-probe"
        ]
    );
    assert!(steps.iter().all(|s| s.ok), "{steps:?}");
    assert!(PROBE_MARKER.ends_with("_OK"));

    let mut term = rig.ec2.open_terminal(&t).await.unwrap();
    // A window change is applied before the input that follows it.
    term.input
        .send(TerminalInput::Resize(TerminalSize {
            cols: 123,
            rows: 45,
        }))
        .await
        .unwrap();
    term.input
        .send(TerminalInput::Data(
            b"echo \"answer=$((6*7))\"; tty; echo \"size=$(stty size)\"\n".to_vec(),
        ))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = term.output.recv().await {
            seen.extend_from_slice(&chunk);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("answer=42")
                && text.contains("/dev/pts/")
                && text.contains("size=45 123")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{}", String::from_utf8_lossy(&seen));
    // The shell exits: the output side ends.
    term.input
        .send(TerminalInput::Data(b"exit\n".to_vec()))
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while term.output.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the terminal did not end after exit");
}
