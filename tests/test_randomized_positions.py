"""Randomized positions (Ruoss et al. 2023): the draw (sorted random subsets of [0, N), part of the
seeded batch), per-sequence positions through every randomizable encoding, the learned table of N
rows evaluated past the training length, and the option reaching training through the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException
from train_helpers import TINY, sample_data  # noqa: F401

from data.loader import TrainBatches
from model import GPT
from model.positional import Positions, config_class, encoding_class, encoding_names
from tests.model_helpers import tiny_config

RANDOMIZABLE = [e for e in encoding_names() if encoding_class(e).randomizable]
TOKENS = np.arange(5000, dtype=np.uint16)


def randomized_batches(batch_size: int, block_size: int, seed: int, position_range: int) -> TrainBatches:
    train = TrainBatches(TOKENS, batch_size, block_size, seed)
    train.randomize_positions(position_range)
    return train


def model_of(encoding: str, randomize_to: int = 0, **cfg) -> GPT:
    torch.manual_seed(0)
    model = GPT(tiny_config(**cfg), config_class(encoding)(randomize_to=randomize_to)).eval()
    for block in model.blocks:  # attention that depends strongly on position (as tiny_model)
        torch.nn.init.normal_(block.attn.c_attn.weight, std=0.3)
    return model


def test_the_absolute_encodings_are_the_randomizable_ones():
    assert set(RANDOMIZABLE) >= {"learned", "sinusoidal", "rope", "xpos"}
    assert not {"alibi", "t5", "cope", "nope"} & set(RANDOMIZABLE)


def test_draw_is_a_sorted_subset_and_a_function_of_the_batch_alone():
    train = randomized_batches(64, 16, seed=3, position_range=40)
    p = train.positions(7, 1)
    assert p.shape == (64, 16) and p.dtype == torch.int64
    assert (p.diff(dim=1) > 0).all() and p.min() >= 0 and p.max() < 40  # increasing: distinct
    assert torch.equal(p, train.positions(7, 1))  # no hidden state: the same batch, the same draw
    assert not torch.equal(p, train.positions(8, 1)) and not torch.equal(p, train.positions(7, 0))
    assert set(p.flatten().tolist()) == set(range(40))  # every position of [0, N) is drawn
    # uniform subsets: each position is in a row with probability T / N
    freq = torch.bincount(torch.cat([train.positions(s).flatten() for s in range(30)]), minlength=40)
    expected = 30 * 64 * 16 / 40
    assert (freq - expected).abs().max() < 0.2 * expected
    # the windows themselves do not change: the positions come after the starts in the stream
    plain = TrainBatches(TOKENS, batch_size=64, block_size=16, seed=3)
    assert np.array_equal(train.starts(7, 1), plain.starts(7, 1)) and plain.positions(7, 1) is None


def test_position_range_shorter_than_a_window_is_an_error():
    from data.tokens import DataError

    with pytest.raises(DataError, match="position_range=8"):
        randomized_batches(2, 16, seed=0, position_range=8)


@pytest.mark.parametrize("encoding", RANDOMIZABLE)
def test_positions_0_to_T_per_sequence_equal_the_ordinary_forward(encoding):
    model = model_of(encoding, randomize_to=128)
    idx = torch.randint(0, 101, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain, _ = model(idx)
        per_seq, _ = model(idx, positions=torch.arange(20).expand(3, 20))
    torch.testing.assert_close(per_seq, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoding", RANDOMIZABLE)
def test_each_sequence_is_encoded_at_its_own_positions(encoding):
    """Row b of a batch at per-sequence positions equals that row alone at the same positions, and
    an absolute encoding sees the positions, not the indices."""
    model = model_of(encoding, randomize_to=128)
    idx = torch.randint(0, 101, (3, 20), generator=torch.Generator().manual_seed(1))
    pos = randomized_batches(3, 20, seed=0, position_range=128).positions(0)
    with torch.no_grad():
        batch, _ = model(idx, positions=pos)
        for b in range(3):
            alone, _ = model(idx[b : b + 1], positions=pos[b : b + 1])
            torch.testing.assert_close(batch[b : b + 1], alone, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(batch, model(idx)[0], atol=1e-3)


@pytest.mark.parametrize("encoding", ["rope", "xpos"])
def test_relative_encodings_see_only_differences(encoding):
    """RoPE's and xPos' scores depend on n - m only: every sequence shifted by its own offset
    gives the plain forward."""
    model = model_of(encoding, randomize_to=256)
    idx = torch.randint(0, 101, (2, 20), generator=torch.Generator().manual_seed(2))
    shifted = torch.arange(20) + torch.tensor([[37], [200]])  # (2, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(idx, positions=shifted)[0], model(idx)[0], atol=1e-4, rtol=1e-4)


def test_learned_table_has_randomize_to_rows_each_reached():
    model = model_of("learned", randomize_to=96)
    assert model.max_positions == 96 and model.pos.wpe.weight.shape[0] == 96
    pos = torch.tensor([[0, 5, 95]])
    got = model.pos.embed(Positions.of_sequences(pos))
    torch.testing.assert_close(got, model.pos.wpe.weight[pos])
    with torch.no_grad():
        model(torch.zeros(1, 96, dtype=torch.long))  # 3 x the block size: inside the table
    from model import PositionOutOfRange

    with pytest.raises(PositionOutOfRange, match=r"96 positions \(pos.randomize_to\)"), torch.no_grad():
        model(torch.zeros(1, 97, dtype=torch.long))


def test_learned_with_randomized_positions_is_evaluated_past_the_training_length():
    from tests.test_evaluate import CPU, random_text, rows_of, tiny_eval_cfg
    from evaluation.extrapolation import evaluate_model

    model = model_of("learned", randomize_to=32, n_layer=1, n_embd=32, block_size=8)
    result = evaluate_model(model, tiny_eval_cfg(multipliers=[1, 2, 4]), {"t": random_text([60, 40])}, CPU,
                            log=lambda s: None)
    rows = rows_of(result)
    assert all(rows[("none", L, p)]["ppl"] > 1 for L in (8, 16, 32) for p in ("nonoverlap", "sliding"))


def test_bad_uses_are_clear_errors():
    with pytest.raises(ValueError, match=r"randomize_to=16 must be 0 \(off\) or at least model.block_size=32"):
        model_of("rope", randomize_to=16)
    idx = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="pos=alibi takes no per-sequence positions"):
        GPT(tiny_config(), config_class("alibi")())(idx, positions=torch.arange(8).expand(2, 8))
    from model import KVCache

    model = model_of("rope", randomize_to=64)
    with pytest.raises(ValueError, match="no cache"):
        model(idx, cache=KVCache.for_model(model, 2, 8), positions=torch.arange(8).expand(2, 8))
    with pytest.raises(ValueError, match="shape of idx"):
        model(idx, positions=torch.arange(8)[None])


def test_option_is_typed_per_encoding():
    from configs.compose import compose_job

    assert compose_job(["pos=xpos", "pos.randomize_to=512"]).pos.randomize_to == 512
    with pytest.raises(ConfigCompositionException):
        compose_job(["pos=alibi", "pos.randomize_to=512"])  # not randomizable: no such key


@pytest.mark.slow
def test_training_draws_the_positions_and_uses_them(tmp_path, sample_data, monkeypatch):  # noqa: F811
    """run_training hands the model the batch's positions (and the learned table has N rows)."""
    from configs.compose import compose_job
    from training.data import TrainData
    from training.run import run_training

    seen = []
    original = TrainData.train_batch

    def spy(self, step, micro):
        batch = original(self, step, micro)
        seen.append(batch[2])
        return batch

    monkeypatch.setattr(TrainData, "train_batch", spy)
    summary = run_training(compose_job([*TINY, *sample_data, "pos=learned", "pos.randomize_to=128",
                                        "train.max_steps=2", "train.eval_interval=2", f"out_dir={tmp_path}"]))
    assert summary["best_val_loss"] is not None and summary["params"]["embedding"] > 128 * 16 + 32 * 16  # a table of 128 rows, past L = 32
    assert len(seen) == 2 * 2 and all(p is not None and p.shape == (2, 32) and p.max() < 128 for p in seen)
    assert len({tuple(p.flatten().tolist()) for p in seen}) == len(seen)


def test_registry_pairs_the_flag_with_the_config():
    from dataclasses import dataclass

    from model.config import PosConfig
    from model.positional import PositionalEncoding, register
    from model.positional.randomized import RandomizableConfig

    class FlagOnly(PositionalEncoding):
        randomizable = True

        @dataclass
        class Config(PosConfig):
            name: str = "test_flag_only"

    class ConfigOnly(PositionalEncoding):
        @dataclass
        class Config(RandomizableConfig):
            name: str = "test_config_only"

    for cls in (FlagOnly, ConfigOnly):
        with pytest.raises(TypeError, match="randomizable"):
            register(cls)
    assert not {"test_flag_only", "test_config_only"} & set(encoding_names())
