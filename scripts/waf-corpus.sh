#!/usr/bin/env bash
# Replays OWASP CRS's regression corpus (../shared/waf-corpus) end to end through the rampart
# binary: backend.py behind `rampart proxy`, CRS loaded in the order the corpus README gives,
# DetectionOnly, JSON-lines audit log; then run.py judges every test.
#
#   scripts/waf-corpus.sh [--bin PATH] [--filter REGEX] [--report FILE] [--min-pass N]
#
# Exit status: run.py's (0 when the pass count reaches --min-pass, or nothing failed).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/rampart; filter=""; report=""; min_pass=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    --min-pass) min_pass=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
shared=$(cd .. && pwd)/shared
corpus=$shared/waf-corpus
[ -f "$corpus/crs-regression.jsonl" ] || { echo "no $corpus" >&2; exit 2; }
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bport=$(free_port); port=$(free_port)
python3 "$corpus/backend.py" --port "$bport" > "$work/backend.log" 2>&1 &
bpid=$!
"$bin" proxy --listen "127.0.0.1:$port" --to "http://127.0.0.1:$bport" --waf-mode detect \
  --waf-rules "$corpus/modsecurity-test.conf" \
  --waf-rules "$shared/crs/crs-setup.conf.example" \
  --waf-rules "$corpus/crs-test-settings.conf" \
  --waf-rules "$corpus/marker-rule.conf" \
  --waf-rules "$shared/crs/rules/*.conf" \
  --waf-log "$work/audit.log" --waf-log-format modsec > "$work/rampart.log" 2>&1 &
rpid=$!
trap 'kill $rpid $bpid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && (echo > "/dev/tcp/127.0.0.1/$bport") 2>/dev/null && break
  sleep 0.05
done
args=(--target "127.0.0.1:$port" --log "$work/audit.log" -q)
[ -n "$filter" ] && args+=("--filter=$filter")
[ -n "$report" ] && args+=(--report "$report")
if [ -n "$min_pass" ]; then
  total=$(python3 - "$corpus/crs-regression.jsonl" "$filter" <<'PY'
import json, re, sys
rx = re.compile(sys.argv[2]) if sys.argv[2] else None
print(sum(1 for l in open(sys.argv[1]) if not rx or rx.search(json.loads(l)["id"])))
PY
)
  args+=(--min-pass-rate "$(python3 -c "print(($min_pass - 0.5) / $total)")")
fi
python3 "$corpus/run.py" "${args[@]}"
