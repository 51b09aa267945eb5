#!/usr/bin/env bash
# Gateway overhead benchmark (issue 3's figures), printed as lines of "figure: value".
#   scripts/bench-gateway.sh [SECONDS]      (default 10 s per run)
# Needs `wrk` and `nginx` (Debian: apt-get install wrk nginx-light). Optional: LITELLM=path to
# a `litellm` proxy binary (pip install 'litellm[proxy]') to measure it beside Tollgate.
#
# 1. nginx returns a canned OpenAI chat completion (with usage) on a free local port;
# 2. wrk (8 connections, 2 threads, non-streaming POST) calls nginx directly, then through
#    `tollgate serve` with attribution (a gateway key + x-tollgate-feature), pricing and the
#    durable spool on, in `group` durability (fsync within 10 ms) and then `sync` (fsync
#    before every response ends);
# 3. the same with 1 connection, for the latency the gateway adds when it is not saturated;
# 4. open loop: 8 connections at fixed rates (RATES, default "2000 5000" req/s in all) with
#    the repo's `loadgen` example, nginx directly and then through the gateway (group), so the
#    added latency is the gateway's service time, not queueing at saturation (wrk is a closed
#    loop: at saturation its latency is connections / throughput);
# 5. prints p50/p99 latency, requests/s, the gateway's peak RSS and the events in its ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tollgate-target}"
cargo build --release -q -p tollgate -p tollgate-gateway --bins --example loadgen
# TOLLGATE_BIN=path measures another build of the gateway (an A/B against an older commit).
# KEEP=1 keeps the work dir (ledgers, spools, logs; removed on exit otherwise).
BIN="${TOLLGATE_BIN:-$CARGO_TARGET_DIR/release/tollgate}"
LOADGEN="$CARGO_TARGET_DIR/release/examples/loadgen"
RATES="${RATES:-2000 5000}"
command -v wrk > /dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "nginx not found (apt-get install nginx-light)" >&2; exit 1; }
WORK="$(mktemp -d /tmp/tollgate-gwbench.XXXXXX)"
PIDS=()
# Stops the servers; removes the work dir (ledgers, spools, logs) unless KEEP is set.
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  if [ -z "${KEEP:-}" ]; then
    for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_file() { for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timeout waiting for $1" >&2; exit 1; }

echo "work dir: $WORK"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
# What the sync mode waits for: this disk's fdatasync latency right now.
python3 - "$WORK/fsync.probe" << 'EOF'
import os, sys, time
f = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
ts = []
for _ in range(200):
    os.write(f, b"x" * 200)
    t = time.perf_counter()
    os.fdatasync(f)
    ts.append(time.perf_counter() - t)
ts.sort()
print("disk: fdatasync of a 200-byte append p50 %.2f ms, p99 %.2f ms" % (ts[100] * 1e3, ts[197] * 1e3))
EOF

# 1. nginx with a canned completion.
NPORT=$(free_port)
BODY='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from nginx."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":20}}}'
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" << EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  tcp_nodelay on;
  server {
    listen 127.0.0.1:$NPORT;
    location / { default_type application/json; return 200 '$BODY'; }
  }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2> "$WORK/nginx/stderr" &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$NPORT/" && break; sleep 0.05; done

# 2. a gateway key and the wrk script.
KEY=$("$BIN" --data-dir "$WORK/data" keys add --team bench --service wrk --environment test --format json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
cat > "$WORK/post.lua" << EOF
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["x-tollgate-feature"] = "bench"
EOF

run_wrk() { # label url conns [lua] -> prints a summary line
  local label=$1 url=$2 conns=$3 lua=${4:-$WORK/post.lua}
  local out
  out=$(wrk -t "$(( conns < 2 ? conns : 2 ))" -c "$conns" -d "${DUR}s" --latency -s "$lua" "$url/v1/chat/completions")
  local p50 p99 rps non2xx
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $NF}')
  LAST_TOTAL=$(echo "$out" | awk '/requests in/{print $1}')
  echo "$label ($conns conn): p50 $p50, p99 $p99, $rps req/s, $LAST_TOTAL requests${non2xx:+, NON-2XX $non2xx}"
}
THROUGH=0

printf '%s' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}' > "$WORK/body.json"
run_fixed() { # label host:port rate -> prints a summary line
  local out
  out=$("$LOADGEN" --url "http://$2/v1/chat/completions" --conns 8 --rate "$3" --seconds "$DUR" \
    --body-file "$WORK/body.json" --header "Content-Type: application/json" \
    --header "Authorization: Bearer $KEY" --header "x-tollgate-feature: bench")
  LAST_TOTAL=$(echo "$out" | awk '{print $2}' | tr -d ,)
  echo "$1 (8 conn, open loop at $3 req/s): $out"
}

start_gateway() { # durability -> sets GPID, GADDR
  local dur=$1
  rm -f "$WORK/gw.addr"
  printf '[gateway]\ndurability = "%s"\n' "$dur" > "$WORK/tollgate-$dur.toml"
  TOLLGATE_OPENAI_BASE_URL="http://127.0.0.1:$NPORT/v1" "$BIN" --data-dir "$WORK/data" \
    --config "$WORK/tollgate-$dur.toml" serve --listen 127.0.0.1:0 --addr-file "$WORK/gw.addr" \
    2> "$WORK/gw-$dur.log" &
  GPID=$!
  PIDS+=("$GPID")
  wait_file "$WORK/gw.addr"
  GADDR=$(cat "$WORK/gw.addr")
}

stop_gateway() {
  local hwm
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$GPID/status")
  kill -TERM "$GPID"
  wait "$GPID" || true
  echo "  gateway peak RSS: $((hwm / 1024)) MiB; $(tail -1 "$WORK/gw-$1.log" | sed 's/^tollgate serve: //')"
}

curl -s -o /dev/null "http://127.0.0.1:$NPORT/"
# WRK=0 skips the closed-loop (wrk) part: only the open-loop rates run.
if [ "${WRK:-1}" != 0 ]; then
run_wrk "direct nginx" "http://127.0.0.1:$NPORT" 8
run_wrk "direct nginx" "http://127.0.0.1:$NPORT" 1
for dur in group sync; do
  start_gateway "$dur"
  run_wrk "tollgate ($dur durability)" "http://$GADDR" 8
  THROUGH=$((THROUGH + LAST_TOTAL))
  run_wrk "tollgate ($dur durability)" "http://$GADDR" 1
  THROUGH=$((THROUGH + LAST_TOTAL))
  stop_gateway "$dur"
done
fi
for rate in $RATES; do
  run_fixed "direct nginx" "127.0.0.1:$NPORT" "$rate"
  start_gateway group
  run_fixed "tollgate (group durability)" "$GADDR" "$rate"
  THROUGH=$((THROUGH + LAST_TOTAL))
  stop_gateway group
done
echo "requests wrk completed through the gateway: $THROUGH; ledger events: $("$BIN" --data-dir "$WORK/data" sql 'SELECT COUNT(*) AS n FROM events' --format csv | tail -1)"

if [ -n "${LITELLM:-}" ]; then
  LPORT=$(free_port)
  cat > "$WORK/litellm.yaml" << EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$NPORT/v1
      api_key: sk-bench
general_settings:
  master_key: sk-litellm-bench
EOF
  sed 's/Bearer [^"]*/Bearer sk-litellm-bench/' "$WORK/post.lua" > "$WORK/post-litellm.lua"
  LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LPORT" > "$WORK/litellm.log" 2>&1 &
  LPID=$!
  PIDS+=("$LPID")
  for _ in $(seq 1800); do curl -s -o /dev/null "http://127.0.0.1:$LPORT/health/liveliness" && break; sleep 0.1; done
  run_wrk "litellm proxy" "http://127.0.0.1:$LPORT" 8 "$WORK/post-litellm.lua"
  run_wrk "litellm proxy" "http://127.0.0.1:$LPORT" 1 "$WORK/post-litellm.lua"
  echo "  litellm peak RSS (main process): $(($(awk '/VmHWM/{print $2}' "/proc/$LPID/status") / 1024)) MiB"
fi
