"""The specification of the plugin interface: an encoding registered here, in a few lines and with
no other file touched, trains through run_training, decodes with the KV cache equal to a full
forward, is evaluated by evaluate.py and appears in a compare.py report. Also the registry's own
checks of a plugin's declared capabilities."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from torch import nn
from train_helpers import TINY, sample_data  # noqa: F401

from model.config import ModelConfig, PosConfig
from model.positional import Family, PositionalEncoding, default_compare_encodings, encoding_names, register
from model.positional.registry import unregister

NAME = "test_logbias"


@pytest.fixture
def plugin():
    """A learned per-head bias -w_h log(1 + q - k), registered for this test only."""

    @register
    class LogDistanceBias(PositionalEncoding):
        family = Family.bias
        adds_bias = True

        @dataclass
        class Config(PosConfig):
            name: str = NAME
            init: float = 0.5

        def __init__(self, cfg: ModelConfig, pos: Config):
            super().__init__()
            self.weight = nn.Parameter(torch.full((cfg.n_head,), pos.init))

        def bias(self, positions):
            distance = (positions.q[:, None] - positions.k[None, :]).clamp(min=0).float()  # (Tq, Tk)
            return -self.weight[:, None, None] * distance.log1p()  # (H, Tq, Tk)

    yield LogDistanceBias
    unregister(NAME)


def test_registry_derives_every_list(plugin):
    from configs.compose import compose_job
    from configs.schema import CompareJob
    from evaluation.ablation import make_specs
    from tests.test_compare import compose_compare

    assert NAME in encoding_names() and NAME in default_compare_encodings()
    assert NAME in CompareJob().encodings
    cfg = compose_job([f"pos={NAME}", "pos.init=0.25"])
    assert cfg.pos.init == 0.25
    with pytest.raises(ConfigCompositionException):
        compose_job([f"pos={NAME}", "pos.num_buckets=3"])  # another encoding's key
    specs = make_specs(OmegaConf.merge(compose_compare(["out_dir=/tmp/unused"]), {"seeds": [0]}))
    assert NAME in [s.encoding for s in specs]  # compare's default runs come from the registry


@pytest.mark.slow
def test_a_registered_encoding_trains_decodes_evaluates_and_is_compared(plugin, tmp_path, sample_data, monkeypatch):  # noqa: F811
    from configs.compose import compose_job
    from model.generate import CachedDecoder
    from training.checkpoint import load_model, resolve_checkpoint
    from training.run import run_training

    run = tmp_path / "run"
    summary = run_training(compose_job([*TINY, *sample_data, f"pos={NAME}", "train.max_steps=3",
                                        "train.eval_interval=3", f"out_dir={run}"]))
    assert summary["best_val_loss"] is not None

    model, _ = load_model(resolve_checkpoint(run), torch.device("cpu"))
    assert isinstance(model.pos, plugin) and model.pos.weight.grad is None
    tokens = torch.randint(0, model.cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    decoder = CachedDecoder(model, batch_size=2, max_len=12)
    with torch.no_grad():
        full, _ = model(tokens)
        steps = [decoder.prefill(tokens[:, :5])] + [decoder.step(tokens[:, t]) for t in range(5, 11)]
    for i, logits in enumerate(steps):
        torch.testing.assert_close(logits, full[:, 4 + i], atol=1e-4, rtol=1e-4)

    import evaluate

    monkeypatch.setattr(sys, "argv", [
        "evaluate.py", f"ckpts=[{run}]", "eval.multipliers=[1,2]", "eval.progress=false", "eval.probes=[]",
        f"eval.cache_dir={tmp_path}/cache", "~eval.sets.tinystories", "~eval.sets.long_stories",
        "+eval.sets.sample={files:[data/sample/valid.txt],max_tokens:64}", f"hydra.run.dir={tmp_path}/hydra",
    ])
    evaluate.main()
    result = json.loads((run / "eval.json").read_text())
    assert result["pos"] == NAME and all(r["ppl"] > 1 for r in result["sets"]["sample"]["rows"])

    from evaluation.ablation import run_comparison
    from tests.test_compare import compose_compare

    cfg = compose_compare([
        "preset=smoke", f"encodings=[{NAME},nope]", f"out_dir={tmp_path}/runs",
        f"report_dir={tmp_path}/report", f"eval.cache_dir={tmp_path}/cache", *sample_data,
        "train.max_steps=2", "train.eval_interval=2", "train.eval_batches=1", "train.progress=false",
        "eval.multipliers=[1,2]", "eval.progress=false", "eval.probes=[]", "~eval.sets.long_stories",
        "eval.sets.tinystories.files=[data/sample/valid.txt]", "eval.sets.tinystories.max_tokens=128",
        "samples.max_new_tokens=4", "samples.num_samples=1",
    ])
    text = run_comparison(cfg, "test").read_text()
    assert f"| {NAME} |" in text and f"**{NAME}**" in text


def test_registration_checks_declared_capabilities():
    class Inconsistent(PositionalEncoding):
        adds_bias = True  # but no bias() override

        @dataclass
        class Config(PosConfig):
            name: str = "test_inconsistent"

    with pytest.raises(TypeError, match="adds_bias"):
        register(Inconsistent)

    class NoConfig(PositionalEncoding):
        pass

    with pytest.raises(TypeError, match="Config"):
        register(NoConfig)
    assert "test_inconsistent" not in encoding_names()
