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

    multipliers: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    protocols: list[Protocol] = field(default_factory=lambda: [Protocol.nonoverlap, Protocol.sliding])
    stride: int = 32  # sliding protocol: tokens scored per window (1: exact); capped at the window length
    # Inference-time context extensions (factor = length / L_train) to evaluate each checkpoint
    # with, among those it offers: "none" (the trained model), its encoding's own (RoPE's linear,
    # ntk, dynamic, yarn) and "logn" (log-length scaling, every encoding); null: all of them. A
    # checkpoint that offers none of them is scored as trained.
    variants: Optional[list[str]] = None
    # name -> EvalSetConfig. Typed as Any so a set can be added from the command line
    # (`+eval.sets.mine={files:[a.txt]}`); __post_init__ checks each against EvalSetConfig.
    sets: dict[str, Any] = field(default_factory=dict)
    batch_tokens: int = 8192  # input tokens per forward (windows per batch = batch_tokens // length)
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
