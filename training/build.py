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


def build_model(model_cfg, pos_cfg) -> GPT:
    return GPT(as_model_config(model_cfg), as_pos_config(pos_cfg))
