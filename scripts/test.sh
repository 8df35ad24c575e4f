#!/usr/bin/env bash
# Runs Rampart's whole test suite on a fresh Debian 12 machine (as root, or with sudo).
# Installs what the tests drive: curl (HTTP/1.1 and HTTP/2 client), wrk and h2load (load during
# reload tests), python3 (the WAF corpus runner).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for c in curl wrk h2load python3; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  pkgs=()
  for c in "${need[@]}"; do
    case "$c" in
      h2load) pkgs+=(nghttp2-client) ;;
      *) pkgs+=("$c") ;;
    esac
  done
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads="${RAMPART_TEST_THREADS:-4}"
# OWASP CRS's own regression corpus, end to end through the binary (a fixed sample of 1,091 of
# its 4,966 tests: test numbers 1-4 of every rule; the full run is in docs/waf.md). Fails when
# fewer than the recorded number pass.
if [ -d ../shared/waf-corpus ] && [ -d ../shared/crs ]; then
  ./scripts/waf-corpus.sh --bin target/debug/rampart --filter '-[1-4]$' --min-pass "${RAMPART_CORPUS_MIN_PASS:-1086}"
else
  echo "../shared/waf-corpus not found: skipping the end-to-end CRS corpus run" >&2
fi
