"""Compare the positional encodings: train each with one recipe, evaluate, write the report.

    python compare.py preset=cpu                  # six encodings, 2 CPU cores, < 10 minutes
    python compare.py preset=h100                 # three seeds each, one H100, < 30 minutes
    python compare.py preset=h100 data=tinystories  # the same budget on the full hub dataset
    python compare.py preset=cpu encodings=[rope,alibi] seeds=[0,1,2] name=mine

Runs go to runs/compare/<name>/<encoding>-s<seed>/ and are reused when run again with the same
settings; the report (report.md, PNG plots, config.yaml) to report/<name>/. See
evaluation/ablation.py for the steps and configs/preset/ for the presets.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from configs.schema import register_configs
from data.tokens import DataError
from evaluation.ablation import CompareError, run_comparison
from training.checkpoint import CheckpointError

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="compare")
def main(cfg: DictConfig) -> None:
    command = " ".join(["python compare.py", *sys.argv[1:]])
    try:
        run_comparison(cfg, command)
    except (CompareError, CheckpointError, DataError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
