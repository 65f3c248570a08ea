"""wandb mode resolution (an offline run through a whole training run: tests/test_train_run.py)."""

import pytest

from training.config import WandbConfig, WandbMode
from training.wandb_run import effective_mode, start_run


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no wandb settings
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))


def test_online_without_key_falls_back_to_offline(no_wandb_env):
    assert effective_mode(WandbConfig(mode=WandbMode.online)) == WandbMode.offline
    assert effective_mode(WandbConfig(mode=WandbMode.disabled)) == WandbMode.disabled


def test_online_with_key_stays_online(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert effective_mode(WandbConfig(mode=WandbMode.online)) == WandbMode.online


def test_environment_disables(no_wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert effective_mode(WandbConfig(mode=WandbMode.offline)) == WandbMode.disabled
    assert start_run(WandbConfig(mode=WandbMode.offline), None, "x", {}, None) is None
