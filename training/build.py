"""Build the GPT from a config given as dataclasses, DictConfigs or plain dicts (checkpoints)."""

from __future__ import annotations

from omegaconf import OmegaConf

from model import GPT
from model.config import ModelConfig, PosConfig
from model.positional import config_class


def as_model_config(cfg) -> ModelConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), cfg))


def as_pos_config(cfg) -> PosConfig:
    name = cfg["name"] if isinstance(cfg, dict) else cfg.name
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config_class(name)), cfg))


def build_model(model_cfg, pos_cfg, vocab_size: int | None = None) -> GPT:
    """The GPT of `model_cfg`; `vocab_size` is the data's vocabulary (data/vocab.py), which an
    unset `model.vocab_size` takes and a set one must equal."""
    cfg = as_model_config(model_cfg)
    if cfg.vocab_size is None:
        if vocab_size is None:
            raise ValueError("model.vocab_size is not set and no data vocabulary was given")
        cfg.vocab_size = vocab_size
    elif vocab_size is not None and cfg.vocab_size != vocab_size:
        raise ValueError(
            f"model.vocab_size={cfg.vocab_size}, but the data's vocabulary has {vocab_size} ids: leave "
            "model.vocab_size unset (it follows the data) and choose the vocabulary with data.vocab_size"
        )
    return GPT(cfg, as_pos_config(pos_cfg))
