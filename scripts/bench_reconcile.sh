#!/usr/bin/env bash
# Benchmarks of issue 5's figures, printed as "figure: value" lines:
#   scripts/bench_reconcile.sh [EVENTS] [BILL_LINES]     (default 10,000,000 and 1,000,000)
# 1. a month (2026-10) of EVENTS demo events, generated and ingested in chunks of 1M (seeds
#    1, 2, ...; each chunk's JSONL is deleted once ingested, so the disk holds the ledger plus
#    one chunk: ~6.5 GB at 10M);
# 2. a synthetic CUR 2.0 file of BILL_LINES Bedrock lines (scripts/gen_cur.py), ingested with
#    `ingest bills --type aws-cur` (wall time, peak RSS);
# 3. `reconcile --period 2026-10` of the ledger against the bills, 3 runs (wall time), after
#    importing the demo's reference data.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000000}"
L="${2:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}"
cargo build --release -q -p tollgate
BIN="$CARGO_TARGET_DIR/release/tollgate"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tollgate-bench-rec.XXXXXX)}"
echo "work dir: $WORK"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
CHUNK=1000000
done_n=0
seed=1
while [ "$done_n" -lt "$N" ]; do
  n=$(( N - done_n < CHUNK ? N - done_n : CHUNK ))
  "$BIN" demo --dir "$WORK/gen" --events "$n" --seed "$seed" --generate-only > /dev/null
  "$BIN" --data-dir "$WORK/ledger" --prices "$WORK/gen/demo-prices.toml" \
    ingest events "$WORK/gen/events.jsonl" --format json > /dev/null
  rm -f "$WORK/gen/events.jsonl"
  done_n=$(( done_n + n )); seed=$(( seed + 1 ))
done
echo "ledger: $("$BIN" --data-dir "$WORK/ledger" sql "SELECT COUNT(*) AS n FROM events" --format json | tr -d ' \n'), $(du -sm "$WORK/ledger" | cut -f1) MiB"

python3 scripts/gen_cur.py "$L" 2026-10 "$WORK/cur.csv"
echo "CUR file: $L lines, $(( $(stat -c %s "$WORK/cur.csv") / 1024 / 1024 )) MiB"
/usr/bin/time -f "%e %M" -o "$WORK/time.txt" \
  "$BIN" --data-dir "$WORK/ledger" ingest bills --type aws-cur "$WORK/cur.csv" --format json > "$WORK/bill.json"
read -r secs rss_kb < "$WORK/time.txt"
echo "ingest bills (aws-cur, $L lines): $secs s, peak RSS $(( rss_kb / 1024 )) MiB"
rm -f "$WORK/cur.csv"

# The demo's reference data (owners of its keys, the model dictionary).
"$BIN" demo --dir "$WORK/demo" --events 1000 > /dev/null
"$BIN" --data-dir "$WORK/ledger" refdata import "$WORK/demo/refdata.toml" --by bench > /dev/null
for i in 1 2 3; do
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" \
    "$BIN" --data-dir "$WORK/ledger" reconcile --period 2026-10 --format json --out "$WORK/rec.json"
  read -r secs rss_kb < "$WORK/time.txt"
  echo "reconcile 2026-10 ($N events vs $L bill lines) run $i: $secs s, peak RSS $(( rss_kb / 1024 )) MiB"
done
echo "reconcile rows: $(grep -c '"provider"' "$WORK/rec.json")"
