#!/usr/bin/env bash
# Download the wheels that bench/gpu_suite.sh installs on a GPU machine that reaches no package
# registry, into .whl/ (ignored by git), for Python 3.12 on x86-64 Linux.
#
#   bash bench/fetch_gpu_wheels.sh          # here, where PyPI works; then carry .whl to the GPU machine
#
# That machine has torch 2.11, transformers, tiktoken, matplotlib, tqdm, safetensors, pyarrow, pandas,
# requests, fsspec, huggingface-hub, xxhash, pyyaml, sympy, einops and pytest; it lacks what is below.
# Each version is the one installed here (what the project's requirements resolve to, and what the
# tests ran against), so the GPU machine runs the same code:
#   hydra-core, omegaconf, antlr4-python3-runtime   every entry point and the typed configs
#   datasets, dill, multiprocess                      data/sources.py reads every corpus through
#                                                     datasets.Dataset (its other needs are there)
#   x-transformers, einx, frozendict, loguru,         the peers of bench/train_step.py
#   torch-einops-utils
# Not wandb: training imports it only for a run whose wandb mode is not disabled, and the suite
# disables it (wandb 0.31 with its opentelemetry and pydantic needs would take ~30 MB).
# antlr4-python3-runtime 4.9.3 is published as a source archive only: it is built into a
# py3-none-any wheel here (pure Python).
# GPT-2's BPE files need no carrying: they ship in data/gpt2_bpe/ (the tokenizer falls back to them
# when tiktoken cannot download).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(hydra-core omegaconf datasets dill multiprocess x-transformers einx frozendict loguru torch-einops-utils)
SDIST_ONLY=(antlr4-python3-runtime)
LIMIT_MIB=64
DEST=.whl

version_of() {
  python -c "import sys; from importlib.metadata import version; print(version(sys.argv[1]))" "$1" 2>/dev/null ||
    { echo "error: $1 is not installed here: pip install -r requirements-dev.txt first" >&2; exit 1; }
}

pins=()
for name in "${WHEELS[@]}" "${SDIST_ONLY[@]}"; do
  pins+=("$name==$(version_of "$name")")
done

rm -rf "$DEST"
mkdir -p "$DEST"
platforms=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
           manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
echo "downloading for CPython 3.12, x86-64 Linux: ${pins[*]}"
python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" --platform any \
  -d "$DEST" "${pins[@]:0:${#WHEELS[@]}}"
for pin in "${pins[@]:${#WHEELS[@]}}"; do
  tmp=$(mktemp -d)
  python -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: -d "$tmp" "$pin"
  python -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$DEST" "$tmp"/*
  rm -rf "$tmp"
done

for whl in "$DEST"/*.whl; do
  case "$(basename "$whl")" in
    *-py3-none-any.whl | *-py312-none-any.whl | *-cp312-*manylinux*x86_64*.whl | *-abi3-*manylinux*x86_64*.whl) ;;
    *) echo "error: $(basename "$whl") does not install on CPython 3.12 x86-64" >&2; exit 1 ;;
  esac
done

ls -l "$DEST" | tail -n +2
bytes=$(du -sb "$DEST" | cut -f1)
mib=$(python -c "print(f'{$bytes / 2**20:.1f}')")
echo "total: $mib MiB in $DEST ($(ls "$DEST"/*.whl | wc -l) wheels; limit $LIMIT_MIB MiB for everything carried)"
if [ "$bytes" -gt $((LIMIT_MIB * 2**20)) ]; then
  echo "error: $DEST holds more than $LIMIT_MIB MiB" >&2
  exit 1
fi
