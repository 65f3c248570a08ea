"""compare.py jobs=N: the runs of a comparison, N at a time, each in a worker process
(evaluation/worker.py) with its own torch thread count and its own log (<run dir>/compare.log),
under one progress bar across runs (steps done by all runs, from their metrics.jsonl).

Every run is seeded by its own config, so its numbers equal those of a sequential run with the
same thread count (tests/test_compare_parallel.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from data.config import ROOT
from training.metrics import METRICS_FILE

LOG_FILE = "compare.log"
POLL_S = 1.0


class WorkerError(RuntimeError):
    """A worker process failed; the message names the run and the end of its log."""


def _steps_done(run_dir: Path) -> tuple[int, bool]:
    """(last logged step, finished training) from a run's metrics.jsonl, tolerating a half-written line."""
    step, finished = 0, False
    try:
        lines = (run_dir / METRICS_FILE).read_text().splitlines()
    except OSError:
        return 0, False
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = max(step, event.get("step", 0))
        finished = finished or event.get("event") == "summary"
    return step, finished


def steps_before(spec, status: str) -> int:
    """Steps a run has trained before this invocation: all of them when it is reused, the last
    logged step when it resumes. The progress bar counts only the steps after, so its rate and
    time left are this invocation's."""
    if status == "done":
        return int(spec.job.train.max_steps)
    return _steps_done(spec.run_dir)[0] if status == "resume" else 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_parallel(specs: list, statuses: list[str], sampled: list[bool], cfg: DictConfig, threads: int,
                 costs: list[float]) -> list[dict]:
    """Run process_run for every spec in up to cfg.jobs workers, the costliest (`costs`, measured
    seconds, 0 when unknown) first so the last runs to finish are short; seconds per stage for each spec."""
    tmp = Path(tempfile.mkdtemp(prefix="compare-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending = sorted(range(len(specs)), key=lambda i: (statuses[i] == "done", -costs[i], i))
    running: dict[int, subprocess.Popen] = {}
    results: dict[int, dict] = {}
    failed: list[str] = []
    start = [steps_before(s, st) for s, st in zip(specs, statuses)]
    total = sum(int(s.job.train.max_steps) - first for s, first in zip(specs, start))
    bar = tqdm(total=total, unit="step", desc=f"compare ({cfg.jobs} jobs x {threads} thread(s))", dynamic_ncols=True,
               disable=not cfg.train.progress)
    try:
        while pending or running:
            while pending and len(running) < cfg.jobs and not failed:
                i = pending.pop(0)
                running[i] = _start(i, specs[i], statuses[i], sampled[i], cfg, threads, tmp, env)
            for i, proc in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[i]
                log = specs[i].run_dir / LOG_FILE
                if proc.returncode != 0:
                    failed.append(f"{specs[i].run_dir.name} (exit {proc.returncode}; log {log}):\n{_tail(log)}")
                else:
                    results[i] = json.loads((tmp / f"{i}.json").read_text())
                tqdm.write(f"{specs[i].run_dir.name}: {'failed' if proc.returncode else 'done'} "
                           f"({len(results)}/{len(specs)} done); log {log}")
            done = 0
            states = []
            for i, s in enumerate(specs):
                step, finished = _steps_done(s.run_dir)
                if i in running or i in results:
                    done += max(0, min(step, int(s.job.train.max_steps)) - start[i])
                if i in running:
                    states.append(f"{s.run_dir.name} " + ("eval/samples" if finished else f"step {step}"))
            bar.n = done
            bar.set_postfix_str("; ".join(states), refresh=True)
            if failed and not running:
                break
            time.sleep(POLL_S)
    except BaseException:  # Ctrl-C or an error here: stop the workers (each keeps its last checkpoint)
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.wait()
        raise
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the requests and results: the runs hold everything else
    if failed:
        raise WorkerError("run(s) failed; the others are kept and reused next time:\n" + "\n".join(failed))
    return [results[i] for i in range(len(specs))]


def _start(i: int, spec, status: str, sample: bool, cfg: DictConfig, threads: int, tmp: Path, env: dict):
    request = OmegaConf.create({
        "job": spec.job, "encoding": spec.encoding, "seed": spec.seed, "run_dir": str(spec.run_dir),
        "status": status, "eval": cfg.eval, "samples": cfg.samples if sample else None,
        "device": cfg.eval.device, "threads": threads,
    })
    OmegaConf.save(request, tmp / f"{i}.yaml", resolve=True)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "evaluation.worker", str(tmp / f"{i}.yaml"), str(tmp / f"{i}.json")]
    with open(spec.run_dir / LOG_FILE, "w") as log:  # the child holds its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
