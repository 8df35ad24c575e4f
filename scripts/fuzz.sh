#!/usr/bin/env bash
# Runs the fuzz targets briefly (cargo-fuzz needs a nightly toolchain):
#   config_parse  — any text through the config loader: a config or located errors, never a panic
#   request_head  — any bytes as a client connection through hyper and the whole request pipeline
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; run longer by hand)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
for t in config_parse request_head; do
  mkdir -p "fuzz/corpus/$t"
  cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs"
done
