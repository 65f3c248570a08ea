"""sample.py end to end, as a user runs it."""

import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from data.encode import get_tokenizer
from model.generate import generate
from tests.conftest import ROOT
from tests.model_helpers import tiny_model
from training.checkpoint import save_checkpoint

pytestmark = pytest.mark.slow


def run_sample(*overrides):
    return subprocess.run(
        [sys.executable, "sample.py", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny learned-PE model saved the way train.py saves it, vocabulary GPT-2's."""
    model = tiny_model("learned", vocab_size=50257, block_size=16)
    config = {"model": asdict(model.cfg) | {"attn_backend": "auto"}, "pos": asdict(model.pos_cfg)}
    path = tmp_path_factory.mktemp("run") / "ckpt_best.pt"
    save_checkpoint({"model": model.state_dict(), "config": config}, path)
    return path, model


def test_greedy_sample_from_checkpoint_matches_generate(checkpoint):
    path, model = checkpoint
    result = run_sample(f"ckpt={path.parent}", "prompt=Once upon", "temperature=0", "max_new_tokens=8")
    assert result.returncode == 0, result.stderr
    enc = get_tokenizer("gpt2")
    prompt = torch.tensor([enc.encode("Once upon")])
    tokens = [int(t) for t in generate(model, prompt, 8, temperature=0.0, stop_token=enc.eot_token)]
    tokens = tokens[: tokens.index(enc.eot_token)] if enc.eot_token in tokens else tokens
    assert result.stdout.splitlines()[0] == "Once upon" + enc.decode(tokens)
    assert "new tokens" in result.stderr and "pos=learned" in result.stderr


def test_compiled_sample_gives_the_eager_text(checkpoint):
    path, _ = checkpoint
    args = (f"ckpt={path}", "prompt=Once upon", "temperature=0", "max_new_tokens=8")
    eager, compiled = run_sample(*args), run_sample(*args, "compile=true")
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout == eager.stdout


def test_without_checkpoint_samples_a_fresh_model_and_says_so():
    result = run_sample("max_new_tokens=4", "model.n_layer=1", "model.n_embd=32", "model.n_head=2")
    assert result.returncode == 0, result.stderr
    assert "freshly initialised" in result.stderr


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["temperature=-1"], "error: temperature must be >= 0 (0 is greedy), got -1.0"),
        (["tempreature=1"], "tempreature"),
        (["ckpt=/nonexistent/ckpt.pt"], "error: checkpoint not found: /nonexistent/ckpt.pt"),
        (["max_new_tokens=-3"], "error: max_new_tokens=-3: must be >= 1"),
        (["num_samples=0"], "error: num_samples=0: must be >= 1"),
        (["top_p=1.5"], "error: top_p must be in (0, 1] or null, got 1.5"),
        (["top_k=0"], "error: top_k must be >= 1 or null, got 0"),
        (["device=cuda:7"], "error: device=cuda:7: "),
    ],
)
def test_bad_input_is_a_clear_error(overrides, message):
    result = run_sample(*overrides)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("override", ["pos=alibi", "model.n_layer=2"])
def test_model_options_beside_a_checkpoint_are_refused(checkpoint, override):
    path, _ = checkpoint
    result = run_sample(f"ckpt={path}", override)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {override}: a checkpoint brings its own model and encoding; drop "
                                     f"these options to sample from ckpt={path}, or drop ckpt for a fresh model")


def test_emoji_and_empty_prompts_work_and_nothing_is_written(checkpoint):
    path, _ = checkpoint
    before = set(ROOT.iterdir())
    emoji = run_sample(f"ckpt={path}", "prompt=🐶 and 🐱", "max_new_tokens=4")
    assert emoji.returncode == 0, emoji.stderr
    assert emoji.stdout.startswith("🐶 and 🐱")
    empty = run_sample(f"ckpt={path}", "prompt=", "max_new_tokens=4")
    assert empty.returncode == 0, empty.stderr
    assert "note: empty prompt: sampling unconditionally, from <|endoftext|>" in empty.stderr
    assert set(ROOT.iterdir()) == before  # no outputs/ folder, no sample.log


@pytest.mark.parametrize("text", ["🐶 and 🐱", "it's", "a\\'b", "end\\", "Hi, [you]: {x}", "x\\y", ""])
def test_any_prompt_text_survives_hydras_override_grammar(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sample import quote_prompt

    assert OverridesParser.create().parse_override(quote_prompt(f"prompt={text}")).value() == text
    assert quote_prompt("prompt='quoted'") == "prompt='quoted'" and quote_prompt("seed=1") == "seed=1"


def test_corrupt_checkpoint_and_long_prompt_are_clear_errors(checkpoint, tmp_path):
    path, _ = checkpoint
    broken = tmp_path / "ckpt_last.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    result = run_sample(f"ckpt={broken}")
    assert result.returncode != 0 and f"checkpoint {broken} is corrupt or truncated" in result.stderr
    result = run_sample(f"ckpt={path}", "prompt=" + "Once upon a time " * 10)
    assert result.returncode != 0 and "learned position table holds 16" in result.stderr
