"""data/prepare.py, sources.py, encode.py: text -> token files. Every check decodes the tokens with
the GPT-2 tokenizer (tiktoken's, tests/test_tokenizer.py) and compares them with the stories the
test wrote, joined by <|endoftext|> (the reference)."""

import json
import lzma
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from data import encode, prepare, sources
from data.config import DataConfig, DataSource, project_path
from data.encode import get_tokenizer
from data.prepare import ensure_prepared
from data.sources import split_stories
from data.tokens import DataError, load_tokens, read_meta

ROOT = Path(__file__).resolve().parents[1]
EOT = "<|endoftext|>"

TRAIN = [
    "Once upon a time, there was a little cat named Tom.\nTom liked to play in the sun.",
    "Lily said, \u201cLook at the big red ball!\u201d \U0001F388 She was very happy.",
    "The dog wrote <|endoftext|> on the wall, but that is just text inside a story.",
    "Ben and Sue went to the park.\nThey saw a duck.\nThe duck said quack.",
    "A tiny bird sang a song every morning. The end.",
    "Mia had a blue hat. The wind took it away. Mia laughed and ran after it.",
]
VAL = [
    "Sam found a shiny stone by the river. He kept it in his pocket.",
    "The sun went down and the stars came out. Everyone went to sleep.",
]


@pytest.fixture(scope="module")
def enc():
    return get_tokenizer("gpt2")


def write_txt(path: Path, stories: list[str]) -> str:
    path.write_text("".join(f"{s}\n{EOT}\n" for s in stories), encoding="utf-8")
    return str(path)


def local_cfg(tmp_path: Path, train: list[str], val: list[str] | None = VAL, **kw) -> DataConfig:
    files = dict(train_files=[write_txt(tmp_path / "train.txt", train)])
    if val is not None:
        files["val_files"] = [write_txt(tmp_path / "valid.txt", val)]
    return DataConfig(**(dict(name="test", cache_dir=str(tmp_path / "cache"), num_proc=1) | files | kw))


def decoded(enc, folder: Path, split: str) -> str:
    return enc.decode(load_tokens(folder, split).tolist())


def joined(stories: list[str]) -> str:
    return "".join(s + EOT for s in stories)


def test_txt_round_trip(tmp_path, enc):
    folder = ensure_prepared(local_cfg(tmp_path, TRAIN))
    assert folder == tmp_path / "cache"
    assert decoded(enc, folder, "train") == joined(TRAIN)
    assert decoded(enc, folder, "val") == joined(VAL)
    meta = read_meta(folder)
    for split, stories in (("train", TRAIN), ("val", VAL)):
        ids = np.asarray(load_tokens(folder, split))
        assert meta["splits"][split] == {"tokens": len(ids), "stories": len(stories)}
        # One end-of-text id per story: the literal "<|endoftext|>" inside a story is plain text.
        assert (ids == 50256).sum() == len(stories) and ids[-1] == 50256
        assert ids.tolist() == sum((enc.encode_ordinary(s) + [50256] for s in stories), [])
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257 and meta["dtype"] == "uint16"
    assert meta["source"]["kind"] == "local" and len(meta["fingerprint"]) == 64
    assert sorted(os.listdir(folder)) == ["meta.json", "train.bin", "val.bin"]  # no temp files


def test_process_pool_writes_the_same_bytes(tmp_path):
    stories = [f"Story number {i}." + " The cat sat on the mat." * (i % 7) for i in range(60)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = ensure_prepared(local_cfg(tmp_path / "a", stories, num_proc=1))
    two = ensure_prepared(local_cfg(tmp_path / "b", stories, num_proc=2))
    for name in ("train.bin", "val.bin"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    assert read_meta(two)["splits"]["train"]["stories"] == 60


def test_txt_separator_lines_with_spaces_and_blank_lines():
    # The official TinyStories files have spaces around the separator and blank lines after it.
    text = "First story.\nSecond line.\n<|endoftext|> \n\n  Second story.  \n  <|endoftext|>\n\n"
    assert split_stories(text) == ["First story.\nSecond line.", "Second story."]
    assert split_stories("No separator at all.\n") == ["No separator at all."]


def test_split_stories_matches_a_multiline_regex():
    # Reference: split at lines holding only the separator, with an independent regex.
    line = re.compile(r"^[ \t]*<\|endoftext\|>[ \t]*$", re.MULTILINE)
    rng = random.Random(0)
    parts = ["a", "\n", " ", "\t", EOT, "b c"]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        reference = [s for s in (p.strip() for p in line.split(text)) if s]
        assert split_stories(text) == reference, repr(text)


def test_jsonl_json_and_parquet(tmp_path, enc):
    train_jsonl, train_json, val_parquet = tmp_path / "a.jsonl", tmp_path / "b.json", tmp_path / "v.parquet"
    datasets.Dataset.from_dict({"story": TRAIN[:3], "id": [1, 2, 3]}).to_json(train_jsonl)
    train_json.write_text(json.dumps([{"story": s} for s in TRAIN[3:]]), encoding="utf-8")
    datasets.Dataset.from_dict({"story": VAL}).to_parquet(val_parquet)
    cfg = DataConfig(
        train_files=[str(train_jsonl), str(train_json)], val_files=[str(val_parquet)],
        text_column="story", cache_dir=str(tmp_path / "cache"), num_proc=1,
    )
    folder = ensure_prepared(cfg)
    assert decoded(enc, folder, "train") == joined(TRAIN)
    assert decoded(enc, folder, "val") == joined(VAL)


def fake_hub(splits: dict[str, list[str]], calls: list):
    def load_dataset(path, *args, **kwargs):
        calls.append(path)
        return datasets.DatasetDict(
            {name: datasets.Dataset.from_dict({"text": texts, "n": list(range(len(texts)))})
             for name, texts in splits.items()}
        )
    return load_dataset


def test_hub_train_and_validation_splits(tmp_path, monkeypatch, enc):
    calls = []
    monkeypatch.setattr(sources.datasets, "load_dataset", fake_hub({"train": TRAIN, "validation": VAL}, calls))
    cfg = DataConfig(source=DataSource.hub, hub_dataset="someone/stories", cache_dir=str(tmp_path), num_proc=2)
    folder = ensure_prepared(cfg)
    assert calls == ["someone/stories"]
    assert decoded(enc, folder, "train") == joined(TRAIN)
    assert decoded(enc, folder, "val") == joined(VAL)
    meta = read_meta(folder)
    assert meta["source"]["kind"] == "hub" and meta["source"]["hub_dataset"] == "someone/stories"
    ensure_prepared(cfg)  # up to date: identified by the name, no second download
    assert calls == ["someone/stories"]


def test_hub_without_validation_holds_out_val_fraction(tmp_path, monkeypatch, enc):
    stories = [f"Story {i} about a frog." for i in range(40)]
    monkeypatch.setattr(sources.datasets, "load_dataset", fake_hub({"train": stories}, []))
    cfg = DataConfig(source=DataSource.hub, val_fraction=0.25, cache_dir=str(tmp_path), num_proc=1)
    folder = ensure_prepared(cfg)
    train = decoded(enc, folder, "train").split(EOT)[:-1]
    val = decoded(enc, folder, "val").split(EOT)[:-1]
    assert len(val) == 10 and len(train) == 30
    assert sorted(train + val) == sorted(stories)
    assert train == [s for s in stories if s in train]  # the original order is kept
    with pytest.raises(DataError, match="val_fraction"):  # no validation split and no fraction
        ensure_prepared(DataConfig(source=DataSource.hub, cache_dir=str(tmp_path / "x")))


def test_local_val_fraction_is_seeded(tmp_path, enc):
    stories = [f"Story {i} about a fox." for i in range(20)]
    vals = []
    for seed in (1, 1, 2):
        cfg = local_cfg(tmp_path, stories, val=None, val_fraction=0.2, split_seed=seed)
        vals.append(decoded(enc, ensure_prepared(cfg, force=True), "val"))
    assert vals[0] == vals[1] != vals[2]
    assert len(vals[0].split(EOT)) - 1 == 4


def test_hub_unreachable_suggests_local_config(tmp_path, monkeypatch):
    def offline(path, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(sources.datasets, "load_dataset", offline)
    cfg = DataConfig(source=DataSource.hub, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="data=tinystories_local"):
        ensure_prepared(cfg)
    assert not (tmp_path / "cache").exists()


def test_skipped_when_up_to_date_and_redone_when_inputs_change(tmp_path, monkeypatch, enc):
    cfg = local_cfg(tmp_path, TRAIN)
    folder = ensure_prepared(cfg)
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def must_not_run(*args, **kwargs):
        raise AssertionError("tokenized although up to date")

    with monkeypatch.context() as m:
        m.setattr(prepare, "tokenize_to_files", must_not_run)
        assert ensure_prepared(cfg) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp

    write_txt(tmp_path / "train.txt", TRAIN[:2])  # new content: a new fingerprint
    ensure_prepared(cfg)
    assert decoded(enc, folder, "train") == joined(TRAIN[:2])
    before = read_meta(folder)["prepared_at"], (folder / "train.bin").stat().st_mtime_ns
    ensure_prepared(cfg, force=True)
    assert (folder / "train.bin").stat().st_mtime_ns != before[1]


def test_failure_midway_leaves_previous_files_intact(tmp_path, monkeypatch, enc):
    cfg = local_cfg(tmp_path, TRAIN)
    folder = ensure_prepared(cfg)
    write_txt(tmp_path / "train.txt", TRAIN[:3])

    def killed(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "_encode_range", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_prepared(cfg)
    assert sorted(os.listdir(folder)) == ["meta.json", "train.bin", "val.bin"]
    assert decoded(enc, folder, "train") == joined(TRAIN)  # the old, complete corpus


def test_truncated_token_file_is_an_error(tmp_path):
    folder = ensure_prepared(local_cfg(tmp_path, TRAIN))
    with open(folder / "train.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataError, match="train.bin"):
        load_tokens(folder, "train")
    ensure_prepared(local_cfg(tmp_path, TRAIN))  # the size check marks it stale: prepared again
    assert len(load_tokens(folder, "train")) == read_meta(folder)["splits"]["train"]["tokens"]


def test_missing_file_names_it(tmp_path):
    cfg = local_cfg(tmp_path, TRAIN)
    cfg.val_files = [str(tmp_path / "nowhere.txt")]
    with pytest.raises(DataError, match=r"data.val_files: .*nowhere.txt does not exist"):
        ensure_prepared(cfg)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "is empty"),
        (f"{EOT}\n\n{EOT}\n", "has no stories"),
    ],
)
def test_empty_corpus(tmp_path, content, match):
    cfg = local_cfg(tmp_path, TRAIN)
    (tmp_path / "train.txt").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match) as err:
        ensure_prepared(cfg)
    assert "train.txt" in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_blank_rows_only_is_an_empty_corpus(tmp_path):
    path = tmp_path / "val.jsonl"
    datasets.Dataset.from_dict({"text": ["", "  \n"]}).to_json(path)
    cfg = local_cfg(tmp_path, TRAIN, val=None, val_files=[str(path)])
    with pytest.raises(DataError, match="val.jsonl.*the val split has no stories"):
        ensure_prepared(cfg)
    assert os.listdir(tmp_path / "cache") == []  # the temporary files are gone


def test_no_text_column(tmp_path):
    path = tmp_path / "train.jsonl"
    datasets.Dataset.from_dict({"story": TRAIN}).to_json(path)
    cfg = DataConfig(train_files=[str(path)], val_fraction=0.2, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"train.jsonl: no column 'text' \(columns: \['story'\]\)"):
        ensure_prepared(cfg)
    assert not (tmp_path / "cache").exists()


def test_vocabulary_too_large_for_uint16(tmp_path, monkeypatch):
    class Big:
        n_vocab = 100277  # cl100k_base

    monkeypatch.setattr(encode.tiktoken, "get_encoding", lambda name: Big())
    with pytest.raises(DataError, match="data.tokenizer=cl100k_base: its 100277 token ids do not fit"):
        ensure_prepared(local_cfg(tmp_path, TRAIN, tokenizer="cl100k_base"))
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(val_fraction=0.1), "val_files and data.val_fraction are both set"),
        (dict(val_files=[]), "no validation text"),
        (dict(val_fraction=1.0, val_files=[]), r"val_fraction=1.0: must be in \[0, 1\)"),
        (dict(train_files=[]), "data.train_files is empty"),
        (dict(val_files=["notes.docx"]), "unknown extension"),
        (dict(tokenizer="gtp2"), "data.tokenizer=gtp2"),
    ],
)
def test_bad_options(tmp_path, change, match):
    cfg = local_cfg(tmp_path, TRAIN)
    for key, value in change.items():
        setattr(cfg, key, value)
    with pytest.raises(DataError, match=match):
        ensure_prepared(cfg)
    assert not (tmp_path / "cache").exists()


def test_project_paths_are_relative_to_the_root(tmp_path):
    assert project_path("data/cache/x") == ROOT / "data/cache/x"
    assert project_path(tmp_path) == tmp_path


@pytest.mark.slow
def test_cli_prepares_the_sample(tmp_path, enc):
    out = tmp_path / "sample"
    run = subprocess.run(
        [sys.executable, str(ROOT / "prepare.py"), "data=tinystories_sample", "data.vocab_size=null",
         f"data.cache_dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "58,147 tokens, 300 stories" in run.stdout
    stories = split_stories((ROOT / "data/sample/valid.txt").read_text(encoding="utf-8"))
    assert len(stories) == 100 and decoded(enc, out, "val") == joined(stories)
    assert sorted(os.listdir(tmp_path)) == ["sample"]  # Hydra left no run directory behind
    bad = subprocess.run(
        [sys.executable, str(ROOT / "prepare.py"), "data=tinystories_sample",
         f"data.train_files=[{tmp_path}/missing.txt]", f"data.cache_dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 1 and "missing.txt does not exist" in bad.stderr


def test_prepare_py_makes_the_corpus_a_plain_train_py_uses():
    """The same data config, vocabulary included, so `python prepare.py` then `python train.py`
    tokenizes once."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from configs.compose import compose_job
    from configs.schema import CONFIG_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        prepare = compose("prepare")
    train = compose_job()
    assert OmegaConf.to_container(prepare.data) == OmegaConf.to_container(train.data)
    assert train.data.vocab_size is not None


def test_dict_config_is_accepted(tmp_path, enc):
    from omegaconf import OmegaConf

    cfg = local_cfg(tmp_path, TRAIN)
    as_dict = OmegaConf.create({k: v for k, v in vars(cfg).items()} | {"source": "local"})
    assert decoded(enc, ensure_prepared(as_dict), "train") == joined(TRAIN)


def write_xz(path: Path, stories: list[str]) -> str:
    with lzma.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(f"{s}\n{EOT}\n" for s in stories))
    return str(path)


def test_xz_files_are_read_directly(tmp_path, enc):
    cfg = DataConfig(name="xz", train_files=[write_xz(tmp_path / "train.txt.xz", TRAIN)],
                     val_files=[write_xz(tmp_path / "valid.txt.xz", VAL)], cache_dir=str(tmp_path / "c"), num_proc=1)
    folder = ensure_prepared(cfg)
    assert decoded(enc, folder, "train") == joined(TRAIN) and decoded(enc, folder, "val") == joined(VAL)


def test_the_embedded_corpus_is_the_shared_text_and_the_default(tmp_path):
    """data/tinystories/*.txt.xz decompress to the texts their README describes; data/sample/ is
    their first stories; the default data config and eval sets point inside the project."""
    import hashlib

    from configs.compose import compose_job

    readme = (ROOT / "data/tinystories/README.md").read_text(encoding="utf-8")
    texts = {}
    for name, stories in (("train", 5313), ("valid", 1000)):
        raw = lzma.open(ROOT / f"data/tinystories/{name}.txt.xz").read()
        assert hashlib.sha256(raw).hexdigest() in readme
        texts[name] = raw.decode("utf-8")
        assert len(split_stories(texts[name])) == stories
        assert texts[name].startswith((ROOT / f"data/sample/{name}.txt").read_text(encoding="utf-8"))
    books = sorted((ROOT / "data/long_stories").glob("*.txt.xz"))
    book_readme = (ROOT / "data/long_stories/README.md").read_text(encoding="utf-8")
    assert len(books) == 18 and all(hashlib.sha256(lzma.open(b).read()).hexdigest() in book_readme for b in books)
    job = compose_job([])
    assert job.data.train_files == ["data/tinystories/train.txt.xz"] and job.data.cache_dir is None
    for path in ["configs/data", "configs/eval", "data", "training", "evaluation", "model", "configs/train.yaml"]:
        for f in (ROOT / path).rglob("*") if (ROOT / path).is_dir() else [ROOT / path]:
            if f.suffix in (".py", ".yaml"):
                assert "../shared" not in f.read_text(encoding="utf-8"), f


def test_default_cache_folder_follows_the_inputs(tmp_path, monkeypatch):
    """Without data.cache_dir, other files (or another vocabulary) get another folder: a custom
    corpus never overwrites or reuses the default's tokens."""
    monkeypatch.setattr(prepare, "CACHE_ROOT", str(tmp_path / "cache"))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    base = local_cfg(tmp_path / "a", TRAIN, cache_dir=None)
    folder = ensure_prepared(base)
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("test-")
    assert read_meta(folder)["fingerprint"].startswith(folder.name.removeprefix("test-"))
    other = local_cfg(tmp_path / "b", TRAIN[:3], cache_dir=None)
    assert ensure_prepared(other) != folder
    assert ensure_prepared(local_cfg(tmp_path / "a", TRAIN, cache_dir=None, vocab_size=50)) != folder
    mtime = (folder / "meta.json").stat().st_mtime_ns
    assert ensure_prepared(base) == folder and (folder / "meta.json").stat().st_mtime_ns == mtime  # reused


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    cfg = local_cfg(tmp_path, TRAIN)
    (tmp_path / "valid.txt").write_bytes("Caf\u00e9 au lait.\n".encode("latin-1") + f"{EOT}\n".encode())
    with pytest.raises(DataError, match=r"data.val_files: .*valid.txt is not UTF-8 text"):
        ensure_prepared(cfg)
    assert not (tmp_path / "cache").exists()


def test_whitespace_only_txt_is_named(tmp_path):
    cfg = local_cfg(tmp_path, TRAIN)
    (tmp_path / "train.txt").write_text("  \n\n\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data.train_files: .*train.txt holds no text"):
        ensure_prepared(cfg)


def test_directories_and_globs(tmp_path, enc):
    stories = tmp_path / "stories"
    stories.mkdir()
    write_txt(stories / "b.txt", TRAIN[3:])
    write_txt(stories / "a.txt", TRAIN[:3])
    (stories / "notes.md").write_text("not a corpus file")
    cfg = local_cfg(tmp_path, TRAIN, train_files=[str(stories)])
    assert decoded(enc, ensure_prepared(cfg), "train") == joined(TRAIN)  # a.txt then b.txt
    empty = tmp_path / "other"
    empty.mkdir()
    (empty / "notes.md").write_text("x")
    with pytest.raises(DataError, match=r"data.train_files: directory .*other holds no .txt, .* file \(1 other"):
        ensure_prepared(local_cfg(tmp_path, TRAIN, train_files=[str(empty)]))
    with pytest.raises(DataError, match=r"data.val_files: '.*\*.jsonl' names no file"):
        ensure_prepared(local_cfg(tmp_path, TRAIN, val_files=[str(stories / "*.jsonl")]))


def test_validation_shorter_than_a_window_names_the_option(tmp_path):
    from train_helpers import TINY

    from configs.compose import compose_job
    from training.run import run_training

    short = write_txt(tmp_path / "short.txt", ["The end."])
    job = compose_job([*TINY, f"data.train_files=[{write_txt(tmp_path / 't.txt', TRAIN)}]",
                       f"data.val_files=[{short}]", f"data.cache_dir={tmp_path / 'c'}", "data.num_proc=1",
                       f"out_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError, match=r"validation split \(data.val_files=\['.*short.txt'\]\) at "
                                        r"model.block_size=32: .* has 4 tokens, too few"):
        run_training(job)


def test_data_imports_nothing_of_the_other_packages():
    """data/ is a library of its own: importing all of it loads no model/, training/,
    evaluation/ or configs/ module, and it leaves sys.path alone."""
    code = ("import sys; before = list(sys.path); import data.prepare, data.loader, data.vocab, data.encode, "
            "data.sources, data.tokens, data.config; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('model', 'training', 'evaluation', 'configs')]; "
            "assert not bad, bad; assert sys.path == before, sys.path")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
