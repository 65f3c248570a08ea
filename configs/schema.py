"""Hydra structured configs: the typed schema behind every entry point.

Each entry point (train.py, sample.py, ...) has a root dataclass (train.py's lives with its
package, training/job.py). Its group fields are typed (`model: ModelConfig`), so a YAML option or a
command-line override with an unknown or mistyped key fails with an error that names the key. The
`pos` group is one dataclass per registered encoding (model/positional/), so each encoding accepts
only its own keys. Library packages never import this module; it imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from data.config import ROOT, DataConfig
from evaluation.config import EvalConfig, SamplesConfig
from model.config import ModelConfig, PosConfig
from model.positional import config_classes, default_compare_encodings
from training.config import TrainConfig, WandbConfig
from training.device import THREADS
from training.job import TrainJob

CONFIG_DIR = ROOT / "configs"



@dataclass
class SampleJob:
    """sample.py: checkpoint -> prompt -> KV-cached generation."""

    # model= and pos= build a fresh, untrained model when no ckpt is given; with a ckpt they are
    # an error (a checkpoint brings its own model and encoding).
    model: ModelConfig = MISSING
    pos: PosConfig = MISSING
    ckpt: Optional[str] = None  # a checkpoint file or a run directory (its ckpt_best/ckpt_last)
    prompt: str = "Once upon a time"  # "" samples unconditionally (from <|endoftext|>)
    max_new_tokens: int = 200  # new tokens per sample at most (a sample stops at <|endoftext|>)
    num_samples: int = 1  # samples, one after another
    temperature: float = 0.8  # 0: greedy; higher: more random
    top_k: Optional[int] = 200  # sample among the k likeliest tokens; null: all
    top_p: Optional[float] = None  # nucleus sampling: the smallest set of probability >= top_p; null: off
    seed: int = 1337  # the generator seed (same seed, same text)
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...
    threads: int = THREADS  # CPU threads (torch.set_num_threads); 0: torch's default, one per core
    # What to do when the learned position table is full: "stop" with a message, or "slide"
    # (re-prefill the last block_size tokens and go on).
    overflow: str = "stop"
    # Run the one-token steps as a compiled fixed-shape step: CUDA graphs on CUDA (the first
    # sample pays the compile, about a minute; later samples replay it), inductor on CPU.
    compile: bool = False


@dataclass
class PrepareJob:
    """prepare.py: text -> tiktoken token ids in train.bin / val.bin + meta.json."""

    data: DataConfig = MISSING
    force: bool = False  # tokenize again even when meta.json says the files are up to date


@dataclass
class EvalJob:
    """evaluate.py: checkpoints -> perplexity at longer contexts, both protocols, per position."""

    ckpts: list[str] = MISSING  # checkpoint files or run directories (their ckpt_best / ckpt_last)
    eval: EvalConfig = MISSING
    out: Optional[str] = None  # one JSON file for all results; None: eval.json in each run directory
    threads: int = THREADS  # CPU threads (torch.set_num_threads); 0: torch's default, one per core


@dataclass
class CompareJob:
    """compare.py: train every encoding with one recipe, evaluate, write the report."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    train: TrainConfig = MISSING
    eval: EvalConfig = MISSING
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    name: str = "default"  # names the run and report folders; presets set it
    encodings: list[str] = field(default_factory=default_compare_encodings)  # every registered one
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds per encoding
    out_dir: str = "runs/compare/${name}"  # one run directory per encoding and seed
    # report.md, its plots and copies of the runs' small files (rebuild: compare.py --rebuild DIR).
    # The committed reports are report/<name>: written only when asked (report_dir=report/cpu), and
    # only from committed code unless allow_dirty.
    report_dir: str = "runs/compare/${name}/report"
    allow_dirty: bool = False  # write a report under report/ from uncommitted code (marked so)
    jobs: int = 1  # runs trained and evaluated at a time, each in its own process when > 1
    threads: Optional[int] = None  # torch threads per run; None: CPUs / jobs (jobs > 1), else torch's default
    estimate: bool = True  # time a few steps and forwards of each encoding first, print the expected time


def register_configs() -> None:
    """Register the schemas; YAML files under configs/ fill them in."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainJob)
    cs.store(name="sample_schema", node=SampleJob)
    cs.store(name="prepare_schema", node=PrepareJob)
    cs.store(name="evaluate_schema", node=EvalJob)
    cs.store(name="compare_schema", node=CompareJob)
    for name, cls in config_classes().items():
        cs.store(group="pos", name=name, node=cls)
