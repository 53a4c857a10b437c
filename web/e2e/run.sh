#!/usr/bin/env bash
# The browser end-to-end tests: web/e2e/lesson.test.mjs (two people in a live meeting, at most 120 s) and
# web/e2e/people.test.mjs (the students', parents', tutors' and staff's pages, at most 180 s). Installs the
# page's npm packages, builds the page, makes sure Debian's chromium is there, builds the server, then runs
# the tests one after the other.
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

cd web
step "the end-to-end test: a live meeting"
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/lesson.test.mjs
step "the end-to-end test: the people's pages"
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/people.test.mjs
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/staff.test.mjs
