"""compare.py's work: train every encoding (x every seed) with one recipe, evaluate each best
checkpoint, sample a few stories, and write the report.

Each run (train through `training.run.run_training`, evaluate, sample) goes into
<out_dir>/<encoding>-s<seed>/: one after another in this process (jobs=1), or `jobs` at a time in
worker processes (evaluation/parallel.py), with the same numbers either way. A finished run whose
saved config equals the one asked for is reused (so a second `compare.py` after a crash or a
change to the report only redoes what is missing); a run that stopped midway is resumed; a run
directory holding another config is an error. eval.json and samples.json are reused the same way
when their checkpoint and settings are unchanged.

The report folder carries copies of the runs' small files and rebuilds from them
(evaluation/bundle.py). A report under the committed report/ folder is refused when the code that
would make it is not a clean commit, unless allow_dirty=true (then it carries a warning).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.config import DataConfig
from data.files import write_json_atomic
from data.prepare import ensure_prepared
from data.tokens import read_meta
from data.vocab import Vocab
from evaluation.config import EvalConfig, SamplesConfig
from evaluation.extrapolation import check_plan, evaluate_model, format_rows, load_texts, plan_tasks
from evaluation.probes.run import run_probes
from evaluation.bundle import write_bundle
from evaluation.estimate import estimate_line
from evaluation.parallel import WorkerError, run_parallel
from evaluation.code_notes import stage_codes
from evaluation.runs import EVAL_FILE, SAMPLES_FILE, load_run, read_json
from evaluation.samples import samples_record, sample_stories
from model.positional import config_class, encoding_names
from training.build import build_model
from training.device import resolve_device
from training.checkpoint import CKPT_LAST, CheckpointError, load_model_and_vocab, resolve_checkpoint
from data.config import ROOT, project_path
from training.job import as_train_job
from training.metrics import METRICS_FILE, read_metrics
from training.provenance import code_version, describe
from training.run import run_training

COMMITTED_REPORTS = ROOT / "report"  # reports committed to the repository
IGNORED_KEYS = {("resume",), ("threads",), ("train", "progress")}  # how a run is run, not what it computes


class CompareError(ValueError):
    """A run directory that cannot be reused or resumed; the message names it."""


@dataclass
class RunSpec:
    encoding: str
    seed: int
    run_dir: Path
    job: DictConfig  # the validated TrainJob of this run


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def make_specs(cfg: DictConfig) -> list[RunSpec]:
    unknown = [e for e in cfg.encodings if e not in encoding_names()]
    if unknown or not cfg.encodings:
        raise CompareError(f"encodings={list(cfg.encodings)}: choose from {encoding_names()}")
    if not cfg.seeds:
        raise CompareError("seeds is empty: give at least one training seed, e.g. seeds=[0]")
    out = project_path(cfg.out_dir)
    specs = []
    for enc in cfg.encodings:
        for seed in cfg.seeds:
            run_dir = out / f"{enc}-s{seed}"
            job = as_train_job({
                "model": cfg.model, "pos": OmegaConf.structured(config_class(enc)), "data": cfg.data,
                "train": cfg.train, "wandb": cfg.wandb, "out_dir": str(run_dir), "seed": int(seed),
                "threads": cfg.threads or 0,  # 0: as the comparison set it (compare.py threads, or the worker's)
            })
            specs.append(RunSpec(enc, int(seed), run_dir, job))
    return specs


def _comparable(job: dict) -> dict:
    """The job without IGNORED_KEYS (settings such as the progress bar)."""
    job = {k: dict(v) if isinstance(v, dict) else v for k, v in job.items()}
    for path in IGNORED_KEYS:
        node = job
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return job


def _differing_keys(saved: dict, wanted: dict) -> list[str]:
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))


def run_status(spec: RunSpec) -> str:
    """"done" (reuse), "resume", or "new"; CompareError if the directory holds another config."""
    saved_path = spec.run_dir / "config.yaml"
    if not saved_path.is_file():
        return "new"
    try:  # through the schema, so that an option added since (with its default) compares equal
        saved = _comparable(plain(as_train_job(OmegaConf.load(saved_path))))
    except OmegaConfBaseException as e:  # an option since removed or retyped
        raise CompareError(f"{saved_path} is not a configuration this code can take ({e}). Remove that "
                           "directory, or write this comparison elsewhere with out_dir=PATH (or name=NAME)") from e
    wanted = _comparable(plain(spec.job))
    if saved != wanted:
        diff = _differing_keys(saved, wanted)
        raise CompareError(
            f"{spec.run_dir} holds a run with another configuration (differs in {diff}). Remove that "
            "directory, or write this comparison elsewhere with out_dir=PATH (or name=NAME)"
        )
    metrics = spec.run_dir / METRICS_FILE
    if metrics.is_file() and any(e["event"] == "summary" for e in read_metrics(metrics)):
        return "done"
    return "resume" if (spec.run_dir / CKPT_LAST).is_file() else "new"


def describe_plan(cfg: DictConfig, specs: list[RunSpec], train_tokens: int, vocab_size: int) -> str:
    """Runs, tokens per run, epochs and tokens per parameter, printed before any work."""
    t, m = cfg.train, cfg.model
    tokens = t.max_steps * t.global_batch_size * m.block_size
    lines = [
        f"compare `{cfg.name}`: {len(cfg.encodings)} encodings x {len(cfg.seeds)} seed(s) = {len(specs)} runs "
        f"-> {project_path(cfg.out_dir)}; report -> {project_path(cfg.report_dir)}",
        f"per run: up to {t.max_steps} steps x {t.global_batch_size} x {m.block_size} = {tokens:,} tokens "
        f"= {tokens / train_tokens:.2f} epochs of the {train_tokens:,} training tokens "
        f"(patience {t.patience}, dropout {m.dropout})",
    ]
    for enc in cfg.encodings:
        counts = build_model(cfg.model, OmegaConf.structured(config_class(enc)), vocab_size).param_counts()
        lines.append(
            f"  {enc:<11} params {counts['total'] / 1e6:7.3f}M (non-embedding {counts['non_embedding'] / 1e6:.3f}M): "
            f"{tokens / counts['non_embedding']:.1f} tokens seen per non-embedding parameter "
            f"({tokens / counts['total']:.2f} per parameter); the corpus holds "
            f"{train_tokens / counts['non_embedding']:.2f} distinct tokens per non-embedding parameter"
        )
    return "\n".join(lines)


def _checkpoint_id(run_dir: Path) -> Optional[dict]:
    """The checkpoint an eval.json or samples.json is made from, or None when the run directory
    holds none (a finished run copied from a committed report: its files travel without checkpoints)."""
    try:
        path = resolve_checkpoint(run_dir)
    except CheckpointError:
        return None
    return {"checkpoint": str(path), "checkpoint_mtime_ns": path.stat().st_mtime_ns}


def _reusable(run_dir: Path, file: str, settings: dict, stage: str) -> Optional[dict]:
    """The run's cached `file` when it was made from its checkpoint with these settings, else
    None (make it again). Without a checkpoint the cached file is the run's only result: reused
    when its settings match, an error when they differ or it is missing."""
    cached = read_json(run_dir / file)
    checkpoint = _checkpoint_id(run_dir)
    if cached is not None and all(cached.get(k) == v for k, v in ((checkpoint or {}) | settings).items()):
        return cached
    if checkpoint is None:
        differs = "" if cached is None else ", ".join(
            f"{key}.{k}" for key, wanted in settings.items() for k in _differing_keys(cached.get(key) or {}, wanted))
        raise CompareError(
            f"{run_dir} holds no checkpoint to {stage} from, and its {file} "
            + ("is missing" if cached is None else f"was made with other settings (differs in {differs})")
            + ": use the settings of its " + file + ", or remove the run directory to train it again")
    return None


def evaluate_run(spec: RunSpec, eval_cfg: DictConfig) -> dict:
    """eval.json of one run: reused when its checkpoint and eval settings are unchanged."""
    settings = {"eval_config": {k: v for k, v in plain(eval_cfg).items() if k != "progress"}}
    cached = _reusable(spec.run_dir, EVAL_FILE, settings, "evaluate")
    if cached is not None:
        print(f"eval {spec.run_dir.name}: reusing {EVAL_FILE}")
        return cached
    ident = _checkpoint_id(spec.run_dir) | settings
    cfg: EvalConfig = OmegaConf.to_object(eval_cfg)
    device = resolve_device(cfg.device, option="eval.device")
    model, _, vocab = load_model_and_vocab(spec.run_dir, device)
    print(f"eval {spec.run_dir.name} ({ident['checkpoint']}):")
    texts = load_texts(cfg, vocab)
    result = ident | {"code": code_version()} | evaluate_model(model, cfg, texts, device)
    result["probes"] = run_probes(model, cfg, texts, vocab, device)
    print(format_rows(result))
    write_json_atomic(spec.run_dir / EVAL_FILE, result)
    return result


def sample_run(spec: RunSpec, samples_cfg: DictConfig, device_name: str) -> dict:
    settings = {"config": plain(samples_cfg)}
    cached = _reusable(spec.run_dir, SAMPLES_FILE, settings, "sample")
    if cached is not None:
        return cached
    ident = _checkpoint_id(spec.run_dir) | settings
    cfg: SamplesConfig = OmegaConf.to_object(samples_cfg)
    device = resolve_device(device_name, option="eval.device")
    model, _, vocab = load_model_and_vocab(spec.run_dir, device)
    record = ident | {"code": code_version()} | samples_record(sample_stories(model, vocab, cfg, device), cfg)
    write_json_atomic(spec.run_dir / SAMPLES_FILE, record)
    return record


def process_run(spec: RunSpec, status: str, eval_cfg: DictConfig, samples_cfg: Optional[DictConfig],
                device_name: str) -> dict[str, float]:
    """Train (unless done), evaluate and, given samples_cfg, sample one run; seconds per stage."""
    times = {}
    t = time.perf_counter()
    if status != "done":
        job = spec.job.copy()
        job.resume = status == "resume"
        run_training(job)
    times["training"] = time.perf_counter() - t
    t = time.perf_counter()
    evaluate_run(spec, eval_cfg)
    times["evaluation"] = time.perf_counter() - t
    if samples_cfg is not None:
        t = time.perf_counter()
        sample_run(spec, samples_cfg, device_name)
        times["samples"] = time.perf_counter() - t
    return times


def check_code(report_dir: Path, names: list[str], allow_dirty: bool, what: str) -> None:
    """A report under report/ (committed) must come from committed code, unless allow_dirty."""
    inside = report_dir.resolve().is_relative_to(COMMITTED_REPORTS.resolve())
    bad = [n for n in names if not n or "uncommitted" in n or n.startswith("unknown")]
    if inside and bad and not allow_dirty:
        raise CompareError(
            f"report_dir={report_dir} is a committed report, but {what} {sorted(set(bad))}: commit first "
            "(a report must name the commit that made it), write it elsewhere (the default runs/compare/NAME/"
            "report), or pass allow_dirty=true to write it with a warning"
        )


def run_comparison(cfg: DictConfig, command: str = "compare.py") -> Path:
    """Train, evaluate, sample, report; returns the path of report.md."""
    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()[0]  # other processes sharing the machine slow every phase down
    t0 = time.perf_counter()
    code = code_version()
    report_dir = project_path(cfg.report_dir)
    check_code(report_dir, [describe(code)], cfg.allow_dirty, "the working tree is")
    if cfg.jobs < 1 or (cfg.threads is not None and cfg.threads < 1):
        raise CompareError(f"jobs={cfg.jobs}, threads={cfg.threads}: both must be at least 1")
    specs = make_specs(cfg)
    statuses = [run_status(s) for s in specs]  # fail on a foreign run directory before any work
    data_cfg: DataConfig = OmegaConf.to_object(cfg.data)
    meta = read_meta(ensure_prepared(data_cfg))
    try:  # check the eval settings, text and plan size now, not after an hour of training
        eval_cfg: EvalConfig = OmegaConf.to_object(cfg.eval)
        vocab = Vocab.from_dict(meta["vocab"])
        texts = load_texts(eval_cfg, vocab)
        for enc in cfg.encodings:
            model = build_model(cfg.model, OmegaConf.structured(config_class(enc)), vocab.size)
            check_plan(plan_tasks(model, eval_cfg, texts)[0], eval_cfg)
    except ValueError as e:
        raise CompareError(str(e)) from e
    train_tokens, val_tokens = meta["splits"]["train"]["tokens"], meta["splits"]["val"]["tokens"]
    print(describe_plan(cfg, specs, train_tokens, meta["vocab_size"]), flush=True)
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // cfg.jobs) if cfg.jobs > 1 else torch.get_num_threads())
    cost: dict[str, float] = {}
    if cfg.estimate:
        line, cost = estimate_line(cfg, specs, statuses, threads, Vocab.from_dict(meta["vocab"]))
        print(line, flush=True)

    first_seed = {}
    for spec in specs:
        first_seed.setdefault(spec.encoding, spec)
    sampled = [spec is first_seed[spec.encoding] for spec in specs]
    if cfg.jobs == 1:
        torch.set_num_threads(threads)
        stage_times = []
        for i, (spec, status, sample) in enumerate(zip(specs, statuses, sampled)):
            print(f"[{i + 1}/{len(specs)}] {spec.run_dir.name}: "
                  + {"done": "finished earlier, reused", "resume": "resuming", "new": "training"}[status], flush=True)
            stage_times.append(process_run(spec, status, cfg.eval, cfg.samples if sample else None, cfg.eval.device))
    else:
        try:
            stage_times = run_parallel(specs, statuses, sampled, cfg, threads, [cost.get(s.encoding, 0.0) for s in specs])
        except WorkerError as e:
            raise CompareError(str(e)) from e
    phases = {stage: sum(t.get(stage, 0.0) for t in stage_times) for stage in ("training", "evaluation", "samples")}

    records = [load_run(s.run_dir) for s in specs]
    made_by = [n for r in records for names in stage_codes(r).values() for n in names]
    check_code(report_dir, made_by, cfg.allow_dirty, "some runs were made by")
    device = resolve_device(cfg.eval.device, option="eval.device")
    info = {
        "command": command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "code": code,
        "report_dir": cfg.report_dir,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({threads} threads per run)",
        "jobs": cfg.jobs,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "vocab_size": meta["vocab_size"],
        "phases": phases,
        "load": (load_start, os.getloadavg()[0]),
        "reused": statuses.count("done"),
        "runs": len(specs),
        "cpus": os.cpu_count(),
        "wall_s": time.perf_counter() - t0,  # everything but writing the report itself
    }
    path = write_bundle(report_dir, [s.run_dir for s in specs], plain(cfg), info)
    print(f"report: {path} ({(time.perf_counter() - t0) / 60:.1f} min in all)", file=sys.stderr)
    return path
