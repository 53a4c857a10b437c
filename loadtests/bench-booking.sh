#!/usr/bin/env bash
# Booking benchmark: `lc-load booking` against a fresh `liveclass serve` on SQLite and on PostgreSQL, RUNS
# runs each (interleaved, a fresh server and database every run), raw results and medians into
# loadtests/results/booking-<timestamp>.json, a table on stdout. Loopback only; stops what it started.
#
#   loadtests/bench-booking.sh
#   RUNS=3 SKIP_BUILD=1 loadtests/bench-booking.sh
#   BACKENDS=sqlite SECS=5 loadtests/bench-booking.sh
#
# Env: RUNS (3), BACKENDS ("sqlite postgres"), TUTORS (50), STUDENTS (200), CONCURRENCY (32), SECS (10),
# CONTENDERS (500), PG_URL (postgres://postgres@127.0.0.1:5432; a database lc_booking_<stamp>_<n> is created
# with psql and dropped after each run), SKIP_BUILD (unset), BENCH_MAX_SECS (1200).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtests/lib.sh

RUNS=${RUNS:-3}
BACKENDS=${BACKENDS:-"sqlite postgres"}
TUTORS=${TUTORS:-50}
STUDENTS=${STUDENTS:-200}
CONCURRENCY=${CONCURRENCY:-32}
SECS=${SECS:-10}
CONTENDERS=${CONTENDERS:-500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
BENCH_MAX_SECS=${BENCH_MAX_SECS:-1200}
# The generator mints tokens with the server's secret (no logins).
export LIVECLASS_JWT_SECRET=${LIVECLASS_JWT_SECRET:-bench-secret-0123456789abcdef0123456789abcdef}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=loadtests/results
RAW=$OUT/booking-$STAMP
mkdir -p "$RAW"
TMP=$(mktemp -d)
PIDS=()
SERVER=""
DB=""
cleanup() {
  stop_watchdog
  [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  [[ -n "$SERVER" ]] && kill -9 "$SERVER" 2>/dev/null || true
  [[ -n "$DB" ]] && psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
watchdog "$BENCH_MAX_SECS" "bench-booking: BENCH_MAX_SECS reached"

if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p orchestrator -p loadtests
fi
LOAD=target/release/lc-load

run() { # backend n
  local b=$1 n=$2 url port f="$RAW/$1-$2.json"
  case $b in
    sqlite) url="sqlite://$TMP/booking-$n.db?mode=rwc" ;;
    postgres)
      DB="lc_booking_${STAMP,,}_$n"
      psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" >/dev/null
      url="$PG_URL/$DB" ;;
    *) echo "unknown backend $b" >&2; return 1 ;;
  esac
  port=$(free_port)
  DATABASE_URL="$url" LIVECLASS_LOG_FILTER=warn LIVECLASS_ALLOW_TENANT_SIGNUP=true \
    LIVECLASS_RTC_UDP_PORT=0 target/release/liveclass serve --addr "127.0.0.1:$port" >"$RAW/$b-$n.server.log" 2>&1 &
  SERVER=$!
  wait_port "$port" "$SERVER"
  echo "== $b run $n (port $port)" >&2
  local rc=0
  "$LOAD" booking --url "http://127.0.0.1:$port" --backend "$b" --server-pid "$SERVER" --tutors "$TUTORS" \
    --students "$STUDENTS" --concurrency "$CONCURRENCY" --secs "$SECS" --contenders "$CONTENDERS" --max-secs 300 \
    >"$f" 2>>"$RAW/generator.log" || rc=$?
  [[ $rc -eq 0 ]] || echo "   lc-load exited $rc (see $f and $RAW/generator.log)" >&2
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
  if [[ $b == postgres ]]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    DB=""
  fi
  sleep 1
}

for ((n = 1; n <= RUNS; n++)); do
  for b in $BACKENDS; do
    run "$b" "$n"
  done
done

python3 - "$RAW" "$OUT/booking-$STAMP.json" "$BACKENDS" <<'EOF'
import glob, json, os, statistics, sys
raw, out, backends = sys.argv[1], sys.argv[2], sys.argv[3].split()
med = lambda xs: statistics.median(xs) if xs else None
summary, failed = {}, []
for b in backends:
    docs = []
    for f in sorted(glob.glob(os.path.join(raw, f"{b}-*.json"))):
        try:
            docs.append(json.load(open(f)))
        except Exception:
            failed.append(f"{f}: no JSON")
    for d in docs:
        if not d.get("ok"):
            failed.append(f"{b}: ok=false (errors {d['throughput']['errors']}/{d['contention']['errors']}, winners {d['contention']['winners']})")
    if not docs:
        continue
    tp = [d["throughput"] for d in docs]
    ct = [d["contention"] for d in docs]
    summary[b] = {
        "runs": len(docs),
        "holds_per_s": med([t["holds_per_s"] for t in tp]),
        "attempts_per_s": med([t["attempts_per_s"] for t in tp]),
        "conflict_share": med([t["conflicts"] / t["attempts"] if t["attempts"] else 0 for t in tp]),
        **{k: med([t["latency"][k] for t in tp]) for k in ("p50_ms", "p99_ms", "p999_ms")},
        "hold_p99_ms": med([t["hold_latency"]["p99_ms"] for t in tp]),
        "server_cpu_s": med([t["server_cpu_s"] for t in tp if t.get("server_cpu_s") is not None]),
        "errors_total": sum(t["errors"] for t in tp) + sum(c["errors"] for c in ct),
        "contention_winners": [c["winners"] for c in ct],
        "contention_verified": all(c["verified"] for c in ct),
        "contention_wall_ms": med([c["wall_ms"] for c in ct]),
        "contention_p99_ms": med([c["latency"]["p99_ms"] for c in ct]),
        "holds_per_s_runs": [t["holds_per_s"] for t in tp],
        "p99_ms_runs": [t["latency"]["p99_ms"] for t in tp],
        "contention_wall_ms_runs": [c["wall_ms"] for c in ct],
    }
json.dump({"stamp": os.path.basename(raw), "raw_dir": raw, "summary": summary, "failed": failed}, open(out, "w"), indent=2)
g = lambda b, k: "-" if summary.get(b, {}).get(k) is None else summary[b][k]
rows = [("metric", *backends)] + [(label, *(g(b, k) for b in backends)) for label, k in [
    ("holds/s (201s per second)", "holds_per_s"), ("attempts/s", "attempts_per_s"),
    ("conflict share (409s / attempts)", "conflict_share"),
    ("POST /bookings p50 ms", "p50_ms"), ("POST /bookings p99 ms", "p99_ms"), ("POST /bookings p99.9 ms", "p999_ms"),
    ("server CPU-s (throughput phase)", "server_cpu_s"), ("errors (all runs)", "errors_total"),
    ("contention winners per run", "contention_winners"), ("contention verified", "contention_verified"),
    ("contention wall ms", "contention_wall_ms")]]
for r in rows:
    print(f"{r[0]:<36}" + "".join(f"{str(x):>20}" for x in r[1:]))
print(f"\nwrote {out}")
for f in failed:
    print("FAILED:", f)
sys.exit(1 if failed else 0)
EOF
