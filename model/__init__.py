"""The GPT model, its positional encodings, the KV cache and cached generation."""

from model.config import ModelConfig, PosConfig
from model.gpt import GPT
from model.kv_cache import KVCache
from model.positional import PositionOutOfRange
from model.positional.rope_scaling import RopeScaling

__all__ = ["GPT", "KVCache", "ModelConfig", "PosConfig", "PositionOutOfRange", "RopeScaling"]
