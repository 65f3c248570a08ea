"""train.py's bad inputs: each is one error naming the option or file, raised before anything is
written (no run folder for a run that never starts, a refused resume leaves its folder as it was),
and a checkpoint write that fails leaves the previous checkpoint."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
import torch
from train_helpers import ROOT, TINY, sample_data, subprocess_env, train_cmd  # noqa: F401

from training import checkpoint as ck
from training.checkpoint import CKPT_LAST, CheckpointError, load_checkpoint
from configs.compose import compose_job
from training.run import run_training

FAST = [*TINY, "train.max_steps=4", "train.eval_interval=2", "train.ckpt_interval=2"]


@pytest.mark.parametrize("overrides,message", [
    (["model.n_embd=30", "model.n_head=4"], r"model.n_embd=30 must be divisible by n_head \(model.n_head=4\)"),
    (["pos=rope", "pos.rotary_dim=3"], r"pos.rotary_dim must be even and in \(0, head_dim=8\], got 3"),
    (["pos=rope", "pos.rotary_dim=10"], r"pos.rotary_dim must be even and in \(0, head_dim=8\], got 10"),
    (["train.max_steps=0"], "train.max_steps=0: must be >= 1"),
    (["train.max_steps=-5"], "train.max_steps=-5: must be >= 1"),
    (["train.batch_size=0"], "train.batch_size=0: must be >= 1"),
    (["train.lr=-0.001"], "train.lr=-0.001: must be >= 0"),
    (["train.batch_size=3"], "train.global_batch_size=4 is not a multiple of train.batch_size=3"),
    (["resume=true"], "there is no checkpoint to resume from: .*ckpt_last.pt does not exist"),
    (["threads=-1"], "threads=-1: must be >= 0"),
])
def test_bad_option_is_one_error_and_makes_no_run_folder(tmp_path, overrides, message):
    out_dir = tmp_path / "run"
    with pytest.raises((ValueError, CheckpointError), match=message):
        run_training(compose_job([*FAST, *overrides, f"out_dir={out_dir}"]))
    assert not out_dir.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tmp_path):
    with pytest.raises(ValueError, match="train.device=cuda: CUDA is not available on this machine"):
        run_training(compose_job([*FAST, "train.device=cuda", f"out_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run").exists()


def test_out_dir_under_a_file_or_not_writable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir=.*file/run: .*file is not a writable folder"):
        run_training(compose_job([*FAST, f"out_dir={tmp_path / 'file' / 'run'}"]))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user without write access
    with pytest.raises(ValueError, match=f"{tmp_path} is not a writable folder"):
        run_training(compose_job([*FAST, f"out_dir={tmp_path / 'run'}"]))


def snapshot(folder) -> dict:
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_refused_resume_changes_nothing(tmp_path, sample_data):  # noqa: F811
    run_training(compose_job([*FAST, *sample_data, "pos=rope", f"out_dir={tmp_path}"]))
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match=r"cannot resume from .*ckpt_last.pt: model.n_layer=2 \(checkpoint: 1\), "
                                              r"pos.base=500.0 \(checkpoint: 10000.0\)"):
        run_training(compose_job([*FAST, *sample_data, "pos=rope", "model.n_layer=2", "pos.base=500",
                                  "train.max_steps=8", "resume=true", f"out_dir={tmp_path}"]))
    assert snapshot(tmp_path) == before


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / CKPT_LAST
    ck.save_checkpoint({"step": 1, "model": {}, "config": {}}, path)

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 part of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=f"could not write checkpoint {path} \\(No space left on device\\): "
                                              "the previous ckpt_last.pt is intact"):
        ck.save_checkpoint({"step": 2, "model": {}, "config": {}}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and list(tmp_path.iterdir()) == [path]


@pytest.mark.slow
def test_full_disk_during_training_stops_with_the_last_checkpoint(tmp_path, sample_data, monkeypatch):  # noqa: F811
    """The disk fills at the second checkpoint (step 4): the run stops with one error, and
    ckpt_last.pt still holds step 2, from which it resumes."""
    real_save, calls = torch.save, []

    def save_until_full(obj, f):
        calls.append(obj.get("step"))
        if len(calls) > 2:  # step 2: ckpt_last + ckpt_best; then the disk is full
            f.write(b"PK\x03\x04")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(CheckpointError, match="No space left on device.*the previous ckpt_last.pt is intact"):
        run_training(compose_job([*FAST, *sample_data, f"out_dir={tmp_path}"]))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / CKPT_LAST)["step"] == 2
    assert not list(tmp_path.glob(".*tmp*"))
    assert run_training(compose_job([*FAST, *sample_data, f"out_dir={tmp_path}", "resume=true"]))["step"] == 4


def test_best_checkpoint_holds_the_weights_only(tmp_path, sample_data):  # noqa: F811
    run_training(compose_job([*FAST, *sample_data, f"out_dir={tmp_path}"]))
    best, last = load_checkpoint(tmp_path / ck.CKPT_BEST), load_checkpoint(tmp_path / CKPT_LAST)
    assert set(best) == set(ck.MODEL_KEYS) and "optimizer" in last and "rng" in last
    assert (tmp_path / ck.CKPT_BEST).stat().st_size < 0.5 * (tmp_path / CKPT_LAST).stat().st_size
    ck.load_model(tmp_path / ck.CKPT_BEST)  # evaluation and sampling read it


@pytest.mark.slow
def test_cli_error_is_one_line_and_leaves_no_run_folder():
    """Through train.py without out_dir: the dated default folder is not made for a failed run."""
    runs = ROOT / "runs"
    before = set(runs.rglob("*")) if runs.exists() else set()
    proc = subprocess.run(train_cmd(*TINY, "train.max_steps=0"), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: train.max_steps=0: must be >= 1"
    assert (set(runs.rglob("*")) if runs.exists() else set()) == before
    assert not (ROOT / "outputs").exists() and not (ROOT / "train.log").exists()
