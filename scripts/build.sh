#!/usr/bin/env bash
# Builds jobdeck for release without cargo-leptos: the browser's WebAssembly through
# wasm-bindgen and wasm-opt, the site under target/site with content-hashed file names
# and brotli/gzip copies, and the server binary with the hash list beside it. The same
# steps and settings as `cargo leptos build --release --precompress`, so either tool
# reuses the other's build, with one pass more in wasm-opt (below); cargo-leptos stays
# the tool for `watch` and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jobdeck/target}"
NAME=jobdeck
SITE=target/site
PKG="$SITE/pkg"

# What cargo-leptos gives both builds; leptos reads some of it while compiling.
export LEPTOS_OUTPUT_NAME=$NAME LEPTOS_SITE_ROOT=$SITE LEPTOS_SITE_PKG_DIR=pkg
export LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_RELOAD_PORT=3001 LEPTOS_LIB_DIR=. LEPTOS_BIN_DIR=.
export LEPTOS_JS_MINIFY=true LEPTOS_HASH_FILES=true LEPTOS_HASH_FILE_NAME=hash.txt

echo "build: the front end (wasm32, size-optimised)"
cargo build --package=$NAME --lib --target-dir="$CARGO_TARGET_DIR/front" --target=wasm32-unknown-unknown \
  --no-default-features --features=hydrate --profile=wasm-release
rm -rf "$SITE"
mkdir -p "$PKG"
wasm-bindgen --target=web --no-typescript --out-name=$NAME --out-dir="$PKG" \
  "$CARGO_TARGET_DIR/front/wasm32-unknown-unknown/wasm-release/$NAME.wasm"
# Merging functions that differ only in constants, before -Oz: about 10 KB less after
# gzip. cargo-leptos cannot be told this: it passes its wasm-opt flags unordered.
wasm-opt --merge-similar-functions -Oz --enable-bulk-memory --enable-nontrapping-float-to-int "$PKG/${NAME}_bg.wasm" -o "$PKG/$NAME.wasm"
rm "$PKG/${NAME}_bg.wasm"
cp style/main.css "$PKG/$NAME.css"
cp -R public/. "$SITE/"

echo "build: the server"
cargo build --package=$NAME --bin=$NAME --no-default-features --features=ssr --release

# Content-hashed names, listed where leptos looks for them (beside the binary).
HASHES=""
for ext in js wasm css; do
  hash="$(sha256sum "$PKG/$NAME.$ext" | cut -c1-20)"
  mv "$PKG/$NAME.$ext" "$PKG/$NAME.$hash.$ext"
  HASHES+="$ext: $hash"$'\n'
done
printf '%s' "$HASHES" >"$CARGO_TARGET_DIR/release/hash.txt"
"$CARGO_TARGET_DIR/release/$NAME" precompress "$SITE"
echo "build: done ($SITE, $CARGO_TARGET_DIR/release/$NAME)"
