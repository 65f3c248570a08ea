"""Text -> tiktoken token ids in memory-mappable files: train.bin, val.bin and meta.json.

    python prepare.py data=tinystories_local     # the embedded subset, data/tinystories/*.txt.xz
    python prepare.py data=tinystories_sample    # the small sample in data/sample/
    python prepare.py data=tinystories           # the Hugging Face hub
    python prepare.py data=tinystories_local data.vocab_size=8192 force=true

(prepare.py at the project root is the command line; this module is the library.) The trainer
and the evaluator call `ensure_prepared(cfg)`, which does the same and returns the folder;
`data.tokens.load_tokens(folder, split)` then maps a split. `tokenize_files(files, ...)` tokenizes
any text files the same way into one cached array (the evaluation's text sets).

The pipeline: data/sources.py reads the corpus (the hub or local files) into one
`datasets.Dataset` per split, data/encode.py tokenizes the splits into the .bin files,
data/vocab.py restricts the vocabulary when `data.vocab_size` is set, and this file checks the
options, skips the work when the inputs are unchanged and writes meta.json.

Outputs go to temporary names and are renamed at the end, meta.json last, so a killed run leaves
the previous state or nothing. The folder is `data.cache_dir`, or by default
data/cache/<name>-<fingerprint>, where the fingerprint covers the tokenizer, the split options,
the vocabulary size and the sha256 of every local input file (or the hub dataset's name); a run is
skipped when meta.json holds the same fingerprint, and other inputs never share a default folder.
The hub dataset is identified by its name only: pass force=true after it changes upstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from data.config import DataConfig, DataSource, project_path
from data.files import write_json_atomic
from data.encode import get_tokenizer, num_workers, tokenize_to_files
from data.sources import LOCAL_BUILDERS, expand_files, file_kind, load_local, load_texts
from data.tokens import (FORMAT_VERSION, META_FILE, SPLITS, TEXT, TOKEN_DTYPE, DataError, load_tokens, read_meta,
                         split_file)
from data.vocab import Vocab, count_ids, most_frequent

log = logging.getLogger(__name__)
CACHE_ROOT = "data/cache"  # the corpora's folders when data.cache_dir is not set (project-relative)


def ensure_prepared(cfg: DataConfig, force: bool = False) -> Path:
    """Prepare `cfg`'s corpus unless its files are up to date, and return their folder.

    Call it on one process only (rank 0, then a barrier): two processes preparing the same folder
    at once would both write it. Raises `DataError` on bad input, with nothing written.
    """
    return _prepare(cfg, force)[0]


def prepare(cfg: DataConfig, force: bool = False) -> dict:
    """Tokenize `cfg`'s corpus into its folder (skipped when up to date); return its meta.json.

    `cfg` may also be a DictConfig or a dict with DataConfig's keys.
    """
    return _prepare(cfg, force)[1]


def corpus_folder(cfg: DataConfig, fingerprint: str) -> Path:
    """Where the corpus's tokens go: `data.cache_dir`, else data/cache/<name>-<fingerprint[:12]>,
    so other inputs (files, split, tokenizer, vocabulary) never land in the same folder."""
    if cfg.cache_dir:
        return project_path(cfg.cache_dir)
    return project_path(CACHE_ROOT) / f"{cfg.name}-{fingerprint[:12]}"


def _prepare(cfg: DataConfig, force: bool) -> tuple[Path, dict]:
    if not isinstance(cfg, DataConfig):
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), cfg))
    enc = get_tokenizer(cfg.tokenizer)
    _check_options(cfg)
    fingerprint = input_fingerprint(cfg)
    out = corpus_folder(cfg, fingerprint)
    if not force and is_up_to_date(out, fingerprint):
        log.info("%s is up to date (fingerprint %s)", out, fingerprint[:12])
        return out, read_meta(out)
    if (out / META_FILE).is_file():  # an explicit cache_dir that holds other inputs' tokens
        log.info("%s holds tokens of other inputs: tokenizing again", out)

    texts, source = load_texts(cfg)
    out.mkdir(parents=True, exist_ok=True)
    counts = tokenize_to_files(texts, enc, out, num_workers(cfg.num_proc), source["where"])
    vocab = Vocab(cfg.tokenizer, enc.n_vocab, enc.eot_token)
    if cfg.vocab_size is not None:
        vocab = _restrict_vocab(out, cfg.vocab_size, vocab)
    meta = {
        "format": FORMAT_VERSION,
        "name": cfg.name,
        "tokenizer": cfg.tokenizer,
        "vocab_size": vocab.size,  # the model's vocabulary (the ids in the .bin files)
        "eot_token": vocab.eot_id,
        "vocab": vocab.to_dict(),
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
    return out, meta


def tokenize_files(files: list[str | Path], tokenizer: str, cache_dir: str | Path, option: str,
                   num_proc: int = 0) -> np.memmap:
    """The tokenizer ids of `files`, tokenized exactly as training text is (a .txt holds stories
    between `<|endoftext|>` lines, each story is followed by end-of-text; .jsonl/.json/.parquet
    need a `text` column), as a uint16 memmap. Cached in `cache_dir` (relative to the project
    root) under a fingerprint of the tokenizer and the files' contents, so a second call reads the
    cache; `option` names the setting in errors."""
    out = project_path(cache_dir)
    enc = get_tokenizer(tokenizer)
    if not files:
        raise DataError(f"{option} is empty: list the text files")
    files = expand_files([str(f) for f in files], option)
    for path in files:
        _check_file(path, option)
    ident = {"format": FORMAT_VERSION, "kind": "files", "tokenizer": tokenizer,
             "files": [_file_sha256(f) for f in files]}
    fingerprint = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    if not is_up_to_date(out, fingerprint):
        text = load_local(files, "text", option)
        out.mkdir(parents=True, exist_ok=True)
        counts = tokenize_to_files({TEXT: text}, enc, out, num_workers(num_proc), option)
        write_json_atomic(out / META_FILE, {
            "format": FORMAT_VERSION,
            "tokenizer": tokenizer,
            "vocab_size": enc.n_vocab,
            "eot_token": enc.eot_token,
            "vocab": Vocab(tokenizer, enc.n_vocab, enc.eot_token).to_dict(),
            "dtype": TOKEN_DTYPE.name,
            "splits": counts,
            "files": [str(f) for f in files],
            "fingerprint": fingerprint,
            "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
    return load_tokens(out, TEXT)


def _restrict_vocab(out: Path, n: int, full: Vocab) -> Vocab:
    """Keep the n most frequent ids of train.bin (data/vocab.py) and rewrite both splits in them."""
    vocab = most_frequent(count_ids(np.memmap(out / split_file("train"), dtype=TOKEN_DTYPE, mode="r"),
                                    full.tokenizer_size), n, full.tokenizer, full.eot_tokenizer_id)
    for s in SPLITS:
        path = out / split_file(s)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            vocab.to_model(np.memmap(path, dtype=TOKEN_DTYPE, mode="r")).tofile(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    log.info("%s: vocabulary %s", out, vocab.describe())
    return vocab


def _check_options(cfg: DataConfig) -> None:
    """Reject bad options and missing files before anything is read or written."""
    if cfg.vocab_size is not None and cfg.vocab_size < 2:
        raise DataError(f"data.vocab_size={cfg.vocab_size}: must be at least 2 (end-of-text and one "
                        "more id), or null for the tokenizer's whole vocabulary")
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
        for path in expand_files(getattr(cfg, option), f"data.{option}"):
            _check_file(path, f"data.{option}")


def _check_file(path: Path, option: str) -> None:
    if file_kind(path) is None:
        raise DataError(f"{option}: {path} has an unknown extension; expected one of "
                        f"{', '.join(LOCAL_BUILDERS)} or .txt.xz")
    if not path.is_file():
        raise DataError(f"{option}: {path} does not exist")


def input_fingerprint(cfg: DataConfig) -> str:
    """sha256 of everything that determines the token files (cheap: no tokenizing)."""
    ident: dict = {
        "format": FORMAT_VERSION,
        "tokenizer": cfg.tokenizer,
        "text_column": cfg.text_column,
        "val_fraction": cfg.val_fraction,
        "source": DataSource(cfg.source).value,
        "vocab_size": cfg.vocab_size,
    }
    if cfg.val_fraction > 0:
        ident["split_seed"] = cfg.split_seed
    if DataSource(cfg.source) is DataSource.hub:
        ident["hub_dataset"] = cfg.hub_dataset
    else:
        for option in ("train_files", "val_files"):
            ident[option] = [_file_sha256(f) for f in expand_files(getattr(cfg, option), f"data.{option}")]
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
            (out / split_file(s)).stat().st_size == counts["tokens"] * TOKEN_DTYPE.itemsize
            for s, counts in meta["splits"].items()
        )
    except (DataError, OSError, KeyError, ValueError):
        return False
