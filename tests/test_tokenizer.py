"""GPT-2's tokenizer offline: the Encoding built from the BPE files shipped in data/gpt2_bpe/ gives
tiktoken's own `gpt2` ids (tiktoken's, read from a cache of its downloaded files, is the reference)."""

from pathlib import Path

import pytest
import requests
import tiktoken

from data import encode
from data.encode import get_tokenizer, gpt2_from_files

ROOT = Path(__file__).resolve().parents[1]
TIKTOKEN_FILES = ROOT.parent / "shared" / "tiktoken_cache"  # tiktoken's cache, filled where online


@pytest.fixture
def tiktoken_gpt2(monkeypatch):
    if not TIKTOKEN_FILES.is_dir():
        pytest.skip(f"no tiktoken cache at {TIKTOKEN_FILES} to compare with")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_FILES))
    return tiktoken.get_encoding("gpt2")


def test_shipped_files_give_tiktokens_gpt2(tiktoken_gpt2):
    ours = gpt2_from_files()
    assert ours._mergeable_ranks == tiktoken_gpt2._mergeable_ranks
    assert ours._special_tokens == tiktoken_gpt2._special_tokens
    assert (ours.n_vocab, ours.eot_token, ours._pat_str) == (tiktoken_gpt2.n_vocab, tiktoken_gpt2.eot_token,
                                                              tiktoken_gpt2._pat_str)
    texts = [(ROOT / "data" / "sample" / "train.txt").read_text(encoding="utf-8")[:20000],
             "Lily said, \u201cLook!\u201d \U0001F388 caf\u00e9 \u4f60\u597d   tabs\t\tand 1234567 numbers' 's 't",
             "The dog wrote <|endoftext|> on the wall."]
    for text in texts:
        assert ours.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
        assert ours.encode(text, allowed_special="all") == tiktoken_gpt2.encode(text, allowed_special="all")


def test_without_network_get_tokenizer_builds_gpt2_from_the_shipped_files(monkeypatch):
    def offline(name):
        raise requests.exceptions.ConnectionError("no network")

    monkeypatch.setattr(encode, "_ENCODINGS", {})
    monkeypatch.setattr(encode.tiktoken, "get_encoding", offline)
    enc = get_tokenizer("gpt2")
    assert enc.encode_ordinary("Once upon a time") == gpt2_from_files().encode_ordinary("Once upon a time")
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    monkeypatch.setattr(encode, "_ENCODINGS", {})
    with pytest.raises(encode.DataError, match="data.tokenizer=cl100k_base: tiktoken could not load"):
        get_tokenizer("cl100k_base")
