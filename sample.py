"""Sample stories from a checkpoint (or a fresh model) with KV-cached generation.

    python sample.py ckpt=runs/rope prompt="Once upon a time" max_new_tokens=200 seed=1
    python sample.py ckpt=runs/rope/ckpt_best.pt num_samples=3 temperature=0.7 top_p=0.9
    python sample.py                      # a freshly initialised model (says so): smoke test

Options (Hydra overrides): ckpt, prompt, max_new_tokens, num_samples, temperature (0: greedy),
top_k, top_p, seed, device, overflow (stop|slide, for the learned table), compile (a compiled
fixed-shape decode step: CUDA graphs on a GPU); without ckpt also
model=tiny|small|gpt2 and pos=<encoding>. `python sample.py --help` lists the full config.
"""

from __future__ import annotations

import sys
import time

import hydra
import torch
from omegaconf import DictConfig

from configs.schema import register_configs
from data.encode import get_tokenizer
from data.tokens import DataError
from data.vocab import Vocab
from model.generate import ContextFull, generate, validate_sampling
from training.build import build_model
from training.checkpoint import CheckpointError, load_model_and_vocab

register_configs()
FRESH_TOKENIZER = "gpt2"  # the tokenizer of a model sampled without a checkpoint


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


@hydra.main(version_base=None, config_path="configs", config_name="sample")
def main(cfg: DictConfig) -> None:
    device = pick_device(cfg.device)
    try:
        validate_sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.overflow)
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        model, vocab = load(cfg, device)
        enc = get_tokenizer(vocab.tokenizer)  # the checkpoint's tokenizer
    except (CheckpointError, DataError) as e:
        sys.exit(f"error: {e}")
    prompt = vocab.encode(enc, cfg.prompt) or [vocab.eot_id]
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    total_tokens, start = 0, time.perf_counter()
    for i in range(cfg.num_samples):
        if cfg.num_samples > 1:
            print(f"--- sample {i + 1}/{cfg.num_samples} ---")
        try:
            stream = generate(
                model, idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                generator, stop_token=vocab.eot_id, overflow=cfg.overflow, compile=cfg.compile,
            )
        except ValueError as e:
            sys.exit(f"error: {e}")
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
    main()
