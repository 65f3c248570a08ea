"""compare.py jobs=2: the same numbers as one run after another, each run with its own log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.ablation import run_comparison
from tests.test_compare import compose_compare

ROOT = Path(__file__).resolve().parents[1]
# The only fields allowed to differ: timings, and the git state (an edit between the two runs changes it).
TIMING = {"elapsed_s", "tokens_per_s", "wall_s", "mfu", "code"}


def tiny(tmp_path: Path, name: str, jobs: int) -> list[str]:
    return [
        "preset=smoke", "data=tinystories_sample", "encodings=[rope,alibi,learned]", f"jobs={jobs}", "threads=1",
        f"out_dir={tmp_path}/{name}", f"report_dir={tmp_path}/{name}_report", f"eval.cache_dir={tmp_path}/cache",
        "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=16", "train.batch_size=2",
        "train.global_batch_size=2", "train.max_steps=4", "train.warmup_steps=1", "train.eval_interval=2",
        "train.eval_batches=1", "train.log_interval=1", "train.progress=false", "eval.multipliers=[1,2]",
        "eval.stride=8", "eval.variants=[none,yarn]", "eval.progress=false", "eval.probes=[]",
        "eval.sets.tinystories.files=[data/sample/valid.txt]", "eval.sets.long_stories.files=[data/sample/valid.txt]",
        "eval.sets.tinystories.max_tokens=64", "eval.sets.long_stories.max_tokens=64",
        "samples.max_new_tokens=8", "samples.num_samples=1", "estimate=false",
    ]


def numbers(run_dir: Path) -> dict:
    events = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
              for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ev = json.loads((run_dir / "eval.json").read_text())
    rows = {name: s["rows"] for name, s in ev["sets"].items()}
    positions = {name: s["position_loss"] for name, s in ev["sets"].items()}
    samples = run_dir / "samples.json"
    return {"events": events, "rows": rows, "positions": positions,
            "stories": json.loads(samples.read_text())["stories"] if samples.is_file() else None}


@pytest.mark.slow
def test_parallel_runs_equal_sequential_runs(tmp_path):
    run_comparison(compose_compare(tiny(tmp_path, "seq", 1)), "test")
    run_comparison(compose_compare(tiny(tmp_path, "par", 2)), "test")
    for enc in ("rope", "alibi", "learned"):
        seq, par = tmp_path / "seq" / f"{enc}-s0", tmp_path / "par" / f"{enc}-s0"
        assert numbers(seq) == numbers(par), enc
        log = (par / "compare.log").read_text()  # each worker keeps its own log
        assert "done: 4 steps" in log and enc in log
    seq_report = (tmp_path / "seq_report" / "report.md").read_text()
    par_report = (tmp_path / "par_report" / "report.md").read_text()
    assert "| rope + yarn |" in par_report and "**alibi**" in par_report
    table = lambda text: [ln for ln in text.splitlines() if ln.startswith("| rope + yarn")]  # noqa: E731
    assert table(seq_report) == table(par_report)


def test_the_progress_bar_counts_only_the_steps_this_invocation_trains(tmp_path):
    from types import SimpleNamespace

    from evaluation.parallel import steps_before

    def spec(name: str, logged: list[dict]) -> SimpleNamespace:
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in logged) + '{"event": "tr')
        return SimpleNamespace(run_dir=run_dir, job=SimpleNamespace(train=SimpleNamespace(max_steps=1000)))

    resumed = spec("resumed", [{"event": "train", "step": 290}, {"event": "eval", "step": 300}])
    reused = spec("reused", [{"event": "summary", "step": 1000}])
    assert steps_before(resumed, "resume") == 300  # the half-written last line is skipped
    assert steps_before(reused, "done") == 1000
    assert steps_before(spec("new", []), "new") == 0
