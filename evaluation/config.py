"""Typed configuration of the length-extrapolation evaluation and of the ablation report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import OmegaConf

from evaluation.probes.config import AttentionProbeConfig, Probe, RepeatProbeConfig, RetrievalProbeConfig
from model.positional import all_variants
from training.config import Dtype


class Protocol(str, Enum):
    """The two evaluation protocols of Press et al. (ALiBi paper, Sec. 4 and App. B)."""

    nonoverlap = "nonoverlap"  # split the text into windows of L tokens, score every token
    sliding = "sliding"  # slide a window of L tokens by `stride`, score only its last `stride` tokens


class DocumentMode(str, Enum):
    stream = "stream"  # the text is one token stream: windows cross story boundaries, as in training
    eot = "eot"  # every end-of-text-terminated piece (a story, a book) is a document; windows stay inside


@dataclass
class EvalSetConfig:
    """One evaluation text. `files` are paths or globs relative to the project root, tokenized
    exactly like training data (data/prepare.py) with the checkpoint's tokenizer."""

    files: list[str] = field(default_factory=list)
    documents: DocumentMode = DocumentMode.stream
    # Scored tokens per (length, protocol), rounded down to whole chunks of lcm(lengths) tokens and
    # spread evenly over the text; null: every whole chunk the text holds.
    max_tokens: Optional[int] = 65536
    about: str = ""  # what the set measures, for the report


@dataclass
class EvalConfig:
    """Perplexity at `multipliers` x the training length, in each protocol, on each set.

    The same target tokens are scored at every length and in both protocols (see windows.py).
    """

    # evaluation lengths as multiples of the checkpoint's training length (round(m * L), distinct)
    multipliers: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    # nonoverlap: windows back to back, every token scored; sliding: each window scores its last `stride`
    protocols: list[Protocol] = field(default_factory=lambda: [Protocol.nonoverlap, Protocol.sliding])
    stride: int = 32  # sliding protocol: tokens scored per window (1: exact); capped at the window length
    # Inference-time context extensions (factor = length / L_train) to evaluate each checkpoint
    # with, among those it offers: "none" (the trained model), its encoding's own (RoPE's linear,
    # ntk, dynamic, yarn) and "logn" (log-length scaling, every encoding); null: all of them. A
    # checkpoint that offers none of them is scored as trained.
    variants: Optional[list[str]] = None
    # The texts, name -> {files, documents (stream|eot), max_tokens, about}; add one with
    # `+eval.sets.mine={files:[a.txt]}`, drop one with `~eval.sets.NAME` (typed as Any so that a set
    # can be added; __post_init__ checks each against EvalSetConfig).
    sets: dict[str, Any] = field(default_factory=dict)
    # Input tokens per forward (windows per batch = batch_tokens // length). It bounds the memory
    # at any length: the vocabulary projection runs on at most batch_tokens positions at a time.
    batch_tokens: int = 8192
    # Refuse a plan (per checkpoint) that forwards more tokens than this; raise it to run one anyway.
    max_forward_tokens: int = 200_000_000
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...
    dtype: Dtype = Dtype.auto  # auto: bf16 autocast on CUDA, fp32 on CPU
    progress: bool = True  # tqdm bar
    cache_dir: str = "data/cache/eval"  # tokenized eval sets, one folder per set and tokenizer
    # Context probes (evaluation/probes/): which to run ([] for none) and their settings.
    probes: list[Probe] = field(default_factory=lambda: [Probe.repeat, Probe.retrieval, Probe.attention])
    repeat: RepeatProbeConfig = field(default_factory=RepeatProbeConfig)
    retrieval: RetrievalProbeConfig = field(default_factory=RetrievalProbeConfig)
    attention: AttentionProbeConfig = field(default_factory=AttentionProbeConfig)

    def __post_init__(self) -> None:
        """Check the options (on OmegaConf.to_object), before any checkpoint is read."""
        if not self.multipliers or any(not m > 0 for m in self.multipliers):
            raise ValueError(f"eval.multipliers={list(self.multipliers)}: give one or more positive numbers, "
                             "e.g. eval.multipliers=[1,2,4]")
        if not self.protocols:
            raise ValueError("eval.protocols is empty: list nonoverlap, sliding or both")
        for name in ("stride", "batch_tokens", "max_forward_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name}={getattr(self, name)}: must be >= 1")
        self.sets = {name: as_eval_set(name, s) for name, s in self.sets.items()}
        unknown = [v for v in self.variants or [] if v not in all_variants()]
        if unknown:
            raise ValueError(f"eval.variants: {unknown} is not a variant of any encoding; known: {all_variants()}")


def as_eval_set(name: str, value: Any) -> EvalSetConfig:
    """A set given as a dict or DictConfig, validated (unknown keys and bad types are errors)."""
    if isinstance(value, EvalSetConfig):
        return value
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvalSetConfig), value))
    except Exception as e:  # omegaconf's validation errors name the key
        raise ValueError(f"eval.sets.{name}: {e}") from e


@dataclass
class SamplesConfig:
    """Stories sampled from every encoding with the same prompt and generator seed."""

    prompt: str = "Once upon a time"
    num_samples: int = 2
    max_new_tokens: int = 120
    temperature: float = 0.8
    top_k: Optional[int] = 200
    seed: int = 1337
