"""Tokenize a corpus into data/cache/ (what train.py, evaluate.py and compare.py do on demand).

    python prepare.py                                   # the default, data=tinystories_local
    python prepare.py data=tinystories_sample
    python prepare.py data=tinystories                  # the full dataset from the Hugging Face hub
    python prepare.py data.vocab_size=8192 force=true   # keep the 8,191 most frequent ids + end-of-text

The library behind it is data/prepare.py (`ensure_prepared`); this file is only its command line.
"""

from __future__ import annotations

import hydra
from omegaconf import OmegaConf

from configs.errors import user_errors
from configs.help import exit_with_help_if_asked
from configs.schema import PrepareJob, register_configs
from data.config import DataConfig
from data.prepare import ensure_prepared
from data.tokens import SPLITS, read_meta, split_file
from data.vocab import Vocab

register_configs()


@hydra.main(config_path="configs", config_name="prepare", version_base=None)
def main(cfg) -> None:
    with user_errors():
        data_cfg: DataConfig = OmegaConf.to_object(cfg.data)
        folder = ensure_prepared(data_cfg, force=cfg.force)
    meta = read_meta(folder)
    for s in SPLITS:
        c = meta["splits"][s]
        print(f"{folder / split_file(s)}: {c['tokens']:,} tokens, {c['stories']:,} stories")
    print(f"vocabulary: {Vocab.from_dict(meta['vocab']).describe()}")


if __name__ == "__main__":
    exit_with_help_if_asked("prepare", PrepareJob, __doc__, groups=["data"])
    main()
