#!/usr/bin/env bash
# Builds the reference apps of scripts/floor (what Leptos itself costs in the browser)
# the way scripts/build.sh builds jobdeck's front end, into target/floor/<app>/, for the
# bench's front-end figures. Run scripts/setup.sh first. A few minutes cold.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jobdeck/target}"
# The same crate versions as jobdeck's own build.
cp Cargo.lock scripts/floor/Cargo.lock
# What leptos reads while compiling, as in scripts/build.sh.
export LEPTOS_OUTPUT_NAME=floor LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg
export LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_RELOAD_PORT=3001 LEPTOS_LIB_DIR=. LEPTOS_BIN_DIR=.
export LEPTOS_JS_MINIFY=true LEPTOS_HASH_FILES=true LEPTOS_HASH_FILE_NAME=hash.txt
dir="$CARGO_TARGET_DIR/floor"
for app in hello served islands; do
  echo "floor: $app"
  cargo build --manifest-path=scripts/floor/Cargo.toml --lib --target-dir="$dir" --target=wasm32-unknown-unknown \
    --no-default-features --features="$app" --profile=wasm-release
  out="target/floor/$app"
  rm -rf "$out"
  mkdir -p "$out"
  wasm-bindgen --target=web --no-typescript --out-name=floor --out-dir="$out" \
    "$dir/wasm32-unknown-unknown/wasm-release/floor.wasm"
  wasm-opt --merge-similar-functions -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    "$out/floor_bg.wasm" -o "$out/floor.wasm"
  rm "$out/floor_bg.wasm"
done
echo "floor: done (target/floor)"
