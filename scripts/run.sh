#!/usr/bin/env bash
# Sets up what is missing, builds jobdeck in release mode and serves it on
# http://127.0.0.1:3000 with its SQLite database under data/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jobdeck/target}"
# The release build without cargo-leptos, whose own install takes longer than the build.
scripts/build.sh
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-target/site}"
export LEPTOS_SITE_ADDR="${LEPTOS_SITE_ADDR:-127.0.0.1:3000}"
export LEPTOS_ENV="${LEPTOS_ENV:-PROD}"
echo "jobdeck: open http://$LEPTOS_SITE_ADDR"
exec "$CARGO_TARGET_DIR/release/jobdeck"
