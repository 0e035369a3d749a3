#!/usr/bin/env bash
# VNN-COMP harness hook: prepare_instance.sh VERSION CATEGORY ONNX VNNLIB
# nnaudit keeps no state between instances; this checks the files load and parse,
# so a broken instance is reported before the timed run.  Exit 0 = ready.
set -euo pipefail
if [ "$#" -ne 4 ]; then
    echo "usage: $0 VERSION CATEGORY ONNX VNNLIB" >&2
    exit 1
fi
PYTHON="${NNAUDIT_PYTHON:-python3}"
"$PYTHON" - "$3" "$4" <<'PY'
import sys
from nnaudit.networks import load
from nnaudit.verify.vnnlib import parse
net = load(sys.argv[1])
parse(sys.argv[2]).check_network(net.input_size, net.output_size, where=sys.argv[2])
PY
