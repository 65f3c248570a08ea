"""The registry of positional encodings: one `@register` per encoding class, everything else
(the Hydra `pos` group, compare.py's default set, the evaluation's variant rows, the benchmarks,
the tests' parametrisation) derived from it.

    @register
    class MyBias(PositionalEncoding):
        adds_bias = True

        @dataclass
        class Config(PosConfig):
            name: str = "mybias"
            strength: float = 1.0

        def __init__(self, model: ModelConfig, cfg: Config): ...

A class is built as `cls(model_cfg, pos_cfg)`. Registration checks that the flags the class
declares match the hooks it overrides, so a plugin that forgets one fails at import, not in a run.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from model.config import ModelConfig, PosConfig
from model.positional.base import Family, PositionalEncoding
from model.positional.log_length import model_variants
from model.positional.randomized import RandomizableConfig

_REGISTRY: dict[str, type[PositionalEncoding]] = {}

# flag -> the hook a class with that flag must override
_FLAG_HOOKS = {
    "adds_embedding": "embed",
    "rotates": "rotation",
    "adds_bias": "bias",
    "has_score_mod": "score_mod",
    "needs_scores": "score_bias",
}


def register(cls: type[PositionalEncoding]) -> type[PositionalEncoding]:
    """Class decorator: make `cls` selectable as `pos=<cls.Config.name>`."""
    config = getattr(cls, "Config", None)
    if config is None or not is_dataclass(config) or not issubclass(config, PosConfig):
        raise TypeError(f"{cls.__name__} needs a nested `Config` dataclass derived from PosConfig")
    name = config().name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"positional encoding {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    for flag, hook in _FLAG_HOOKS.items():
        overridden = getattr(cls, hook) is not getattr(PositionalEncoding, hook)
        if getattr(cls, flag) != overridden:
            state = "sets" if getattr(cls, flag) else "does not set"
            raise TypeError(f"{cls.__name__} {state} `{flag}` but {'does not override' if getattr(cls, flag) else 'overrides'} `{hook}`")
    if cls.has_score_mod and not cls.adds_bias:
        raise TypeError(f"{cls.__name__}: a score_mod expresses bias(), so has_score_mod needs adds_bias")
    if cls.randomizable != issubclass(config, RandomizableConfig):
        raise TypeError(f"{cls.__name__}: `randomizable` goes with a Config derived from RandomizableConfig")
    _REGISTRY[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove `name` (for tests that register a throwaway encoding)."""
    _REGISTRY.pop(name, None)


def encoding_names() -> list[str]:
    """Every registered encoding, by family (absolute, rotary, bias, contextual, none), then name."""
    order = list(Family)
    return sorted(_REGISTRY, key=lambda name: (order.index(_REGISTRY[name].family), name))


def default_compare_encodings() -> list[str]:
    """The encodings compare.py trains when `encodings` is not given."""
    return [name for name in encoding_names() if _REGISTRY[name].in_default_compare]


def encoding_class(name: str) -> type[PositionalEncoding]:
    if name not in _REGISTRY:
        raise ValueError(f"pos.name={name!r} is not a registered positional encoding; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def config_class(name: str) -> type[PosConfig]:
    """The typed options of encoding `name` (its nested Config dataclass)."""
    return encoding_class(name).Config


def config_classes() -> dict[str, type[PosConfig]]:
    return {name: _REGISTRY[name].Config for name in encoding_names()}


def all_variants() -> list[str]:
    """Every inference-time variant name a model of any registered encoding offers (its
    encoding's own and the model-level ones, log_length.model_variants)."""
    return list(dict.fromkeys(v for name in encoding_names() for v in model_variants(_REGISTRY[name].variants)))


def option_names(name: str) -> list[str]:
    """The option keys of encoding `name` (for help texts)."""
    return [f.name for f in fields(config_class(name)) if f.name != "name"]


def build_positional(model: ModelConfig, pos: PosConfig) -> PositionalEncoding:
    """The encoding named by `pos.name`, built from its config."""
    cls = encoding_class(pos.name)
    if not isinstance(pos, cls.Config):
        raise TypeError(f"pos={pos.name!r} needs a {cls.Config.__qualname__}, got {type(pos).__qualname__}")
    return cls(model, pos)
