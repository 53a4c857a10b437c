#!/usr/bin/env bash
# Two liveclass nodes on one PostgreSQL database and Redis, driven by two lc-load shards (`multinode`):
# ROOMS x 30 members on random nodes, then ISO rooms with every member on node 0 (node 1's CPU for rooms it
# has no member in, against its idle baseline). Fresh nodes, database and Redis keys for every run; raw JSON in
# loadtests/results/multinode-<timestamp>/, one summary line per run and phase on stdout.
#
#   loadtests/bench-multinode.sh                  # RUNS=3, ROOMS=1000, ISO=100, RATE=1000 msgs/s
#
# Env: RUNS (3), ROOMS (1000), ISO (100), RATE (1000 msgs/s in total), DUR (5 s per phase), PG_URL
# (postgres://postgres@127.0.0.1:5432), REDIS_URL (redis://127.0.0.1:6379; FLUSHALL'd per run: use a scratch
# Redis), PORT0 (18101), SKIP_BUILD, BENCH_MAX_SECS (1800). Needs 33,000 connections: two generator processes
# with four loopback source addresses each, under the 20,000-file limit per process.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtests/lib.sh
RUNS=${RUNS:-3}; ROOMS=${ROOMS:-1000}; ISO=${ISO:-100}; RATE=${RATE:-1000}; DUR=${DUR:-5}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PORT0=${PORT0:-18101}; PORT1=$((PORT0 + 1))
BENCH_MAX_SECS=${BENCH_MAX_SECS:-1800}
export LIVECLASS_JWT_SECRET=${LIVECLASS_JWT_SECRET:-bench-secret-0123456789abcdef0123456789abcdef}
DB=lc_multinode_bench
OUT=loadtests/results/multinode-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p orchestrator -p loadtests
fi
NODES=()
cleanup() {
  stop_watchdog
  for p in "${NODES[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${NODES[@]}" 2>/dev/null || true
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
watchdog "$BENCH_MAX_SECS" "bench-multinode: BENCH_MAX_SECS reached"

require_free_port "$PORT0" "$PORT1"
for r in $(seq "$RUNS"); do
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB"
  redis-cli -u "$REDIS_URL" FLUSHALL >/dev/null
  NODES=()
  for port in "$PORT0" "$PORT1"; do
    DATABASE_URL="$PG_URL/$DB" REDIS_URL="$REDIS_URL" LIVECLASS_LOG_FILTER=warn LIVECLASS_RTC_UDP_PORT=0 \
      LIVECLASS_EMBEDDED_SFU=false target/release/liveclass serve --addr "127.0.0.1:$port" >"$OUT/node-$port-run$r.log" 2>&1 &
    NODES+=($!)
    wait_port "$port" "${NODES[-1]}"   # the first node runs the migrations before the second starts
  done
  at=$(( $(date +%s%3N) + 25000 ))
  shards=()
  for s in 0 1; do
    target/release/lc-load multinode --url "ws://127.0.0.1:$PORT0,ws://127.0.0.1:$PORT1" \
      --server-pid "${NODES[0]},${NODES[1]}" --rooms "$ROOMS" --room-size 30 --iso-rooms "$ISO" --rate "$RATE" \
      --duration "$DUR" --concurrency 500 --shard "$s/2" --start-at "$at" --max-secs 180 \
      --source-ips "127.0.0.$((2 + 4 * s)),127.0.0.$((3 + 4 * s)),127.0.0.$((4 + 4 * s)),127.0.0.$((5 + 4 * s))" \
      >"$OUT/run$r-shard$s.json" 2>"$OUT/run$r-shard$s.err" &
    shards+=($!)
  done
  wait "${shards[@]}"
  target/release/lc-load merge "$OUT/run$r-shard0.json" "$OUT/run$r-shard1.json" >"$OUT/run$r.json"
  python3 - "$OUT/run$r.json" "$r" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["phases"]:
    cross, local = p.get("cross_node_latency", {}), p.get("local_latency", {})
    print(f"run {sys.argv[2]} {p['phase']:<10} delivered/s {p['delivered_per_s']:>8} lost {p['lost']:>6} "
          f"gaps {p.get('gaps', 0)} cross p50/p99 {cross.get('p50_ms', '-')}/{cross.get('p99_ms', '-')} ms "
          f"local p50/p99 {local.get('p50_ms', '-')}/{local.get('p99_ms', '-')} ms node CPU-s {p['node_cpu_s']}")
PY
  kill "${NODES[@]}"; wait "${NODES[@]}" 2>/dev/null || true
  NODES=()
  sleep 5
done
echo "raw results in $OUT"
