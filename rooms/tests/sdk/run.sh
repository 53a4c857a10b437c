#!/usr/bin/env bash
# The official LiveKit Python SDK against liveclass's embedded SFU: builds and starts `liveclass serve` on a
# free port with a random LiveKit key pair (and no LIVEKIT_URL, so the embedded SFU is the media backend),
# runs sfu_test.py against it, always stops the server, and prints the server's and the SDK's log tails on
# failure. Usage: bash rooms/tests/sdk/run.sh   (from anywhere; see README.md beside it for the knobs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q -r "$here/requirements.txt"
python3 -c 'import os, livekit.rtc._ffi_client as f; f.FfiClient.instance; os._exit(0)' \
  || { echo "the livekit package's native library (liblivekit_ffi) does not load" >&2; exit 1; }

[ "${SKIP_BUILD:-}" = 1 ] || cargo build -q -p orchestrator

work=$(mktemp -d "${TMPDIR:-/tmp}/liveclass-sdk.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
rand() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
api_key="API$(rand 6)"
api_secret="$(rand 24)"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap stop_server EXIT

# RUST_LOG is read by both the server (tracing EnvFilter) and the SDK's FFI library: each gets its own.
env -u LIVEKIT_URL -u RUST_LOG \
  RUST_LOG="${SFU_SERVER_LOG:-info,sqlx=warn,rooms=debug}" \
  LIVECLASS_JWT_SECRET="sdk-test-$(rand 24)" \
  DATABASE_URL="sqlite://$work/sdk.db" \
  LIVEKIT_API_KEY="$api_key" LIVEKIT_API_SECRET="$api_secret" \
  LIVECLASS_RTC_UDP_PORT="${LIVECLASS_RTC_UDP_PORT:-0}" \
  LIVECLASS_RTC_NODE_IP="${LIVECLASS_RTC_NODE_IP:-127.0.0.1}" \
  target/debug/liveclass serve --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!

show_logs() {
  echo "---- server log (last ${1:-120} lines of $work/server.log, backtrace frames left out) ----"
  grep -vE '^ +([0-9]+: |at )' "$work/server.log" | tail -n "${1:-120}" || true
  if [ -s "$work/sdk.log" ]; then
    echo "---- SDK warnings/errors ($work/sdk.log) ----"
    grep -E ' (WARNING|ERROR|CRITICAL) ' "$work/sdk.log" | tail -n 60 || true
    echo "---- SDK log tail ----"
    tail -n 60 "$work/sdk.log" || true
  fi
}

ready=""
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "liveclass serve exited during start-up" >&2
    show_logs 60
    exit 1
  fi
  if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "liveclass serve not ready on 127.0.0.1:$port after 30 s" >&2
  show_logs 60
  exit 1
fi
echo "liveclass serve ready on 127.0.0.1:$port (logs in $work)"

rc=0
env -u RUST_LOG \
  RUST_LOG="${SDK_RUST_LOG:-info,livekit=debug,livekit_api=debug,livekit_ffi=debug}" \
  LIVEKIT_RTC_DEBUG="${LIVEKIT_RTC_DEBUG:-1}" \
  LIVEKIT_API_KEY="$api_key" LIVEKIT_API_SECRET="$api_secret" \
  timeout -k 5 110 python3 "$here/sfu_test.py" --url "ws://127.0.0.1:$port" --sdk-log "$work/sdk.log" ${SFU_TEST_ARGS:-} || rc=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "liveclass serve died during the test" >&2
  rc=${rc/#0/1}
fi
if [ "$rc" != 0 ]; then
  echo "LiveKit SDK test FAILED (exit $rc)" >&2
  show_logs 120
fi
stop_server
exit "$rc"
