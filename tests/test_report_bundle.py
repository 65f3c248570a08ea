"""Reports that can be rebuilt (evaluation/bundle.py), intervals over seeds (evaluation/stats.py),
the code behind a report (evaluation/code_notes.py), and where compare.py writes by default."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from omegaconf import OmegaConf

from evaluation import ablation
from evaluation.bundle import BundleError, rebuild, write_bundle
from evaluation.code_notes import code_lines
from evaluation.config import DocumentMode, EvalConfig, EvalSetConfig
from evaluation.runs import Cell, load_run
from evaluation.stats import half_width, t_quantile
from evaluation.text import EvalText
from tests.test_compare import compose_compare, fake_run, md_tables, parse_cell

ROOT = Path(__file__).resolve().parents[1]
CLEAN = {"commit": "a" * 40, "dirty": False}


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 9, 29])
def test_t_quantile_matches_scipy(dof):
    assert t_quantile(0.975, dof) == pytest.approx(scipy.stats.t.ppf(0.975, dof), rel=1e-9)


def test_half_width_is_the_t_interval():
    values = [2.91, 2.95, 2.88]
    lo, hi = scipy.stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert half_width(values) == pytest.approx((hi - lo) / 2, rel=1e-9)
    by_hand = 4.302652729911275 * np.std(values, ddof=1) / math.sqrt(3)  # t_{0.975, 2} from a printed table
    assert half_width(values) == pytest.approx(by_hand, rel=1e-8)
    assert half_width([3.0]) is None


def test_separated_only_when_intervals_do_not_overlap():
    a, b, c = Cell([1.0, 1.1, 0.9]), Cell([2.0, 2.1, 1.9]), Cell([1.2, 1.0, 1.4])
    assert a.separated_from(b) and b.separated_from(a)
    assert not a.separated_from(c)  # |1.0 - 1.2| < both half-widths
    assert not Cell([1.0]).separated_from(Cell([5.0]))  # one seed: no interval


def _runs(tmp_path: Path, seeds: list[int], losses: dict) -> tuple[list[Path], dict]:
    job = OmegaConf.to_container(compose_compare(["preset=smoke", f"seeds={seeds}", "model.block_size=8",
                                                  "eval.multipliers=[1,2]"]), resolve=True)
    eval_cfg = EvalConfig(multipliers=[1, 2], stride=8, batch_tokens=512, progress=False,
                          sets={"small": EvalSetConfig(documents=DocumentMode.eot, max_tokens=None, about="t")})
    tokens = np.random.default_rng(0).integers(0, 101, 110).astype(np.uint16)
    text = EvalText(name="small", tokens=tokens, docs=[(0, 70), (70, 110)], files=[])
    dirs = []
    for (enc, seed), vals in losses.items():
        d = tmp_path / "runs" / f"{enc}-s{seed}"
        fake_run(d, job, enc, seed, vals, 100.0, text, eval_cfg)
        dirs.append(d)
    return dirs, job


def _info() -> dict:
    return {"command": "test", "started": "now", "code": CLEAN, "device": "cpu", "train_tokens": 1000,
            "val_tokens": 100, "vocab_size": 101, "phases": {"training": 1.0}, "wall_s": 1.0, "report_dir": "x"}


def test_rebuild_equals_written_bit_for_bit(tmp_path):
    losses = {("learned", s): [5.0 + 0.01 * s, 4.5 + 0.01 * s] for s in (0, 1)}
    losses |= {("rope", s): [4.0 + 0.01 * s, 3.5 + 0.01 * s] for s in (0, 1)}
    dirs, job = _runs(tmp_path, [0, 1], losses)
    out = tmp_path / "report"
    write_bundle(out, dirs, job, _info())
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"report.md", "config.yaml", "info.json", "loss_curves.png", "ppl_small.png"} <= set(written)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(d.name for d in dirs)
    assert not list(out.rglob("*.pt"))  # never checkpoints
    for d in dirs:  # the runs can go: the report folder is self-contained
        for f in d.iterdir():
            f.unlink()
    for name in written:
        if name.endswith((".md", ".png")):
            (out / name).unlink()
    result = subprocess.run([sys.executable, "compare.py", "--rebuild", str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == written

    # the report is read from the copies: change one number there and the rebuilt table follows
    ev_path = out / "runs" / "rope-s0" / "eval.json"
    ev = json.loads(ev_path.read_text())
    ev["sets"]["small"]["rows"][0]["ppl"] = 12345.0
    ev_path.write_text(json.dumps(ev))
    row = ev["sets"]["small"]["rows"][0]
    other = json.loads((out / "runs" / "rope-s1" / "eval.json").read_text())["sets"]["small"]["rows"][0]["ppl"]
    assert row["variant"] == "none" and row["length"] == 8 and row["protocol"] == "nonoverlap"
    (table,) = [t for k, t in md_tables(rebuild(out).read_text()).items() if k == "non-overlapping windows"]
    (rope,) = [r for r in table if r["encoding"] == "rope"]
    assert parse_cell(rope["L=8 (1x)"])[0] == pytest.approx((12345.0 + other) / 2, abs=0.01)


def test_rebuild_of_a_folder_without_run_files_is_a_clear_error(tmp_path):
    (tmp_path / "report.md").write_text("old style\n")
    with pytest.raises(BundleError, match="no config.yaml"):
        rebuild(tmp_path)
    result = subprocess.run([sys.executable, "compare.py", "--rebuild", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_three_seeds_report_intervals_and_separations(tmp_path):
    losses = {("learned", s): [5.0, 4.50 + 0.01 * s] for s in range(3)}
    losses |= {("rope", s): [4.0, 3.50 + 0.01 * s] for s in range(3)}
    losses |= {("alibi", s): [4.0, 3.49 + 0.03 * s] for s in range(3)}
    dirs, job = _runs(tmp_path, [0, 1, 2], losses)
    text = write_bundle(tmp_path / "report", dirs, job, _info()).read_text()
    rows = {r["encoding"]: r for r in md_tables(text)["Training"]}
    best = [3.50, 3.51, 3.52]
    mean, half = parse_cell(rows["rope"]["best val loss (L=8)"])
    lo, hi = scipy.stats.t.interval(0.95, 2, loc=np.mean(best), scale=scipy.stats.sem(best))
    assert mean == pytest.approx(np.mean(best), abs=1e-4) and half == pytest.approx((hi - lo) / 2, abs=1e-4)
    (line,) = [ln for ln in text.splitlines() if ln.startswith("- **best val loss")]
    separated = line.split(" (ordered:")[0]
    assert "learned" not in separated.split("<")[0]  # learned is the worst: never on the left
    assert "rope < learned" in separated or "alibi, rope < learned" in separated or "< learned" in separated
    assert "rope < alibi" not in separated and "alibi < rope" not in separated  # within the intervals
    assert "Differences larger than the seed intervals" in text


def test_code_lines_name_mixed_and_uncommitted_code(tmp_path):
    dirs, _ = _runs(tmp_path, [0], {("rope", 0): [4.0], ("alibi", 0): [4.1]})
    for d, commit in zip(dirs, ("a" * 40, "b" * 40)):
        events = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        events[0]["code"] = {"commit": commit, "dirty": False}
        (d / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        ev = json.loads((d / "eval.json").read_text())
        (d / "eval.json").write_text(json.dumps(ev | {"code": CLEAN}))
    records = [load_run(d) for d in dirs]
    warning, line = code_lines(records, CLEAN)
    assert warning is None
    assert "more than one version" in line and "`aaaaaaa` (rope-s0)" in line and "`bbbbbbb` (alibi-s0)" in line
    warning, line = code_lines(records, {"commit": "a" * 40, "dirty": True})
    assert "not made from committed code" in warning and "aaaaaaa + uncommitted changes" in warning
    same = [load_run(dirs[0])]
    assert code_lines(same, CLEAN) == (None, "Code: every run was trained, evaluated and sampled, and this report "
                                             "written, at commit `aaaaaaa`.")


def test_user_runs_and_reports_go_under_runs_by_default():
    cfg = compose_compare(["preset=smoke"])
    assert cfg.report_dir == "runs/compare/smoke/report" and cfg.out_dir == "runs/compare/smoke"
    assert "runs/" in (ROOT / ".gitignore").read_text().split()


def test_committed_report_refused_from_uncommitted_code(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "code_version", lambda: {"commit": "c" * 40, "dirty": True})
    cfg = compose_compare(["preset=smoke", "report_dir=report/never_written", f"out_dir={tmp_path}/runs"])
    with pytest.raises(ablation.CompareError, match="uncommitted.*allow_dirty=true"):
        ablation.run_comparison(cfg, "test")
    assert not (ROOT / "report" / "never_written").exists() and not (tmp_path / "runs").exists()


COMMITTED = sorted(p.parent for p in (ROOT / "report").glob("*/info.json"))


@pytest.mark.slow
@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_reports_rebuild_to_their_markdown(tmp_path, folder):
    """Every committed report still comes out of its own files with the current code."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.png", "report.md"))
    assert rebuild(copy).read_text() == (folder / "report.md").read_text()
    assert sorted(p.name for p in copy.glob("*.png")) == sorted(p.name for p in folder.glob("*.png"))
