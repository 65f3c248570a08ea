"""Checkpoint I/O: atomic writes, weights_only loading, clear errors, RNG state, load_model."""

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from data.vocab import Vocab
from model import GPT
from model.config import ModelConfig
from model.positional.rope import RotaryPositions

RopePos = RotaryPositions.Config
from training import checkpoint as ck


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=64), RopePos())


# The model's 64 ids: 63 GPT-2 ids (end-of-text among them) and the unknown id (data/vocab.py).
VOCAB = Vocab("gpt2", 50257, 50256, (*range(62), 50256)).to_dict()


def config_container() -> dict:
    cfg = OmegaConf.create({"model": OmegaConf.structured(ModelConfig(n_layer=1, n_head=2, n_embd=16,
                                                                      block_size=16, vocab_size=64)),
                            "pos": OmegaConf.structured(RopePos())})
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def test_roundtrip_weights_only(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))[1].backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3,
             "rng": [ck.rng_state()], "config": config_container()}
    path = tmp_path / ck.CKPT_LAST
    ck.save_checkpoint(state, path)
    loaded = ck.load_checkpoint(path)  # weights_only=True inside
    assert loaded["step"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_rng_state_restores_every_generator():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    random.random(), np.random.rand(), torch.rand(1)  # move off the seed
    state = ck.rng_state()
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    ck.set_rng_state(state)
    assert (random.random(), np.random.rand(3).tolist()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / ck.CKPT_LAST
    ck.save_checkpoint({"model": tiny_model().state_dict(), "config": config_container()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="ckpt_last.pt is corrupt or truncated"):
        ck.load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match=str(path)):
        ck.load_checkpoint(path)


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / ck.CKPT_LAST
    ck.save_checkpoint({"step": 1, "model": {}, "config": {}}, path)

    def dying_save(obj, f):  # writes part of a file, then the process "dies"
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint({"step": 2, "model": {}, "config": {}}, path)
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".ckpt_last.pt.tmp123").write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("x")
    ck.remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_missing_entries_and_missing_file(tmp_path):
    path = tmp_path / "c.pt"
    ck.save_checkpoint({"model": {}}, path)
    with pytest.raises(ck.CheckpointError, match=r"lacks the entries \['config'\]"):
        ck.load_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ck.CheckpointError, match="no ckpt_best.pt or ckpt_last.pt"):
        ck.resolve_checkpoint(tmp_path)


def test_bare_model_drops_compile_and_ddp_wrappers():
    model = tiny_model()
    compiled = torch.compile(model)  # not run: wrapping alone adds the `_orig_mod.` prefix
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    assert ck.bare_model(compiled) is model
    assert ck.bare_model(model) is model


def test_load_model_from_run_dir_prefers_best(tmp_path):
    best, last = tiny_model(0), tiny_model(1)
    ck.save_checkpoint({"model": last.state_dict(), "config": config_container(), "vocab": VOCAB}, tmp_path / ck.CKPT_LAST)
    ck.save_checkpoint({"model": best.state_dict(), "config": config_container(), "vocab": VOCAB}, tmp_path / ck.CKPT_BEST)
    loaded, cfg = ck.load_model(tmp_path, "cpu")
    assert cfg["pos"]["name"] == "rope" and cfg["model"]["n_embd"] == 16
    assert not loaded.training
    idx = torch.randint(0, 64, (1, 10))
    torch.testing.assert_close(loaded(idx)[0], best.eval()(idx)[0], rtol=0, atol=0)
    loaded_last, _ = ck.load_model(tmp_path / ck.CKPT_LAST)
    torch.testing.assert_close(loaded_last(idx)[0], last.eval()(idx)[0], rtol=0, atol=0)


def test_load_model_is_strict(tmp_path):
    sd = tiny_model().state_dict()
    sd.pop("ln_f.weight")
    ck.save_checkpoint({"model": sd, "config": config_container(), "vocab": VOCAB}, tmp_path / "c.pt")
    with pytest.raises(ck.CheckpointError, match="ln_f.weight"):
        ck.load_model(tmp_path / "c.pt")
