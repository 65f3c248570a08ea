"""Compare the positional encodings: train each with one recipe, evaluate, write the report.

    python compare.py preset=smoke                 # every encoding, 2 CPU cores, < 10 minutes
    python compare.py preset=cpu jobs=2            # the CPU ablation, <= 60 minutes on 2 cores
    python compare.py preset=cpu seeds=[0,1,2] jobs=2   # three seeds: 95% intervals over seeds
    python compare.py preset=h100                  # three seeds each, one H100, < 30 minutes
    python compare.py preset=cpu encodings=[rope,alibi] seeds=[0,1,2] name=mine
    python compare.py preset=cpu jobs=2 report_dir=report/cpu   # the committed report (clean tree)
    python compare.py --rebuild report/cpu         # report.md and plots again from report/cpu/runs/

Runs go to runs/compare/<name>/<encoding>-s<seed>/ and are reused when run again with the same
settings; the report (report.md, PNG plots, config.yaml, info.json and copies of the runs' small
files in runs/) to runs/compare/<name>/report/, or to report_dir=DIR. `jobs=N` trains and
evaluates N runs at a time in separate processes (threads=T torch threads each; default CPUs / N).
See evaluation/ablation.py for the steps and configs/preset/ for the presets.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from configs.schema import register_configs
from data.tokens import DataError
from evaluation.ablation import CompareError, run_comparison
from evaluation.bundle import BundleError, rebuild
from training.checkpoint import CheckpointError

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="compare")
def main(cfg: DictConfig) -> None:
    command = " ".join(["python compare.py", *sys.argv[1:]])
    try:
        run_comparison(cfg, command)
    except (CompareError, CheckpointError, DataError) as e:
        sys.exit(f"error: {e}")


def rebuild_main(args: list[str]) -> None:
    """`--rebuild DIR`: report.md and its PNGs again from DIR's own files (no training, no data)."""
    if len(args) != 1:
        sys.exit("usage: python compare.py --rebuild REPORT_DIR (a folder written by compare.py, e.g. report/cpu)")
    try:
        print(f"rebuilt {rebuild(args[0])}")
    except BundleError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    if "--rebuild" in sys.argv[1:2]:
        rebuild_main(sys.argv[2:])
    else:
        main()
