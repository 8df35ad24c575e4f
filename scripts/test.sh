#!/usr/bin/env bash
# Runs Rampart's whole test suite on a fresh Debian 12 machine (as root, or with sudo).
# Installs what the tests drive: curl (HTTP/1.1 and HTTP/2 client), wrk and h2load (load during
# reload tests), python3 (the WAF corpus runner), a C++ compiler (libFuzzer, for the brief
# fuzz run at the end; cargo-fuzz itself is installed from crates.io by scripts/fuzz.sh), and
# dnsmasq (a real DNS server for the upstream re-resolution test; `dnsmasq-base` is the binary
# without the system service, so nothing starts listening on port 53).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for c in curl wrk h2load python3 c++ dnsmasq; do
  command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || need+=("$c")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  pkgs=()
  for c in "${need[@]}"; do
    case "$c" in
      h2load) pkgs+=(nghttp2-client) ;;
      c++) pkgs+=(g++) ;;
      dnsmasq) pkgs+=(dnsmasq-base) ;;
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
# A brief fuzz run of every target (config, the HTTP/1 server + pipeline, WAF) on the stable toolchain (cargo-fuzz with
# RUSTC_BOOTSTRAP=1 and AddressSanitizer; scripts/fuzz.sh): any crash fails the suite.
# RAMPART_FUZZ_SECONDS per target (default 10, 0 = skip). From scratch (cargo-fuzz install and
# the fuzz build, ASan) it took 8 min with a one-job build on a shared machine (docs/waf.md).
fuzz_secs="${RAMPART_FUZZ_SECONDS:-10}"
if [ "$fuzz_secs" != 0 ]; then
  ./scripts/fuzz.sh "$fuzz_secs" config_parse request_head upstream_response waf_seclang waf_transforms \
    waf_libinjection waf_body_urlencoded waf_body_multipart waf_body_json waf_body_xml
else
  echo "RAMPART_FUZZ_SECONDS=0: skipping the fuzz run" >&2
fi
