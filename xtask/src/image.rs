//! `cargo xtask image`: the echo agent as a statically linked binary in a local Docker image
//! `FROM scratch` (no registry is involved: nothing is pulled for `scratch`).
//!
//! The musl target is not assumed to be installed: the binary is built for the host's gnu
//! target with `-C target-feature=+crt-static` and checked to be static before it is packed.
//!
//! The image also carries a statically linked busybox (Debian's `busybox-static`, installed
//! with `apt-get` when `/bin/busybox` is missing) with its applets linked into `/bin` (`sh`,
//! `rm`, `cat`, `ls`, `mkdir`, `echo`, …), so the terminal and file-access tests have a shell
//! and commands inside the container. The build's one `RUN` is in exec form, run by busybox
//! itself: the image stays `FROM scratch`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The tag of the image the Docker tests and the example run.
pub const IMAGE: &str = "molecule-echo-agent:dev";

/// Where Debian's `busybox-static` puts its binary.
const BUSYBOX: &str = "/bin/busybox";

const DOCKERFILE: &str = "FROM scratch
COPY molecule-echo-agent /molecule-echo-agent
COPY busybox /bin/busybox
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]
RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"-m\", \"1777\", \"/tmp\"]
USER 1000:1000
EXPOSE 8000
ENTRYPOINT [\"/molecule-echo-agent\"]
";

/// Whether a Docker daemon answers.
pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the static binary and the image.
pub fn run() -> anyhow::Result<()> {
    let root = crate::workspace::workspace_root()?;
    let host = host_triple()?;
    let metadata = crate::boundaries::metadata(&root.join("Cargo.toml"))?;
    let target_dir = metadata.target_directory.as_std_path().to_path_buf();
    crate::workspace::run_in(
        &root,
        Command::new(crate::workspace::cargo_bin())
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "molecule-echo-agent",
                "--target",
                &host,
            ])
            // With an explicit --target, RUSTFLAGS reach only the target, not build scripts.
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
    )?;
    let binary = target_dir
        .join(&host)
        .join("release")
        .join("molecule-echo-agent");
    check_static(&binary)?;
    let busybox = busybox()?;
    check_static(&busybox)?;

    let context = tempfile_dir(&target_dir)?;
    std::fs::copy(&binary, context.join("molecule-echo-agent"))
        .with_context(|| format!("cannot copy {}", binary.display()))?;
    std::fs::copy(&busybox, context.join("busybox"))
        .with_context(|| format!("cannot copy {}", busybox.display()))?;
    std::fs::write(context.join("Dockerfile"), DOCKERFILE)?;
    if !docker_available() {
        bail!("no Docker daemon answers `docker version`: cannot build {IMAGE}");
    }
    crate::workspace::run_in(
        &root,
        Command::new("docker")
            .args(["build", "--quiet", "-t", IMAGE])
            .arg(&context)
            // The classic builder: no buildx plugin needed, and nothing is pulled for scratch.
            .env("DOCKER_BUILDKIT", "0"),
    )?;
    println!("image {IMAGE} built from {}", binary.display());
    Ok(())
}

/// The static busybox, installed from Debian's `busybox-static` when it is missing.
fn busybox() -> anyhow::Result<std::path::PathBuf> {
    let path = Path::new(BUSYBOX);
    if !path.exists() {
        println!("{BUSYBOX} is missing: installing busybox-static with apt-get");
        let install = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install(&["install", "-y", "busybox-static"]) {
            // The package lists may be stale or absent: refresh them once and retry.
            let _ = install(&["update"]);
            if !install(&["install", "-y", "busybox-static"]) {
                bail!("cannot install busybox-static (apt-get failed): {BUSYBOX} is needed");
            }
        }
    }
    Ok(path.to_path_buf())
}

fn host_triple() -> anyhow::Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host triple")
}

/// Fails unless `file` says the binary is statically linked and `ldd` finds no libraries.
fn check_static(binary: &Path) -> anyhow::Result<()> {
    let file = Command::new("file")
        .arg(binary)
        .output()
        .context("cannot run `file`")?;
    let said = String::from_utf8_lossy(&file.stdout).into_owned();
    if !(said.contains("statically linked") || said.contains("static-pie linked")) {
        bail!("{} is not static: {said}", binary.display());
    }
    if let Ok(ldd) = Command::new("ldd").arg(binary).output() {
        let text = String::from_utf8_lossy(&ldd.stdout).into_owned()
            + &String::from_utf8_lossy(&ldd.stderr);
        if text.contains("=>") {
            bail!("{} links shared libraries: {text}", binary.display());
        }
    }
    println!("static binary: {}", said.trim());
    Ok(())
}

/// A fresh build-context directory under the target directory.
fn tempfile_dir(target_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = target_dir.join("echo-agent-image");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
