"""data/loader.py: seeded, resumable, rank-aware training windows and fixed validation windows.

The token stream is 0, 1, 2, ... so every window can be checked against where it starts: the
reference is the arithmetic `start + arange(T + 1)`, independent of the loader's indexing."""

from pathlib import Path

import numpy as np
import pytest
import torch

from data.loader import TrainBatches, count_windows, load_tokens, val_batches
from data.tokens import DataError, split_file


def ramp(tmp_path: Path, n: int, name: str = "ramp.bin") -> np.memmap:
    """A uint16 memmap file holding 0 .. n - 1 (n <= 65536), like a prepared split."""
    path = tmp_path / name
    np.arange(n, dtype=np.uint16).tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r")


def check_windows(x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """Assert x, y are consecutive windows of the ramp inside [0, n); return their starts."""
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape
    starts = x[:, :1]
    T = x.shape[1]
    assert torch.equal(x, starts + torch.arange(T))
    assert torch.equal(y, starts + 1 + torch.arange(T))
    assert int(starts.min()) >= 0 and int(y.max()) <= n - 1
    return starts.flatten()


def test_train_batches_shape_and_contiguity(tmp_path):
    tokens = ramp(tmp_path, 5000)
    batches = TrainBatches(tokens, batch_size=8, block_size=64, seed=0)
    x, y = batches.get(3)
    assert x.shape == (8, 64) and x.device.type == "cpu"
    starts = check_windows(x, y, 5000)
    assert np.array_equal(starts.numpy(), batches.starts(3))


def test_same_seed_same_batches_and_resume_equals_uninterrupted(tmp_path):
    tokens = ramp(tmp_path, 5000)
    run = TrainBatches(tokens, 4, 32, seed=7)
    uninterrupted = [run.get(step) for step in range(12)]
    resumed = TrainBatches(tokens, 4, 32, seed=7)  # a new process after a checkpoint at step 8
    for step in range(8, 12):
        x, y = resumed.get(step)
        assert torch.equal(x, uninterrupted[step][0]) and torch.equal(y, uninterrupted[step][1])
    again = [TrainBatches(tokens, 4, 32, seed=7).get(step)[0] for step in range(12)]
    assert all(torch.equal(a, b[0]) for a, b in zip(again, uninterrupted))


def test_streams_differ_by_seed_step_and_micro_step(tmp_path):
    tokens = ramp(tmp_path, 60000)
    base = TrainBatches(tokens, 16, 32, seed=1)
    starts = {
        "base": base.starts(5),
        "seed": TrainBatches(tokens, 16, 32, seed=2).starts(5),
        "step": base.starts(6),
        "micro": base.starts(5, micro_step=1),
    }
    for name, s in starts.items():
        if name != "base":
            assert not np.array_equal(s, starts["base"]), name
    # Micro-batches (and so DDP ranks, numbered globally) draw independent streams: over many steps
    # their windows barely coincide.
    m0 = np.concatenate([base.starts(k, micro_step=0) for k in range(50)])
    m1 = np.concatenate([base.starts(k, micro_step=1) for k in range(50)])
    assert len(np.intersect1d(m0, m1)) < 0.05 * len(m0)


def test_windows_reach_both_ends_and_never_past_them(tmp_path):
    T = 16
    tokens = ramp(tmp_path, T + 4)  # four possible starts: 0, 1, 2, 3
    batches = TrainBatches(tokens, batch_size=8, block_size=T, seed=0)
    seen = set()
    for step in range(40):
        seen.update(check_windows(*batches.get(step), n=T + 4).tolist())
    assert seen == {0, 1, 2, 3}
    exact = TrainBatches(ramp(tmp_path, T + 1, "exact.bin"), 3, T, seed=0)  # exactly one window fits
    assert check_windows(*exact.get(0), n=T + 1).tolist() == [0, 0, 0]


def test_validation_windows_cover_the_split_once(tmp_path):
    n, T = 1000, 64
    tokens = ramp(tmp_path, n)
    total = count_windows(n, T)
    assert total == (n - 1) // T == 15
    batches = val_batches(tokens, batch_size=4, block_size=T)
    assert len(batches) == 4  # 4 + 4 + 4 + 3 windows
    got = list(batches)
    assert [len(x) for x, _ in got] == [4, 4, 4, 3]
    starts = torch.cat([check_windows(x, y, n) for x, y in got])
    assert starts.tolist() == [i * T for i in range(total)]  # non-overlapping, in order
    targets = torch.cat([y.flatten() for _, y in got])
    assert targets.tolist() == list(range(1, total * T + 1))  # each target exactly once
    again = list(val_batches(tokens, 4, T))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, again))
    assert torch.equal(batches.get(2)[1], got[2][1])
    with pytest.raises(IndexError):
        batches.get(4)


def test_validation_max_batches_spreads_over_the_split(tmp_path):
    n, T = 10_000, 32
    tokens = ramp(tmp_path, n)
    total = count_windows(n, T)
    batches = val_batches(tokens, batch_size=5, block_size=T, max_batches=3)
    assert len(batches) == 3
    starts = torch.cat([check_windows(x, y, n) for x, y in batches]).tolist()
    assert len(starts) == len(set(starts)) == 15
    assert starts[0] == 0 and starts[-1] == (total - 1) * T  # first and last window of the split
    assert all(s % T == 0 for s in starts) and starts == sorted(starts)
    assert len(val_batches(tokens, 5, T, max_batches=10_000)) == -(-total // 5)  # capped at all


def test_any_window_length(tmp_path):
    n = 3000
    tokens = ramp(tmp_path, n)
    (x, y), = list(val_batches(tokens, batch_size=8, block_size=n - 1))  # one window: the split
    check_windows(x, y, n)
    assert x.shape == (1, n - 1)
    x, y = TrainBatches(tokens, 2, 2048, seed=0).get(0)  # longer than any training context here
    check_windows(x, y, n)


def test_split_too_small_for_one_window_names_the_file(tmp_path):
    tokens = ramp(tmp_path, 64)
    with pytest.raises(DataError, match=r"validation split: .*ramp.bin has 64 tokens, too few .* 65"):
        val_batches(tokens, 4, block_size=64)
    with pytest.raises(DataError, match=r"training split: .*ramp.bin has 64 tokens"):
        TrainBatches(tokens, 4, block_size=64, seed=0)
    with pytest.raises(DataError, match="seed=-1"):
        TrainBatches(tokens, 4, block_size=8, seed=-1)


def test_load_tokens_without_meta_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="meta.json does not exist: the corpus is not prepared"):
        load_tokens(tmp_path, "val")
    with pytest.raises(DataError, match="unknown split 'test'"):
        split_file("test")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_match_cpu(tmp_path):
    tokens = ramp(tmp_path, 5000)
    x, y = TrainBatches(tokens, 4, 64, seed=3, device="cuda").get(2)
    torch.cuda.synchronize()
    cx, cy = TrainBatches(tokens, 4, 64, seed=3).get(2)
    assert x.is_cuda and torch.equal(x.cpu(), cx) and torch.equal(y.cpu(), cy)
    (vx, vy), = list(val_batches(tokens, 100, 4000, device="cuda"))
    assert vx.is_cuda and torch.equal(vy.cpu(), torch.arange(1, 4001)[None])
