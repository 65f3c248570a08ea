"""What every entry point shares: --help from the typed configs, and user errors as one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from train_helpers import ROOT, subprocess_env

from configs.help import field_docs, render
from configs.schema import CompareJob, EvalJob, PrepareJob, SampleJob, TrainJob
from training.config import TrainConfig

HELP = {  # config name -> (schema, groups its --help lists)
    "train": (TrainJob, ["model", "pos", "data", "train", "experiment"]),
    "sample": (SampleJob, ["model", "pos"]),
    "evaluate": (EvalJob, ["eval"]),
    "compare": (CompareJob, ["model", "data", "train", "eval", "preset"]),
    "prepare": (PrepareJob, ["data"]),
}


def test_field_docs_read_the_comments_beside_each_field():
    docs = field_docs(TrainConfig)
    assert docs["max_steps"] == "optimizer steps"
    assert docs["grad_clip"] == "max global gradient norm; 0 disables clipping"


@pytest.mark.parametrize("name", sorted(HELP))
def test_help_lists_each_option_with_its_value_and_meaning(name):
    schema, groups = HELP[name]
    text = render(name, schema, f"{name}.py: doc", groups, [])
    lines = text.splitlines()
    for group in groups:
        assert any(line.startswith(f"  {group}=") for line in lines), group
    for f in ("threads",) if name != "prepare" else ("force",):
        assert any(line.strip().startswith(f"{f}=") for line in lines)
    assert "hydra" not in " ".join(line.split("=")[0] for line in lines if "=" in line)  # no Hydra config dump


def test_train_help_lists_only_train_options_at_the_overridden_values():
    text = render("train", TrainJob, "doc", HELP["train"][1], ["train=gpu", "pos=t5"])
    assert "  train.max_steps=5000" in text and "optimizer steps" in text
    assert "pos.num_buckets=32" in text and "pos.rotary_dim" not in text
    assert "eval." not in text and "preset=" not in text and "ckpt=" not in text
    assert "cpu, gpu*" in text  # the chosen train option is marked


@pytest.mark.slow
def test_train_help_on_the_command_line():
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("train.py: train a GPT.")
    assert "train.lr=" in proc.stdout and "peak learning rate" in proc.stdout
    assert "== Config ==" not in proc.stdout and "hydra/" not in proc.stdout  # not Hydra's own help


@pytest.mark.slow
def test_evaluate_checks_every_checkpoint_and_option_before_starting(tmp_path):
    from omegaconf import OmegaConf

    from tests.model_helpers import tiny_model
    from training.checkpoint import save_checkpoint

    model = tiny_model("rope", vocab_size=50257, block_size=16, n_layer=1, n_embd=16)
    config = {"model": OmegaConf.to_container(OmegaConf.structured(model.cfg), enum_to_str=True),
              "pos": OmegaConf.to_container(OmegaConf.structured(model.pos_cfg), enum_to_str=True),
              "data": {"tokenizer": "gpt2"}}
    good = tmp_path / "good"
    save_checkpoint({"model": model.state_dict(), "config": config}, good / "ckpt_best.pt")

    def run(*overrides):
        return subprocess.run([sys.executable, "evaluate.py", *overrides], cwd=ROOT, env=subprocess_env(),
                              capture_output=True, text=True, timeout=120)

    missing = tmp_path / "missing.pt"
    proc = run(f"ckpts=[{good},{missing}]")
    assert proc.returncode == 1 and proc.stderr.strip().startswith(f"error: checkpoint not found: {missing}")
    assert not (good / "eval.json").exists()  # the good one was not evaluated first
    for value, message in [("[]", "eval.multipliers=[]: give one or more positive numbers"),
                           ("[1,0]", "eval.multipliers=[1.0, 0.0]: give one or more positive numbers")]:
        proc = run(f"ckpts=[{good}]", f"eval.multipliers={value}")
        assert proc.returncode == 1 and proc.stderr.strip().startswith(f"error: {message}"), proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_prepare_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "prepare.py", f"data.train_files=[{tmp_path}/none.txt]",
                           f"data.cache_dir={tmp_path}/cache"], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: data.train_files: {tmp_path}/none.txt does not exist"]
    assert not (tmp_path / "cache").exists()
