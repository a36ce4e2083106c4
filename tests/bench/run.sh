#!/usr/bin/env bash
# Pull-path (S1) and isolation (S2) scenarios of shared/bench/SCENARIOS.md, interleaved, 3 runs.
# Needs: nginx upstream (shared/bench/upstream/start.sh), /tmp/medgate-bench/bin/go-gin, wrk,
# and `cargo build --release`. Prints one line per run; medians are taken by hand or by `sort`.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
bin="${CARGO_TARGET_DIR:-$root/target}/release/medgate"
runs="${RUNS:-3}"
dur="${DUR:-15s}"

python3 "$root/tests/bench/hang_upstream.py" 9103 & hang=$!
"$bin" serve --config "$root/config/bench.toml" 2>/tmp/medgate-bench/medgate.log & gw=$!
/tmp/medgate-bench/bin/go-gin serve -listen 127.0.0.1:9201 >/tmp/medgate-bench/go-gin.log 2>&1 & gin=$!
trap 'kill $hang $gw $gin 2>/dev/null' EXIT
sleep 2

line() { # name, wrk output
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$2")
  p50=$(awk '$1=="50%" {print $2}' <<<"$2")
  p99=$(awk '$1=="99%" {print $2}' <<<"$2")
  printf '%-28s req/s %10s  p50 %8s  p99 %8s\n' "$1" "$rps" "$p50" "$p99"
}

for run in $(seq "$runs"); do
  echo "== run $run"
  line "nginx (ceiling)" "$(wrk -t2 -c64 -d"$dur" --latency -s "$shared/bench/wrk/rotate_nginx.lua" http://127.0.0.1:9101)"
  line "go-gin reference" "$(wrk -t2 -c64 -d"$dur" --latency -s "$shared/bench/wrk/rotate_gin.lua" http://127.0.0.1:9201)"
  line "medgate /v1/data/his" "$(wrk -t2 -c64 -d"$dur" --latency -s "$root/tests/bench/medgate_his.lua" http://127.0.0.1:8088)"
  # S2: the same load while 64 more connections hit a source whose upstream hangs.
  SOURCE=hang wrk -t1 -c64 -d"$dur" -s "$root/tests/bench/medgate_his.lua" http://127.0.0.1:8088 >/tmp/medgate-bench/hang.txt & failing=$!
  sleep 1
  line "medgate his, hang failing" "$(wrk -t2 -c64 -d"$dur" --latency -s "$root/tests/bench/medgate_his.lua" http://127.0.0.1:8088)"
  wait "$failing" || true
done
echo "upstream connections from medgate to nginx :9101 (keep-alive pool):"
ss -tn state established '( dport = :9101 )' | tail -n +2 | wc -l
