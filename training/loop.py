"""The training loop: accumulate, clip, step, log, evaluate, checkpoint, stop.

Step numbering: `step` counts optimizer updates done. Update number s + 1 uses lr_at(s) and the
batches of step s; after it the loop logs (step s + 1 a multiple of log_interval), evaluates (of
eval_interval, or the last step), and checkpoints (of ckpt_interval, or the last step). A
checkpoint taken at step s therefore resumes at update s + 1 with every generator where the
uninterrupted run had it.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from tqdm import tqdm

from training import distributed as dist_utils
from training.config import TrainConfig
from training.distributed import DistEnv
from training.metrics import MetricsLog
from training.schedule import lr_at, set_lr

ESTIMATE_STEPS = 4  # steps timed (the first as a warm-up) before the expected time is printed


@dataclass
class LoopState:
    """What the loop carries from step to step (and through a checkpoint)."""

    step: int = 0
    best_val_loss: float = math.inf
    best_step: int = -1
    evals_since_best: int = 0
    last_val_loss: Optional[float] = None
    elapsed_s: float = 0.0  # wall time of all sessions before this one
    stopped_early: bool = False
    stopped_by: Optional[int] = None  # the signal that stopped the run (after saving a checkpoint)
    session_tokens: int = 0  # trained by this process (for its throughput)
    session_train_s: float = 0.0

    def bookkeeping(self) -> dict:
        return {
            "step": self.step,
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "last_val_loss": self.last_val_loss,
        }


@dataclass
class Loop:
    """Everything a step needs. `model` is what the forward runs through (DDP and/or compiled),
    `eval_model` the same without DDP."""

    cfg: TrainConfig
    env: DistEnv
    model: torch.nn.Module
    eval_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    # (step, micro) -> x, y and their per-sequence positions (None: 0 .. T - 1)
    train_batch: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]
    val_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # index -> x, y
    num_val_batches: int
    autocast: Callable[[], contextlib.AbstractContextManager]
    grad_accum: int
    tokens_per_step: int
    flops_per_token: float
    metrics: MetricsLog
    save: Callable[[LoopState, bool, float], None]  # (state, is_best, elapsed_s): ckpt_last (+best)
    wandb_run: object = None
    state: LoopState = field(default_factory=LoopState)
    stop: object = False  # truthy once the run should stop (training.signals.StopFlag, .signum)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer update; (loss averaged over this process's micro-batches, grad norm, lr)."""
        lr = lr_at(self.state.step, self.cfg)
        set_lr(self.optimizer, lr)
        loss_sum = torch.zeros((), device=self.env.device)
        for micro in range(self.grad_accum):
            x, y, positions = self.train_batch(self.state.step, micro)
            last = micro == self.grad_accum - 1
            # DDP all-reduces gradients on every backward unless told not to: only on the last.
            sync = contextlib.nullcontext() if last or not self.env.distributed else self.model.no_sync()
            with sync:
                with self.autocast():
                    _, loss = self.model(x, y, positions=positions)
                (loss / self.grad_accum).backward()
            loss_sum += loss.detach()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        return loss_sum / self.grad_accum, grad_norm, lr

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss per target token over the val batches, split round-robin over processes."""
        self.eval_model.eval()
        totals = torch.zeros(2, device=self.env.device, dtype=torch.float64)  # (loss sum, tokens)
        for i in range(self.env.rank, self.num_val_batches, self.env.world_size):
            x, y = self.val_batch(i)
            with self.autocast():
                _, loss = self.eval_model(x, y)
            totals[0] += loss.double() * y.numel()
            totals[1] += y.numel()
        dist_utils.all_reduce_sum(self.env, totals)
        self.eval_model.train()
        return (totals[0] / totals[1]).item()

    def global_mean(self, value: torch.Tensor) -> float:
        """The mean of a per-process scalar over all processes."""
        value = value.detach().double().reshape(1)
        return (dist_utils.all_reduce_sum(self.env, value) / self.env.world_size).item()

    def log(self, **fields) -> None:
        self.metrics.write(**fields)
        if self.wandb_run is not None:
            event, step = fields.pop("event"), fields.pop("step")
            self.wandb_run.log({f"{event}/{k}": v for k, v in fields.items() if v is not None}, step=step)

    def elapsed(self, t_start: float) -> float:
        return self.state.elapsed_s + time.perf_counter() - t_start

    def expected_time(self, timed: list[float]) -> str:
        """The rest of the run from this session's first steps (the first one is a warm-up, left
        out); an evaluation batch is counted as a third of a training micro-batch (forward only)."""
        per_step = statistics.median(timed[1:])
        left = self.cfg.max_steps - self.state.step
        every, end = self.cfg.eval_interval, self.cfg.max_steps  # evaluations at multiples of `every` and at the end
        evals = end // every - self.state.step // every + (end % every != 0)
        eval_s = evals * self.num_val_batches / self.env.world_size * per_step / (3 * self.grad_accum)
        return (f"expected: ~{(left * per_step + eval_s) / 60:.1f} min more for {left} steps at {per_step:.2f} s/step "
                f"(measured over the last {len(timed) - 1} steps) and {evals} evaluation(s) of "
                f"{self.num_val_batches} batches")

    def run(self) -> LoopState:
        cfg, st = self.cfg, self.state
        t_start = time.perf_counter()
        timed: list[float] = []  # this session's first step times, for the expected-time line
        bar = tqdm(total=cfg.max_steps, initial=st.step, desc="train", dynamic_ncols=True,
                   disable=not (cfg.progress and self.env.is_main))
        self.model.train()
        interval_s, interval_tokens = 0.0, 0  # training time and tokens since the last train event
        while st.step < cfg.max_steps and not st.stopped_early:
            t0 = time.perf_counter()
            loss, grad_norm, lr = self.train_step()
            last = st.step == cfg.max_steps
            log_now = st.step % cfg.log_interval == 0 or last
            if log_now:
                loss_value = self.global_mean(loss)  # .item() waits for the device
            dt = time.perf_counter() - t0
            interval_s += dt
            interval_tokens += self.tokens_per_step
            st.session_train_s += dt
            st.session_tokens += self.tokens_per_step
            bar.update(1)
            if len(timed) < ESTIMATE_STEPS:
                timed.append(dt)
                if len(timed) == ESTIMATE_STEPS and self.env.is_main and not last:
                    bar.write(self.expected_time(timed))
            if log_now:
                tokens_per_s = interval_tokens / interval_s
                extra = {}
                if self.env.device.type == "cuda":
                    extra["mfu"] = self.flops_per_token * tokens_per_s / (cfg.peak_flops * self.env.world_size)
                self.log(event="train", step=st.step, loss=loss_value, lr=lr, grad_norm=grad_norm.item(),
                         tokens=st.step * self.tokens_per_step, tokens_per_s=tokens_per_s,
                         elapsed_s=self.elapsed(t_start), **extra)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}")
                interval_s, interval_tokens = 0.0, 0
            is_best = False
            if st.step % cfg.eval_interval == 0 or last:
                is_best = self.eval_step(t_start, bar)
            saved = is_best or st.step % cfg.ckpt_interval == 0 or last or st.stopped_early
            if saved:
                self.save(st, is_best, self.elapsed(t_start))
            if not last and dist_utils.any_process(self.env, bool(self.stop)):  # Ctrl-C / SIGTERM: save, stop
                if not saved:
                    self.save(st, False, self.elapsed(t_start))
                st.stopped_by = getattr(self.stop, "signum", None) or signal.SIGTERM
                break
        bar.close()
        st.elapsed_s = self.elapsed(t_start)
        return st

    def eval_step(self, t_start: float, bar: tqdm) -> bool:
        """Evaluate, track the best val loss and the patience; True when this is a new best."""
        st = self.state
        val_loss = self.evaluate()
        st.last_val_loss = val_loss
        is_best = val_loss < st.best_val_loss
        if is_best:
            st.best_val_loss, st.best_step, st.evals_since_best = val_loss, st.step, 0
        else:
            st.evals_since_best += 1
            st.stopped_early = 0 < self.cfg.patience <= st.evals_since_best
        self.log(event="eval", step=st.step, val_loss=val_loss, best_val_loss=st.best_val_loss,
                 tokens=st.step * self.tokens_per_step, elapsed_s=self.elapsed(t_start))
        if self.env.is_main:
            bar.write(f"step {st.step}: val loss {val_loss:.4f} (best {st.best_val_loss:.4f} at step "
                      f"{st.best_step})" + (", stopping early" if st.stopped_early else ""))
        return is_best
