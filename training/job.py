"""The TrainJob config outside the command line: compose it from configs/ and validate it."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from configs.schema import TrainJob, register_configs
from data.config import ROOT
from model.config import POS_CONFIGS

CONFIG_DIR = ROOT / "configs"


def compose_job(overrides: list[str] = ()) -> DictConfig:
    """configs/train.yaml with command-line style overrides, as `python train.py ...` sees it.

    For callers such as compare.py and the tests: `run_training(compose_job(["pos=alibi"]))`.
    """
    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside another Hydra app
        return compose("train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def as_train_job(cfg) -> DictConfig:
    """Validate a TrainJob given as a DictConfig, a dict or a TrainJob (typed, unknown keys fail).

    The `pos` node is typed by its own encoding's dataclass (named by pos.name), as Hydra's `pos`
    group does, so its keys are checked against that encoding.
    """
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else OmegaConf.structured(cfg)
    schema = OmegaConf.structured(TrainJob)
    name = OmegaConf.select(cfg, "pos.name")
    if name is not None:
        if name not in POS_CONFIGS:
            raise ValueError(f"pos.name={name!r} is not one of {sorted(POS_CONFIGS)}")
        schema.pos = OmegaConf.structured(POS_CONFIGS[name])
    return OmegaConf.merge(schema, cfg)
