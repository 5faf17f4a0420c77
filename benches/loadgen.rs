//! Load generator for the end-to-end bench: drives an OpenAI-compatible
//! `POST /v1/chat/completions` endpoint and prints one JSON object with the figures.
//!
//! ```text
//! loadgen throughput --url U [--connections 32] [--duration-secs 10] [--warmup-secs 2]
//! loadgen latency    --url U [--rate 1000] [--duration-secs 10] [--warmup-secs 2]
//! loadgen ttfb       --url U [--requests 2000] [--concurrency 1] [--warmup-secs 2]
//! common: [--model bench-model] [--key none] [--header 'name: value']... [--timeout-secs 30]
//! ```
//!
//! `U` is a base (`http://127.0.0.1:8080`, the path `/v1/chat/completions` is added) or a
//! full URL. Every request carries `content-type: application/json`,
//! `authorization: Bearer <key>` and `accept-encoding: gzip, deflate` (what the official
//! SDKs send), plus `cache-control: no-store`: the requests are identical, and a gateway's
//! response cache must not turn the figures into cache hits. A request counts as an error on a transport error, a timeout, a non-2xx
//! status or, when streaming, a body without `data: [DONE]`. Bodies are always read to the
//! end so connections stay reusable.
//!
//! - `throughput`: closed loop, `--connections` workers each sending back to back on
//!   keep-alive connections; requests per second over the measured window. At most
//!   `--connections` requests are in flight; the pooled client may open a spare connection
//!   or two when one is slow to return to the pool (`connections_opened` says).
//! - `latency`: open loop at `--rate` requests per second. Send times are scheduled up
//!   front and latency runs from the *intended* send time, so a stalled target shows up
//!   as latency instead of fewer samples (no coordinated omission). Connections are opened
//!   ahead (`--connections`, default 64) and more are opened if ever all are busy. A
//!   dispatcher thread sleeps until each send time, yielding the CPU in a loop for the last
//!   `--spin-us` (the OS timer alone is ~60 us late), and reports its own lateness as
//!   `send_lag_us`: if that p99 is high the client core is saturated and the figures are not
//!   the target's.
//! - `ttfb`: `"stream": true` requests; time from send to the first body bytes (the first
//!   SSE event) and to the end of the stream.
//!
//! Figures are in microseconds. The human log goes to stderr, the JSON to stdout.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{
    header::{ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE},
    HeaderMap, HeaderName, HeaderValue, Method, Request, Uri,
};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::{json, Value};
use tokio::{sync::mpsc, task::JoinSet};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<CountingConnector, Full<Bytes>>;

const USAGE: &str = "\
usage: loadgen <throughput|latency|ttfb> --url URL [options]
  throughput  [--connections 32] [--duration-secs 10] [--warmup-secs 2]
  latency     [--rate 1000] [--duration-secs 10] [--warmup-secs 2] [--connections 64] [--spin-us 150]
  ttfb        [--requests 2000] [--concurrency 1] [--warmup-secs 2]
  common      [--model bench-model] [--key none] [--header 'name: value']... [--timeout-secs 30]";

// ===== configuration =====

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Throughput,
    Latency,
    Ttfb,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Latency => "latency",
            Mode::Ttfb => "ttfb",
        }
    }
}

struct Config {
    mode: Mode,
    url: Uri,
    model: String,
    key: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    connections: Option<usize>,
    duration: Duration,
    warmup: Duration,
    rate: f64,
    requests: u64,
    concurrency: usize,
    timeout: Duration,
    spin: Duration,
}

fn parse_args() -> Result<Config, BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("throughput") => Mode::Throughput,
        Some("latency") => Mode::Latency,
        Some("ttfb") => Mode::Ttfb,
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown mode {other:?}\n{USAGE}").into()),
    };
    let mut cfg = Config {
        mode,
        url: Uri::from_static("http://127.0.0.1:8080"),
        model: "bench-model".into(),
        key: "none".into(),
        headers: Vec::new(),
        connections: None,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        rate: 1000.0,
        requests: 2000,
        concurrency: 1,
        timeout: Duration::from_secs(30),
        spin: Duration::from_micros(150),
    };
    let mut url = None;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let secs = |v: &str| -> Result<Duration, BoxError> {
            Ok(Duration::from_secs_f64(v.parse::<f64>()?))
        };
        match flag.as_str() {
            "--url" => url = Some(value),
            "--model" => cfg.model = value,
            "--key" => cfg.key = value,
            "--header" => {
                let (name, val) = value
                    .split_once(':')
                    .ok_or("--header wants 'name: value'")?;
                cfg.headers
                    .push((name.trim().parse()?, val.trim().parse()?));
            }
            "--connections" => cfg.connections = Some(value.parse()?),
            "--duration-secs" => cfg.duration = secs(&value)?,
            "--warmup-secs" => cfg.warmup = secs(&value)?,
            "--rate" => cfg.rate = value.parse()?,
            "--requests" => cfg.requests = value.parse()?,
            "--concurrency" => cfg.concurrency = value.parse()?,
            "--timeout-secs" => cfg.timeout = secs(&value)?,
            "--spin-us" => cfg.spin = Duration::from_micros(value.parse()?),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    let url: Uri = url
        .ok_or_else(|| format!("--url is required\n{USAGE}"))?
        .parse()?;
    cfg.url = match url.path() {
        "" | "/" => format!(
            "{}/v1/chat/completions",
            url.to_string().trim_end_matches('/')
        )
        .parse()?,
        _ => url,
    };
    if cfg.url.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".into());
    }
    if cfg.rate <= 0.0 || cfg.concurrency == 0 || cfg.connections == Some(0) {
        return Err("--rate, --concurrency and --connections must be positive".into());
    }
    Ok(cfg)
}

// ===== the client =====

/// An `HttpConnector` that counts the connections it opens.
#[derive(Clone)]
struct CountingConnector {
    inner: HttpConnector,
    opened: Arc<AtomicU64>,
}

impl Service<Uri> for CountingConnector {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = <HttpConnector as Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.inner.call(uri)
    }
}

/// Everything needed to send one request, shared by all tasks.
struct Target {
    client: HttpClient,
    opened: Arc<AtomicU64>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
    timeout: Duration,
}

impl Target {
    fn new(cfg: &Config, stream: bool) -> Result<Arc<Self>, BoxError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let opened = Arc::new(AtomicU64::new(0));
        let client = Client::builder(TokioExecutor::new()).build(CountingConnector {
            inner: http,
            opened: Arc::clone(&opened),
        });
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, format!("Bearer {}", cfg.key).parse()?);
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
        // Every request is identical: keep the gateway's response cache out of the
        // figures (it would measure hits, not the proxy path).
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &cfg.headers {
            headers.append(name.clone(), value.clone());
        }
        let mut body = json!({
            "model": cfg.model,
            "messages": [{"role": "user", "content": "hello bench"}],
        });
        if stream {
            body["stream"] = Value::Bool(true);
        }
        Ok(Arc::new(Target {
            client,
            opened,
            uri: cfg.url.clone(),
            headers,
            body: serde_json::to_vec(&body)?.into(),
            stream,
            timeout: cfg.timeout,
        }))
    }

    /// Sends one request and reads the whole answer. `t0` is when the clock starts.
    async fn send(&self, t0: Instant) -> Result<Sample, String> {
        match tokio::time::timeout(self.timeout, self.exchange(t0)).await {
            Ok(result) => result,
            Err(_) => Err("timeout".into()),
        }
    }

    async fn exchange(&self, t0: Instant) -> Result<Sample, String> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        let res = self.client.request(req).await.map_err(|err| {
            let mut msg = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                msg = format!("{msg}: {cause}");
                source = cause.source();
            }
            msg
        })?;
        let status = res.status();
        let encoded = res.headers().contains_key(CONTENT_ENCODING);
        let mut body = res.into_body();
        let mut first = None;
        let mut tail = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| format!("body: {err}"))?;
            if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                first.get_or_insert_with(Instant::now);
                if self.stream {
                    tail.extend_from_slice(data);
                    if tail.len() > 256 {
                        tail.drain(..tail.len() - 64);
                    }
                }
            }
        }
        let end = Instant::now();
        if !status.is_success() {
            return Err(format!("status {}", status.as_u16()));
        }
        if self.stream && !tail.windows(12).any(|w| w == b"data: [DONE]") {
            return Err("stream without data: [DONE]".into());
        }
        Ok(Sample {
            first: first.unwrap_or(end) - t0,
            total: end - t0,
            encoded,
        })
    }
}

struct Sample {
    first: Duration,
    total: Duration,
    encoded: bool,
}

// ===== results =====

#[derive(Default)]
struct Tally {
    total_us: Vec<u64>,
    first_us: Vec<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    encoded: u64,
}

impl Tally {
    fn record(&mut self, result: Result<Sample, String>) {
        match result {
            Ok(sample) => {
                self.total_us.push(micros(sample.total));
                self.first_us.push(micros(sample.first));
                self.encoded += u64::from(sample.encoded);
                self.ok += 1;
            }
            Err(err) => *self.errors.entry(err).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.total_us.extend(other.total_us);
        self.first_us.extend(other.first_us);
        for (err, n) in other.errors {
            *self.errors.entry(err).or_default() += n;
        }
        self.encoded += other.encoded;
        self.ok += other.ok;
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The fields every mode reports.
    fn common(&self, cfg: &Config, target: &Target) -> Value {
        for (err, n) in &self.errors {
            eprintln!("loadgen: {n} x {err}");
        }
        if self.encoded > 0 {
            eprintln!(
                "loadgen: {} responses carried content-encoding",
                self.encoded
            );
        }
        json!({
            "mode": cfg.mode.name(),
            "url": cfg.url.to_string(),
            "model": cfg.model,
            "requests": self.ok + self.error_count(),
            "ok": self.ok,
            "errors": self.error_count(),
            "error_kinds": self.errors,
            "content_encoded": self.encoded,
            "connections_opened": target.opened.load(Ordering::Relaxed),
        })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// p50/p90/p99/p99.9/max/mean of a set of microsecond samples (nearest rank).
fn summary(mut samples: Vec<u64>) -> Value {
    samples.sort_unstable();
    let n = samples.len();
    let pct = |q: f64| -> u64 {
        if n == 0 {
            return 0;
        }
        let rank = (q * n as f64).ceil() as usize;
        samples[rank.clamp(1, n) - 1]
    };
    let mean = if n == 0 {
        0.0
    } else {
        samples.iter().sum::<u64>() as f64 / n as f64
    };
    json!({
        "count": n,
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": samples.last().copied().unwrap_or(0),
        "mean": (mean * 10.0).round() / 10.0,
    })
}

fn merge_into(out: &mut Value, extra: Value) {
    if let (Value::Object(out), Value::Object(extra)) = (out, extra) {
        out.extend(extra);
    }
}

// ===== modes =====

/// Closed loop: `workers` tasks sending back to back until `until`. Only answers that
/// complete inside `[from, until)` are recorded.
async fn closed_loop(target: &Arc<Target>, workers: usize, from: Instant, until: Instant) -> Tally {
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let target = Arc::clone(target);
        set.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break tally;
                }
                let result = target.send(t0).await;
                let failed = result.is_err();
                let t1 = Instant::now();
                if t1 >= from && t1 < until {
                    tally.record(result);
                }
                if failed {
                    // Do not spin on a dead target.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
    }
    let mut tally = Tally::default();
    while let Some(worker) = set.join_next().await {
        tally.merge(worker.expect("worker panicked"));
    }
    tally
}

async fn throughput(cfg: &Config) -> Result<Value, BoxError> {
    let target = Target::new(cfg, false)?;
    let connections = cfg.connections.unwrap_or(32);
    eprintln!(
        "loadgen: throughput {} with {connections} connections, {:?} warmup + {:?}",
        cfg.url, cfg.warmup, cfg.duration
    );
    let from = Instant::now() + cfg.warmup;
    let until = from + cfg.duration;
    let tally = closed_loop(&target, connections, from, until).await;
    let rps = tally.ok as f64 / cfg.duration.as_secs_f64();
    eprintln!("loadgen: {rps:.0} req/s, {} errors", tally.error_count());
    let mut out = tally.common(cfg, &target);
    merge_into(
        &mut out,
        json!({
            "connections": connections,
            "duration_secs": cfg.duration.as_secs_f64(),
            "rps": (rps * 10.0).round() / 10.0,
            "latency_us": summary(tally.total_us),
        }),
    );
    Ok(out)
}

/// Sleeps with the OS timer, then yields the CPU in a loop for the last `spin`, which
/// brings the send time within a few microseconds of the schedule.
fn sleep_until(deadline: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            std::thread::yield_now();
        }
    }
}

async fn latency(cfg: &Config) -> Result<Value, BoxError> {
    let target = Target::new(cfg, false)?;
    let connections = cfg.connections.unwrap_or(64);
    eprintln!(
        "loadgen: latency {} at {} req/s, {:?} warmup + {:?}",
        cfg.url, cfg.rate, cfg.warmup, cfg.duration
    );

    // Open the connections ahead: as many concurrent requests as connections.
    let mut set = JoinSet::new();
    for _ in 0..connections {
        let target = Arc::clone(&target);
        set.spawn(async move { target.send(Instant::now()).await.err() });
    }
    while let Some(err) = set.join_next().await {
        if let Some(err) = err? {
            eprintln!("loadgen: while opening connections: {err}");
        }
    }

    // The schedule: request i is due at start + i / rate; the first `skip` are warmup.
    let interval = 1.0 / cfg.rate;
    let skip = (cfg.warmup.as_secs_f64() * cfg.rate).round() as u64;
    let total = skip + (cfg.duration.as_secs_f64() * cfg.rate).round() as u64;
    let start = Instant::now() + Duration::from_millis(10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Handle::current();
    let spin = cfg.spin;
    let dispatcher = {
        let target = Arc::clone(&target);
        std::thread::spawn(move || {
            let mut lag_us = Vec::with_capacity((total - skip) as usize);
            let (mut first, mut last) = (None, start);
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 * interval);
                sleep_until(due, spin);
                last = Instant::now();
                if i >= skip {
                    first.get_or_insert(last);
                    lag_us.push(micros(last - due));
                }
                let target = Arc::clone(&target);
                let tx = tx.clone();
                runtime.spawn(async move {
                    // The clock starts at the intended send time, not the actual one.
                    let result = target.send(due).await;
                    let _ = tx.send((i, result));
                });
            }
            let span = first.map_or(Duration::ZERO, |first| last - first);
            (lag_us, span)
        })
    };

    let mut tally = Tally::default();
    while let Some((i, result)) = rx.recv().await {
        if i >= skip {
            tally.record(result);
        }
    }
    let (lag_us, span) = dispatcher.join().expect("dispatcher panicked");
    let sent = lag_us.len();
    let achieved = (sent.saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9);

    let lat = summary(std::mem::take(&mut tally.total_us));
    eprintln!(
        "loadgen: p50 {} us, p99 {} us, max {} us, {} errors",
        lat["p50"],
        lat["p99"],
        lat["max"],
        tally.error_count()
    );
    let mut out = tally.common(cfg, &target);
    merge_into(
        &mut out,
        json!({
            "rate": cfg.rate,
            "duration_secs": cfg.duration.as_secs_f64(),
            "sent": sent,
            "achieved_rate": (achieved * 10.0).round() / 10.0,
            "latency_us": lat,
            "send_lag_us": summary(lag_us),
        }),
    );
    Ok(out)
}

async fn ttfb(cfg: &Config) -> Result<Value, BoxError> {
    let target = Target::new(cfg, true)?;
    eprintln!(
        "loadgen: ttfb {} with {} streams at concurrency {}, {:?} warmup",
        cfg.url, cfg.requests, cfg.concurrency, cfg.warmup
    );
    if !cfg.warmup.is_zero() {
        let now = Instant::now();
        closed_loop(&target, cfg.concurrency, now, now + cfg.warmup).await;
    }

    let next = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..cfg.concurrency {
        let target = Arc::clone(&target);
        let next = Arc::clone(&next);
        let requests = cfg.requests;
        set.spawn(async move {
            let mut tally = Tally::default();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let result = target.send(Instant::now()).await;
                let failed = result.is_err();
                tally.record(result);
                if failed {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(worker) = set.join_next().await {
        tally.merge(worker?);
    }

    let first = summary(std::mem::take(&mut tally.first_us));
    let total = summary(std::mem::take(&mut tally.total_us));
    eprintln!(
        "loadgen: ttfb p50 {} us p99 {} us; stream end p50 {} us; {} errors",
        first["p50"],
        first["p99"],
        total["p50"],
        tally.error_count()
    );
    let mut out = tally.common(cfg, &target);
    merge_into(
        &mut out,
        json!({
            "concurrency": cfg.concurrency,
            "ttfb_us": first,
            "total_us": total,
        }),
    );
    Ok(out)
}

fn main() {
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    // One thread drives all connections: the bench pins the loadgen to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cfg.mode {
            Mode::Throughput => throughput(&cfg).await,
            Mode::Latency => latency(&cfg).await,
            Mode::Ttfb => ttfb(&cfg).await,
        }
    });
    match result {
        Ok(out) => println!("{out}"),
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(1);
        }
    }
}
