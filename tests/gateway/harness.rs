//! Starting and stopping the gateway binary, and a small HTTP client.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Only a guard against hanging, never a timing assertion.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(30);

pub(crate) async fn guard<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("hung past the guard")
}

/// A running gateway; killed when dropped, however the test ends.
pub(crate) struct Gateway {
    child: Option<Child>,
    pub(crate) url: String,
    /// Everything the gateway wrote (stdout and stderr), collected as it runs.
    pub(crate) log: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts the gateway with these environment variables (on 127.0.0.1:0, with no
    /// provider keys from the test's own environment).
    pub(crate) fn start(envs: &[(&str, &str)]) -> Gateway {
        let mut command = Command::new(gateway_binary());
        command
            .env("TOLLGATE_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env_remove("TOLLGATE_CONFIG")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("GEMINI_API_KEY")
            .env_remove("TOLLGATE_MASTER_KEY")
            .env_remove("TOLLGATE_DATABASE_URL")
            .env_remove("TOLLGATE_REDIS_URL")
            .env_remove("TOLLGATE_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the example gateway");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
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
        let mut gateway = Gateway {
            child: Some(child),
            url: String::new(),
            log: log.clone(),
        };
        let Some(url) = url else {
            panic!(
                "the gateway did not start:\n{}",
                gateway.wait_log_and_exit()
            );
        };
        gateway.url = url;
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        gateway
    }

    fn wait_log_and_exit(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`HUP`, `TERM`) to the gateway.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Stops the gateway with SIGTERM and waits for it; returns whether it exited 0.
    pub(crate) fn stop(mut self) -> bool {
        self.signal("TERM");
        let status = self
            .child
            .take()
            .unwrap()
            .wait()
            .expect("wait for the gateway");
        status.success()
    }

    /// Waits for the stopped gateway to exit (after a signal sent by the test).
    pub(crate) fn wait(mut self) -> bool {
        let status = self
            .child
            .take()
            .unwrap()
            .wait()
            .expect("wait for the gateway");
        status.success()
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle` (the log is read as the gateway writes it).
    pub(crate) async fn wait_for_log(&self, needle: &str) {
        guard(async {
            while !self.log().contains(needle) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples.
fn gateway_binary() -> PathBuf {
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

/// A collected answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every byte a client saw: status line, headers and body.
    pub(crate) fn all_bytes(&self) -> String {
        let mut out = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            out.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        out + &self.text()
    }
}

#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    pub(crate) fn new(base: &str) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.to_owned(),
        }
    }

    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    pub(crate) async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        guard(async {
            let res = self.client.request(req).await.expect("the gateway answers");
            let (parts, body) = res.into_parts();
            let body = body.collect().await.expect("a whole body").to_bytes();
            Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        })
        .await
    }

    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(self.request(Method::GET, path, headers, ""))
            .await
    }

    pub(crate) async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.send(self.request(Method::POST, path, headers, body))
            .await
    }

    /// Sends and returns the response head with its still-streaming body.
    pub(crate) async fn open(
        &self,
        req: Request<Full<Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        guard(self.client.request(req))
            .await
            .expect("the gateway answers")
    }
}

/// A chat request body for `model`.
pub(crate) fn chat(model: &str) -> String {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
        .to_string()
}

/// A temporary directory removed at the end of the test.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-gateway-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }

    /// Replaces `file` atomically (write, then rename), as an operator's deploy does.
    pub(crate) fn write(&self, file: &str, text: &str) {
        let tmp = self.0.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.0.join(file)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
