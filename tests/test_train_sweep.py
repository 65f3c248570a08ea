"""`python train.py -m pos=...` sweeps every registered encoding, each into its own run directory."""

import pytest
import yaml
from train_helpers import TINY, run_train, sample_data  # noqa: F401

from model.positional import encoding_names
from training.metrics import read_metrics

ENCODINGS = encoding_names()


@pytest.mark.slow
def test_sweep_over_all_encodings(tmp_path, sample_data):  # noqa: F811
    run_train("-m", f"pos={','.join(ENCODINGS)}", *TINY, *sample_data, "train.max_steps=2",
              "train.eval_interval=2", "train.log_interval=1", f"hydra.sweep.dir={tmp_path}")
    dirs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [d.name for d in dirs] == [f"{i}-{pos}-tiny" for i, pos in enumerate(ENCODINGS)]
    for pos, run_dir in zip(ENCODINGS, dirs):
        assert (run_dir / "config.yaml").is_file() and (run_dir / "ckpt_last.pt").is_file()
        events = read_metrics(run_dir)
        summary = events[-1]
        assert summary["event"] == "summary" and summary["step"] == 2, pos
        assert summary["best_val_loss"] is not None and summary["best_val_loss"] < 11.5, pos
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["pos"]["name"] == pos
