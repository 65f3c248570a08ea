"""Typed configuration of the context probes (eval.probes, eval.repeat, eval.retrieval, eval.attention)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class Probe(str, Enum):
    repeat = "repeat"  # repeated-span probe: loss on a span's second copy vs its first, by distance
    retrieval = "retrieval"  # "The secret word is <w>." ... "The secret word is" -> rank of <w>
    attention = "attention"  # mean attention distance and mass past L, per layer and head


@dataclass
class RepeatProbeConfig:
    """[filler of d tokens] [span S] [filler of d - span tokens] [S again]: the copies start d
    tokens apart (see evaluation/probes/repeat.py)."""

    distances: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0, 8.0])  # x L
    span: int = 16  # tokens per span
    spans: int = 8  # spans per set, spread evenly over its documents; the same at every distance
    sets: Optional[list[str]] = None  # eval sets to take the text from; null: every set


@dataclass
class RetrievalProbeConfig:
    """A key sentence at `depths` of filler text, a query at the end (evaluation/probes/retrieval.py)."""

    lengths: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])  # total tokens, x L
    depths: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])  # where the key sits in the filler
    # Candidate answers, each one token with its leading space; every filler is tried with each.
    words: list[str] = field(default_factory=lambda: [" ball", " cat", " tree", " cake", " moon", " fish",
                                                      " hat", " boat"])
    key: str = " The secret word is{word}."
    query: str = " The secret word is"
    fillers: int = 1  # filler pieces, from `set`
    set: Optional[str] = None  # eval set the filler comes from; null: the first set


@dataclass
class AttentionProbeConfig:
    """Attention statistics on windows of every evaluation length (evaluation/probes/attention.py)."""

    windows: int = 2  # windows per length, through the explicit (non-fused) attention path
    set: Optional[str] = None  # eval set the windows come from; null: the first set
