"""The TrainJob schema (train.py's root config) and its validation outside the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from data.config import DataConfig
from model.config import ModelConfig, PosConfig
from model.positional import config_class
from training.config import TrainConfig, WandbConfig
from training.device import THREADS


@dataclass
class TrainJob:
    """train.py: config -> data -> model -> training loop."""

    model: ModelConfig = MISSING
    pos: PosConfig = MISSING
    data: DataConfig = MISSING
    train: TrainConfig = MISSING
    wandb: WandbConfig = field(default_factory=WandbConfig)
    # The run folder (relative to the project root); null: runs/<date>/<time>-<pos>-<model>.
    out_dir: Optional[str] = None
    resume: bool = False  # continue the run in out_dir from its ckpt_last.pt
    seed: int = 1337  # initial weights, batches and dropout
    threads: int = THREADS  # CPU threads (torch.set_num_threads); 0: torch's default, one per core
    # train.py prints a story of up to this many new tokens, sampled from the best checkpoint at
    # the end ("Once upon a time", evaluation.config.SamplesConfig's settings); 0: none.
    final_sample_tokens: int = 150


def as_train_job(cfg) -> DictConfig:
    """Validate a TrainJob given as a DictConfig, a dict or a TrainJob (typed, unknown keys fail).

    The `pos` node is typed by its own encoding's dataclass (named by pos.name), as Hydra's `pos`
    group does, so its keys are checked against that encoding.
    """
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else OmegaConf.structured(cfg)
    schema = OmegaConf.structured(TrainJob)
    name = OmegaConf.select(cfg, "pos.name")
    if name is not None:
        schema.pos = OmegaConf.structured(config_class(name))
    return OmegaConf.merge(schema, cfg)
