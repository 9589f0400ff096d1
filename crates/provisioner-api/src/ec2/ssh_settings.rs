//! How the EC2 backend reaches an instance for files and the terminal: EC2 Instance Connect
//! pushes a throwaway key for [`SshSettings::os_user`], then an in-process SSH client connects
//! to the instance's address (spec provisioner §1.9–1.10, known defect 19).

use std::time::Duration;

/// The OS user keys are pushed for when none is configured (spec templates §1.2).
pub const DEFAULT_OS_USER: &str = "ubuntu";

/// Which address of an instance the SSH client dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SshAddress {
    /// The private IPv4 address (the platform runs in the instances' VPC).
    #[default]
    Private,
    /// The public IPv4 address.
    Public,
}

/// The SSH side of the EC2 backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// The OS user the key is pushed for and the session logs in as.
    pub os_user: String,
    /// Which address of the instance to dial.
    pub address: SshAddress,
    /// The SSH port on the instance.
    pub port: u16,
    /// `host:port` dialled instead of the instance's address (a forwarded port, a test sshd).
    /// The instance is still looked up and must be running.
    pub endpoint: Option<String>,
    /// Whether remote commands run under `sudo -n` (the managed directories are root-owned).
    pub sudo: bool,
    /// Pinned host keys (`SHA256:…` fingerprints, as `ssh-keygen -lf` prints them). When set,
    /// a host key outside the list is refused. When empty, the first key an instance shows is
    /// logged and remembered for it (trust on first use, per process) and a different key
    /// later is refused.
    pub host_keys: Vec<String>,
    /// Budget of one file operation: lookup, key push, connect and the command (and of
    /// opening a terminal).
    pub operation_timeout: Duration,
    /// Budget of the TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// A directory every remote path is placed under (`/configs/a` → `<prefix>/configs/a`),
    /// for an SSH server that shares the platform's file system, such as the tests' local
    /// sshd. `None` on real instances (not read from the environment).
    pub path_prefix: Option<String>,
}

impl Default for SshSettings {
    fn default() -> Self {
        Self {
            os_user: DEFAULT_OS_USER.to_owned(),
            address: SshAddress::Private,
            port: 22,
            endpoint: None,
            sudo: true,
            host_keys: Vec::new(),
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            path_prefix: None,
        }
    }
}

impl SshSettings {
    /// Reads `WORKSPACE_EC2_OS_USER`, `MOLECULE_EC2_SSH_ADDRESS` (`private` | `public`),
    /// `MOLECULE_EC2_SSH_PORT`, `MOLECULE_EC2_SSH_ENDPOINT` (`host:port`),
    /// `MOLECULE_EC2_SSH_SUDO` (`false` turns `sudo -n` off) and `MOLECULE_EC2_SSH_HOST_KEYS`
    /// (comma-separated fingerprints); what is unset or unreadable keeps its default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut s = Self::default();
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(user) = non_empty("WORKSPACE_EC2_OS_USER") {
            s.os_user = user;
        }
        if non_empty("MOLECULE_EC2_SSH_ADDRESS").is_some_and(|v| v.eq_ignore_ascii_case("public")) {
            s.address = SshAddress::Public;
        }
        if let Some(port) = non_empty("MOLECULE_EC2_SSH_PORT")
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|p| *p > 0)
        {
            s.port = port;
        }
        s.endpoint = non_empty("MOLECULE_EC2_SSH_ENDPOINT");
        if let Some(sudo) = non_empty("MOLECULE_EC2_SSH_SUDO") {
            s.sudo = !matches!(sudo.to_ascii_lowercase().as_str(), "0" | "false" | "no");
        }
        s.host_keys = non_empty("MOLECULE_EC2_SSH_HOST_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        s
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> SshSettings {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SshSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(lookup(&[]), SshSettings::default());
        assert_eq!(SshSettings::default().os_user, "ubuntu");
        assert!(SshSettings::default().sudo);
        let s = lookup(&[
            ("WORKSPACE_EC2_OS_USER", " ec2-user "),
            ("MOLECULE_EC2_SSH_ADDRESS", "PUBLIC"),
            ("MOLECULE_EC2_SSH_PORT", "2222"),
            ("MOLECULE_EC2_SSH_ENDPOINT", "127.0.0.1:2200"),
            ("MOLECULE_EC2_SSH_SUDO", "false"),
            ("MOLECULE_EC2_SSH_HOST_KEYS", "SHA256:a, ,SHA256:b"),
        ]);
        assert_eq!(s.os_user, "ec2-user");
        assert_eq!(s.address, SshAddress::Public);
        assert_eq!(s.port, 2222);
        assert_eq!(s.endpoint.as_deref(), Some("127.0.0.1:2200"));
        assert!(!s.sudo);
        assert_eq!(s.host_keys, vec!["SHA256:a", "SHA256:b"]);
        let s = lookup(&[
            ("MOLECULE_EC2_SSH_PORT", "0"),
            ("MOLECULE_EC2_SSH_SUDO", "yes"),
        ]);
        assert_eq!(s.port, 22);
        assert!(s.sudo);
    }
}
