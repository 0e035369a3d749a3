#!/usr/bin/env bash
# `make test` while N CPU-bound busy loops run beside it (default 2): the suite must stay green on a
# busy machine (tests assert outcomes, never wall-clock time).  Prints the suite's wall time and the
# load average, and appends one line to bench/results/suite_under_load.md.
# Usage: bench/suite_under_load.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-2}
pids=()
for _ in $(seq "$n"); do
  python3 -c "while True: pass" &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
start=$(date +%s)
make test
status=$?
wall=$(( $(date +%s) - start ))
load=$(cut -d' ' -f1-3 /proc/loadavg)
line="| $(date -u +%Y-%m-%d) | $n | $(nproc) | $wall | $status | $load |"
mkdir -p bench/results
[ -f bench/results/suite_under_load.md ] || printf '%s\n\n%s\n%s\n' \
  "# \`make test\` beside busy loops (bench/suite_under_load.sh)" \
  "| date | busy loops | cores | suite wall s | exit | load average (1/5/15 min) at the end |" \
  "|---|---|---|---|---|---|" > bench/results/suite_under_load.md
echo "$line" >> bench/results/suite_under_load.md
echo "suite under $n busy loops: exit $status in ${wall}s (load $load)"
exit $status
