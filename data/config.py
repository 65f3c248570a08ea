"""Typed configuration of a corpus: where its text comes from and where its tokens go."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class DataSource(str, Enum):
    hub = "hub"  # a Hugging Face dataset, through datasets.load_dataset
    local = "local"  # .txt (stories separated by <|endoftext|> lines), .jsonl/.json/.parquet


@dataclass
class DataConfig:
    name: str = "tinystories_local"
    source: DataSource = DataSource.local
    hub_dataset: str = "roneneldan/TinyStories"
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    # Fraction of the training stories held out when the source has no validation split.
    val_fraction: float = 0.0
    # Folder that receives train.bin, val.bin and meta.json (relative to the project root).
    cache_dir: str = "data/cache/tinystories_local"
