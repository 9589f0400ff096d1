//! nginx as a plain reverse proxy to the agent (the A2A section's yardstick).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// nginx in the foreground with a generated configuration; stopped when dropped.
pub struct Nginx {
    child: Child,
    bin: PathBuf,
    prefix: PathBuf,
}

impl Nginx {
    /// The `nginx` binary, or an error that says how to install it.
    pub fn binary() -> anyhow::Result<PathBuf> {
        crate::procs::find_on_path("nginx").context(
            "the `nginx` binary is not on the PATH; install it (Debian/Ubuntu: \
             `apt-get install -y nginx-light`, or `nginx`) and run the bench again",
        )
    }

    /// nginx on `port` proxying to `127.0.0.1:agent_port` with a keep-alive upstream, its
    /// files under `dir/nginx`.
    pub fn start(bin: &Path, dir: &Path, port: u16, agent_port: u16) -> anyhow::Result<Self> {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))?;
        let p = prefix.display();
        let conf = format!(
            "worker_processes auto;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \taccess_log off;\n\
             \tclient_body_temp_path {p}/client_body;\n\
             \tproxy_temp_path {p}/proxy;\n\
             \tfastcgi_temp_path {p}/fastcgi;\n\
             \tuwsgi_temp_path {p}/uwsgi;\n\
             \tscgi_temp_path {p}/scgi;\n\
             \tupstream agent {{\n\
             \t\tserver 127.0.0.1:{agent_port};\n\
             \t\tkeepalive 64;\n\
             \t}}\n\
             \tserver {{\n\
             \t\tlisten 127.0.0.1:{port};\n\
             \t\tlocation / {{\n\
             \t\t\tproxy_pass http://agent;\n\
             \t\t\tproxy_http_version 1.1;\n\
             \t\t\tproxy_set_header Connection \"\";\n\
             \t\t}}\n\
             \t}}\n\
             }}\n"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        Ok(Nginx {
            child,
            bin: bin.to_owned(),
            prefix,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A fast shutdown through the master, so its workers go too; a kill if that fails.
        let stopped = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.prefix)
            .arg("-e")
            .arg(self.prefix.join("logs/error.log"))
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
