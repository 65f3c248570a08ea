"""The model's vocabulary: the tokenizer's ids, or the most frequent of them renumbered densely.

`data.vocab_size = N` keeps end-of-text and the N - 1 most frequent other tokenizer ids of the
training split (ties: the lower id first; only ids that occur, so an N larger than the ids that
occur keeps them all), numbers the kept ids 0..K-1 in the tokenizer's order, and maps every other
id to one unknown id K: the model's vocabulary is K + 1 (N + 1 unless fewer ids occur). The
TinyStories paper does the same with GPT-Neo's tokenizer (Eldan & Li 2023, its 10K most common
tokens). `data.vocab_size = None` keeps the tokenizer's ids unchanged (GPT-2: 50,257, no unknown id).

The map is stored in meta.json and in every checkpoint (`Vocab.to_dict`), so a model's ids mean
the same thing wherever it is used: evaluation maps its text through the checkpoint's map, sampling
decodes through it (the unknown id prints as UNK_MARKER).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from data.tokens import TOKEN_DTYPE, DataError

UNK_MARKER = "\u2047"  # ⁇, what the unknown id decodes to
COUNT_BLOCK = 1 << 24  # tokens counted or mapped per numpy call (bounded memory on the hub corpus)


@dataclass(frozen=True)
class Vocab:
    tokenizer: str  # the tiktoken encoding the ids come from
    tokenizer_size: int  # its number of ids (n_vocab)
    eot_tokenizer_id: int  # its end-of-text id
    kept: Optional[tuple[int, ...]] = None  # kept tokenizer ids, ascending; None: all, unchanged

    @property
    def size(self) -> int:
        """The model's vocabulary size: the kept ids and the unknown id, or the tokenizer's."""
        return self.tokenizer_size if self.kept is None else len(self.kept) + 1

    @property
    def unk_id(self) -> Optional[int]:
        return None if self.kept is None else len(self.kept)

    @property
    def eot_id(self) -> int:
        """End-of-text in the model's ids."""
        return self.eot_tokenizer_id if self.kept is None else self.kept.index(self.eot_tokenizer_id)

    def _table(self) -> np.ndarray:
        """(tokenizer_size,) tokenizer id -> model id."""
        table = np.full(self.tokenizer_size, self.unk_id, dtype=TOKEN_DTYPE)
        table[list(self.kept)] = np.arange(len(self.kept), dtype=TOKEN_DTYPE)
        return table

    def to_model(self, ids: np.ndarray) -> np.ndarray:
        """Tokenizer ids -> model ids (uint16); ids not kept become the unknown id."""
        ids = np.asarray(ids)
        if self.kept is None:
            return ids.astype(TOKEN_DTYPE, copy=False)
        table = self._table()
        return np.concatenate([table[ids[a : a + COUNT_BLOCK]] for a in range(0, len(ids), COUNT_BLOCK)]
                              or [np.zeros(0, TOKEN_DTYPE)])

    def to_tokenizer(self, ids: Iterable[int]) -> list[Optional[int]]:
        """Model ids -> tokenizer ids, None for the unknown id."""
        if self.kept is None:
            return [int(i) for i in ids]
        return [None if i == self.unk_id else self.kept[i] for i in map(int, ids)]

    def decode(self, enc, ids: Iterable[int]) -> str:
        """Model ids -> text with `enc` (the tokenizer), the unknown id as UNK_MARKER."""
        pieces, run = [], []
        for t in self.to_tokenizer(ids):
            if t is None:
                pieces += [enc.decode(run), UNK_MARKER]
                run = []
            else:
                run.append(t)
        return "".join(pieces) + enc.decode(run)

    def encode(self, enc, text: str) -> list[int]:
        """Text -> model ids (the `<|endoftext|>` string is end-of-text)."""
        return self.to_model(np.array(enc.encode(text, allowed_special={"<|endoftext|>"}), dtype=np.int64)).tolist()

    def to_dict(self) -> dict:
        return {"tokenizer": self.tokenizer, "tokenizer_size": self.tokenizer_size,
                "eot_tokenizer_id": self.eot_tokenizer_id, "size": self.size,
                "kept": None if self.kept is None else list(self.kept)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        kept = d.get("kept")
        vocab = cls(d["tokenizer"], int(d["tokenizer_size"]), int(d["eot_tokenizer_id"]),
                    None if kept is None else tuple(int(i) for i in kept))
        if "size" in d and d["size"] != vocab.size:
            raise DataError(f"vocabulary record says size {d['size']} but holds {vocab.size} ids")
        return vocab

    def describe(self) -> str:
        if self.kept is None:
            return f"{self.tokenizer}'s {self.size:,} ids"
        return f"{len(self.kept):,} of {self.tokenizer}'s {self.tokenizer_size:,} ids + 1 unknown id"


def count_ids(tokens: np.ndarray, size: int) -> np.ndarray:
    """(size,) int64 occurrences of each id in `tokens`, counted in blocks."""
    counts = np.zeros(size, dtype=np.int64)
    for a in range(0, len(tokens), COUNT_BLOCK):
        counts += np.bincount(np.asarray(tokens[a : a + COUNT_BLOCK]), minlength=size)[:size]
    return counts


def most_frequent(counts: np.ndarray, n: int, tokenizer: str, eot: int) -> Vocab:
    """End-of-text and the n - 1 most frequent other ids with a count above 0 (ties: lower id)."""
    if n < 2:
        raise DataError(f"data.vocab_size={n}: must be at least 2 (end-of-text and one more id), or null")
    others = np.flatnonzero(counts > 0)
    others = others[others != eot]
    order = np.lexsort((others, -counts[others]))  # by count descending, then id ascending
    kept = np.sort(np.append(others[order[: n - 1]], eot))
    return Vocab(tokenizer, len(counts), eot, tuple(int(i) for i in kept))
