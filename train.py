"""Train a GPT: python train.py [model=tiny] [pos=rope] [data=tinystories_local] [train.max_steps=200] ...

A thin Hydra main over `training.run.run_training`; see README.md ("Train") for the options,
sweeps (-m), resuming (resume=true out_dir=PATH) and torchrun.
"""

import os

import hydra
from omegaconf import DictConfig, OmegaConf

from configs.schema import register_configs
from data.config import project_path
from evaluation.samples import final_story
from training.distributed import resolve_device
from training.run import run_training

register_configs()
# hydra.run.dir: out_dir when given, else the default below; both relative to the project root.
OmegaConf.register_new_resolver(
    "train_run_dir", lambda out_dir, default: str(project_path(default if out_dir is None else out_dir))
)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best val loss, for Hydra sweepers that minimise it."""
    summary = run_training(cfg)
    if cfg.final_sample_tokens > 0 and int(os.environ.get("RANK", "0")) == 0:
        device = resolve_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", "0")))
        story = final_story(summary["out_dir"], cfg.final_sample_tokens, device)
        print(f"sample from the best checkpoint (final_sample_tokens={cfg.final_sample_tokens}; 0: none):\n{story}")
    return summary["best_val_loss"]


if __name__ == "__main__":
    main()
