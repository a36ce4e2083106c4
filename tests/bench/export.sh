#!/usr/bin/env bash
# S4 of shared/bench/SCENARIOS.md: 1,000,000-row exports, interleaved with the references.
#   1. Exporter alone, whole processes under /usr/bin/time: Go encoding/csv and encoding/json
#      (`go-gin export`), pandas (`py-export/export.py`), medgate's exporters
#      (`examples/export_rows`, rows held in memory like the references, and --stream).
#   2. End to end: POST /v1/export of 10,000 patients x 100 observations from the nginx
#      upstream through the release gateway; seconds, first byte, the gateway's peak RSS
#      (VmHWM, reset before each download through /proc/PID/clear_refs).
# Needs: the nginx upstream with 10,000 patients (gen_fhir.py fhir --patients 10000),
# /tmp/medgate-bench/bin/go-gin, pandas + xlsxwriter, and
# `cargo build --release -p medgate --bin medgate --example export_rows`.
# FORMATS (default "csv xlsx") picks the formats; PANDAS_XLSX=0 skips pandas' slow XLSX run.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/release/medgate"
rows_bin="$target/release/examples/export_rows"
out=/tmp/medgate-bench/s4
mkdir -p "$out"
rows=1000000
formats="${FORMATS:-csv xlsx}"

measure() { # label, command...: one line with the tool's own timing and the peak RSS
  local label=$1
  shift
  local log
  log=$(/usr/bin/time -f "maxrss_kb=%M wall_s=%e" "$@" 2>&1 >/dev/null | tr '\n' ' ')
  printf '%-24s %s\n' "$label" "$log"
}

echo "== exporter alone, $rows rows"
py=(env PYTHONPATH="$shared/bench/gen" python3 "$shared/bench/reference/py-export/export.py")
for f in $formats; do
  # The references' names for the same output: Go's ndjson, pandas' json (JSON lines).
  # export.py looks for gen_fhir.py in reference/gen; it lives in bench/gen (PYTHONPATH in py).
  case $f in
    csv)
      measure "go csv" /tmp/medgate-bench/bin/go-gin export -format csv -rows $rows -out "$out/go.csv"
      measure "pandas csv" "${py[@]}" --format csv --rows $rows --out "$out/pd.csv" ;;
    ndjson)
      measure "go ndjson" /tmp/medgate-bench/bin/go-gin export -format ndjson -rows $rows -out "$out/go.ndjson"
      measure "pandas json lines" "${py[@]}" --format json --rows $rows --out "$out/pd.ndjson" ;;
    json)
      measure "go json" /tmp/medgate-bench/bin/go-gin export -format json -rows $rows -out "$out/go.json" ;;
    xlsx)
      if [ "${PANDAS_XLSX:-1}" = 1 ]; then
        measure "pandas xlsx" "${py[@]}" --format xlsx --rows $rows --out "$out/pd.xlsx"
      fi ;;
  esac
  measure "medgate $f" "$rows_bin" "$f" $rows "$out/mg.$f"
  measure "medgate $f --stream" "$rows_bin" "$f" $rows "$out/mg-stream.$f" --stream
done

echo "== end to end through the gateway: 10,000 patients x 100 observations"
patients=$(python3 -c 'import json; print(json.dumps(["P%06d" % i for i in range(1, 10001)]))')
"$bin" serve --config "$root/config/bench.toml" 2>"$out/gateway.log" & gw=$!
trap 'kill $gw 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8088/healthz >/dev/null && break; sleep 0.1; done
echo "idle gateway: $(grep VmRSS /proc/$gw/status)"
for f in $formats; do
  echo 5 >"/proc/$gw/clear_refs"
  timing=$(curl -sS -o "$out/e2e.$f" -w 'status=%{http_code} first_byte_s=%{time_starttransfer} total_s=%{time_total} bytes=%{size_download}' \
    -H 'Authorization: Bearer bench-key' -H 'Content-Type: application/json' \
    -d "{\"sources\":[\"his\"],\"patients\":$patients,\"format\":\"$f\"}" http://127.0.0.1:8088/v1/export)
  printf '%-24s %s %s\n' "gateway $f" "$timing" "$(grep VmHWM "/proc/$gw/status" | tr -s ' ')"
done
