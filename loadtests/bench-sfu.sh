#!/usr/bin/env bash
# Embedded SFU benchmark: `lc-load sfu` (a classroom: PARTICIPANTS clients in one room, each publishing audio +
# video, one RTP packet per frame, everyone subscribed to everyone) against `liveclass serve` (embedded SFU,
# LiveKit key pair, no LIVEKIT_URL) up a ladder of video rates (packets per second per publisher; audio stays at
# AUDIO_PPS), RUNS runs per step, each on a fresh server, until a step's median loss exceeds LOSS_MAX or the
# time budget is spent. Raw results and a summary (medians per step, the best step at <= LOSS_MAX) go to
# loadtests/results/sfu-<timestamp>.json; a table on stdout. Loopback only; stops what it started.
#
#   loadtests/bench-sfu.sh
#   SKIP_BUILD=1 RUNS=1 STEPS="30 300" DURATION=5 loadtests/bench-sfu.sh
#
# Env: RUNS (3), STEPS ("30 120 300 500 700 900 1100 1300"), PARTICIPANTS (11), DURATION (8, seconds per
# window), AUDIO_PPS (50), AUDIO_BYTES (100), VIDEO_BYTES (900), LOSS_MAX (0.01), SKIP_BUILD (unset),
# BENCH_MAX_SECS (300: no run starts that could end after it; a watchdog stops everything 60 s later).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtests/lib.sh

RUNS=${RUNS:-3}
STEPS=${STEPS:-"30 120 300 500 700 900 1100 1300"}
PARTICIPANTS=${PARTICIPANTS:-11}
DURATION=${DURATION:-8}
AUDIO_PPS=${AUDIO_PPS:-50}
AUDIO_BYTES=${AUDIO_BYTES:-100}
VIDEO_BYTES=${VIDEO_BYTES:-900}
LOSS_MAX=${LOSS_MAX:-0.01}
BENCH_MAX_SECS=${BENCH_MAX_SECS:-300}

if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p orchestrator -p loadtests
fi
LOAD=target/release/lc-load
DEADLINE=$((SECONDS + BENCH_MAX_SECS))

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtests/results
RAW=$OUT/sfu-$STAMP
mkdir -p "$RAW"
TMP=$(mktemp -d)
SERVER=""
WATCHDOG=""
stop_server() {
  if [[ -n "$SERVER" ]]; then
    kill "$SERVER" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
  fi
}
cleanup() {
  stop_watchdog
  stop_server
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
watchdog $((BENCH_MAX_SECS + 60)) "bench-sfu: watchdog: BENCH_MAX_SECS + 60 s reached"
rand() { python3 -c "import secrets; print(secrets.token_hex($1))"; }

export LIVEKIT_API_KEY="API$(rand 6)"
export LIVEKIT_API_SECRET="$(rand 24)"
JWT_SECRET="bench-$(rand 24)"

start_server() { # log file
  PORT=$(free_port)
  rm -f "$TMP"/sfu.db*
  env -u LIVEKIT_URL -u RUST_LOG \
    LIVECLASS_JWT_SECRET="$JWT_SECRET" \
    DATABASE_URL="sqlite://$TMP/sfu.db?mode=rwc" \
    LIVECLASS_LOG_FILTER=warn \
    LIVECLASS_RTC_UDP_PORT=0 \
    LIVECLASS_RTC_NODE_IP=127.0.0.1 \
    target/release/liveclass serve --addr "127.0.0.1:$PORT" >"$1" 2>&1 &
  SERVER=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER" 2>/dev/null || { echo "the server exited (see $1)" >&2; return 1; }
    sleep 0.1
  done
  echo "the server is not ready (see $1)" >&2
  return 1
}

# Median loss of a step's runs (a failed run counts as loss 1).
step_loss() {
  python3 - "$RAW" "$1" <<'EOF'
import glob, json, statistics, sys
raw, v = sys.argv[1], sys.argv[2]
losses = []
for f in sorted(glob.glob(f"{raw}/v{v}-*.json")):
    try:
        losses.append(json.load(open(f))["loss"])
    except Exception:
        losses.append(1.0)
print(statistics.median(losses) if losses else 1.0)
EOF
}

echo "== raw results in $RAW" >&2
for v in $STEPS; do
  for ((n = 1; n <= RUNS; n++)); do
    if ((SECONDS + DURATION + 20 > DEADLINE)); then
      echo "== time budget (BENCH_MAX_SECS=$BENCH_MAX_SECS) spent; stopping the ladder" >&2
      break 2
    fi
    f="$RAW/v$v-$n.json"
    start_server "$RAW/v$v-$n.server.log"
    rc=0
    "$LOAD" sfu --url "ws://127.0.0.1:$PORT" --server-pid "$SERVER" --participants "$PARTICIPANTS" \
      --video-pps "$v" --video-bytes "$VIDEO_BYTES" --audio-pps "$AUDIO_PPS" --audio-bytes "$AUDIO_BYTES" \
      --duration "$DURATION" --max-secs $((DURATION + 50)) >"$f" 2>>"$RAW/generator.log" || rc=$?
    kill -0 "$SERVER" 2>/dev/null || echo "   the server died (see $RAW/v$v-$n.server.log)" >&2
    stop_server
    if [[ $rc -ne 0 ]]; then
      echo "   video $v pps run $n: lc-load exited $rc (see $RAW/generator.log)" >&2
      rm -f "$f"
      touch "$f"
    else
      python3 - "$f" "$n" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"   video {d['rates']['video_pps']:g} pps run {sys.argv[2]}: forwarded {d['forwarded_pps']:.0f}/s, "
      f"loss {d['loss']:.4f}, server {d['server_cpu_cores']} cores ({d['forwarded_pps_per_core']}/s per core), "
      f"RSS {d['server_rss_kb']} KB, client {d['client_cpu_cores']} cores, p99 {d['latency']['p99_ms']} ms",
      file=sys.stderr)
EOF
    fi
  done
  loss=$(step_loss "$v")
  if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$loss" "$LOSS_MAX"; then
    echo "== video $v pps: median loss $loss > $LOSS_MAX; stopping the ladder" >&2
    break
  fi
done

python3 - "$RAW" "$OUT/sfu-$STAMP.json" "$LOSS_MAX" "$STEPS" "$PARTICIPANTS" "$DURATION" <<'EOF'
import glob, json, os, statistics, sys
raw, out, loss_max, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split()
participants, duration = int(sys.argv[5]), float(sys.argv[6])
med = lambda xs: statistics.median(xs) if xs else None
keys = ["forwarded_pps", "loss", "server_cpu_cores", "forwarded_pps_per_core", "server_rss_kb", "server_hwm_kb",
        "client_cpu_cores", "client_datagrams_in_per_s", "sent_pps_per_publisher"]
summary, failed = [], []
for v in steps:
    files = sorted(glob.glob(f"{raw}/v{v}-*.json"))
    if not files:
        continue
    docs = []
    for f in files:
        try:
            docs.append(json.load(open(f)))
        except Exception:
            failed.append(f"{os.path.basename(f)}: no JSON (see generator.log)")
    row = {"video_pps": float(v), "runs": len(docs), "failed_runs": len(files) - len(docs)}
    if docs:
        row["audio_pps"] = docs[0]["rates"]["audio_pps"]
        row["offered_forwarded_pps"] = docs[0]["rates"]["offered_forwarded_pps"]
        for k in keys:
            row[k] = med([d[k] for d in docs if d.get(k) is not None])
        row["latency_p50_ms"] = med([d["latency"]["p50_ms"] for d in docs])
        row["latency_p99_ms"] = med([d["latency"]["p99_ms"] for d in docs])
        row["forwarded_pps_runs"] = [d["forwarded_pps"] for d in docs]
        row["loss_runs"] = [d["loss"] for d in docs]
        row["forwarded_pps_per_core_runs"] = [d["forwarded_pps_per_core"] for d in docs]
        row["server_cpu_cores_runs"] = [d["server_cpu_cores"] for d in docs]
        row["udp_rcvbuf_errors_runs"] = [d["udp_errors_in_window"]["rcvbuf"] for d in docs]
    summary.append(row)
ok = [r for r in summary if r.get("loss") is not None and r["failed_runs"] == 0 and r["loss"] <= loss_max]
best = max(ok, key=lambda r: r["forwarded_pps"]) if ok else None
doc = {"stamp": os.path.basename(raw), "raw_dir": raw, "participants": participants, "duration_s": duration,
       "loss_max": loss_max, "steps": summary, "best": best, "failed": failed}
json.dump(doc, open(out, "w"), indent=2)
cols = [("video pps", "video_pps"), ("forwarded/s", "forwarded_pps"), ("loss", "loss"),
        ("server cores", "server_cpu_cores"), ("fwd/s per core", "forwarded_pps_per_core"),
        ("server RSS KB", "server_rss_kb"), ("client cores", "client_cpu_cores"), ("p99 ms", "latency_p99_ms")]
print("".join(f"{c[0]:>16}" for c in cols))
for r in summary:
    print("".join(f"{str(r.get(k, '-')):>16}" for _, k in cols))
print(f"\nbest step at loss <= {loss_max} (medians of its runs): " +
      (json.dumps({k: best[k] for _, k in cols}) if best else "none"))
print(f"wrote {out}")
for f in failed:
    print("FAILED:", f)
EOF
