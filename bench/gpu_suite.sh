#!/usr/bin/env bash
# One prepared GPU run (bench/gpu_suite.py): CUDA tests, train-step and decode speed against peers,
# the h100 preset; results under $OUT (else gpu_results/). `--cpu` is its dry run; `--help` lists
# every option and step.
#   bash bench/fetch_gpu_wheels.sh     # once, where PyPI works: the wheels the GPU machine lacks
#   bash bench/gpu_suite.sh            # on the GPU machine, from a copy of the tree holding .whl/
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/gpu_suite.py "$@"
