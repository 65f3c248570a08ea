"""Weights & Biases: choose the mode, start the run, and never let logging stop training."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from training.config import WandbConfig, WandbMode


def has_api_key() -> bool:
    """An API key in WANDB_API_KEY or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def effective_mode(cfg: WandbConfig) -> WandbMode:
    """WANDB_MODE=disabled in the environment wins; online without an API key becomes offline."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return WandbMode.disabled
    if cfg.mode == WandbMode.online and not has_api_key():
        return WandbMode.offline
    return WandbMode(cfg.mode)


def start_run(cfg: WandbConfig, run_dir: Path, name: str, config: dict, run_id: str | None):
    """A wandb run writing under <run_dir>/wandb, or None when disabled or when wandb fails.

    `run_id` continues an earlier run (resume); the returned run's `.id` is stored in checkpoints.
    """
    mode = effective_mode(cfg)
    if mode == WandbMode.disabled:
        return None
    try:
        import wandb

        return wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.name or name,
            config=config,
            dir=str(run_dir),
            mode=mode.value,
            id=run_id,
            resume="allow" if run_id else None,
        )
    except Exception as e:  # logging is optional: report and train on
        print(f"wandb: could not start a {mode.value} run ({type(e).__name__}: {e}); logging to "
              f"metrics.jsonl only")
        return None
