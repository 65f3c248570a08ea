"""sample.py: sample stories from a checkpoint (or a fresh model) with KV-cached generation.

    python sample.py ckpt=runs/rope prompt="Once upon a time" max_new_tokens=200 seed=1
    python sample.py ckpt=runs/rope/ckpt_best.pt num_samples=3 temperature=0.7 top_p=0.9
    python sample.py                      # a freshly initialised model (says so): smoke test

Options (Hydra overrides): ckpt, prompt, max_new_tokens, num_samples, temperature (0: greedy),
top_k, top_p, seed, device, overflow (stop|slide, for the learned table), compile (a compiled
fixed-shape decode step: CUDA graphs on a GPU), threads; without ckpt also model=tiny|small|gpt2
and pos=<encoding> (with a ckpt they are an error: the checkpoint brings its own).
"""

from __future__ import annotations

import re
import sys
import time

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from configs.errors import user_errors
from configs.help import exit_with_help_if_asked
from configs.schema import SampleJob, register_configs
from data.encode import get_tokenizer
from data.vocab import Vocab
from model.generate import ContextFull, generate, validate_sampling
from training.build import build_model
from training.checkpoint import load_model_and_vocab
from training.device import resolve_device, set_threads

register_configs()
FRESH_TOKENIZER = "gpt2"  # the tokenizer of a model sampled without a checkpoint


def validate(cfg: DictConfig) -> None:
    """Options that make no sample, and model=/pos= beside a checkpoint, are errors."""
    validate_sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.overflow)
    if cfg.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={cfg.max_new_tokens}: must be >= 1")
    if cfg.num_samples < 1:
        raise ValueError(f"num_samples={cfg.num_samples}: must be >= 1")
    if cfg.ckpt is not None:
        given = [o for o in HydraConfig.get().overrides.task if o.split("=")[0].lstrip("+~").split(".")[0] in ("model", "pos")]
        if given:
            raise ValueError(f"{' '.join(given)}: a checkpoint brings its own model and encoding; drop these "
                             f"options to sample from ckpt={cfg.ckpt}, or drop ckpt for a fresh model")


def quote_prompt(arg: str) -> str:
    """`prompt=TEXT` as a quoted Hydra value, so that any text is a prompt: Hydra's override
    grammar rejects unquoted emoji and reads commas, brackets and colons as syntax. A value that
    is already quoted is left as it is."""
    key, sep, text = arg.partition("=")
    if key != "prompt" or not sep or text[:1] in ("'", '"'):
        return arg
    text = re.sub(r"(\\*)'", lambda m: 2 * m.group(1) + "\\'", text)  # backslashes before a quote double
    text = re.sub(r"(\\+)$", lambda m: 2 * m.group(1), text)  # so do trailing ones
    return f"prompt='{text}'"


def load(cfg: DictConfig, device: torch.device) -> tuple[torch.nn.Module, Vocab]:
    """The model and the vocabulary it was trained on (a fresh model: GPT-2's whole vocabulary)."""
    if cfg.ckpt is None:
        enc = get_tokenizer(FRESH_TOKENIZER)
        vocab = Vocab(FRESH_TOKENIZER, enc.n_vocab, enc.eot_token)
        model = build_model(cfg.model, cfg.pos, vocab_size=vocab.size).to(device).eval()
        print(
            f"note: no ckpt given, sampling from a freshly initialised {cfg.pos.name} model "
            "(random weights: expect gibberish). Pass ckpt=RUN_DIR_OR_FILE for a trained one.",
            file=sys.stderr,
        )
        return model, vocab
    model, _, vocab = load_model_and_vocab(cfg.ckpt, device)
    return model, vocab


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
def main(cfg: DictConfig) -> None:
    with user_errors():
        sample(cfg)


def sample(cfg: DictConfig) -> None:
    validate(cfg)
    device = resolve_device(cfg.device)
    set_threads(cfg.threads)
    model, vocab = load(cfg, device)
    enc = get_tokenizer(vocab.tokenizer)  # the checkpoint's tokenizer
    prompt = vocab.encode(enc, cfg.prompt)
    if not prompt:
        print("note: empty prompt: sampling unconditionally, from <|endoftext|>", file=sys.stderr)
        prompt = [vocab.eot_id]
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    total_tokens, start = 0, time.perf_counter()
    for i in range(cfg.num_samples):
        if cfg.num_samples > 1:
            print(f"--- sample {i + 1}/{cfg.num_samples} ---")
        stream = generate(
            model, idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
            generator, stop_token=vocab.eot_id, overflow=cfg.overflow, compile=cfg.compile,
        )
        print(cfg.prompt, end="", flush=True)
        tokens, printed = [], 0
        try:
            for token in stream:
                t = int(token[0])
                tokens.append(t)
                if t == vocab.eot_id:
                    break
                text = vocab.decode(enc, tokens)  # the unknown id as ⁇
                if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                    print(text[printed:], end="", flush=True)
                    printed = len(text)
        except ContextFull as e:
            print(f"\n[{e}]", file=sys.stderr)
        total_tokens += len(tokens)
        print()
    elapsed = time.perf_counter() - start
    print(
        f"[{cfg.num_samples} sample(s), {total_tokens} new tokens in {elapsed:.2f}s, "
        f"{total_tokens / max(elapsed, 1e-9):.1f} tokens/s, pos={model.pos_cfg.name}, device={device}]",
        file=sys.stderr,
    )


if __name__ == "__main__":
    exit_with_help_if_asked("sample", SampleJob, __doc__, groups=["model", "pos"])
    sys.argv[1:] = [quote_prompt(a) for a in sys.argv[1:]]
    main()
