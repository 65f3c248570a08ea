"""Checkpoints: atomic writes, safe loading, RNG state, and `load_model` for the other tools.

A checkpoint is one `torch.save`d dict of plain data (tensors, numbers, strings, lists, dicts),
so it loads with `torch.load(weights_only=True)`. ckpt_last.pt holds everything a resume needs:

    model          state dict of the bare GPT (no `_orig_mod.` / `module.` prefixes)
    optimizer      AdamW state dict (twice the model's size: the two moment estimates)
    step           optimizer steps done; the learning rate schedule is a pure function of it
    loader         the train loader's position (its `state_dict()`)
    rng            one entry per process: python, numpy, torch (and cuda) generator states
    best_val_loss, best_step, evals_since_best, last_val_loss, elapsed_s, wandb_id   bookkeeping
    config         the resolved TrainJob as plain containers (enums as strings)
    vocab          the data's vocabulary: the map from tokenizer ids to the model's (data/vocab.py)

ckpt_best.pt (the best val loss so far) holds only what evaluation and sampling read (`MODEL_KEYS`:
model, config, step, best_val_loss, best_step), a third of ckpt_last.pt's size: it is never
resumed from.

Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the target,
so a crash or a full disk mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from data.encode import get_tokenizer
from data.vocab import Vocab
from training.build import build_model

CKPT_LAST = "ckpt_last.pt"
CKPT_BEST = "ckpt_best.pt"
MODEL_KEYS = ("model", "config", "vocab", "step", "best_val_loss", "best_step")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or incomplete; the message names the file."""


def bare_model(model: torch.nn.Module) -> torch.nn.Module:
    """The GPT inside DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def model_only(state: dict) -> dict:
    """The entries of a full checkpoint that evaluation and sampling need (ckpt_best.pt)."""
    return {k: state[k] for k in MODEL_KEYS if k in state}


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write `state` to `path` atomically: temp file, fsync, rename, fsync of the folder. A write
    that fails (a full disk) is a CheckpointError, and the previous file at `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.is_file() else "nothing was written"
        raise CheckpointError(f"could not write checkpoint {path} ({e.strerror or e}): {kept}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(folder: str | Path) -> None:
    """Delete temp files left by a process killed mid-write (the targets are intact)."""
    for tmp in Path(folder).glob(".ckpt_*.pt.tmp*"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model", "config")) -> dict:
    """Read a checkpoint onto the CPU with weights_only=True; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read "
            f"({type(e).__name__}: {e}). Evaluation and sampling can use the other checkpoint in "
            f"{path.parent} ({CKPT_BEST} holds the weights of the best step, not a resumable state)."
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}")
    return state


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or in a run directory its ckpt_best.pt, else its ckpt_last.pt."""
    path = Path(path)
    if path.is_dir():
        for name in (CKPT_BEST, CKPT_LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"no {CKPT_BEST} or {CKPT_LAST} in run directory {path}")
    return path


def rng_state() -> dict:
    """Every generator the training loop may draw from, as weights_only-loadable data."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of `rng_state`."""
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuples(x):
    """random.setstate needs the nested tuples that a round trip may have turned into lists."""
    return tuple(_to_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def checkpoint_vocab(state: dict, path: str | Path) -> Vocab:
    """The vocabulary a checkpoint's model was trained on. Checkpoints written before the map was
    saved hold the tokenizer's full vocabulary (their model.vocab_size says how many ids)."""
    if state.get("vocab") is not None:
        return Vocab.from_dict(state["vocab"])
    data, model = state["config"].get("data", {}), state["config"].get("model", {})
    tokenizer = data.get("tokenizer", "gpt2")
    enc = get_tokenizer(tokenizer)
    if model.get("vocab_size") not in (None, enc.n_vocab):
        raise CheckpointError(f"checkpoint {path} has no vocabulary map and model.vocab_size="
                              f"{model.get('vocab_size')} is not {tokenizer}'s {enc.n_vocab}")
    return Vocab(tokenizer, enc.n_vocab, enc.eot_token)


def load_model_and_vocab(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict, Vocab]:
    """(GPT in eval mode on `device`, the run's TrainJob config as plain containers, its vocabulary).

    `path` is a checkpoint file or a run directory (its ckpt_best.pt, else ckpt_last.pt).
    The weights load strictly: a missing or unexpected key is an error, and so is a model whose
    vocabulary size is not the saved map's.
    """
    path = resolve_checkpoint(path)
    state = load_checkpoint(path)
    cfg = state["config"]
    vocab = checkpoint_vocab(state, path)
    try:
        model = build_model(cfg["model"], cfg["pos"], vocab_size=vocab.size)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from e
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its model config: {e}") from e
    return model.to(device).eval(), cfg, vocab


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """(GPT in eval mode on `device`, the run's TrainJob config): `load_model_and_vocab` without
    the vocabulary."""
    model, cfg, _ = load_model_and_vocab(path, device)
    return model, cfg
