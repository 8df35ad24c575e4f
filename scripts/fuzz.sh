#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ on the stable toolchain. cargo-fuzz passes nightly-only
# flags (-Zsanitizer=address, sanitizer coverage); RUSTC_BOOTSTRAP=1 makes stable rustc accept
# them. Installs cargo-fuzz from crates.io when it is missing.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  libFuzzer's -max_total_time for each target (default 60; 0 runs nothing)
#   TARGET...           default: every target in fuzz/fuzz_targets
#     config_parse         any text through the config loader: a config or located errors
#     request_head         any bytes as a client connection through the server and pipeline
#     upstream_response    any bytes as an upstream's response to the HTTP/1 client (head + body)
#     waf_seclang          any text through the SecLang parser (regex compilation included)
#     waf_transforms       every transformation plus short chains
#     waf_libinjection     @detectSQLi / @detectXSS (libinjectionrs) on any bytes
#     waf_body_urlencoded, waf_body_multipart, waf_body_json, waf_body_xml   body parsers
# Environment:
#   RAMPART_FUZZ_SANITIZER  address (default) or none
#   RAMPART_FUZZ_TIMEOUT    seconds one input may take before it counts as a crash (default 30)
#
# Exits non-zero when a target crashes (panic, sanitizer report, timeout, out of memory); the
# input is left in fuzz/artifacts/TARGET/, and the command cargo-fuzz prints replays it (from
# fuzz/, with RUSTC_BOOTSTRAP=1). The corpus grows in fuzz/corpus/TARGET/ (not committed) and
# is reused by later runs; config_parse and waf_seclang start from a real config / rule file.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
[ $# -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*)
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
  ;;
esac
if [ "$secs" -eq 0 ]; then
  echo "fuzz.sh: 0 seconds per target, nothing to run" >&2
  exit 0
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || {
    echo "fuzz.sh: no target $t in fuzz/fuzz_targets" >&2
    exit 2
  }
done

export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

# request_head and upstream_response need the server crates (the fuzz crate's default `server` feature); the other
# targets build without them, which takes a fraction of the time.
opts=(-O --debug-assertions --sanitizer "${RAMPART_FUZZ_SANITIZER:-address}")
need_server=0
for t in "${targets[@]}"; do
  case "$t" in request_head | upstream_response) need_server=1 ;; esac
done
[ "$need_server" = 1 ] || opts+=(--no-default-features)

cd fuzz
# One build for all targets (cargo parallelises it); `cargo fuzz run` below finds it fresh.
cargo fuzz build "${opts[@]}"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seeds: real inputs get the parsers past their first lines in a short run.
  case "$t" in
    config_parse) seed=../crates/rampart-config/src/default.toml ;;
    waf_seclang) seed=../crates/rampart-waf/src/builtin.conf ;;
    *) seed= ;;
  esac
  if [ -n "$seed" ] && [ ! -e "corpus/$t/seed-$(basename "$seed")" ]; then
    cp "$seed" "corpus/$t/seed-$(basename "$seed")"
  fi
  echo "fuzz.sh: $t for ${secs}s" >&2
  if ! cargo fuzz run "${opts[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout="${RAMPART_FUZZ_TIMEOUT:-30}" -print_final_stats=1; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crash in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash" >&2
