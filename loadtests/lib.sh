# Shared by the bench scripts, which source it after they cd to the repository root.

# watchdog SECS MESSAGE: sends this script TERM after SECS; sets WATCHDOG, which stop_watchdog ends.
# The sleep is detached from stdout and stderr and is killed with its subshell, so nothing lingers
# holding the caller's pipe open once the script is done.
watchdog() {
  (
    trap 'kill "$w" 2>/dev/null; exit 0' TERM
    sleep "$1" </dev/null >/dev/null 2>&1 &
    w=$!
    wait "$w" && { echo "$2" >&2; kill -TERM $$; }
  ) </dev/null >/dev/null &
  WATCHDOG=$!
}

stop_watchdog() {
  if [[ -n "${WATCHDOG:-}" ]]; then kill "$WATCHDOG" 2>/dev/null || true; fi
}

# wait_port PORT [PID]: waits up to 15 s for a listener on 127.0.0.1:PORT; fails at once if PID exits.
wait_port() {
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [[ -n "${2:-}" ]] && ! kill -0 "$2" 2>/dev/null; then
      echo "the server exited" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

# require_free_port PORT...: fails if something already listens on one of them (a leftover server would be
# measured in place of the one this script starts).
require_free_port() {
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "port $p is already in use: stop what listens there first" >&2
      return 1
    fi
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
