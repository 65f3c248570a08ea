"""bench/gpu_suite.py: the step runner (limits, failures, the budget) and the whole suite's CPU dry
run, so that the one prepared GPU run cannot rot between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time

import pytest

from bench.gpu_suite import Result, Suite, parse_args
from tests.train_helpers import ROOT, subprocess_env


def sleep_cmd(seconds: float, code: int = 0) -> list[str]:
    return [sys.executable, "-c", f"import sys, time; time.sleep({seconds}); sys.exit({code})"]


def test_steps_run_side_by_side_and_each_stops_at_its_own_limit(tmp_path):
    suite = Suite(parse_args(["--cpu", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]))
    ok, failed, slow = Result("ok", "", limit=30), Result("failed", "", limit=30), Result("slow", "", limit=2)
    start = time.perf_counter()
    suite.run_group([(ok, [sleep_cmd(0.5)], 1), (failed, [sleep_cmd(0, code=3)], 1), (slow, [sleep_cmd(60)], 1)])
    assert time.perf_counter() - start < 20  # the slow one was stopped, not waited for
    assert ok.status == "ok" and failed.status.startswith("failed") and "exited with 3" in failed.detail
    assert slow.status.startswith("timeout (limit 2 s") and slow.seconds < 15
    assert (tmp_path / "out" / "ok.log").read_text().startswith("$ ")


def test_a_step_gets_what_is_left_of_the_budget_or_is_skipped(tmp_path):
    suite = Suite(parse_args(["--cpu", "--budget", "20", "--reserve", "5", "--min-step", "8",
                              "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]))
    clipped = Result("clipped", "", limit=100)
    suite.run_group([(clipped, [sleep_cmd(0)], 1)])
    assert clipped.status == "ok" and clipped.limit <= 15
    suite.start -= 10  # 10 s of the budget spent: 5 left after the reserve, under --min-step
    skipped = Result("skipped", "", limit=100)
    suite.run_group([(skipped, [sleep_cmd(0)], 1)])
    assert skipped.status.startswith("skipped")


@pytest.mark.slow
def test_cpu_dry_run_runs_every_step_and_returns_a_few_files(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    data = ["data=tinystories_sample", f"data.cache_dir={tmp_path}/tokens", "data.num_proc=1",
            "eval.sets.tinystories.files=[data/sample/valid.txt]", "eval.sets.long_stories.files=[data/sample/valid.txt]"]
    cmd = ["bash", "bench/gpu_suite.sh", "--cpu", "--out", str(out), "--work", str(work), "--warm-jobs", "1"]
    cmd += [f"--compare-arg={a}" for a in data]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == ["setup", "pytest_cuda", "warm", "train_step", "decode", "compare"]
    assert all(s["status"] == "ok" for s in steps.values()), steps
    # what the device tool brings back: at most 8 plain files, none in a subfolder
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bundle.tar.gz", "compare.log", "decode.log", "pytest_cuda.log", "setup.log", "summary.json",
                     "summary.md", "train_step.log"]
    text = (out / "summary.md").read_text()
    assert "6 of 6 steps ok" in text and "| ours rope |" in text and "| ours compiled" not in text
    assert "| HF GPT2 generate (cache) |" in text and "# Positional encodings on TinyStories" in text
    with tarfile.open(out / "bundle.tar.gz") as tar:
        names = tar.getnames()
    assert "report_h100/report.md" in names and "logs/pytest_cuda.xml" in names
    assert "compare_runs/rope-s0/metrics.jsonl" in names and not any(n.endswith(".pt") for n in names)
    assert "steps ok" in proc.stdout  # the table is printed last
