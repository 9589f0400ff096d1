//! The Python side of the tests that drive the server with a real Python library (the MCP
//! SDK, the OpenAPI validator): a directory under `crates/server/tests/` with its pins
//! (`requirements.txt`, checked by `tests/python_pins.py`) and its scripts.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A directory of Python test scripts, with the hint that says how to install its pins.
pub struct PythonDir {
    /// The directory's name under `crates/server/tests/`.
    pub dir: &'static str,
    /// What to do when its pins are missing.
    pub install_hint: &'static str,
}

impl PythonDir {
    /// The path of `name` in the directory (`""`: the directory itself).
    pub fn script(&self, name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(self.dir)
            .join(name)
    }

    /// Checks the pins, then runs `python3 <script>` with `stdin` written to it; answers its
    /// output whatever its exit status. Blocking: call it from `spawn_blocking`.
    pub fn run(&self, script: &str, stdin: &[u8]) -> Output {
        let hint = self.install_hint;
        let check = Command::new("python3")
            .arg(self.script("../python_pins.py"))
            .arg(self.script(""))
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {hint}"));
        assert!(
            check.status.success(),
            "{}\n{hint}",
            String::from_utf8_lossy(&check.stdout)
        );
        let mut child = Command::new("python3")
            .arg(self.script(script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }
}
