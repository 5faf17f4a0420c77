//! Shared by the end-to-end tests: the example gateway as a child process, and the
//! Python that runs the official SDKs and the browser driver.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Kills the gateway when the test ends, however it ends.
pub(crate) struct Gateway(Child);

impl Gateway {
    /// Stops the gateway the way an operator does (SIGTERM), so it flushes its ledger.
    pub(crate) fn stop(mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.0.wait().expect("wait for the gateway");
        assert!(
            status.success(),
            "the gateway exits cleanly on SIGTERM: {status}"
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples.
pub(crate) fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --all-features`",
        bin.display()
    );
    bin
}

pub(crate) fn start_gateway(db: &Path) -> (Gateway, String) {
    let db = db.to_str().expect("a UTF-8 temp path");
    let (gateway, url, _) = start_gateway_with(&[("TOLLGATE_DB", db)]);
    (gateway, url)
}

/// Starts the gateway with extra environment variables; returns it, its URL, and
/// everything it writes (stdout and stderr), collected as it runs.
pub(crate) fn start_gateway_with(envs: &[(&str, &str)]) -> (Gateway, String, Arc<Mutex<String>>) {
    let mut command = Command::new(gateway_binary());
    command
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("TOLLGATE_MASTER_KEY")
        .env_remove("TOLLGATE_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the example gateway");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let gateway = Gateway(child);
    let log = Arc::new(Mutex::new(String::new()));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    let mut lines = BufReader::new(stdout).lines();
    let mut url = None;
    for line in lines.by_ref().map_while(Result::ok) {
        log.lock().unwrap().push_str(&format!("{line}\n"));
        if let Some(found) = line.strip_prefix("listening on ") {
            url = Some(found.to_owned());
            break;
        }
    }
    let url = url.expect("the gateway prints `listening on URL`");
    // Keep draining stdout so the gateway never blocks on, or breaks, its pipe.
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    (gateway, url, log)
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
