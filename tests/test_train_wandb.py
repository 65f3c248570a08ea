"""wandb: mode resolution, and an offline run that writes its run folder without an API key."""

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


@pytest.mark.slow
def test_offline_run_creates_its_folder(no_wandb_env, tmp_path):
    run = start_run(WandbConfig(mode=WandbMode.online, project="test"), tmp_path, "rope-1x32-0.01M",
                    {"pos": {"name": "rope"}}, None)
    assert run is not None
    run.log({"train/loss": 1.5}, step=1)
    run_id = run.id
    run.finish()
    folders = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 1 and folders[0].name.endswith(run_id)
    assert list(folders[0].glob("*.wandb"))  # the log that `wandb sync` uploads
