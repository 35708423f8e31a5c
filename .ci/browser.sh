#!/usr/bin/env bash
# Browser tests: the real console (agents', customer's, admin's pages)
# driven in headless Chromium by playwright-core (tests/browser/, Node's
# own test runner). Debian's chromium is the browser (a test tool's own
# browser download needs the internet); the npm packages are pinned in
# tests/browser/package-lock.json. The tests start their own collabd
# nodes from the binary `cargo test` built (COLLABD_BIN), and for the race
# across nodes their own redis-server.
#
# Knobs (environment): COLLABD_BIN (default target/debug/collabd),
# SCREENSHOTS (where the screenshots go, default target/browser/screenshots;
# SCREENSHOTS=docs/screenshots refreshes the README's).
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "== installing nodejs and npm"
  install nodejs npm
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1
echo "node $(node --version)"

BIN=${COLLABD_BIN:-target/debug/collabd}
if [ ! -x "$BIN" ]; then
  cargo build --locked
fi
export COLLABD_BIN="$PWD/$BIN"

rm -f target/browser/measurements.json
cd tests/browser
npm ci --no-audit --no-fund --loglevel=error
node --test --test-concurrency=1 --test-reporter=spec ./*.test.mjs
echo "== browser measurements (target/browser/measurements.json)"
cat ../../target/browser/measurements.json
