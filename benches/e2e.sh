#!/usr/bin/env bash
# End-to-end bench: loadgen -> {raw proxy, gateway} -> mock provider, all on loopback.
# See benches/README.md. Knobs (environment):
#   DURATION=10 RATE=1000 CONNECTIONS=32 WARMUP=2 TTFB_REQUESTS=2000 TTFB_CONCURRENCY=1
#   ROUNDS=3                    throughput runs per target, interleaved across targets
#   TARGETS="raw gateway"  (add "direct" to also measure loadgen -> mock with no proxy)
#   TARGET_CPU=0 CLIENT_CPU=1   cores for the proxy under test / for mock + loadgen
#   SKIP_BUILD=1                reuse the binaries already built
#   MOCK_BIN GATEWAY_BIN RAW_PROXY_BIN LOADGEN_BIN   override a binary
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-10}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
TTFB_REQUESTS=${TTFB_REQUESTS:-2000}
TTFB_CONCURRENCY=${TTFB_CONCURRENCY:-1}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-raw gateway}
TARGET_CPU=${TARGET_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MODEL=bench-model
KEY=bench-key

log() { printf '[e2e] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ----- build -----
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building: cargo build --release --features full --examples"
    cargo build --release --features full --examples
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/release/examples
MOCK_BIN=${MOCK_BIN:-$BIN/mock_server}
GATEWAY_BIN=${GATEWAY_BIN:-$BIN/gateway}
RAW_PROXY_BIN=${RAW_PROXY_BIN:-$BIN/raw_proxy}
LOADGEN_BIN=${LOADGEN_BIN:-$BIN/loadgen}
for bin in "$MOCK_BIN" "$RAW_PROXY_BIN" "$LOADGEN_BIN"; do
    [ -x "$bin" ] || die "missing $bin (not built? set SKIP_BUILD=0 or override the *_BIN variable)"
done
case " $TARGETS " in
*" gateway "*) [ -x "$GATEWAY_BIN" ] || die "missing $GATEWAY_BIN" ;;
esac

# ----- pinning -----
PIN_TARGET=()
PIN_CLIENT=()
if ! command -v taskset >/dev/null 2>&1; then
    log "taskset not found: running UNPINNED (figures are noisier; install util-linux)"
    PINNED=false
elif [ "$(nproc)" -lt 2 ]; then
    log "fewer than 2 usable cores: running UNPINNED"
    PINNED=false
else
    PIN_TARGET=(taskset -c "$TARGET_CPU")
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PINNED=true
    log "pinning: proxy under test on core $TARGET_CPU, mock + loadgen on core $CLIENT_CPU"
fi

LOAD=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if python3 -c "import sys; sys.exit(0 if float('$LOAD') > 0.5 else 1)"; then
    log "warning: load average is $LOAD: something else is using the CPU, figures will be noisy"
fi

# ----- results and cleanup -----
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/bench-results/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" "$ROOT/bench-results/latest"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-e2e.XXXXXX")

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: runs COMMAND in the background with its output in $OUT/NAME.log,
# waits for its "listening on http://ADDR" line and sets PID and ADDR.
start() {
    local name=$1
    shift
    local log_file=$OUT/$name.log
    "$@" >"$log_file" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    ADDR=
    local _
    for _ in $(seq 300); do
        ADDR=$(grep -o -m1 'listening on http://[][0-9A-Za-z.:-]*' "$log_file" |
            head -n1 | sed 's#^listening on http://##') || true
        [ -n "$ADDR" ] && break
        if ! kill -0 "$PID" 2>/dev/null; then
            cat "$log_file" >&2
            die "$name exited before printing 'listening on http://ADDR' (log above)"
        fi
        sleep 0.1
    done
    [ -n "$ADDR" ] || die "$name printed no 'listening on http://ADDR' within 30 s (see $log_file)"
    case $ADDR in
    *:0) die "$name printed port 0: it must print the bound address (local_addr)" ;;
    esac
    log "$name listening on $ADDR (pid $PID)"
}

stop() {
    local pid keep=()
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# loadgen NAME MODE ARGS...: runs the loadgen pinned to the client core.
loadgen() {
    local name=$1 mode=$2
    shift 2
    local json=$OUT/$name-$mode.json
    if ! "${PIN_CLIENT[@]}" "$LOADGEN_BIN" "$mode" --model "$MODEL" --key "$KEY" "$@" \
        >"$json" 2>"$OUT/$name-$mode.log"; then
        cat "$OUT/$name-$mode.log" >&2
        die "loadgen $mode against $name failed"
    fi
    sed 's/^/    /' "$OUT/$name-$mode.log" | grep -v '^    loadgen: \(throughput\|latency\|ttfb\) ' >&2 || true
}

# cpu_sample FILE DELAY SECS [PID]: in the background, writes each core's busy % over
# [DELAY, DELAY + SECS) and the CPU seconds PID used in it to FILE as JSON; sets SAMPLER.
cpu_sample() {
    python3 - "$@" <<'PY' &
import json, os, sys, time

out, delay, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
pid = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
tick = os.sysconf("SC_CLK_TCK")


def snap():
    cpus = {}
    for line in open("/proc/stat"):
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            cpus[f[0][3:]] = (sum(v) - v[3] - v[4], sum(v))
    return cpus


def used(pid):
    if pid is None:
        return 0.0
    # utime and stime: fields 14 and 15, counted after the ")" closing the command name.
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick


time.sleep(delay)
a, pa, t0 = snap(), used(pid), time.monotonic()
time.sleep(secs)
b, pb, t1 = snap(), used(pid), time.monotonic()
cores = {c: round(100 * (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1])) for c in a}
res = {"cores": cores, "secs": round(t1 - t0, 3)}
if pid is not None:
    res["proxy_cpu_secs"] = round(pb - pa, 3)
json.dump(res, open(out, "w"))
PY
    SAMPLER=$!
}

# preflight NAME URL: one plain and a few streamed requests must succeed before timing.
preflight() {
    local name=$1 url=$2 mode
    for mode in throughput ttfb; do
        local args=(--url "$url" --warmup-secs 0)
        if [ "$mode" = throughput ]; then
            args+=(--connections 1 --duration-secs 0.3)
        else
            args+=(--requests 3)
        fi
        "$LOADGEN_BIN" "$mode" --model "$MODEL" --key "$KEY" "${args[@]}" \
            >"$OUT/$name-preflight-$mode.json" 2>/dev/null || true
        python3 - "$OUT/$name-preflight-$mode.json" <<'PY' ||
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    sys.exit("no answer")
if d["errors"] or not d["ok"]:
    sys.exit(f"{d['ok']} ok, errors: {d['error_kinds']}")
PY
            die "preflight ($mode) against $name failed: see $OUT/$name.log"
    done
}

# ----- run -----
cat >"$OUT/meta.json" <<EOF
{"date": "$(date -Iseconds)", "git": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)",
 "kernel": "$(uname -sr)", "cpus": $(nproc), "loadavg_at_start": $LOAD, "cpu_model": "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//;s/"//g')",
 "pinned": $PINNED, "target_cpu": "$TARGET_CPU", "client_cpu": "$CLIENT_CPU", "duration_secs": $DURATION, "warmup_secs": $WARMUP, "rate": $RATE, "connections": $CONNECTIONS,
 "ttfb_requests": $TTFB_REQUESTS, "ttfb_concurrency": $TTFB_CONCURRENCY, "targets": "$TARGETS", "rounds": $ROUNDS}
EOF

start mock env MOCK_LISTEN=127.0.0.1:0 "${PIN_CLIENT[@]}" "$MOCK_BIN"
MOCK=$ADDR

# Every target runs at once (on the same pinned core; the ones not measured are idle),
# so the throughput runs can alternate between them: the speed of a shared machine
# drifts over minutes, and back-to-back rounds in alternating order share that drift.
declare -A URL_OF PID_OF
for target in $TARGETS; do
    case $target in
    raw)
        start raw env RAW_PROXY_LISTEN=127.0.0.1:0 RAW_PROXY_UPSTREAM="http://$MOCK" \
            "${PIN_TARGET[@]}" "$RAW_PROXY_BIN"
        ;;
    gateway)
        start gateway env OPENAI_API_KEY="$KEY" OPENAI_BASE_URL="http://$MOCK/v1" \
            TOLLGATE_LISTEN=127.0.0.1:0 TOLLGATE_DB="$SCRATCH/tollgate.db" RUST_LOG=warn \
            "${PIN_TARGET[@]}" "$GATEWAY_BIN"
        ;;
    direct)
        # The floor: loadgen straight to the mock, no proxy (the mock shares the client core).
        PID=
        ADDR=$MOCK
        ;;
    *) die "unknown target $target (raw, gateway, direct)" ;;
    esac
    URL_OF[$target]="http://$ADDR/v1/chat/completions"
    PID_OF[$target]=$PID
    preflight "$target" "${URL_OF[$target]}"
done

read -r -a ORDER <<<"$TARGETS"
for round in $(seq "$ROUNDS"); do
    for target in "${ORDER[@]}"; do
        log "$target: throughput, $CONNECTIONS connections, ${DURATION}s (round $round of $ROUNDS)"
        cpu_sample "$OUT/$target-r$round-throughput-cpu.json" "$(python3 -c "print($WARMUP + 0.5)")" \
            "$(python3 -c "print(max(0.5, $DURATION - 1))")" "${PID_OF[$target]}"
        loadgen "$target-r$round" throughput --url "${URL_OF[$target]}" \
            --connections "$CONNECTIONS" --duration-secs "$DURATION" --warmup-secs "$WARMUP"
        wait "$SAMPLER" || true
    done
    # The next round in the other order.
    reversed=()
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do reversed+=("${ORDER[i]}"); done
    ORDER=("${reversed[@]}")
done

for target in $TARGETS; do
    URL=${URL_OF[$target]}
    log "$target: latency at $RATE req/s, ${DURATION}s"
    loadgen "$target" latency --url "$URL" --rate "$RATE" \
        --duration-secs "$DURATION" --warmup-secs "$WARMUP"
    log "$target: stream TTFB, $TTFB_REQUESTS requests at concurrency $TTFB_CONCURRENCY"
    loadgen "$target" ttfb --url "$URL" --requests "$TTFB_REQUESTS" \
        --concurrency "$TTFB_CONCURRENCY" --warmup-secs "$WARMUP"
done

# Each target's median round (by requests per second) stands for its throughput run in
# the table; the target's verdict is the median of the rounds' ratios (below).
python3 - "$OUT" "$ROUNDS" $TARGETS <<'PY'
import json, os, shutil, sys

out, rounds, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for t in targets:
    runs = []
    for r in range(1, rounds + 1):
        try:
            runs.append((json.load(open(os.path.join(out, f"{t}-r{r}-throughput.json")))["rps"], r))
        except (FileNotFoundError, ValueError, KeyError):
            pass
    if not runs:
        continue
    runs.sort()
    r = runs[(len(runs) - 1) // 2][1]
    shutil.copy(os.path.join(out, f"{t}-r{r}-throughput.json"), os.path.join(out, f"{t}-throughput.json"))
    cpu = os.path.join(out, f"{t}-r{r}-throughput-cpu.json")
    if os.path.exists(cpu):
        shutil.copy(cpu, os.path.join(out, f"{t}-throughput-cpu.json"))
PY

# ----- report -----
python3 - "$OUT" $TARGETS >"$OUT/summary.md" <<'PY'
import json, os, sys

out, targets = sys.argv[1], sys.argv[2:]
meta = json.load(open(os.path.join(out, "meta.json")))
names = {"raw": "raw proxy", "gateway": "gateway", "direct": "mock direct"}


def load(target, mode):
    try:
        return json.load(open(os.path.join(out, f"{target}-{mode}.json")))
    except FileNotFoundError:
        return None


res = {t: {m: load(t, m) for m in ("throughput", "latency", "ttfb")} for t in targets}


def get(t, mode, *path):
    v = res.get(t, {}).get(mode)
    for p in path:
        if v is None:
            return None
        v = v.get(p)
    return v


rows = [
    (f"throughput, {meta['connections']} conns (req/s)", ("throughput", "rps"), "ratio"),
    (f"latency p50 @ {meta['rate']:g} req/s (µs)", ("latency", "latency_us", "p50"), "added"),
    (f"latency p90 @ {meta['rate']:g} req/s (µs)", ("latency", "latency_us", "p90"), "added"),
    (f"latency p99 @ {meta['rate']:g} req/s (µs)", ("latency", "latency_us", "p99"), "added"),
    ("stream TTFB p50 (µs)", ("ttfb", "ttfb_us", "p50"), "added"),
    ("stream TTFB p99 (µs)", ("ttfb", "ttfb_us", "p99"), "added"),
    ("stream end p50 (µs)", ("ttfb", "total_us", "p50"), "added"),
]


def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)


def fmt1(v):
    return "n/a" if v is None else f"{v:.1f}"


cols = [t for t in ("raw", "gateway", "direct") if t in targets]
compare = "raw" in targets and "gateway" in targets
head = [names[c] for c in cols] + (["gateway vs raw"] if compare else [])
print(f"End-to-end bench {meta['date']} (git {meta['git']}, {meta['cpu_model']}, "
      f"{'pinned' if meta['pinned'] else 'UNPINNED'}, {meta['duration_secs']}s runs, "
      f"throughput: median of {meta.get('rounds', 1)} interleaved rounds)\n")
print("| metric | " + " | ".join(head) + " |")
print("|---|" + "---:|" * len(head))
for label, path, kind in rows:
    cells = [fmt(get(c, *path)) for c in cols]
    if compare:
        raw, gw = get("raw", *path), get("gateway", *path)
        if raw is None or gw is None or raw == 0:
            cells.append("n/a")
        elif kind == "ratio":
            cells.append(f"{gw / raw:.2f}×")
        else:
            cells.append(f"{gw - raw:+,.0f} µs ({gw / raw:.2f}×)")
    print(f"| {label} | " + " | ".join(cells) + " |")

def cpu(t):
    try:
        c = json.load(open(os.path.join(out, f"{t}-throughput-cpu.json")))["cores"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    if meta["pinned"]:
        return c.get(meta["target_cpu"]), c.get(meta["client_cpu"])
    return round(sum(c.values()) / max(1, len(c))), None


def fmt_cpu(t):
    c = cpu(t)
    if c is None:
        return "n/a"
    return f"{c[0]}% / {c[1]}%" if c[1] is not None else f"{c[0]}% (all cores)"


def cpu_per_req(t):
    try:
        c = json.load(open(os.path.join(out, f"{t}-throughput-cpu.json")))
        return c["proxy_cpu_secs"] * 1e6 / (get(t, "throughput", "rps") * c["secs"])
    except (FileNotFoundError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


cells = [fmt1(cpu_per_req(c)) for c in cols]
if compare:
    r, g = cpu_per_req("raw"), cpu_per_req("gateway")
    cells.append(f"{g - r:+.1f} µs ({g / r:.2f}×)" if r and g else "n/a")
print("| proxy CPU per request, throughput run (µs) | " + " | ".join(cells) + " |")
print("| CPU busy in throughput run: proxy / client core | " + " | ".join(fmt_cpu(c) for c in cols) + (" | |" if compare else " |"))
errs = [str(sum((get(c, m, "errors") or 0) for m in ("throughput", "latency", "ttfb"))) for c in cols]
print("| errors, all runs | " + " | ".join(errs) + (" | |" if compare else " |"))

notes = []
if compare:
    raw_rps, gw_rps = get("raw", "throughput", "rps"), get("gateway", "throughput", "rps")
    raw_t, gw_t = get("raw", "ttfb", "ttfb_us", "p50"), get("gateway", "ttfb", "ttfb_us", "p50")
    ratios = []
    for i in range(1, meta.get("rounds", 1) + 1):
        try:
            a = json.load(open(os.path.join(out, f"raw-r{i}-throughput.json")))["rps"]
            b = json.load(open(os.path.join(out, f"gateway-r{i}-throughput.json")))["rps"]
            ratios.append(b / a)
        except (FileNotFoundError, ValueError, KeyError, ZeroDivisionError):
            pass
    if ratios:
        r = sorted(ratios)[(len(ratios) - 1) // 2] if len(ratios) % 2 else sum(sorted(ratios)[len(ratios) // 2 - 1:len(ratios) // 2 + 1]) / 2
        each = ", ".join(f"{x:.2f}×" for x in ratios)
        notes.append(f"- target throughput ≥ 0.90× raw proxy: {'PASS' if r >= 0.9 else 'FAIL'} "
                     f"(median of {len(ratios)} rounds: {r:.2f}×; rounds {each})")
    elif raw_rps and gw_rps is not None:
        r = gw_rps / raw_rps
        notes.append(f"- target throughput ≥ 0.90× raw proxy: {'PASS' if r >= 0.9 else 'FAIL'} ({r:.2f}×)")
    if raw_t is not None and gw_t is not None:
        d = gw_t - raw_t
        notes.append(f"- target stream TTFB p50 within 100 µs of raw proxy: {'PASS' if d <= 100 else 'FAIL'} ({d:+,.0f} µs)")
raw_cpu = cpu("raw") if compare else None
if raw_cpu and raw_cpu[1] is not None and raw_cpu[1] >= 95 and raw_cpu[0] < 95:
    notes.append(f"- raw proxy throughput was capped by the client core ({raw_cpu[1]}% busy, proxy core {raw_cpu[0]}%): "
                 "the throughput ratio flatters the gateway")
for c in cols:
    for m in ("throughput", "latency", "ttfb"):
        d = res[c][m]
        if d is None:
            continue
        if d["errors"]:
            notes.append(f"- {names[c]} {m}: {d['errors']} errors {d['error_kinds']}")
        if d.get("content_encoded"):
            notes.append(f"- {names[c]} {m}: {d['content_encoded']} responses were content-encoded")
    lag = get(c, "latency", "send_lag_us", "p99")
    if lag is not None and lag > 50:
        notes.append(f"- {names[c]} latency: loadgen sent late (p99 {lag} µs behind schedule): the client core was busy (saturated, or shared with other work)")
    ach = get(c, "latency", "achieved_rate")
    if ach is not None and ach < 0.98 * meta["rate"]:
        notes.append(f"- {names[c]} latency: achieved {ach:g} req/s of {meta['rate']:g}")
if notes:
    print()
    print("\n".join(notes))
PY

cat "$OUT/summary.md"
log "results in ${OUT#"$ROOT"/}"
