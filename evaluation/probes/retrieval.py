"""The key-value retrieval probe (passkey-style, as in Chen et al. 2023, position interpolation,
and Peng et al. 2023, YaRN), in the children's-story domain.

An input of T tokens is real filler text with the key sentence (" The secret word is ball.")
inserted at a fraction `depth` of the filler, and the query (" The secret word is") at the end.
At the query's last position the candidate words (one token each) are ranked by the model's
logits: rank 1 is a correct retrieval. Every filler piece is tried with every candidate as the key,
so a model that ignores the key ranks the right word (K + 1) / 2 on average, is right 1 / K of
the time and gives it 1 / K of the candidates' probability mass: those are the chance levels.
The same filler pieces (a longer prefix of the same text) are used at every length.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from evaluation.probes.config import RetrievalProbeConfig
from evaluation.probes.forward import Forward, fits
from evaluation.probes.placement import spread_positions


def word_ids(enc, words: list[str], unknown: Optional[int] = None) -> list[int]:
    """One token id per candidate word; a clear error for a word that is not one token, or that
    the model's vocabulary maps to its `unknown` id."""
    ids = []
    for w in words:
        tok = enc.encode_ordinary(w)
        if len(tok) != 1:
            raise ValueError(f"eval.retrieval.words: {w!r} is {len(tok)} tokens with this tokenizer; "
                             "every candidate must be one token (mind the leading space)")
        if unknown is not None and tok[0] == unknown:
            raise ValueError(f"eval.retrieval.words: {w!r} is not in this model's vocabulary "
                             "(data.vocab_size): choose words of the training text")
        ids.append(tok[0])
    if len(set(ids)) != len(ids) or len(ids) < 2:
        raise ValueError(f"eval.retrieval.words must be at least two distinct words, got {words}")
    return ids


def build_inputs(tokens: np.ndarray, starts: np.ndarray, length: int, depth: float, keys: list[list[int]],
                 query: list[int]) -> np.ndarray:
    """(len(keys) * len(starts), length) inputs, key-major: filler from each start with keys[k]
    inserted at round(depth * filler length), then the query."""
    n_fill = length - len(keys[0]) - len(query)
    if n_fill < 1:
        raise ValueError(f"eval.retrieval: length {length} leaves no room for filler around the key "
                         f"({len(keys[0])} tokens) and query ({len(query)} tokens)")
    at = round(depth * n_fill)
    filler = np.asarray(tokens)[starts[:, None] + np.arange(n_fill)].astype(np.int64)  # (F, n_fill)
    rows = [np.concatenate([f[:at], key, f[at:], query]) for key in keys for f in filler]
    return np.stack(rows)


def retrieval_rows(forward: Forward, model, enc, tokens: np.ndarray, docs: list[tuple[int, int]],
                   cfg: RetrievalProbeConfig, lengths: list[int], on_length=None,
                   unknown_id: Optional[int] = None) -> list[dict]:
    """One row per (length, depth): {"length", "depth", "accuracy", "mean_rank", "prob"
    (the right word's share of the candidates' probability), "vocab_prob" (of the whole
    vocabulary), "trials", "note"}."""
    if not lengths or not cfg.depths or any(not 0 <= d <= 1 for d in cfg.depths):
        raise ValueError(f"eval.retrieval: lengths and depths (in [0, 1]) must be non-empty, got "
                         f"{cfg.lengths}, {cfg.depths}")
    if "{word}" not in cfg.key:
        raise ValueError(f"eval.retrieval.key must contain {{word}}, got {cfg.key!r}")
    ids = word_ids(enc, list(cfg.words), unknown_id)
    keys = [enc.encode_ordinary(cfg.key.format(word=w)) for w in cfg.words]
    if len({len(k) for k in keys}) != 1:
        raise ValueError("eval.retrieval: the key sentence must have the same length for every word")
    query = enc.encode_ordinary(cfg.query)
    starts = spread_positions(docs, 0, max(lengths), cfg.fillers, "eval.retrieval.fillers")
    candidates = torch.tensor(ids)
    answer = torch.arange(len(ids)).repeat_interleave(len(starts))  # key-major, as build_inputs
    rows = []
    for T in lengths:
        for depth in cfg.depths:
            row = {"length": T, "depth": depth}
            if not fits(model, T):
                rows.append(row | {"note": f"n/a (table length {model.max_positions})"})
                continue
            if on_length is not None:
                on_length(T)
            x = build_inputs(tokens, starts, T, depth, keys, query)
            logp = forward.log_probs(x, np.array([T - 1]))[:, 0]  # (N, V)
            cand = logp[:, candidates]  # (N, K)
            right = cand.gather(1, answer[:, None])[:, 0]
            above, tied = (cand > right[:, None]).sum(1), (cand == right[:, None]).sum(1) - 1
            rank = 1 + above + 0.5 * tied  # ties share their ranks' mean
            share = torch.softmax(cand, dim=1).gather(1, answer[:, None])[:, 0]
            rows.append(row | {"accuracy": float(((above == 0) & (tied == 0)).double().mean()), "mean_rank": float(rank.double().mean()),
                               "prob": float(share.double().mean()), "vocab_prob": float(right.double().exp().mean()),
                               "trials": len(x), "note": None})
    return rows
