"""One short run in process: the files it writes, metrics.jsonl's schema, the summary, load_model,
early stopping, and wandb offline through a whole run."""

import json

import pytest
import torch
import yaml
from train_helpers import TINY, sample_data  # noqa: F401

from training.checkpoint import CKPT_BEST, CKPT_LAST, load_checkpoint, load_model
from configs.compose import compose_job
from training.metrics import read_metrics
from training.run import run_training

RUN = [*TINY, "train.max_steps=6", "train.log_interval=2", "train.eval_interval=3", "train.ckpt_interval=3"]


@pytest.mark.slow
def test_short_run_writes_config_checkpoints_and_metrics(tmp_path, sample_data, capsys):  # noqa: F811
    summary = run_training(compose_job([*RUN, *sample_data, "pos=learned", f"out_dir={tmp_path}"]))
    out = capsys.readouterr().out
    assert "params embedding" in out and "non-embedding" in out  # printed at the start
    (expected,) = [line for line in out.splitlines() if line.startswith("expected: ~")]  # after 4 of 6 steps
    assert "min more for 2 steps" in expected and "1 evaluation(s)" in expected
    assert out.strip().splitlines()[-1].startswith("done: 6 steps, 768 tokens, best val loss")

    assert {p.name for p in tmp_path.iterdir()} >= {"config.yaml", "metrics.jsonl", CKPT_LAST, CKPT_BEST}
    saved_cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved_cfg["pos"]["name"] == "learned" and saved_cfg["train"]["max_steps"] == 6

    events = read_metrics(tmp_path)
    assert [e["event"] for e in events] == ["start", "train", "eval", "train", "train", "eval", "summary"]
    assert [e["step"] for e in events] == [0, 2, 3, 4, 6, 6, 6]
    start, train, evals, last = events[0], events[1], [e for e in events if e["event"] == "eval"], events[-1]
    assert start["world_size"] == 1 and start["grad_accum"] == 2 and start["tokens_per_step"] == 4 * 32
    assert set(start["params"]) == {"embedding", "non_embedding", "total"}
    assert set(start["code"]) == {"commit", "dirty"}  # training/provenance.py
    assert set(train) == {"event", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"}
    assert train["tokens"] == 2 * 128 and train["tokens_per_s"] > 0
    assert set(evals[0]) == {"event", "step", "val_loss", "best_val_loss", "tokens", "elapsed_s"}
    assert last["best_val_loss"] == min(e["val_loss"] for e in evals) == summary["best_val_loss"]
    assert last["final_val_loss"] == evals[-1]["val_loss"]
    assert summary["step"] == 6 and summary["tokens"] == 6 * 128 and summary["tokens_per_s"] > 0
    assert summary["out_dir"] == str(tmp_path)
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["event"] == "summary"

    ckpt = load_checkpoint(tmp_path / CKPT_LAST)
    assert ckpt["step"] == 6 and not any(k.startswith(("_orig_mod.", "module.")) for k in ckpt["model"])
    assert ckpt["config"]["train"]["dtype"] == "auto"  # enums stored as strings

    model, cfg = load_model(tmp_path)  # the run directory: its ckpt_best.pt
    assert cfg["pos"]["name"] == "learned" and model.pos_cfg.name == "learned"
    vocab = ckpt["vocab"]  # the default data.vocab_size keeps the ids the training text holds, + unknown
    assert model.cfg.vocab_size == len(vocab["kept"]) + 1 < 50257
    x = torch.randint(0, model.cfg.vocab_size, (1, 32))
    logits, _ = model(x)
    assert logits.shape == (1, 32, model.cfg.vocab_size)


def test_patience_stops_early(tmp_path, sample_data):  # noqa: F811
    # lr = 0: the weights never change, so the second evaluation is no better than the first.
    summary = run_training(compose_job([*RUN, *sample_data, "train.lr=0", "train.min_lr=0", "train.patience=1",
                                        "train.max_steps=12", f"out_dir={tmp_path}"]))
    assert summary["stopped_early"] and summary["step"] == 6 and summary["best_step"] == 3
    assert load_checkpoint(tmp_path / CKPT_LAST, required=("step",))["step"] == 6


@pytest.mark.slow
def test_wandb_offline_run_folder(tmp_path, sample_data, monkeypatch):  # noqa: F811
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: online falls back to offline
    run_dir = tmp_path / "run"
    run_training(compose_job([*RUN, *sample_data, "wandb.mode=online", "pos=alibi", f"out_dir={run_dir}"]))
    folders = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 1
    wandb_id = load_checkpoint(run_dir / CKPT_LAST, required=("wandb_id",))["wandb_id"]
    assert folders[0].name.endswith(wandb_id)
    # The run's name, in the log `wandb sync` uploads, says the encoding and the size.
    assert b"alibi-1x16-" in (folders[0] / f"run-{wandb_id}.wandb").read_bytes()


@pytest.mark.slow
def test_untied_head_trains_saves_and_loads(tmp_path, sample_data):  # noqa: F811
    run_training(compose_job([*RUN, *sample_data, "model.tie_embeddings=false", f"out_dir={tmp_path}"]))
    model, cfg = load_model(tmp_path / CKPT_LAST)
    assert cfg["model"]["tie_embeddings"] is False and model.lm_head.weight is not model.wte.weight
    state = load_checkpoint(tmp_path / CKPT_LAST)["model"]
    assert not torch.equal(state["lm_head.weight"], state["wte.weight"])  # both trained, apart
    assert torch.equal(model.lm_head.weight, state["lm_head.weight"])
    start = read_metrics(tmp_path)[0]
    assert start["params"]["embedding"] == 2 * model.wte.weight.numel()
