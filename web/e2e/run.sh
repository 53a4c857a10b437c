#!/usr/bin/env bash
# The end-to-end tests: web/e2e/contract.test.mjs (every request of the app is in the server's OpenAPI
# document; no browser, seconds), then in headless Chromium lesson.test.mjs (two people in a live meeting, at
# most 120 s), people.test.mjs (the students', parents', tutors' and staff's pages, at most 180 s),
# staff.test.mjs (staff run a class, a tutor publishes availability, at most 150 s) and consent-mail.test.mjs
# (a parent consents through the link in a mail sent through a real SMTP server, then the minor joins a
# meeting, at most 120 s). Installs the page's npm packages, builds the page, makes sure Debian's chromium and
# Python's aiosmtpd are there, builds the server, then runs the tests one after the other.
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

# The SMTP server of the consent-mail test (orchestrator/tests/api/smtp_sink.py) runs on aiosmtpd.
python3 -c 'import aiosmtpd' 2>/dev/null || { step "installing aiosmtpd (PyPI)"; python3 -m pip install -q aiosmtpd; }
python3 -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)'

step "cargo build -p orchestrator"
cargo build -q -p orchestrator

cd web
step "the contract test: the app uses only documented endpoints"
node --test-reporter=spec e2e/contract.test.mjs
step "the end-to-end test: a live meeting"
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/lesson.test.mjs
step "the end-to-end test: the people's pages"
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/people.test.mjs
step "the end-to-end test: staff and the tutor's availability"
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/staff.test.mjs
step "the end-to-end test: consent by mail, then the minor joins a meeting"
CHROMIUM="$CHROMIUM" node --test-reporter=spec e2e/consent-mail.test.mjs
