#!/usr/bin/env bash
# Side-by-side benchmark: our server and the Socket.IO peer on this machine, same scenarios and parameters,
# RUNS runs each (interleaved), medians into loadtests/results/<timestamp>.json and a table on stdout.
# Stops everything it started. Every generator run is bounded by --max-secs; the whole script by BENCH_MAX_SECS.
#
#   loadtests/bench.sh                       # everything
#   SCENARIOS="fanout latency" RUNS=3 loadtests/bench.sh
#   TARGETS=socketio loadtests/bench.sh      # only the peer
#   SCENARIOS=floor loadtests/bench.sh       # latency at a low fixed rate: what one fan-out costs on this machine
#
# Env: RUNS (3), TARGETS ("ours socketio"), SCENARIOS ("fanout latency idle connect reconnect"; also "floor"),
# FANOUT_CLIENTS (1000), FANOUT_START (100000 delivered/s), FLOOR_RATE (10000 delivered/s: 10 messages/s into the
# room, each fanned out alone, so p99 is the time one message takes to reach 990 of the 1000 sockets), STEP_SECS (5), IDLE_CLIENTS (19000),
# CONNECT_CLIENTS (10000), RECONNECT_CLIENTS (10000), RECONNECT_RATE (2000), PEER_WORKERS (2), REDIS_URL (redis://127.0.0.1:6379),
# OUR_PORT (18080), PEER_PORT (13100), SKIP_BUILD (unset), JOIN_AT_CONNECT (unset: connect joins with a frame
# after the welcome; set: the room is joined as the connection opens, `?join=`, by both targets).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtests/lib.sh

RUNS=${RUNS:-3}
TARGETS=${TARGETS:-"ours socketio"}
SCENARIOS=${SCENARIOS:-"fanout latency idle connect reconnect"}
FANOUT_CLIENTS=${FANOUT_CLIENTS:-1000}
FANOUT_START=${FANOUT_START:-100000}
FLOOR_RATE=${FLOOR_RATE:-10000}
STEP_SECS=${STEP_SECS:-5}
IDLE_CLIENTS=${IDLE_CLIENTS:-19000}
CONNECT_CLIENTS=${CONNECT_CLIENTS:-10000}
RECONNECT_CLIENTS=${RECONNECT_CLIENTS:-10000}
# Total publish rate during the reconnect test (into rooms of 100: x100 deliveries).
RECONNECT_RATE=${RECONNECT_RATE:-2000}
PEER_WORKERS=${PEER_WORKERS:-2}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
OUR_PORT=${OUR_PORT:-18080}
PEER_PORT=${PEER_PORT:-13100}
BENCH_MAX_SECS=${BENCH_MAX_SECS:-3600}
SOURCES=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5
export LIVECLASS_JWT_SECRET=${LIVECLASS_JWT_SECRET:-bench-secret-0123456789abcdef0123456789abcdef}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtests/results
RAW=$OUT/$STAMP
mkdir -p "$RAW"
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  stop_watchdog
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The whole run is bounded.
watchdog "$BENCH_MAX_SECS" "bench: BENCH_MAX_SECS reached"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p loadtests
  [[ " $TARGETS " == *" ours "* ]] && cargo build --release -p orchestrator
  (cd loadtests/peers/socketio && npm ci --no-audit --no-fund --silent)
fi
LOAD=target/release/lc-load

declare -A URL PID
ports=()
[[ " $TARGETS " == *" ours "* ]] && ports+=("$OUR_PORT")
if [[ " $TARGETS " == *" socketio "* ]]; then
  for ((i = 0; i < PEER_WORKERS; i++)); do ports+=($((PEER_PORT + i))); done
fi
require_free_port "${ports[@]}"
# start TARGET: a fresh server (a new database for ours), PID[t] and URL[t] set.
start() {
  case $1 in
    ours)
      rm -f "$TMP"/bench.db*
      DATABASE_URL="sqlite://$TMP/bench.db?mode=rwc" RUST_LOG=warn LIVECLASS_RTC_UDP_PORT=0 target/release/liveclass serve --addr "127.0.0.1:$OUR_PORT" \
        >>"$RAW/ours.log" 2>&1 &
      PID[ours]=$!
      PIDS+=("${PID[ours]}")
      wait_port "$OUR_PORT" "${PID[ours]}"
      URL[ours]="ws://127.0.0.1:$OUR_PORT"
      ;;
    socketio)
      local urls=()
      for ((i = 0; i < PEER_WORKERS; i++)); do urls+=("ws://127.0.0.1:$((PEER_PORT + i))"); done
      (cd loadtests/peers/socketio && exec env PORT="$PEER_PORT" WORKERS="$PEER_WORKERS" REDIS_URL="$REDIS_URL" node server.js) \
        >>"$RAW/socketio.log" 2>&1 &
      PID[socketio]=$!
      PIDS+=("${PID[socketio]}")
      for ((i = 0; i < PEER_WORKERS; i++)); do wait_port $((PEER_PORT + i)) "${PID[socketio]}"; done
      URL[socketio]=$(IFS=,; echo "${urls[*]}")
      ;;
  esac
}

# restart TARGET: stops its server, waits until its ports are free, starts a fresh one. Memory is measured on
# a fresh server: an allocator keeps what earlier scenarios used (after fan-out, idle read 14.5 KB per
# connection instead of 8.9).
restart() {
  local p=${PID[$1]}
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  local ports=("$OUR_PORT")
  [[ $1 == socketio ]] && ports=($(seq "$PEER_PORT" $((PEER_PORT + PEER_WORKERS - 1))))
  for _ in $(seq 100); do require_free_port "${ports[@]}" 2>/dev/null && break; sleep 0.1; done
  start "$1"
}

for t in $TARGETS; do start "$t"; done

run() { # target scenario label run extra-args...
  local t=$1 s=$2 label=$3 n=$4
  shift 4
  local f="$RAW/$t-$label-$n.json"
  echo "== $t $label run $n: $*" >&2
  if "$LOAD" "$s" --target "$t" --url "${URL[$t]}" --server-pid "${PID[$t]}" --source-ips "$SOURCES" "$@" >"$f.tmp" 2>>"$RAW/generator.log"; then
    mv "$f.tmp" "$f"
  else
    echo "   failed (see $RAW/generator.log)" >&2
    rm -f "$f.tmp"
  fi
  sleep 2 # let sockets close between runs
}

median_field() { # files... -> median of .result.target_delivered_per_s of the passing step
  python3 - "$@" <<'EOF'
import json, statistics, sys
vals = [json.load(open(f))["result"]["delivered_per_s"] for f in sys.argv[1:] if json.load(open(f)).get("result")]
print(int(statistics.median(vals)) if vals else 0)
EOF
}

for ((n = 1; n <= RUNS; n++)); do
  for t in $TARGETS; do
    for s in $SCENARIOS; do
      case $s in
        fanout) run "$t" fanout fanout "$n" --clients "$FANOUT_CLIENTS" --rate "$FANOUT_START" --duration "$STEP_SECS" --max-secs 300 ;;
        floor) run "$t" latency floor "$n" --clients "$FANOUT_CLIENTS" --rate "$FLOOR_RATE" --duration 10 --max-secs 120 ;;
        idle)
          restart "$t"
          run "$t" idle idle "$n" --clients "$IDLE_CLIENTS" --duration 5 --concurrency 1000 --max-secs 180
          ;;
        connect) run "$t" connect connect "$n" --clients "$CONNECT_CLIENTS" --concurrency 1000 --max-secs 120 ${JOIN_AT_CONNECT:+--join-at-connect} ;;
        reconnect) run "$t" reconnect reconnect "$n" --clients "$RECONNECT_CLIENTS" --rate "$RECONNECT_RATE" --duration 3 --concurrency 1000 --max-secs 180 ;;
      esac
    done
  done
done
# Latency at 50% and 80% of each target's median maximum (after all fan-out runs).
if [[ " $SCENARIOS " == *" latency "* ]]; then
  for t in $TARGETS; do
    files=("$RAW/$t"-fanout-*.json)
    [[ -e "${files[0]}" ]] || continue
    max=$(median_field "${files[@]}")
    [[ "$max" -gt 0 ]] || continue
    for ((n = 1; n <= RUNS; n++)); do
      for pct in 50 80; do
        run "$t" latency "latency$pct" "$n" --clients "$FANOUT_CLIENTS" --rate $((max * pct / 100)) --duration 10 --max-secs 120
      done
    done
  done
fi

python3 - "$RAW" "$OUT/$STAMP.json" <<'EOF'
import glob, json, os, statistics, sys
raw, out = sys.argv[1], sys.argv[2]
med = lambda xs: statistics.median(xs) if xs else None
def load(pattern):
    docs = []
    for f in sorted(glob.glob(os.path.join(raw, pattern))):
        try:
            docs.append(json.load(open(f)))
        except Exception:
            pass
    return docs
summary = {}
rows = []
for t in ["ours", "socketio"]:
    s = {}
    fan = [d for d in load(f"{t}-fanout-*.json") if d.get("result")]
    if fan:
        s["fanout_max_delivered_per_s"] = med([d["result"]["delivered_per_s"] for d in fan])
        s["fanout_p99_ms_at_max"] = med([d["result"]["latency"]["p99_ms"] for d in fan])
        s["cpu_s_per_million_at_max"] = med([d["result"]["server_cpu_s_per_million"] for d in fan])
        s["fanout_runs"] = [d["result"]["delivered_per_s"] for d in fan]
        s["fanout_ended"] = [d.get("ended", "?") for d in fan]
    for label, key in [("latency50", "latency_at_50pct"), ("latency80", "latency_at_80pct"), ("floor", "latency_floor")]:
        lat = [d for d in load(f"{t}-{label}-*.json") if d.get("result")]
        if lat:
            s[key] = {
                "delivered_per_s": med([d["result"]["delivered_per_s"] for d in lat]),
                **{k: med([d["result"]["latency"][k] for d in lat]) for k in ("p50_ms", "p99_ms", "p999_ms")},
                "cpu_s_per_million": med([d["result"]["server_cpu_s_per_million"] for d in lat]),
            }
    idle = load(f"{t}-idle-*.json")
    if idle:
        s["idle"] = {k: med([d[k] for d in idle]) for k in
                     ("connected", "server_rss_mb", "server_kb_per_conn_total", "server_kb_per_conn_delta", "connect_per_s")}
    con = load(f"{t}-connect-*.json")
    if con:
        s["connect"] = {"connect_per_s": med([d["connect_per_s"] for d in con]),
                        "p99_ms": med([d["latency"]["p99_ms"] for d in con]),
                        "failed": max(d["failed"] for d in con)}
    rec = load(f"{t}-reconnect-*.json")
    if rec:
        s["reconnect"] = {"all_back_secs": med([d["all_back_secs"] for d in rec]),
                          "lost_max": max(d["lost"] for d in rec),
                          "not_recovered_max": max(d["not_recovered"] for d in rec),
                          "came_back_min": min(d["came_back"] for d in rec)}
    if s:
        summary[t] = s
result = {"stamp": os.path.basename(raw), "raw_dir": raw, "summary": summary}
o, p = summary.get("ours", {}), summary.get("socketio", {})
if o.get("fanout_max_delivered_per_s") and p.get("fanout_max_delivered_per_s"):
    result["fanout_ratio_ours_to_peer"] = round(o["fanout_max_delivered_per_s"] / p["fanout_max_delivered_per_s"], 2)
json.dump(result, open(out, "w"), indent=2)
def g(d, *ks):
    for k in ks:
        d = d.get(k) if isinstance(d, dict) else None
    return "-" if d is None else d
lines = [("metric", "ours", "socketio"),
         ("fan-out max delivered/s (p99<=50ms)", g(o, "fanout_max_delivered_per_s"), g(p, "fanout_max_delivered_per_s")),
         ("  p99 ms at max", g(o, "fanout_p99_ms_at_max"), g(p, "fanout_p99_ms_at_max")),
         ("  server CPU-s per million delivered", g(o, "cpu_s_per_million_at_max"), g(p, "cpu_s_per_million_at_max"))]
for label, key in [("@50%", "latency_at_50pct"), ("@80%", "latency_at_80pct"), ("floor", "latency_floor")]:
    for k in ("p50_ms", "p99_ms", "p999_ms"):
        lines.append((f"latency {label} {k}", g(o, key, k), g(p, key, k)))
lines += [("idle KB/conn (total RSS / conns)", g(o, "idle", "server_kb_per_conn_total"), g(p, "idle", "server_kb_per_conn_total")),
          ("idle KB/conn (RSS growth / conns)", g(o, "idle", "server_kb_per_conn_delta"), g(p, "idle", "server_kb_per_conn_delta")),
          ("connect+auth+join per s", g(o, "connect", "connect_per_s"), g(p, "connect", "connect_per_s")),
          ("reconnect: all back (s)", g(o, "reconnect", "all_back_secs"), g(p, "reconnect", "all_back_secs")),
          ("reconnect: lost messages (max)", g(o, "reconnect", "lost_max"), g(p, "reconnect", "lost_max"))]
for a, b, c in lines:
    print(f"{a:<40} {str(b):>14} {str(c):>14}")
print(f"\nwrote {out}")
EOF
