"""run_training: config -> data -> model -> loop -> summary. train.py is a thin Hydra main over it;
compare.py calls it in process with `configs.compose.compose_job(overrides)`."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from training import distributed as dist_utils
from training.build import build_model
from training.checkpoint import (
    CKPT_BEST,
    CKPT_LAST,
    CheckpointError,
    bare_model,
    checkpoint_vocab,
    load_checkpoint,
    model_only,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.config import TrainConfig
from training.data import TrainData
from training.distributed import DistEnv
from data.config import project_path
from data.vocab import Vocab
from training.job import as_train_job
from training.loop import Loop, LoopState
from training.metrics import METRICS_FILE, MetricsLog
from training.optim import build_optimizer
from training.device import set_threads
from training.precision import autocast, enable_tf32, resolve_dtype
from training.signals import TrainingInterrupted, stop_on_signals
from training.provenance import code_version
from training.wandb_run import start_run

RESUME_KEYS = ("model", "optimizer", "step", "loader", "rng", "config", "best_val_loss", "best_step",
               "evals_since_best", "elapsed_s")


def run_training(job_cfg) -> dict:
    """Train one model as configured by a TrainJob (DictConfig, dict or dataclass); returns the
    summary that is also the last line of <out_dir>/metrics.jsonl. Under torchrun every process
    calls it; rank 0 writes the files.

    Every check (options, data, a resume's checkpoint and model shape) runs before anything is
    written, so a refused run leaves out_dir as it was (and makes no folder). SIGINT and SIGTERM
    during the loop save a checkpoint of the current step and raise `TrainingInterrupted`."""
    cfg = as_train_job(job_cfg)
    env = dist_utils.setup(cfg.train.device)
    try:
        return _train(cfg, env)
    finally:
        dist_utils.teardown(env)


def resolve_out_dir(cfg: DictConfig) -> Path:
    """out_dir, relative to the project root (train.py fills in its dated default)."""
    if cfg.out_dir is None:
        raise ValueError("out_dir is not set: pass out_dir=PATH")
    return project_path(cfg.out_dir)


def check_writable(out_dir: Path) -> None:
    """out_dir can be made (or written to): checked before any work, so that a run does not train
    for an hour and then fail at its first checkpoint."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir={out_dir} is a file, not a folder")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir={out_dir}: {existing} is not a writable folder; choose another out_dir")


def grad_accum_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per update that keep the global batch whatever the number of processes."""
    per_pass = cfg.batch_size * world_size
    if cfg.global_batch_size % per_pass:
        raise ValueError(
            f"train.global_batch_size={cfg.global_batch_size} is not a multiple of train.batch_size="
            f"{cfg.batch_size} x {world_size} process(es) = {per_pass}"
        )
    return cfg.global_batch_size // per_pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # CPU and every CUDA device


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    """The model and its encoding must be the ones the checkpoint was trained with; the error
    names every field that differs."""
    diffs = [f"{group}.{k}={current[group].get(k)} (checkpoint: {saved[group].get(k)})"
             for group in ("model", "pos")
             for k in sorted(set(saved[group]) | set(current[group])) if saved[group].get(k) != current[group].get(k)]
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: {', '.join(diffs)}; resume with the checkpoint's "
                              "settings, or start a fresh run in another out_dir")


def check_same_vocab(saved: Vocab, current: Vocab, path: Path) -> None:
    """The data's vocabulary must be the one the checkpoint's model was trained on."""
    if saved != current:
        raise CheckpointError(
            f"cannot resume from {path}: it was trained on a vocabulary of {saved.describe()}, the data "
            f"now gives {current.describe()} (data.vocab_size or the training text changed)"
        )


def _format_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n / 1e3:.1f}K"


def _train(cfg: DictConfig, env: DistEnv) -> dict:
    tcfg: TrainConfig = OmegaConf.to_object(cfg.train)  # validates the values (TrainConfig.__post_init__)
    set_threads(cfg.threads)
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out_dir = resolve_out_dir(cfg)
    ckpt_last = out_dir / CKPT_LAST
    if cfg.resume and not ckpt_last.is_file():
        raise CheckpointError(f"resume=true but there is no checkpoint to resume from: {ckpt_last} does not "
                              "exist; drop resume=true to start a fresh run there")
    if not cfg.resume and ckpt_last.is_file():
        raise CheckpointError(f"{out_dir} already holds {CKPT_LAST}: pass resume=true to continue "
                              f"that run, or choose another out_dir")
    check_writable(out_dir)
    grad_accum = grad_accum_steps(tcfg, env.world_size)
    device = env.device
    dtype = resolve_dtype(tcfg.dtype, device)
    enable_tf32(device)

    data = TrainData(OmegaConf.to_object(cfg.data), cfg.model.block_size, tcfg.batch_size, cfg.seed, env, grad_accum,
                     tcfg.eval_batches)
    seed_everything(cfg.seed)  # the same initial weights in every process
    model = build_model(cfg.model, cfg.pos, vocab_size=data.vocab.size).to(device)
    data.randomize_positions(model.pos.randomize_to)
    counts = model.param_counts()
    optimizer = build_optimizer(model, tcfg, device.type)
    metrics = MetricsLog(out_dir / METRICS_FILE, enabled=env.is_main)

    state = LoopState()
    wandb_id = None
    if cfg.resume:  # accepted only when everything below loads: until then nothing is written
        ckpt = load_checkpoint(ckpt_last, required=RESUME_KEYS)
        check_resumable(ckpt["config"], container, ckpt_last)
        check_same_vocab(checkpoint_vocab(ckpt, ckpt_last), data.vocab, ckpt_last)
        model.load_state_dict(ckpt["model"], strict=True)
        optimizer.load_state_dict(ckpt["optimizer"])
        data.load_state_dict(ckpt["loader"])
        state = LoopState(step=ckpt["step"], best_val_loss=ckpt["best_val_loss"], best_step=ckpt["best_step"],
                          evals_since_best=ckpt["evals_since_best"], last_val_loss=ckpt.get("last_val_loss"),
                          elapsed_s=ckpt["elapsed_s"])
        if len(ckpt["rng"]) == env.world_size:
            set_rng_state(ckpt["rng"][env.rank])
        else:  # another number of processes: fresh streams, the run goes on but not bitwise
            seed_everything(cfg.seed + 1000003 * state.step + env.rank)
        wandb_id = ckpt.get("wandb_id")
    else:
        seed_everything(cfg.seed + env.rank)  # dropout differs between processes

    dist_utils.barrier(env)  # every process has checked the directory before rank 0 writes to it
    metrics = MetricsLog(out_dir / METRICS_FILE, enabled=env.is_main)
    if env.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out_dir)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(container))
        if cfg.resume:
            metrics.truncate_after(state.step)
        elif (out_dir / METRICS_FILE).exists():
            (out_dir / METRICS_FILE).unlink()

    if tcfg.compile:
        # compare.py trains many models in one process: past 8 compiled versions of GPT.forward
        # (train and eval mode per encoding) dynamo would run the later models eager, silently
        torch._dynamo.reset()
    train_model = torch.compile(model) if tcfg.compile else model
    eval_model = train_model
    if env.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )

    tokens_per_step = tcfg.global_batch_size * model.cfg.block_size
    name = f"{cfg.pos.name}-{cfg.model.n_layer}x{cfg.model.n_embd}-{_format_count(counts['non_embedding'])}"
    wandb_run = start_run(cfg.wandb, out_dir, name, container, wandb_id) if env.is_main else None
    if env.is_main:
        print(f"{name}: params embedding {_format_count(counts['embedding'])}, non-embedding "
              f"{_format_count(counts['non_embedding'])}, total {_format_count(counts['total'])}; "
              f"{env.world_size} process(es) x {grad_accum} micro-step(s) x {tcfg.batch_size} sequences "
              f"x {model.cfg.block_size} tokens = {tokens_per_step:,} tokens/step on {device} ({dtype}); "
              f"{'resuming at step ' + str(state.step) if cfg.resume else 'fresh start'} -> {out_dir}")
    metrics.write("start", state.step, resumed=bool(cfg.resume), world_size=env.world_size,
                  grad_accum=grad_accum, tokens_per_step=tokens_per_step, device=str(device),
                  dtype=str(dtype).removeprefix("torch."), params=counts, code=code_version())

    def save(st: LoopState, is_best: bool, elapsed_s: float) -> None:
        rngs = dist_utils.all_gather_object(env, rng_state())  # every process's generators
        if env.is_main:
            ckpt = {
                "model": bare_model(train_model).state_dict(),  # no `module.` / `_orig_mod.` prefixes
                "optimizer": optimizer.state_dict(),
                "loader": data.state_dict(st.step),
                "rng": rngs,
                "config": container,
                "vocab": data.vocab.to_dict(),
                "elapsed_s": elapsed_s,
                "wandb_id": None if wandb_run is None else wandb_run.id,
                **st.bookkeeping(),
            }
            save_checkpoint(ckpt, ckpt_last)
            if is_best:  # the weights alone: what evaluation and sampling read (see checkpoint.py)
                save_checkpoint(model_only(ckpt), out_dir / CKPT_BEST)
        dist_utils.barrier(env)

    loop = Loop(
        cfg=tcfg, env=env, model=train_model, eval_model=eval_model, optimizer=optimizer,
        train_batch=data.train_batch, val_batch=data.val_batch, num_val_batches=data.num_val_batches,
        autocast=lambda: autocast(device, dtype), grad_accum=grad_accum, tokens_per_step=tokens_per_step,
        flops_per_token=model.flops_per_token(model.cfg.block_size), metrics=metrics, save=save,
        wandb_run=wandb_run, state=state,
    )
    with stop_on_signals() as stop:
        loop.stop = stop
        st = loop.run()
    if st.stopped_by is not None:
        if wandb_run is not None:
            wandb_run.finish(exit_code=128 + st.stopped_by)
        raise TrainingInterrupted(
            f"stopped by {signal.Signals(st.stopped_by).name} at step {st.step}: saved {ckpt_last}; continue "
            f"with resume=true out_dir={out_dir}", st.stopped_by)

    summary = {
        "tokens": st.step * tokens_per_step,
        "best_val_loss": st.best_val_loss if st.best_step >= 0 else None,
        "best_step": st.best_step if st.best_step >= 0 else None,
        "final_val_loss": st.last_val_loss,
        "wall_s": st.elapsed_s,
        "tokens_per_s": st.session_tokens / st.session_train_s if st.session_train_s > 0 else None,
        "stopped_early": st.stopped_early,
        "params": counts,
    }
    metrics.write("summary", st.step, **summary)
    if wandb_run is not None:
        wandb_run.summary.update({k: v for k, v in summary.items() if v is not None})
        wandb_run.finish()
    if env.is_main:
        best = "n/a" if summary["best_val_loss"] is None else f"{summary['best_val_loss']:.4f} (step {st.best_step})"
        speed = "n/a" if summary["tokens_per_s"] is None else f"{summary['tokens_per_s']:,.0f}"
        print(f"done: {st.step} steps, {summary['tokens']:,} tokens, best val loss {best}, "
              f"wall {st.elapsed_s:.1f} s, {speed} tokens/s -> {out_dir}")
    return {"step": st.step, "out_dir": str(out_dir), **summary}
