"""Typed configs: unknown or mistyped keys are errors that name the key; bad combinations fail
before any training with a message naming the option."""

import subprocess

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from train_helpers import ROOT, TINY, sample_data, subprocess_env, train_cmd  # noqa: F401

from training.checkpoint import CKPT_LAST, CheckpointError, save_checkpoint
from configs.compose import compose_job
from training.job import as_train_job
from training.run import run_training


def error_text(exc: BaseException) -> str:
    """The message of an exception and of its causes (Hydra wraps OmegaConf's)."""
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_defaults_compose():
    cfg = compose_job(["pos=alibi", "train.max_steps=200"])
    assert cfg.pos.name == "alibi" and cfg.train.max_steps == 200 and cfg.model.n_layer == 4
    assert cfg.data.name == "tinystories_local"


@pytest.mark.parametrize("override,key", [
    ("train.max_step=5", "max_step"),
    ("model.n_layers=2", "n_layers"),
    ("wandb.projekt=x", "projekt"),
    ("pos.num_buckets=8", "num_buckets"),  # a T5 key given to pos=rope
    ("data.cache=x", "cache"),
])
def test_unknown_key_names_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_job([override])
    assert key in error_text(info.value)


@pytest.mark.parametrize("override,key", [("train.dtype=fp16", "dtype"), ("wandb.mode=sometimes", "mode"),
                                          ("train.max_steps=many", "max_steps")])
def test_bad_value_names_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_job([override])
    assert key in error_text(info.value)


def test_unknown_group_option():
    with pytest.raises(ConfigCompositionException, match="pos"):
        compose_job(["pos=rotary"])


def test_as_train_job_rejects_unknown_keys():
    cfg = OmegaConf.to_container(compose_job([]))
    cfg["train"]["learning_rate"] = 1.0
    with pytest.raises(Exception, match="learning_rate"):
        as_train_job(cfg)


def test_experiments_compose():
    cfg = compose_job(["experiment=tiny_ablation"])
    assert cfg.model.n_embd == 128 and cfg.train.max_steps > 0


def test_global_batch_must_divide(tmp_path):
    cfg = compose_job([*TINY, "train.batch_size=3", "train.global_batch_size=4", f"out_dir={tmp_path}"])
    with pytest.raises(ValueError, match="train.global_batch_size=4 is not a multiple of train.batch_size=3"):
        run_training(cfg)


def test_resume_needs_a_checkpoint(tmp_path):
    cfg = compose_job([*TINY, "resume=true", f"out_dir={tmp_path}"])
    with pytest.raises(CheckpointError, match=f"no checkpoint to resume from: {tmp_path / CKPT_LAST}"):
        run_training(cfg)


def test_fresh_run_does_not_overwrite_a_checkpoint(tmp_path):
    save_checkpoint({"step": 1}, tmp_path / CKPT_LAST)
    with pytest.raises(CheckpointError, match="pass resume=true"):
        run_training(compose_job([*TINY, f"out_dir={tmp_path}"]))


def test_resume_from_corrupt_checkpoint_names_the_file(tmp_path, sample_data):  # noqa: F811
    (tmp_path / CKPT_LAST).write_bytes(b"PK\x03\x04 not a whole zip file")
    cfg = compose_job([*TINY, *sample_data, "resume=true", f"out_dir={tmp_path}"])
    with pytest.raises(CheckpointError, match=f"{tmp_path / CKPT_LAST} is corrupt or truncated"):
        run_training(cfg)


@pytest.mark.slow
def test_command_line_typo_exits_with_the_key():
    proc = subprocess.run(train_cmd("train.lr_max=1"), cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "train.lr_max" in proc.stderr
