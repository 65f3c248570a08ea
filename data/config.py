"""Typed configuration of a corpus (where its text comes from and where its tokens go), and
`project_path`, which resolves its paths against the project root."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]  # the project root: configs' paths are relative to it


class DataSource(str, Enum):
    hub = "hub"  # a Hugging Face dataset, through datasets.load_dataset
    local = "local"  # .txt (stories separated by <|endoftext|> lines), .jsonl/.json/.parquet


@dataclass
class DataConfig:
    """One corpus. Paths are relative to the project root (the folder holding train.py).

    The validation text comes from the source's own validation split (`val_files`, or the hub's
    `validation` split); `val_fraction` holds out a seeded random share of the training stories
    instead, for sources that have none. Setting both is an error.
    """

    name: str = "tinystories_local"  # names the corpus in meta.json and the logs
    source: DataSource = DataSource.local  # local files, or a Hugging Face hub dataset
    hub_dataset: str = "roneneldan/TinyStories"  # the hub dataset (source=hub)
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    # Fraction of the training stories held out when the source has no validation split.
    val_fraction: float = 0.0
    split_seed: int = 1337  # which stories val_fraction holds out
    text_column: str = "text"  # the column of .jsonl/.json/.parquet files and hub datasets
    tokenizer: str = "gpt2"  # a tiktoken encoding; its ids must fit uint16
    # Keep end-of-text and the vocab_size - 1 most frequent other ids of the training split, map
    # every other id to one unknown id (data/vocab.py); None: the tokenizer's whole vocabulary.
    vocab_size: Optional[int] = None
    # Folder that receives train.bin, val.bin and meta.json (relative to the project root); None:
    # data/cache/<name>-<first 12 hex digits of the inputs' fingerprint> (data/prepare.py).
    cache_dir: Optional[str] = None
    num_proc: int = 0  # tokenizer processes; 0: one per available CPU core


def project_path(path: str | Path) -> Path:
    """A config path resolved against the project root (absolute paths are kept)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path
