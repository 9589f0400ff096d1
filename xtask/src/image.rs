//! `cargo xtask image [echo|server]`: a statically linked binary in a local Docker image
//! `FROM scratch` (no registry is involved: nothing is pulled for `scratch`). `echo` (the
//! default) is the echo agent the Docker tests run, `molecule-echo-agent:dev`; `server` is
//! `molecule-server:dev`, the control plane as operators deploy it (see the README's Deploy).
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
/// The tag of the server image.
pub const SERVER_IMAGE: &str = "molecule-server:dev";
/// The server image's user and group: numeric (scratch has no `/etc/passwd`), not root.
const SERVER_USER: &str = "65532:65532";
/// The CA bundle copied into the server image (outbound TLS: GitHub, Slack, Langfuse…).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

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

/// The server image: the binary, the CA bundle, `/data` owned by the non-root user (a volume:
/// the SQLite file, the generated admin token and secrets key live there), listening on all
/// addresses, with a `HEALTHCHECK` by the binary itself (`molecule-server healthcheck`).
const SERVER_DOCKERFILE: &str = "FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY molecule-server /molecule-server
COPY --chown=65532:65532 data /data
ENV MOLECULE_HOST=0.0.0.0 \\
    PORT=8080 \\
    MOLECULE_DATA_DIR=/data \\
    MOLECULE_LOG_FORMAT=json \\
    MOLECULE_IN_DOCKER=1 \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
VOLUME [\"/data\"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \\
    CMD [\"/molecule-server\", \"healthcheck\"]
ENTRYPOINT [\"/molecule-server\"]
";

/// Whether a Docker daemon answers.
pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo xtask image [echo|server]`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        None | Some("echo") => echo(),
        Some("server") => server(),
        Some(other) => bail!("unknown image {other:?}: `cargo xtask image [echo|server]`"),
    }
}

/// Builds the echo agent's static binary and its image.
pub fn echo() -> anyhow::Result<()> {
    let (root, target_dir, binary) = static_binary("molecule-echo-agent", "molecule-echo-agent")?;
    let busybox = busybox()?;
    check_static(&busybox)?;
    let context = tempfile_dir(&target_dir, "echo-agent-image")?;
    copy(&binary, &context.join("molecule-echo-agent"))?;
    copy(&busybox, &context.join("busybox"))?;
    std::fs::write(context.join("Dockerfile"), DOCKERFILE)?;
    build(&root, &context, IMAGE)?;
    println!("image {IMAGE} built from {}", binary.display());
    Ok(())
}

/// Builds the server's static binary and `molecule-server:dev`.
pub fn server() -> anyhow::Result<()> {
    let (root, target_dir, binary) = static_binary("molecule-server", "molecule-server")?;
    let context = tempfile_dir(&target_dir, "server-image")?;
    copy(&binary, &context.join("molecule-server"))?;
    copy(Path::new(CA_BUNDLE), &context.join("ca-certificates.crt"))
        .context("the CA bundle comes from the ca-certificates package")?;
    std::fs::create_dir_all(context.join("data"))?;
    std::fs::write(context.join("Dockerfile"), SERVER_DOCKERFILE)?;
    build(&root, &context, SERVER_IMAGE)?;
    println!(
        "image {SERVER_IMAGE} (user {SERVER_USER}) built from {}",
        binary.display()
    );
    Ok(())
}

/// `cargo build --release` of `package`'s `bin` for the host's gnu target with a static C
/// runtime, checked to be static. Returns the workspace root, the target directory and the
/// binary.
fn static_binary(
    package: &str,
    bin: &str,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
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
                package,
                "--bin",
                bin,
                "--target",
                &host,
            ])
            // With an explicit --target, RUSTFLAGS reach only the target, not build scripts.
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
    )?;
    let binary = target_dir.join(&host).join("release").join(bin);
    check_static(&binary)?;
    Ok((root, target_dir, binary))
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("cannot copy {}", from.display()))
}

/// `docker build` of `context` as `tag`.
fn build(root: &Path, context: &Path, tag: &str) -> anyhow::Result<()> {
    if !docker_available() {
        bail!("no Docker daemon answers `docker version`: cannot build {tag}");
    }
    crate::workspace::run_in(
        root,
        Command::new("docker")
            .args(["build", "--quiet", "-t", tag])
            .arg(context)
            // The classic builder: no buildx plugin needed, and nothing is pulled for scratch.
            .env("DOCKER_BUILDKIT", "0"),
    )
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

/// A fresh build-context directory `name` under the target directory.
fn tempfile_dir(target_dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = target_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
