"""compare.py: the report's tables against the files they were built from, and a reduced run of
the cpu preset end to end (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from configs.schema import register_configs
from evaluation.config import DocumentMode, EvalConfig, EvalSetConfig
from evaluation.extrapolation import evaluate_model
from evaluation.report import write_report
from evaluation.runs import EVAL_FILE, load_run
from evaluation.text import EvalText
from tests.model_helpers import tiny_model
from training.metrics import MetricsLog

ROOT = Path(__file__).resolve().parents[1]


def compose_compare(overrides: list[str]) -> OmegaConf:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("compare", overrides=overrides)


def md_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every markdown table of the report, keyed by the nearest heading or bold line above it."""
    tables, title, current = {}, None, None
    for line in text.splitlines():
        if line.startswith("#") or (line.startswith("**") and line.endswith("**")):
            title, current = line.strip("#* "), None
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None:
                current = {"header": cells, "rows": []}
                key = title if title not in tables else f"{title} ({sum(k.startswith(title) for k in tables)})"
                tables[key] = current
            elif not set("".join(cells)) <= set("-: "):
                current["rows"].append(dict(zip(current["header"], cells)))
        else:
            current = None
    return {k: v["rows"] for k, v in tables.items()}


def parse_cell(cell: str) -> tuple[float, float | None]:
    m = re.fullmatch(r"([-\d.e+]+)(?: ± ([-\d.e+]+))?", cell)
    assert m, cell
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


def t_half(values: list[float]) -> float:
    """The 95% t interval's half-width, from SciPy (the report computes it without SciPy)."""
    lo, hi = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values))
    return (hi - lo) / 2


def fake_run(run_dir: Path, job: dict, encoding: str, seed: int, val_losses: list[float], speed: float,
             text: EvalText, eval_cfg: EvalConfig) -> None:
    """A run directory as training/run.py and compare.py write it: config.yaml, metrics.jsonl
    (made-up numbers), eval.json (a real evaluation of a small random model)."""
    run_dir.mkdir(parents=True)
    config = {"model": job["model"], "pos": {"name": encoding}, "data": job["data"], "seed": seed}
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    log = MetricsLog(run_dir / "metrics.jsonl")
    params = {"embedding": 1000, "non_embedding": 200 + seed, "total": 1200 + seed}
    log.write("start", 0, params=params)
    for i, v in enumerate(val_losses):
        log.write("train", 10 * (i + 1), loss=v + 0.1, tokens=1000 * (i + 1), tokens_per_s=speed)
        log.write("eval", 10 * (i + 1), val_loss=v, best_val_loss=min(val_losses[: i + 1]), tokens=1000 * (i + 1))
    best = int(np.argmin(val_losses))
    log.write("summary", 10 * len(val_losses), tokens=1000 * len(val_losses), best_val_loss=min(val_losses),
              best_step=10 * (best + 1), final_val_loss=val_losses[-1], wall_s=12.5, tokens_per_s=speed,
              stopped_early=False, params=params)
    model = tiny_model(encoding, block_size=8, n_layer=1, n_embd=32, vocab_size=101, seed=seed)
    result = evaluate_model(model, eval_cfg, {"small": text}, torch.device("cpu"), log=lambda s: None)
    (run_dir / EVAL_FILE).write_text(json.dumps(result))


def test_report_tables_match_the_metrics_files(tmp_path):
    job = OmegaConf.to_container(compose_compare(["preset=smoke", "seeds=[0,1]", "model.block_size=8",
                                                  "eval.multipliers=[1,2,4]"]), resolve=True, enum_to_str=True)
    eval_cfg = EvalConfig(multipliers=[1, 2, 4], stride=8, batch_tokens=512, progress=False,
                          sets={"small": EvalSetConfig(documents=DocumentMode.eot, max_tokens=None, about="test")})
    tokens = np.random.default_rng(0).integers(0, 101, 110).astype(np.uint16)
    text = EvalText(name="small", tokens=tokens, docs=[(0, 70), (70, 110)], files=[])
    losses = {("learned", 0): [5.0, 4.5], ("learned", 1): [5.1, 4.7], ("rope", 0): [4.9, 4.4], ("rope", 1): [5.0, 4.3]}
    for (enc, seed), vals in losses.items():
        fake_run(tmp_path / "runs" / f"{enc}-s{seed}", job, enc, seed, vals, 100.0 + seed, text, eval_cfg)
    records = [load_run(tmp_path / "runs" / f"{enc}-s{seed}") for enc, seed in losses]
    info = {"command": "test", "code": {"commit": "0" * 40, "dirty": False}, "started": "now", "device": "cpu",
            "train_tokens": 1000, "val_tokens": 100, "vocab_size": 101,
            "phases": {"training": 1.0}, "wall_s": 1.0}
    report = write_report(tmp_path / "report", records, job, info)
    tables = md_tables(report.read_text())
    assert "- `rope + yarn`: YaRN, dims ramp" in report.read_text()  # which ramp the row used
    assert "- `learned + logn`: log-length scaling" in report.read_text()

    training = {row["encoding"]: row for row in tables["Training"]}
    for enc in ("learned", "rope"):
        best = [min(losses[(enc, s)]) for s in (0, 1)]
        mean, sd = parse_cell(training[enc]["best val loss (L=8)"])
        assert mean == pytest.approx(np.mean(best), abs=1e-4) and sd == pytest.approx(t_half(best), abs=1e-4)
        assert parse_cell(training[enc]["train tokens/s"])[0] == pytest.approx(100.5, abs=0.5)

    for protocol, title in (("nonoverlap", "non-overlapping windows"), ("sliding", "sliding window, stride 8")):
        rows = {row["encoding"]: row for row in tables[title]}
        assert set(rows) == {"learned", "learned + logn", "rope", "rope + linear", "rope + ntk", "rope + dynamic",
                             "rope + yarn", "rope + logn"}
        for label, row in rows.items():
            enc, _, variant = label.partition(" + ")
            for length in (8, 16, 32):
                cell = row[f"L={length} ({length // 8}x)"]
                ppls = []
                for seed in (0, 1):
                    ev = load_run(tmp_path / "runs" / f"{enc}-s{seed}").eval
                    (r,) = [r for r in ev["sets"]["small"]["rows"] if r["length"] == length
                            and r["protocol"] == protocol and r["variant"] == (variant or "none")]
                    ppls.append(r["ppl"])
                if enc == "learned" and length > 8:
                    assert cell == "n/a (table length 8)"
                    continue
                mean, sd = parse_cell(cell)
                assert mean == pytest.approx(np.mean(ppls), abs=0.006)
                assert sd == pytest.approx(t_half(ppls), abs=0.006)
    for png in ("loss_curves.png", "ppl_small.png", "position_loss_small.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000


@pytest.mark.slow
def test_smoke_preset_end_to_end_reduced(tmp_path, capsys):
    """The smoke preset with fewer steps, a shorter evaluation and two books, so CI stays fast; the
    full preset is measured by hand (README)."""
    from evaluation.ablation import CompareError, make_specs, run_comparison, run_status

    books = [f"data/long_stories/{b}.txt.xz" for b in ("velveteen_rabbit", "aesops_fables")]
    cfg = compose_compare([
        "preset=smoke", f"out_dir={tmp_path}/runs", f"report_dir={tmp_path}/report", f"eval.cache_dir={tmp_path}/cache",
        "train.max_steps=2", "train.eval_interval=2", "train.eval_batches=1", "train.progress=false",
        "eval.multipliers=[1,2]", "eval.stride=64", "eval.variants=[none,yarn]", "eval.progress=false",
        "eval.sets.tinystories.max_tokens=128", "eval.sets.long_stories.max_tokens=128",
        f"eval.sets.long_stories.files=[{','.join(books)}]", "samples.max_new_tokens=4", "samples.num_samples=1",
        "eval.repeat.spans=2", "eval.repeat.distances=[0.25,2]", "eval.retrieval.lengths=[1,2]",
        "eval.retrieval.depths=[0.5]", "eval.retrieval.fillers=1", "eval.attention.windows=1",
    ])
    report = run_comparison(cfg, "test")
    text = report.read_text()
    out = capsys.readouterr().out
    (expected,) = [line for line in out.splitlines() if line.startswith("expected: ~")]  # measured before training
    assert all(f"{enc} " in expected for enc in cfg.encodings) and "load average" in expected
    assert sorted(p.name for p in (tmp_path / "report" / "runs").iterdir()) == sorted(
        f"{enc}-s0" for enc in cfg.encodings)  # the report carries its runs' files
    for enc in cfg.encodings:
        assert f"| {enc} |" in text and f"**{enc}**" in text  # a training row and samples
    assert "| rope + yarn |" in text and "n/a (table length 64)" in text
    assert "## Usable context" in text and "1 window(s) of tinystories per length" in text
    for name in ("loss_curves", "ppl_tinystories", "ppl_long_stories", "position_loss_long_stories",
                 "repeat_gain_tinystories", "repeat_gain_long_stories", "retrieval", "attention_rope"):
        assert (tmp_path / "report" / f"{name}.png").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.suffix in (".pt", ".json", ".jsonl")}
    run_comparison(cfg, "test")  # everything reused: only the report is written again
    assert "finished earlier, reused" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no run retrained, re-evaluated or re-sampled

    other = compose_compare(["preset=smoke", f"out_dir={tmp_path}/runs", "train.max_steps=3"])
    with pytest.raises(CompareError, match="another configuration"):
        run_status(make_specs(other)[0])


@pytest.mark.slow
def test_runs_without_checkpoints_are_reused_from_their_files_and_never_reevaluated(tmp_path):
    """A committed report's runs travel without checkpoints: copied into out_dir, compare.py
    reuses their eval.json and samples.json (and trains what is missing) as long as the eval and
    sample settings are theirs, and says why it cannot when they are not. A config.yaml without
    an option added since (at its default) is the same configuration."""
    from evaluation.ablation import CompareError, run_comparison
    from tests.test_compare_parallel import tiny

    overrides = [o.replace("encodings=[rope,alibi,learned]", "encodings=[rope,alibi]") for o in tiny(tmp_path, "a", 1)]
    first = run_comparison(compose_compare(overrides), "test").read_text()
    for ckpt in (tmp_path / "a").glob("*/ckpt_*.pt"):
        ckpt.unlink()
    for saved in (tmp_path / "a").glob("*/config.yaml"):  # as if written before an option was added
        job = OmegaConf.load(saved)
        del job.model["tie_embeddings"]
        OmegaConf.save(job, saved)
    files = {p: p.read_bytes() for p in (tmp_path / "a").glob("*/*.json")}
    again = run_comparison(compose_compare(overrides), "test").read_text()
    assert {p: p.read_bytes() for p in files} == files  # reused, not rewritten
    assert again.split("## Setup")[1] == first.split("## Setup")[1]
    with pytest.raises(CompareError, match=r"holds no checkpoint to evaluate from.*differs in eval_config.multipliers"):
        run_comparison(compose_compare([*overrides, "eval.multipliers=[1]"]), "test")
