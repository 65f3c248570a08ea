"""The on-disk format of a prepared corpus, shared by the writer (encode.py, driven by
prepare.py) and the readers.

A corpus folder (`DataConfig.cache_dir`) holds:
- `train.bin`, `val.bin`: the (model's) token ids of every story, each story followed by the end-of-text
  token, as a flat little-endian uint16 array (no header), read with `np.memmap`;
- `meta.json`: tokenizer, the model's vocabulary (size, end-of-text id, and the map from the
  tokenizer's ids when `data.vocab_size` restricts it: data/vocab.py), token and story counts per
  split, the source and a fingerprint of the inputs. It is written last, so a folder whose meta.json
  matches its .bin files is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPLITS = ("train", "val")
TEXT = "text"  # the one split of a folder of tokenized files (data.prepare.tokenize_files)
TOKEN_DTYPE = np.dtype("<u2")  # uint16: GPT-2's 50257 ids fit, at half the size of int32
META_FILE = "meta.json"
FORMAT_VERSION = 2  # 2: meta.json holds the vocabulary map (data/vocab.py)


class DataError(ValueError):
    """Bad data input: a missing or empty file, a missing column, a split too small, ...

    The message names the file or the config option to change.
    """


def split_file(split: str) -> str:
    """`train` -> `train.bin`."""
    if split not in (*SPLITS, TEXT):
        raise DataError(f"unknown split {split!r}: expected one of {', '.join((*SPLITS, TEXT))}")
    return f"{split}.bin"


def read_meta(folder: str | Path) -> dict:
    """The parsed meta.json of a prepared corpus folder."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: the corpus is not prepared. "
            "Run `python prepare.py data=<option>` or call data.prepare.ensure_prepared"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def load_tokens(folder: str | Path, split: str) -> np.memmap:
    """The token ids of one split ("train" or "val") as a read-only uint16 memmap.

    The file is checked against the token count in meta.json, so a truncated or stale file is an
    error instead of silently shorter data. `result.filename` names the file.
    """
    meta = read_meta(folder)
    path = Path(folder) / split_file(split)
    expected = meta["splits"][split]["tokens"]
    size = path.stat().st_size if path.is_file() else None
    if size != expected * TOKEN_DTYPE.itemsize:
        raise DataError(
            f"{path}: expected {expected} tokens ({expected * TOKEN_DTYPE.itemsize} bytes) as "
            f"meta.json says, found {'no file' if size is None else f'{size} bytes'}; "
            "prepare again with force=true"
        )
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
