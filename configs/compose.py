"""Compose train.py's config outside the command line (compare.py, the tests)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from configs.schema import CONFIG_DIR, register_configs


def compose_job(overrides: list[str] = ()) -> DictConfig:
    """configs/train.yaml with command-line style overrides, as `python train.py ...` sees it:
    `run_training(compose_job(["pos=alibi"]))`."""
    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside another Hydra app
        return compose("train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))
