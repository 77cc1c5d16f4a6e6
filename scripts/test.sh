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
# The PostgreSQL tests (tests/postgres.rs) run when a server answers and pass with a
# "skipped" line each when none does; say which before they run.
PG_URL="${JOBDECK_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
read -r PG_HOST PG_PORT <<<"$(sed -E 's#^postgres(ql)?://([^@/]*@)?([^/:?]+)(:([0-9]+))?.*#\3 \5#' <<<"$PG_URL")"
if timeout 3 bash -c "exec 3<>/dev/tcp/$PG_HOST/${PG_PORT:-5432}" 2>/dev/null; then
  echo "== PostgreSQL tests: running against $PG_URL"
else
  echo "== PostgreSQL tests: skipped, no server at $PG_URL (set JOBDECK_TEST_DATABASE_URL to run them)"
fi
echo "== cargo test --features ssr"
cargo test --features ssr

echo "== end-to-end (cargo leptos end-to-end, Debian chromium)"
E2E_DIR="$(mktemp -d)"
trap 'rm -rf "$E2E_DIR"' EXIT
export JOBDECK_DB="$E2E_DIR/e2e.sqlite3"
export JOBDECK_ALLOW_PRIVATE_TARGETS=1
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
