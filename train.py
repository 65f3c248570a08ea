"""train.py: train a GPT.

    python train.py [model=tiny] [pos=rope] [data=tinystories_local] [train.max_steps=200] ...
    python train.py pos=rope out_dir=runs/rope_tiny            # then resume=true to continue it

A thin Hydra main over `training.run.run_training`; see README.md ("Train") for sweeps (-m),
resuming and torchrun. Ctrl-C (or SIGTERM) saves a checkpoint of the current step and stops;
`resume=true` continues from there.
"""

import os
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from configs.errors import user_errors
from configs.help import exit_with_help_if_asked
from configs.schema import TrainJob, register_configs
from data.config import project_path
from evaluation.samples import final_story
from training.cpu_memory import keep_freed_memory
from training.device import resolve_device
from training.run import run_training

register_configs()
# The sweep folder of -m runs (Hydra makes it, with multirun.yaml); relative to the project root.
OmegaConf.register_new_resolver("project_path", lambda path: str(project_path(path)), replace=True)
STARTED = datetime.now()  # one timestamp for the default run folders of this command (and its sweep)


def default_out_dir(cfg: DictConfig) -> Path:
    """runs/<date>/<time>-<pos>-<model>, or <sweep dir>/<job number>-<pos>-<model> under -m.

    Computed here rather than made by Hydra, so that nothing is created for a command that fails
    before training starts."""
    hydra_cfg = HydraConfig.get()
    name = f"{cfg.pos.name}-{hydra_cfg.runtime.choices.get('model')}"
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir) / f"{hydra_cfg.job.num}-{name}"
    return project_path(f"runs/{STARTED:%Y-%m-%d}/{STARTED:%H-%M-%S}-{name}")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best val loss, for Hydra sweepers that minimise it."""
    with user_errors():
        if cfg.out_dir is None:
            cfg.out_dir = str(default_out_dir(cfg))
        if resolve_device(cfg.train.device, option="train.device").type == "cpu":
            # Process-wide and irreversible: glibc keeps freed memory for reuse for the rest of this
            # process (1.3-1.8x faster CPU steps; the process holds its peak memory until it exits).
            keep_freed_memory()
        summary = run_training(cfg)
        if cfg.final_sample_tokens > 0 and int(os.environ.get("RANK", "0")) == 0:
            device = resolve_device(cfg.train.device, option="train.device",
                                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
            story = final_story(summary["out_dir"], cfg.final_sample_tokens, device)
            print(f"sample from the best checkpoint (final_sample_tokens={cfg.final_sample_tokens}; 0: none):\n{story}")
        return summary["best_val_loss"]


if __name__ == "__main__":
    exit_with_help_if_asked("train", TrainJob, __doc__, groups=["model", "pos", "data", "train", "experiment"])
    main()
