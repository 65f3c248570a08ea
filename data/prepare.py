"""Text -> tiktoken token ids in memory-mappable files: train.bin, val.bin and meta.json.

    python data/prepare.py data=tinystories_local     # ../shared/data/tinystories/*.txt
    python data/prepare.py data=tinystories_sample    # the small sample in data/sample/
    python data/prepare.py data=tinystories           # the Hugging Face hub
    python data/prepare.py data=tinystories_local force=true

The trainer and the evaluator call `ensure_prepared(cfg)`, which does the same and returns the
folder; `data.tokens.load_tokens(folder, split)` then maps a split.

The pipeline: data/sources.py reads the corpus (the hub or local files) into one
`datasets.Dataset` per split, data/encode.py tokenizes the splits into the .bin files, and this
file checks the options, skips the work when the inputs are unchanged and writes meta.json.

Outputs go to temporary names and are renamed at the end, meta.json last, so a killed run leaves
the previous state or nothing. A run is skipped when meta.json's fingerprint (tokenizer, split
options and the sha256 of every local input file, or the hub dataset's name) is unchanged. The hub
dataset is identified by its name only: pass force=true after it changes upstream.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python data/prepare.py): make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import datetime, timezone

from omegaconf import OmegaConf

from data.config import DataConfig, DataSource, project_path
from data.files import write_json_atomic
from data.encode import get_tokenizer, num_workers, tokenize_to_files
from data.sources import LOCAL_BUILDERS, load_texts
from data.tokens import FORMAT_VERSION, META_FILE, SPLITS, TOKEN_DTYPE, DataError, read_meta, split_file

log = logging.getLogger(__name__)


def ensure_prepared(cfg: DataConfig, force: bool = False) -> Path:
    """Prepare `cfg`'s corpus unless its files are up to date, and return their folder.

    Call it on one process only (rank 0, then a barrier): two processes preparing the same folder
    at once would both write it. Raises `DataError` on bad input, with nothing written.
    """
    prepare(cfg, force=force)
    return project_path(cfg.cache_dir)


def prepare(cfg: DataConfig, force: bool = False) -> dict:
    """Tokenize `cfg`'s corpus into cache_dir (skipped when up to date); return its meta.json.

    `cfg` may also be a DictConfig or a dict with DataConfig's keys.
    """
    if not isinstance(cfg, DataConfig):
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), cfg))
    out = project_path(cfg.cache_dir)
    enc = get_tokenizer(cfg.tokenizer)
    _check_options(cfg)
    fingerprint = input_fingerprint(cfg)
    if not force and is_up_to_date(out, fingerprint):
        log.info("%s is up to date (fingerprint %s)", out, fingerprint[:12])
        return read_meta(out)

    texts, source = load_texts(cfg)
    out.mkdir(parents=True, exist_ok=True)
    counts = tokenize_to_files(texts, enc, out, num_workers(cfg.num_proc), source["where"])
    meta = {
        "format": FORMAT_VERSION,
        "name": cfg.name,
        "tokenizer": cfg.tokenizer,
        "vocab_size": enc.n_vocab,
        "eot_token": enc.eot_token,
        "dtype": TOKEN_DTYPE.name,
        "splits": counts,
        "source": source,
        "config": asdict(cfg) | {"source": DataSource(cfg.source).value},
        "fingerprint": fingerprint,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / META_FILE, meta, indent=2)
    log.info(
        "%s: train %d tokens (%d stories), val %d tokens (%d stories)", out,
        counts["train"]["tokens"], counts["train"]["stories"],
        counts["val"]["tokens"], counts["val"]["stories"],
    )
    return meta


def _check_options(cfg: DataConfig) -> None:
    """Reject bad options and missing files before anything is read or written."""
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction={cfg.val_fraction}: must be in [0, 1)")
    if DataSource(cfg.source) is DataSource.hub:
        return
    if not cfg.train_files:
        raise DataError("data.train_files is empty: list the training text files (source=local)")
    if cfg.val_files and cfg.val_fraction > 0:
        raise DataError(
            "data.val_files and data.val_fraction are both set: use val_files, or val_fraction "
            "to hold out training stories, not both"
        )
    if not cfg.val_files and cfg.val_fraction == 0:
        raise DataError(
            "no validation text: set data.val_files, or data.val_fraction to hold out a share "
            "of the training stories"
        )
    for option in ("train_files", "val_files"):
        for name in getattr(cfg, option):
            path = project_path(name)
            if path.suffix.lower() not in LOCAL_BUILDERS:
                raise DataError(
                    f"data.{option}: {path} has an unknown extension; expected one of "
                    f"{', '.join(LOCAL_BUILDERS)}"
                )
            if not path.is_file():
                raise DataError(
                    f"data.{option}: {path} does not exist. For an offline quick start use the "
                    "sample committed with the project: data=tinystories_sample"
                )


def input_fingerprint(cfg: DataConfig) -> str:
    """sha256 of everything that determines the token files (cheap: no tokenizing)."""
    ident: dict = {
        "format": FORMAT_VERSION,
        "tokenizer": cfg.tokenizer,
        "text_column": cfg.text_column,
        "val_fraction": cfg.val_fraction,
        "source": DataSource(cfg.source).value,
    }
    if cfg.val_fraction > 0:
        ident["split_seed"] = cfg.split_seed
    if DataSource(cfg.source) is DataSource.hub:
        ident["hub_dataset"] = cfg.hub_dataset
    else:
        for option in ("train_files", "val_files"):
            ident[option] = [_file_sha256(project_path(f)) for f in getattr(cfg, option)]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def is_up_to_date(out: Path, fingerprint: str) -> bool:
    """Whether `out` holds complete token files made from inputs with this fingerprint."""
    try:
        meta = read_meta(out)
        return meta["fingerprint"] == fingerprint and all(
            (out / split_file(s)).stat().st_size == meta["splits"][s]["tokens"] * TOKEN_DTYPE.itemsize
            for s in SPLITS
        )
    except (DataError, OSError, KeyError, ValueError):
        return False


# ------------------------------------------------------------------------------------------- CLI


def _main() -> None:
    import hydra

    from configs.errors import user_errors
    from configs.help import exit_with_help_if_asked
    from configs.schema import PrepareJob, register_configs

    register_configs()
    exit_with_help_if_asked("prepare", PrepareJob, "data/prepare.py: " + __doc__, groups=["data"])

    @hydra.main(config_path="../configs", config_name="prepare", version_base=None)
    def main(cfg) -> None:
        with user_errors():
            data_cfg: DataConfig = OmegaConf.to_object(cfg.data)
            folder = ensure_prepared(data_cfg, force=cfg.force)
        meta = read_meta(folder)
        for s in SPLITS:
            c = meta["splits"][s]
            print(f"{folder / split_file(s)}: {c['tokens']:,} tokens, {c['stories']:,} stories")

    main()


if __name__ == "__main__":
    _main()
