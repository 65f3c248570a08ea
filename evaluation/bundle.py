"""A report folder that carries its own inputs, so it can be rebuilt and checked without the runs.

    report/<name>/
        report.md, *.png    written by evaluation/report.py from the files below only
        config.yaml         the resolved compare job
        info.json           the command's facts the report states (command, time, code, phases, ...)
                            and the order of the runs
        runs/<run>/         config.yaml, metrics.jsonl, eval.json, samples.json of each run
                            (copied from its run directory; never checkpoints)

`write_bundle` copies the inputs and then builds the report with `rebuild`, the same function
`python compare.py --rebuild report/<name>` calls, so a rebuild reproduces the written report
byte for byte (matplotlib's Agg PNGs are deterministic for a given matplotlib version).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from evaluation.report import write_report
from evaluation.runs import EVAL_FILE, SAMPLES_FILE, load_run
from training.metrics import METRICS_FILE

RUN_FILES = ("config.yaml", METRICS_FILE, EVAL_FILE, SAMPLES_FILE)
RUNS_DIR = "runs"
INFO_FILE = "info.json"
JOB_FILE = "config.yaml"
REPORT_FILE = "report.md"


class BundleError(RuntimeError):
    """A report folder that cannot be rebuilt; the message names what is missing."""


def _clear(out: Path) -> None:
    """Remove what an earlier bundle wrote here (its runs, report and figures), nothing else."""
    if (out / RUNS_DIR).is_dir():
        shutil.rmtree(out / RUNS_DIR)
    if (out / REPORT_FILE).is_file() or (out / INFO_FILE).is_file():
        for path in [*out.glob("*.png"), out / REPORT_FILE, out / INFO_FILE]:
            path.unlink(missing_ok=True)


def write_bundle(out: Path, run_dirs: list[Path], job: dict, info: dict) -> Path:
    """Copy each run's small files into out/runs/, write config.yaml and info.json, build the report."""
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) != len(names):
        raise BundleError(f"run directories with the same name cannot share a report: {names}")
    for run_dir, name in zip(run_dirs, names):
        dest = out / RUNS_DIR / name
        dest.mkdir(parents=True)
        for f in RUN_FILES:
            if (Path(run_dir) / f).is_file():
                shutil.copyfile(Path(run_dir) / f, dest / f)
    (out / JOB_FILE).write_text(OmegaConf.to_yaml(job))
    (out / INFO_FILE).write_text(json.dumps({**info, "run_order": names}, indent=1) + "\n")
    return rebuild(out)


def rebuild(out: str | Path) -> Path:
    """Build out/report.md and its PNGs again from out/config.yaml, out/info.json and out/runs/."""
    out = Path(out)
    for required in (JOB_FILE, INFO_FILE, RUNS_DIR):
        if not (out / required).exists():
            raise BundleError(f"{out} cannot be rebuilt: it has no {required} (only reports written by "
                              "compare.py with their run files can)")
    info = json.loads((out / INFO_FILE).read_text())
    job = OmegaConf.to_container(OmegaConf.load(out / JOB_FILE), resolve=True)
    records = []
    for name in info["run_order"]:
        if not (out / RUNS_DIR / name / METRICS_FILE).is_file():
            raise BundleError(f"{out / RUNS_DIR / name} has no {METRICS_FILE}")
        records.append(load_run(out / RUNS_DIR / name))
    return write_report(out, records, job, info)
