#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (none of them is part of `make test`):
#   1. the CUDA tests of the attacks and of DANN (skipped on machines without a GPU);
#   2. DANN wall time per epoch, cuda fp32 and AMP against cpu (bench/dann_gpu_check.py);
#   3. nnaudit's PGD and CW against torchattacks on cuda (bench/attacks_vs_torchattacks.py);
#   4. the verifier with its bounds on cuda on 6 oval21 instances at 60 s (bench/verify_oval21.py --device cuda),
#      and `nnaudit verify-suite --device cuda` on 2 oval21 instances (bench/results/oval21_cuda/suite.csv).
# Run from the repository root on a machine with a CUDA GPU where nnaudit, torchattacks and
# pytest are importable (e.g. `pip install '.[test,bench]'` then `pip install --no-deps torchattacks`).
# Writes bench/results/{gpu_tests.log,dann_gpu.*,attacks_vs_torchattacks_cuda.*,oval21_cuda/}; copies them to $1.
# CHECKS picks some of them (default: "tests dann attacks verify"), e.g. CHECKS="tests verify".
set -uo pipefail
dest=${1:-}
mkdir -p bench/results
export PYTHONUNBUFFERED=1
# -P (below) keeps the script's folder off sys.path too: the bench scripts import bench/results_file.py
export PYTHONPATH="$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
status=0
checks=" ${CHECKS:-tests dann attacks verify} "
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
$py -c "import torch, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
# -P: the repository's nnaudit/ folder must not shadow the installed package
[[ $checks == *" tests "* ]] && { $py -P -m pytest -q -rA -p no:cacheprovider tests/attacks/test_attacks_cuda.py tests/adaptation/test_adaptation_cuda.py \
    tests/verify/test_verify_device.py tests/verify/test_region_device.py \
    2>&1 | tee bench/results/gpu_tests.log || status=1; }
[[ $checks == *" dann "* ]] && { $py -P bench/dann_gpu_check.py || status=1; }
[[ $checks == *" attacks "* ]] && { $py -P bench/attacks_vs_torchattacks.py --device cuda --repeats 3 || status=1; }
[[ $checks == *" verify "* ]] && { (cd bench && $py -P verify_oval21.py --tools nnaudit --device cuda --timeout 60 \
    --limit 6 --out results/oval21_cuda) || status=1; }
if [[ $checks == *" verify "* ]]; then
    oval=$(cd .. && pwd)/shared/benchmarks/vnncomp/oval21
    mkdir -p bench/results/oval21_cuda
    head -2 "$oval/instances.csv" | sed "s#^#$oval/#; s#,#,$oval/#" > bench/results/oval21_cuda/instances.csv
    $py -P -m nnaudit.cli verify-suite bench/results/oval21_cuda/instances.csv --device cuda --workers 1 \
        --timeout 60 --results bench/results/oval21_cuda/suite.csv 2>&1 | tail -3
    rc=${PIPESTATUS[0]}; [ "$rc" -le 1 ] || [ "$rc" -eq 3 ] || status=1    # 0/1/3: it ran (holds/violated/unknown)
fi
if [ -n "$dest" ]; then
    cp -r bench/results/gpu_tests.log bench/results/dann_gpu.* bench/results/attacks_vs_torchattacks_cuda.* \
        bench/results/oval21_cuda "$dest"/ 2>/dev/null
fi
exit $status
