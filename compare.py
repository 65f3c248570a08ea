"""compare.py: compare the positional encodings: train each with one recipe, evaluate, write the report.

    python compare.py preset=smoke                 # every encoding, 2 CPU cores, < 10 minutes
    python compare.py preset=cpu jobs=2            # the CPU ablation, ~2.5 hours on 2 cores
    python compare.py preset=cpu seeds=[0,1,2] jobs=2   # three seeds: 95% intervals over seeds
    python compare.py preset=h100                  # three seeds each, one H100, < 30 minutes
    python compare.py preset=cpu encodings=[rope,alibi] seeds=[0,1,2] name=mine
    python compare.py preset=cpu jobs=2 report_dir=report/cpu   # the committed report (clean tree)
    python compare.py --rebuild report/cpu         # report.md and plots again from report/cpu/runs/

Runs go to runs/compare/<name>/<encoding>-s<seed>/ and are reused when run again with the same
settings; the report (report.md, PNG plots, config.yaml, info.json and copies of the runs' small
files in runs/) to runs/compare/<name>/report/, or to report_dir=DIR. `jobs=N` trains and
evaluates N runs at a time in separate processes (threads=T torch threads each; default CPUs / N).
See evaluation/ablation.py for the steps and configs/preset/ for the presets. Ctrl-C saves the
current run's checkpoint; the same command later resumes it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from configs.errors import user_errors
from configs.help import exit_with_help_if_asked
from configs.schema import CompareJob, register_configs
from evaluation.ablation import run_comparison
from training.cpu_memory import keep_freed_memory
from training.device import resolve_device
from training.signals import TrainingInterrupted
from evaluation.bundle import BundleError, rebuild

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="compare")
def main(cfg: DictConfig) -> None:
    command = " ".join(["python compare.py", *sys.argv[1:]])
    with user_errors():
        if resolve_device(cfg.train.device, option="train.device").type == "cpu":
            # Process-wide and irreversible: glibc keeps freed memory for reuse for the rest of this
            # process, which trains every run of the comparison (1.3-1.8x faster CPU steps; the
            # process holds its peak memory, one run's, until it exits: bench/RESULTS.md, "Memory").
            keep_freed_memory()
        try:
            run_comparison(cfg, command)
        except TrainingInterrupted as e:  # the run's checkpoint is saved; the same command resumes it
            raise TrainingInterrupted(f"{e}, or run `{command}` again to go on with the comparison",
                                      e.signum) from None


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
        exit_with_help_if_asked("compare", CompareJob, __doc__, groups=["model", "data", "train", "eval", "preset"])
        main()
