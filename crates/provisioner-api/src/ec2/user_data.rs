//! The instance user-data: a cloud-init shell script carrying a JSON bootstrap document.
//!
//! User-data is readable through the instance metadata service and `DescribeInstanceAttribute`,
//! so it carries no lasting secret: no auth token, no inbound secret, no secret env value. The
//! lifecycle service issues no auth token before an EC2 start
//! ([`crate::Provisioner::delivers_credentials`] is false) but a one-time *bootstrap token*
//! (valid for the first registration only, until the provision timeout): the agent presents it
//! as its bearer on its first `POST /registry/register`, which consumes it and answers the auth
//! token and the platform inbound secret; with that token it reads its secret env values from
//! `GET /workspaces/:id/secrets/values`. The document lists only their names. The script
//! writes the document readable by root only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::Ec2Config;
use crate::ProvisionRequest;
use crate::names::{AGENT_PORT, container_name};

/// The heredoc delimiter around the JSON document (serialised JSON is one line, so it cannot
/// contain the delimiter as a line of its own).
const DOC_DELIMITER: &str = "MOLECULE_BOOTSTRAP_EOF";
const ENV_DELIMITER: &str = "MOLECULE_ENV_EOF";
/// EC2's limit on user-data before base64.
pub const MAX_USER_DATA: usize = 16 * 1024;
/// Where the script writes the document on the box.
pub const DOC_PATH: &str = "/etc/molecule/bootstrap.json";

/// What the box needs to bring its agent up: at least what the control plane's provision
/// request carried (spec §1.7.1, §1.8), minus every secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapDocument {
    /// Format version of this document.
    pub version: u32,
    /// The workspace id.
    pub workspace_id: String,
    /// Display name.
    pub name: String,
    /// Runtime name.
    pub runtime: String,
    /// Tier 1..4.
    pub tier: i32,
    /// Tenant id, when configured.
    pub org_id: Option<String>,
    /// The platform URL the agent registers with.
    pub platform_url: String,
    /// The image to run, digest-pinned when a pin is configured.
    pub image: String,
    /// The template the workspace was made from.
    pub template: Option<String>,
    /// Non-secret environment of the agent (spec §1.6.1 contract keys, role, parent, model).
    pub env: BTreeMap<String, String>,
    /// Names of the secret env values the agent must fetch with its token.
    pub secret_env_keys: Vec<String>,
    /// Where the agent registers (its first answer carries the auth token).
    pub register_url: String,
    /// Where the agent reads its secret env values with its token.
    pub secrets_url: String,
    /// The port the agent listens on.
    pub agent_port: u16,
    /// The one-time token the first registration presents as its bearer (consumed by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<String>,
}

impl BootstrapDocument {
    /// The document for a request under a configuration.
    pub fn for_request(config: &Ec2Config, request: &ProvisionRequest) -> Self {
        let id = request.workspace_id.to_string();
        let platform = request.platform_url.trim_end_matches('/').to_owned();
        let mut env = BTreeMap::from([
            ("WORKSPACE_ID".to_owned(), id.clone()),
            ("WORKSPACE_CONFIG_PATH".to_owned(), "/configs".to_owned()),
            ("PLATFORM_URL".to_owned(), platform.clone()),
            ("MOLECULE_URL".to_owned(), platform.clone()),
            ("TIER".to_owned(), request.tier.number().to_string()),
            ("PLUGINS_DIR".to_owned(), "/plugins".to_owned()),
            ("PYTHONPATH".to_owned(), "/app".to_owned()),
        ]);
        if let Some(url) = &config.awareness_url {
            env.insert("AWARENESS_URL".to_owned(), url.clone());
        }
        if let Some(role) = &request.role {
            env.insert("MOLECULE_AGENT_ROLE".to_owned(), role.clone());
        }
        if let Some(parent) = request.parent_id {
            env.insert("PARENT_ID".to_owned(), parent.to_string());
        }
        if let Some(model) = &request.model {
            env.insert("MODEL".to_owned(), model.clone());
        }
        let secret_env_keys = request
            .env
            .keys()
            .filter(|k| !env.contains_key(*k))
            .cloned()
            .collect();
        Self {
            version: 1,
            workspace_id: id.clone(),
            name: request.name.clone(),
            runtime: request.runtime.clone(),
            tier: request.tier.number(),
            org_id: config.org_id.clone(),
            platform_url: platform.clone(),
            image: config.image_for(&request.runtime),
            template: request.template.clone(),
            env,
            secret_env_keys,
            register_url: format!("{platform}/registry/register"),
            secrets_url: format!("{platform}/workspaces/{id}/secrets/values"),
            agent_port: AGENT_PORT,
            bootstrap_token: request
                .bootstrap_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
        }
    }

    /// The cloud-init script: writes the document and the agent env file, then hands over to
    /// `/usr/local/bin/molecule-bootstrap` when the AMI has one, else runs the image with
    /// Docker (`/configs` bind-mounted, port 8000).
    pub fn render(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let env_file: String = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}\n", one_line(v)))
            .collect();
        let name = self
            .workspace_id
            .parse()
            .map(container_name)
            .unwrap_or_else(|_| "ws-agent".to_owned());
        let image = shell_quote(&self.image);
        // The runtime presents `/configs/.auth_token` as its bearer and saves the token its
        // register answers there: the bootstrap token is exchanged without agent changes.
        let bootstrap = self
            .bootstrap_token
            .as_deref()
            .map(|t| format!("printf '%s' {} > /configs/.auth_token\n", shell_quote(t)))
            .unwrap_or_default();
        let port = self.agent_port;
        format!(
            "#!/bin/bash\n\
             # molecule-rs workspace bootstrap. No lasting secret here: the agent exchanges the\n\
             # one-time bootstrap token for its token at its first register, and reads its\n\
             # secret env from the platform with that token.\n\
             set -euo pipefail\n\
             umask 077\n\
             mkdir -p /configs /etc/molecule\n\
             cat > {DOC_PATH} <<'{DOC_DELIMITER}'\n\
             {json}\n\
             {DOC_DELIMITER}\n\
             cat > /etc/molecule/agent.env <<'{ENV_DELIMITER}'\n\
             {env_file}\
             {ENV_DELIMITER}\n\
             {bootstrap}\
             if [ -x /usr/local/bin/molecule-bootstrap ]; then\n\
             \x20 exec /usr/local/bin/molecule-bootstrap {DOC_PATH}\n\
             fi\n\
             docker pull {image} || true\n\
             docker rm -f {name} >/dev/null 2>&1 || true\n\
             exec docker run -d --name {name} --restart unless-stopped \
             --env-file /etc/molecule/agent.env -v /configs:/configs -p {port}:{port} {image}\n"
        )
    }

    /// The document inside a script made by [`BootstrapDocument::render`].
    pub fn parse(script: &str) -> Option<Self> {
        let mut lines = script.lines();
        lines.find(|l| l.ends_with(&format!("<<'{DOC_DELIMITER}'")))?;
        serde_json::from_str(lines.next()?).ok()
    }
}

/// A value on one line (env files have no quoting).
fn one_line(v: &str) -> String {
    v.replace(['\n', '\r'], " ")
}

/// A shell word that stands for `s` exactly.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use molecule_domain::{Tier, WorkspaceAccess, WorkspaceId};

    use super::*;
    use crate::SecretValue;

    fn request() -> ProvisionRequest {
        ProvisionRequest {
            workspace_id: WorkspaceId::new(),
            name: "it's\nme".into(),
            role: Some("reviewer".into()),
            tier: Tier::Privileged,
            runtime: "hermes".into(),
            parent_id: None,
            model: Some("claude-x".into()),
            template: Some("reviewer".into()),
            config_files: Vec::new(),
            workspace_dir: None,
            workspace_access: WorkspaceAccess::None,
            platform_url: "https://platform.example/".into(),
            env: BTreeMap::from([
                ("OPENAI_API_KEY".into(), SecretValue::new("sk-very-secret")),
                ("PYTHONPATH".into(), SecretValue::new("/custom")),
            ]),
            auth_token: Some(SecretValue::new("tok-never-in-user-data")),
            platform_inbound_secret: Some(SecretValue::new("inbound-never")),
            bootstrap_token: Some(SecretValue::new("one-time-bootstrap")),
        }
    }

    #[test]
    fn the_document_carries_the_request_but_no_secret() {
        let r = request();
        let doc = BootstrapDocument::for_request(&Ec2Config::default(), &r);
        let script = doc.render();
        for secret in ["sk-very-secret", "tok-never-in-user-data", "inbound-never"] {
            assert!(!script.contains(secret), "{secret} leaked into user-data");
        }
        let parsed = BootstrapDocument::parse(&script).unwrap();
        assert_eq!(parsed, doc);
        assert_eq!(parsed.workspace_id, r.workspace_id.to_string());
        assert_eq!(parsed.runtime, "hermes");
        assert_eq!(parsed.tier, 3);
        assert_eq!(parsed.platform_url, "https://platform.example");
        assert_eq!(
            parsed.image,
            "ghcr.io/molecule-ai/workspace-template-hermes:latest"
        );
        assert_eq!(parsed.env["TIER"], "3");
        assert_eq!(parsed.env["MOLECULE_AGENT_ROLE"], "reviewer");
        assert_eq!(parsed.env["MODEL"], "claude-x");
        assert_eq!(parsed.env["PYTHONPATH"], "/app");
        assert_eq!(parsed.secret_env_keys, vec!["OPENAI_API_KEY"]);
        assert_eq!(
            parsed.bootstrap_token.as_deref(),
            Some("one-time-bootstrap")
        );
        assert!(
            script.contains("umask 077\n"),
            "the document is root's only"
        );
        assert!(script.contains("printf '%s' 'one-time-bootstrap' > /configs/.auth_token\n"));
        assert_eq!(
            parsed.secrets_url,
            format!(
                "https://platform.example/workspaces/{}/secrets/values",
                r.workspace_id
            )
        );
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains(&format!("--name {} ", container_name(r.workspace_id))));
        assert!(script.len() < MAX_USER_DATA);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        assert_eq!(one_line("a\nb\rc"), "a b c");
        assert_eq!(BootstrapDocument::parse("#!/bin/sh\necho hi\n"), None);
    }
}
