"""AdamW parameter groups (decay on matrices only) and the gradient-accumulation arithmetic."""

import pytest

from model import GPT
from model.config import ModelConfig
from model.positional import config_class
from training.config import TrainConfig
from training.optim import build_optimizer
from training.run import grad_accum_steps


def test_decay_only_on_matrices_and_tied_weight_once():
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=50), config_class("learned")())
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # the tied embedding / head appears once
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.param_counts()["total"]
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} >= {"wte.weight", "pos.wpe.weight"}
    assert opt.defaults["fused"] is False  # fused=True only on CUDA


@pytest.mark.parametrize("micro,global_batch,world,expected", [(8, 16, 1, 2), (8, 16, 2, 1), (2, 12, 3, 2)])
def test_grad_accum_keeps_global_batch(micro, global_batch, world, expected):
    cfg = TrainConfig(batch_size=micro, global_batch_size=global_batch)
    assert grad_accum_steps(cfg, world) == expected


def test_grad_accum_must_divide():
    with pytest.raises(ValueError, match="global_batch_size=10 is not a multiple of train.batch_size=4"):
        grad_accum_steps(TrainConfig(batch_size=4, global_batch_size=10), 1)
