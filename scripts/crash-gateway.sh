#!/usr/bin/env bash
# Crash test of the gateway's event durability:
#   scripts/crash-gateway.sh [SECONDS_OF_LOAD] [DURABILITY]     (default 5 s, group)
# 1. starts `tollgate fake-provider` and `tollgate serve` (durability group or sync);
# 2. 16 client threads send non-streaming chat calls, each with its own x-tollgate-request-id,
#    and note every response received in full (status 200, whole body);
# 3. after SECONDS_OF_LOAD, kill -9 the gateway in the middle of that load;
# 4. restart it on the same data directory (it replays the spool), stop it with SIGTERM (it
#    flushes into the ledger);
# 5. checks that every response received in full has exactly one event in the ledger.
# Exit code 0 when it holds, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD="${1:-5}"
DURABILITY="${2:-group}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}"
cargo build --release -q -p tollgate
BIN="$CARGO_TARGET_DIR/release/tollgate"
WORK="$(mktemp -d /tmp/tollgate-crash.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done; }
trap cleanup EXIT
wait_file() { for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timeout waiting for $1" >&2; exit 1; }
echo "work dir: $WORK"

"$BIN" fake-provider --listen 127.0.0.1:0 --addr-file "$WORK/fake.addr" 2> /dev/null &
PIDS+=($!)
wait_file "$WORK/fake.addr"
KEY=$("$BIN" --data-dir "$WORK/data" keys add --team crash --service load --environment test --format json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
printf '[gateway]\ndurability = "%s"\n' "$DURABILITY" > "$WORK/tollgate.toml"

start_gateway() {
  rm -f "$WORK/gw.addr"
  TOLLGATE_OPENAI_BASE_URL="http://$(cat "$WORK/fake.addr")/v1" "$BIN" --data-dir "$WORK/data" \
    --config "$WORK/tollgate.toml" serve --listen "${1:-127.0.0.1:0}" --addr-file "$WORK/gw.addr" \
    2>> "$WORK/gw.log" &
  GPID=$!
  PIDS+=("$GPID")
  wait_file "$WORK/gw.addr"
}
start_gateway
ADDR=$(cat "$WORK/gw.addr")

cat > "$WORK/load.py" << 'EOF'
import http.client, json, os, sys, threading
addr, key, stop_file, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
host, port = addr.rsplit(":", 1)
received, lock = [], threading.Lock()
sent = [0]
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
def worker(t):
    i = 0
    conn = None
    while not os.path.exists(stop_file):
        rid = f"t{t}-{i}"
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            with lock:
                sent[0] += 1
            conn.request("POST", "/v1/chat/completions", body=body, headers={
                "Authorization": "Bearer " + key, "Content-Type": "application/json",
                "x-tollgate-feature": "crash", "x-tollgate-request-id": rid,
                "x-fake-usage": "prompt_tokens=10,completion_tokens=5"})
            r = conn.getresponse()
            data = r.read()  # raises IncompleteRead if the body is cut
            if r.status == 200 and json.loads(data)["usage"]["completion_tokens"] == 5:
                with lock:
                    received.append(rid)
        except Exception:
            conn = None
threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
for t in threads: t.start()
for t in threads: t.join()
json.dump({"sent": sent[0], "received": received}, open(out, "w"))
EOF
python3 "$WORK/load.py" "$ADDR" "$KEY" "$WORK/stop" "$WORK/client.json" &
CLIENT=$!
sleep "$LOAD"
kill -9 "$GPID"
echo "killed the gateway (kill -9) under load after ${LOAD} s"
sleep 0.5
touch "$WORK/stop"
wait "$CLIENT"
ls -l "$WORK/data/spool" | tail -n +2 | awk '{print "  spool left: " $NF " (" $5 " bytes)"}'
start_gateway
kill -TERM "$GPID"
wait "$GPID"
grep -E "replayed|stopped" "$WORK/gw.log" | sed 's/^/  /'

"$BIN" --data-dir "$WORK/data" sql "SELECT request_id, COUNT(*) AS n FROM events GROUP BY request_id" \
  --format csv > "$WORK/events.csv"
python3 - "$WORK/client.json" "$WORK/events.csv" << 'EOF'
import csv, json, sys
c = json.load(open(sys.argv[1]))
counts = {r["request_id"]: int(r["n"]) for r in csv.DictReader(open(sys.argv[2]))}
rec = c["received"]
missing = [r for r in rec if counts.get(r, 0) == 0]
dup = [r for r, n in counts.items() if n > 1]
extra = [r for r in counts if r not in set(rec)]
print(f"requests sent: {c['sent']}; responses received in full: {len(rec)}")
print(f"events in the ledger: {sum(counts.values())} for {len(counts)} request ids")
print(f"received responses without an event: {len(missing)}; request ids with more than one event: {len(dup)}")
print(f"events for calls whose response the client did not receive in full (in flight at the kill): {len(extra)}")
sys.exit(1 if missing or dup else 0)
EOF
