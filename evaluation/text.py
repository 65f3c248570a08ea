"""Evaluation text: any text files, tokenized exactly like the training data, cut into documents,
in the vocabulary of the model that is evaluated.

The files are tokenized by `data.prepare.tokenize_files` (cached with a fingerprint of the files,
so a second evaluation does not tokenize again): stories in a .txt file are separated by
`<|endoftext|>` lines, each story becomes `encode_ordinary(text)` followed by the end-of-text
token. A file without separator lines (a book) is one story. The tokens are then mapped through
the checkpoint's vocabulary (data/vocab.py): ids the model does not know become its unknown id,
and their share is reported beside the perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from data.prepare import tokenize_files
from data.sources import expand_files
from data.tokens import DataError
from data.vocab import Vocab
from evaluation.config import DocumentMode, EvalSetConfig


@dataclass
class EvalText:
    name: str
    tokens: np.ndarray  # (N,) uint16 model token ids of every document, back to back
    docs: list[tuple[int, int]]  # [start, end) of each document in `tokens`
    files: list[Path]
    unknown_rate: Optional[float] = None  # share of `tokens` that are the unknown id; None: no unknown id


def split_documents(tokens: np.ndarray, mode: DocumentMode, eot_token: int) -> list[tuple[int, int]]:
    """[start, end) of each document: the whole stream, or each piece ending in end-of-text."""
    if DocumentMode(mode) is DocumentMode.stream or len(tokens) == 0:
        return [(0, len(tokens))]
    ends = np.flatnonzero(np.asarray(tokens) == eot_token) + 1
    if len(ends) == 0 or ends[-1] != len(tokens):
        ends = np.append(ends, len(tokens))
    starts = np.concatenate(([0], ends[:-1]))
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def load_eval_text(name: str, cfg: EvalSetConfig, vocab: Vocab, cache_dir: str) -> EvalText:
    """Eval set `name` in `vocab`'s ids (tokenized with its tokenizer, or read from the cache)."""
    option = f"eval.sets.{name}.files"
    if not cfg.files:
        raise DataError(f"{option} is empty: list the text files of eval set {name!r}")
    files = expand_files(list(cfg.files), option)
    raw = tokenize_files(files, vocab.tokenizer, Path(cache_dir) / f"{name}-{vocab.tokenizer}", option)
    docs = split_documents(raw, cfg.documents, vocab.eot_tokenizer_id)
    tokens = vocab.to_model(raw)
    unknown = None
    if vocab.unk_id is not None:
        unknown = float(np.count_nonzero(tokens == vocab.unk_id)) / max(1, len(tokens))
    return EvalText(name=name, tokens=tokens, docs=docs, files=files, unknown_rate=unknown)
