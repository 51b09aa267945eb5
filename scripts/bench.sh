#!/usr/bin/env bash
# End-to-end benchmarks of issue 2's figures, printed as lines of "figure: value".
#   scripts/bench.sh [EVENTS]      (default 10,000,000; needs ~20 GB of free disk for 10M)
# 1. generates EVENTS demo events as JSONL (the import format),
# 2. ingests them into a fresh ledger (wall time, events/s, peak RSS),
# 3. runs `report summary` for the month over that ledger 5 times (wall time of each),
# 4. runs the pricing and ledger-append micro-benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}"
cargo build --release -q
BIN="$CARGO_TARGET_DIR/release/tollgate"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tollgate-bench.XXXXXX)}"
echo "work dir: $WORK"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"

start=$(date +%s.%N)
"$BIN" demo --dir "$WORK/gen" --events "$N" --generate-only > /dev/null
end=$(date +%s.%N)
size=$(stat -c %s "$WORK/gen/events.jsonl")
echo "generate: $N events, $((size / 1024 / 1024)) MiB JSONL, $(awk "BEGIN{print $end - $start}") s"
# The generator's file is written back to disk now, not while the import below is timed.
sync

rm -rf "$WORK/ledger"
/usr/bin/time -f "%e %M" -o "$WORK/time.txt" \
  "$BIN" --data-dir "$WORK/ledger" --prices "$WORK/gen/demo-prices.toml" \
  ingest events "$WORK/gen/events.jsonl" --format json > "$WORK/ingest.json"
read -r secs rss_kb < "$WORK/time.txt"
echo "ingest: $N events in $secs s = $(awk "BEGIN{printf \"%d\", $N / $secs}") events/s, peak RSS $((rss_kb / 1024)) MiB"
echo "ingest summary: $(tr -d ' \n' < "$WORK/ingest.json")"
echo "ledger size: $(du -sm "$WORK/ledger" | cut -f1) MiB"

month=$(head -c 400 "$WORK/gen/events.jsonl" | grep -o '"occurred_at":"[0-9-]*' | head -1 | cut -d'"' -f4 | cut -c1-7)
for i in 1 2 3 4 5; do
  s=$(date +%s.%N)
  "$BIN" --data-dir "$WORK/ledger" report summary --period "$month" --format json > "$WORK/summary.json"
  e=$(date +%s.%N)
  echo "report summary ($month, --by team,service,model,provider) run $i: $(awk "BEGIN{print $e - $s}") s"
done
echo "summary total requests: $(grep -A2 '"total"' "$WORK/summary.json" | head -3 | tr -d ' \n')"

cargo bench -q -p tollgate-core --bench pricing 2>/dev/null | tail -1
cargo bench -q -p tollgate-ledger --bench append 2>/dev/null | tail -1
[ -n "${KEEP:-}" ] || rm -rf "$WORK"
