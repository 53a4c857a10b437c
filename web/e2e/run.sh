#!/usr/bin/env bash
# The browser end-to-end test (web/e2e/lesson.test.mjs): installs the page's npm packages, builds the page,
# makes sure Debian's chromium is there, builds the server, then runs the test (at most 120 s).
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf -- '--> %s\n' "$*"; }

step "npm ci (web/)"
(cd web && npm ci --no-audit --no-fund --loglevel=error)

step "npm run build (web/dist)"
(cd web && npm run build)

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if ! "$CHROMIUM" --version >/dev/null 2>&1; then
  step "installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null

step "cargo build -p orchestrator"
cargo build -q -p orchestrator

step "the end-to-end test"
cd web
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/lesson.test.mjs
