#!/usr/bin/env bash
# Sets up what is missing and runs every check: format, lints for both halves, the
# Rust tests, and the Playwright suite in Debian chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jobdeck/target}"

echo "== cargo fmt --check"
cargo fmt --check
echo "== clippy (ssr)"
cargo clippy --features ssr --all-targets -- -D warnings
echo "== clippy (hydrate, wasm32)"
cargo clippy --features hydrate --lib --target wasm32-unknown-unknown -- -D warnings
# The PostgreSQL tests need a server: the one configured, or a throwaway one
# (scripts/pg-for-tests.sh). Each test that finds none records itself here.
WORK_DIR="$(mktemp -d)"
source scripts/pg-for-tests.sh
trap 'pg_stop_throwaway; rm -rf "$WORK_DIR"' EXIT
export JOBDECK_PG_SKIP_LOG="$WORK_DIR/pg-left-out.txt"
: >"$JOBDECK_PG_SKIP_LOG"
pg_left_out() {
  local n
  n="$(sort -u "$JOBDECK_PG_SKIP_LOG" | grep -c . || true)"
  if [[ "$n" == 0 ]]; then
    echo "== PostgreSQL tests: every one ran against a server"
  else
    echo "== PostgreSQL tests: $n left out, no server answered (JOBDECK_REQUIRE_PG=1 makes that an error):"
    sort -u "$JOBDECK_PG_SKIP_LOG" | sed 's/^/   /'
  fi
}
echo "== cargo test --features ssr"
cargo test --features ssr
pg_left_out

echo "== end-to-end (cargo leptos end-to-end, Debian chromium)"
export JOBDECK_DB="$WORK_DIR/e2e.sqlite3"
export JOBDECK_ALLOW_PRIVATE_TARGETS=1
# Every site the browser tests research is one host on 127.0.0.1: the per-host limit
# (SPEC section 12, default 2) would stand between a test and the job's own concurrency.
export JOBDECK_HOST_CONCURRENCY=64
export JOBDECK_PAUSE_POLL_MS=500
export JOBDECK_RETRY_BASE_MS=50
export JOBDECK_E2E_LLM_PORT="${JOBDECK_E2E_LLM_PORT:-3999}"
# The fake LLM endpoint the Playwright run starts (end2end/tests/fixtures/llm.ts).
export JOBDECK_LLM_BASE_URL="http://127.0.0.1:$JOBDECK_E2E_LLM_PORT/v1"
export JOBDECK_LLM_MODEL="fake"
# A second server started with an access token by tests/16-sign-in.spec.ts.
export JOBDECK_E2E_BIN="$CARGO_TARGET_DIR/debug/jobdeck"
export E2E_ARTIFACTS="${E2E_ARTIFACTS:-$PWD/end2end/artifacts}"
cargo leptos end-to-end
pg_left_out
