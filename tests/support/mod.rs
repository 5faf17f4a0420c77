//! Shared by the end-to-end tests: the example gateway as a child process (the
//! gateway tests' harness), and the Python that runs the official SDKs and the
//! browser driver.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

#[path = "../gateway/harness.rs"]
mod harness;

pub(crate) use harness::Gateway;

pub(crate) fn python(module: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TOLLGATE_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Skips a test whose outside tool is missing, with the reason on stderr; fails instead
/// when `require_var` is `1` (CI sets it, so CI never skips).
pub(crate) fn skip_unless_required(test: &str, require_var: &str, reason: &str) {
    if std::env::var(require_var).as_deref() == Ok("1") {
        panic!("{require_var}=1 but {reason}");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

/// Runs `tests/{script}` with `python` and `args`; fails the test with the script's
/// output unless it exits 0 and prints `done` (its last line of success). Returns its
/// stdout.
pub(crate) fn run_script(python: &Path, script: &str, args: &[&str], done: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(done),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Starts the gateway with its ledger (and keys) in the SQLite file `db`.
pub(crate) fn start_gateway(db: &Path) -> (Gateway, String) {
    let db = db.to_str().expect("a UTF-8 temp path");
    let (gateway, url, _) = start_gateway_with(&[("TOLLGATE_DB", db)]);
    (gateway, url)
}

/// Starts the gateway with extra environment variables; returns it, its URL, and
/// everything it writes (stdout and stderr), collected as it runs.
pub(crate) fn start_gateway_with(envs: &[(&str, &str)]) -> (Gateway, String, Arc<Mutex<String>>) {
    let gateway = Gateway::start(envs);
    let (url, log) = (gateway.url.clone(), gateway.log.clone());
    (gateway, url, log)
}
