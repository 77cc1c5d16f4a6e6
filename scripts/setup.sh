#!/usr/bin/env bash
# Installs what jobdeck's build needs and this machine lacks; quiet about what is there.
#   scripts/setup.sh          release build tools (wasm32 target, wasm-bindgen, wasm-opt)
#   scripts/setup.sh --dev    also cargo-leptos, for `cargo leptos watch`
#   scripts/setup.sh --test   also cargo-leptos, Debian chromium and the end-to-end npm packages
set -euo pipefail
cd "$(dirname "$0")/.."

LOG="${TMPDIR:-/tmp}/jobdeck-setup.log"
: >"$LOG"
step() { # step "what" command...
  local what="$1"; shift
  echo "setup: installing $what (log: $LOG)"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup: installing $what failed; the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "the wasm32 target" rustup target add wasm32-unknown-unknown
fi

MODE="${1:-}"
if [[ "$MODE" == "--dev" || "$MODE" == "--test" ]] && ! cargo leptos --version 2>/dev/null | grep -q '0\.3\.10'; then
  # Without fat LTO and with parallel codegen the install skips its one long
  # single-threaded link; the tool does the same work.
  step "cargo-leptos 0.3.10" env CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install cargo-leptos --version 0.3.10 --locked
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WBG="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WBG\$"; then
  # Not --locked: its lock file names a crate the registry no longer has.
  step "wasm-bindgen-cli $WBG" cargo install wasm-bindgen-cli --version "$WBG" --force
fi

if ! command -v wasm-opt >/dev/null; then
  step "wasm-opt (npm binaryen)" npm install -g binaryen
fi

if [[ "$MODE" == "--test" ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    step "apt package lists" apt-get update
    step "Debian chromium" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  fi
  if [[ ! -d end2end/node_modules/@playwright/test ]] || [[ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]]; then
    step "end-to-end npm packages" npm ci --prefix end2end --no-audit --no-fund
  fi
fi
