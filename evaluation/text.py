"""Evaluation text: any text files, tokenized exactly like the training data, cut into documents.

The files go through data/prepare.py unchanged: a local DataConfig whose validation files are
the eval files (prepare.py also needs a train split; it gets the same files and is never read).
Stories in a .txt file are separated by `<|endoftext|>` lines, each story becomes
`encode_ordinary(text)` followed by the end-of-text token, and the result is cached with a
fingerprint of the files, so a second evaluation does not tokenize again. A file without
separator lines (a book) is one story.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.config import DataConfig, DataSource, project_path
from data.prepare import ensure_prepared
from data.tokens import DataError, load_tokens, read_meta
from evaluation.config import DocumentMode, EvalSetConfig


@dataclass
class EvalText:
    name: str
    tokens: np.ndarray  # (N,) uint16 token ids of every document, back to back
    docs: list[tuple[int, int]]  # [start, end) of each document in `tokens`
    files: list[Path]


def expand_files(patterns: list[str], option: str) -> list[Path]:
    """Paths and globs (relative to the project root) -> the sorted files they name."""
    files: list[Path] = []
    for pattern in patterns:
        path = project_path(pattern)
        found = sorted(Path(p) for p in glob.glob(str(path))) if glob.has_magic(str(path)) else [path]
        found = [p for p in found if p.is_file()]
        if not found:
            raise DataError(f"{option}: {pattern!r} names no file (resolved against the project root: {path})")
        files.extend(found)
    return files


def split_documents(tokens: np.ndarray, mode: DocumentMode, eot_token: int) -> list[tuple[int, int]]:
    """[start, end) of each document: the whole stream, or each piece ending in end-of-text."""
    if DocumentMode(mode) is DocumentMode.stream or len(tokens) == 0:
        return [(0, len(tokens))]
    ends = np.flatnonzero(np.asarray(tokens) == eot_token) + 1
    if len(ends) == 0 or ends[-1] != len(tokens):
        ends = np.append(ends, len(tokens))
    starts = np.concatenate(([0], ends[:-1]))
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def load_eval_text(name: str, cfg: EvalSetConfig, tokenizer: str, cache_dir: str) -> EvalText:
    """Tokenize (or read the cached tokens of) eval set `name` with `tokenizer`."""
    option = f"eval.sets.{name}.files"
    if not cfg.files:
        raise DataError(f"{option} is empty: list the text files of eval set {name!r}")
    files = expand_files(list(cfg.files), option)
    data_cfg = DataConfig(
        name=f"eval-{name}",
        source=DataSource.local,
        train_files=[str(f) for f in files],
        val_files=[str(f) for f in files],
        tokenizer=tokenizer,
        cache_dir=str(Path(cache_dir) / f"{name}-{tokenizer}"),
    )
    folder = ensure_prepared(data_cfg)
    tokens = load_tokens(folder, "val")
    docs = split_documents(tokens, cfg.documents, read_meta(folder)["eot_token"])
    return EvalText(name=name, tokens=tokens, docs=docs, files=files)
