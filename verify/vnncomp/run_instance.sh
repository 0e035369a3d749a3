#!/usr/bin/env bash
# VNN-COMP harness hook: run_instance.sh VERSION CATEGORY ONNX VNNLIB RESULTFILE TIMEOUT
# Writes sat/unsat/timeout/unknown/error (and for sat the counterexample) to RESULTFILE.
set -uo pipefail
if [ "$#" -ne 6 ]; then
    echo "usage: $0 VERSION CATEGORY ONNX VNNLIB RESULTFILE TIMEOUT" >&2
    exit 1
fi
ONNX="$3"; VNNLIB="$4"; RESULT="$5"; TIMEOUT="$6"
PYTHON="${NNAUDIT_PYTHON:-python3}"
# leave a second for start-up and writing the answer
BUDGET=$("$PYTHON" -c "print(max(1.0, float('$TIMEOUT') - 1.0))")
"$PYTHON" -m nnaudit.cli verify "$ONNX" "$VNNLIB" --timeout "$BUDGET" --result-file "$RESULT" --no-progress
CODE=$?
if [ ! -s "$RESULT" ]; then
    echo "error" > "$RESULT"
fi
# exit codes 0/1/3 are answers, not failures of the script
if [ "$CODE" -eq 2 ]; then exit 0; fi
exit 0
