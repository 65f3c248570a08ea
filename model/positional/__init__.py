"""Positional encodings behind one interface (base.py), one module each, chosen by name from the
registry (registry.py). Importing this package imports every module in it, so a new encoding is
one file here with an `@register`ed class: nothing outside model/positional/ names it."""

from __future__ import annotations

import importlib
import pkgutil

from model.positional.base import Family, PositionalEncoding, PositionOutOfRange, Positions, Rotation
from model.positional.registry import (
    all_variants,
    build_positional,
    config_class,
    config_classes,
    default_compare_encodings,
    encoding_class,
    encoding_names,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Family", "PositionalEncoding", "PositionOutOfRange", "Positions", "Rotation", "all_variants",
    "build_positional", "config_class", "config_classes", "default_compare_encodings",
    "encoding_class", "encoding_names", "register",
]
