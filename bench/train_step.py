"""Training-step speed of our GPT against peers of the identical shape.

One step is forward, cross-entropy, backward and an AdamW step. Every contender has the same
n_layer, n_head, n_embd, block_size, vocab (50257), batch, dtype, tied embeddings and no dropout,
trains on the same batch with the same optimizer, and all of them run in one process, interleaved
(see bench/common.py). Ours computes its loss itself (`model(idx, targets)`, as training does); the
peers' loss is the same `F.cross_entropy` call on their logits. Peers per encoding:

    learned     Hugging Face GPT2LMHeadModel (sdpa); x-transformers absolute
    sinusoidal  x-transformers scaled sinusoidal
    t5          x-transformers T5 relative bias
    rope        Hugging Face GPTNeoXForCausalLM (use_parallel_residual=False, rotary_pct=1); x-transformers rotary
    xpos        x-transformers rotary with rotary_xpos
    cope        x-transformers CoPE (use_cope, explicit attention scores)
    alibi       Hugging Face BloomForCausalLM; x-transformers ALiBi
    nope        x-transformers with no positional encoding
    kerple      none (no peer implements KERPLE: ours only)
    fire        none (no peer implements FIRE: ours only)

The printed ratio is peer time / our time (above 1: we are faster). Example (CPU, tiny shape):

    python bench/train_step.py --threads 2 --reps 10
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if __package__ in (None, ""):  # run as a script (python bench/train_step.py): find the project
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    DTYPES,
    MATMUL_N,
    Timings,
    add_time_arguments,
    allow_recompiles,
    command_line,
    machine_line,
    markdown_table,
    median,
    matmul_peak,
    peak_flops,
    setup,
    spread,
    time_interleaved,
    warm_up,
)
from model import GPT
from model.config import ModelConfig
from model.positional import config_class, encoding_names

VOCAB = 50257  # the default vocabulary (GPT-2's)


@dataclass
class Shape:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int = VOCAB  # GPT-2's; a data.vocab_size preset's (e.g. 8,256) with --vocab-size

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            block_size=self.block_size,
            vocab_size=self.vocab_size,
            dropout=0.0,
            bias=True,
        )


# A contender's loss: (model, idx, targets) -> mean cross-entropy.
LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class Contender:
    name: str
    encoding: str
    model: nn.Module
    loss: LossFn

    @property
    def is_ours(self) -> bool:
        return isinstance(self.model, GPT)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """The peers' loss: the call our GPT.forward makes (HF and x-transformers compute the same)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)


def ours(shape: Shape, encoding: str) -> Contender:
    model = GPT(shape.model_config(), config_class(encoding)())
    return Contender(f"ours {encoding}", encoding, model, lambda m, idx, tgt: m(idx, tgt)[1])


def _hf_loss(m: nn.Module, idx: Tensor, targets: Tensor) -> Tensor:
    return cross_entropy(m(input_ids=idx, use_cache=False).logits, targets)


def hf_gpt2(shape: Shape) -> Contender:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=shape.vocab_size,
        n_positions=shape.block_size,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        use_cache=False,
        bos_token_id=shape.vocab_size - 1,  # GPT-2's 50256 lies outside a smaller vocabulary
        eos_token_id=shape.vocab_size - 1,
    )
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa")
    return Contender("HF GPT2 (learned)", "learned", model, _hf_loss)


def hf_neox(shape: Shape) -> Contender:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.n_embd,
        num_hidden_layers=shape.n_layer,
        num_attention_heads=shape.n_head,
        intermediate_size=4 * shape.n_embd,
        max_position_embeddings=shape.block_size,
        rotary_pct=1.0,  # rotate the whole head, as ours does (NeoX's default is 0.25)
        use_parallel_residual=False,  # sequential pre-LN block, as ours
        hidden_act="gelu",
        attention_bias=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tie_word_embeddings=True,
        use_cache=False,
        bos_token_id=shape.vocab_size - 1,
        eos_token_id=shape.vocab_size - 1,
    )
    model = GPTNeoXForCausalLM._from_config(cfg, attn_implementation="sdpa")
    return Contender("HF GPT-NeoX (rope)", "rope", model, _hf_loss)


def hf_bloom(shape: Shape) -> Contender:
    from transformers import BloomConfig, BloomForCausalLM

    cfg = BloomConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tie_word_embeddings=True,
        use_cache=False,
        bos_token_id=shape.vocab_size - 1,
        eos_token_id=shape.vocab_size - 1,
    )
    model = BloomForCausalLM._from_config(cfg)  # eager attention: Bloom has no sdpa path
    return Contender("HF Bloom (alibi)", "alibi", model, _hf_loss)


# x-transformers 2.31 switches, one set per encoding (`Decoder` kwargs, `TransformerWrapper` kwargs)
XT_ENCODINGS = {
    "learned": ("absolute", {}, {"use_abs_pos_emb": True}),
    "sinusoidal": ("scaled sinusoidal", {}, {"use_abs_pos_emb": True, "scaled_sinu_pos_emb": True}),
    "t5": ("T5 bias", {"rel_pos_bias": True, "attn_flash": False}, {"use_abs_pos_emb": False}),  # no SDPA with it
    "rope": ("rotary", {"rotary_pos_emb": True}, {"use_abs_pos_emb": False}),
    "xpos": ("rotary xPos", {"rotary_xpos": True}, {"use_abs_pos_emb": False}),  # scale base 512, as ours
    "cope": ("CoPE", {"attn_use_cope": True, "attn_cope_max_pos": 64, "attn_flash": False},  # npos_max as ours
             {"use_abs_pos_emb": False}),
    "alibi": ("ALiBi", {"alibi_pos_bias": True}, {"use_abs_pos_emb": False}),
    "nope": ("no pos", {}, {"use_abs_pos_emb": False}),
}


def x_transformer(shape: Shape, encoding: str) -> Contender:
    from x_transformers import Decoder, TransformerWrapper

    label, decoder_kw, wrapper_kw = XT_ENCODINGS[encoding]
    head_dim = shape.n_embd // shape.n_head
    decoder = Decoder(
        dim=shape.n_embd,
        depth=shape.n_layer,
        heads=shape.n_head,
        attn_dim_head=head_dim,
        rotary_emb_dim=head_dim,  # rotate the whole head (its default is half)
        verbose=False,
        **{"attn_flash": True, **decoder_kw},  # SDPA unless the encoding refuses it
    )
    model = TransformerWrapper(
        num_tokens=shape.vocab_size, max_seq_len=shape.block_size, attn_layers=decoder, tie_embedding=True, **wrapper_kw
    )
    return Contender(f"x-transformers {label}", encoding, model, lambda m, idx, tgt: cross_entropy(m(idx), tgt))


# Peers are mapped by hand, by encoding name; ours runs for every registered encoding.
HF_PEERS = {"learned": hf_gpt2, "rope": hf_neox, "alibi": hf_bloom}


def build_contenders(shape: Shape, encodings: list[str], peers: bool = True) -> list[Contender]:
    contenders = []
    for enc in encodings:
        contenders.append(ours(shape, enc))
        if peers:
            if enc in HF_PEERS:
                contenders.append(HF_PEERS[enc](shape))
            if enc in XT_ENCODINGS:
                contenders.append(x_transformer(shape, enc))
    return contenders


def make_step(
    c: Contender,
    idx: Tensor,
    targets: Tensor,
    dtype: torch.dtype,
    fused: bool,
    compile: bool,
) -> Callable[[], None]:
    """A closure running one training step of `c` (its model moved to idx's device)."""
    model = c.model.to(idx.device).train()

    def loss_fn(idx: Tensor, targets: Tensor) -> Tensor:
        return c.loss(model, idx, targets)

    # compile forward and loss together for every contender (ours computes its loss inside forward)
    loss_fn = torch.compile(loss_fn) if compile else loss_fn
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=fused)
    autocast = dtype != torch.float32

    def step() -> None:
        with torch.autocast(idx.device.type, dtype=dtype, enabled=autocast):
            loss = loss_fn(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def fused_adamw_available(device: torch.device) -> bool:
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, ValueError):
        return False


def run(args: argparse.Namespace) -> Optional[Timings]:
    """Warm every contender up, time them interleaved, print the table; None with --compile-only."""
    device = setup(args.device, args.threads, args.seed, args.malloc, tf32=True)
    dtype = DTYPES[args.dtype]
    shape = Shape(args.n_layer, args.n_head, args.n_embd, args.block_size, args.batch_size, args.vocab_size)
    contenders = build_contenders(shape, args.encodings, peers=not args.no_peers)
    gen = torch.Generator().manual_seed(args.seed)
    data = torch.randint(0, shape.vocab_size, (shape.batch_size, shape.block_size + 1), generator=gen).to(device)
    idx, targets = data[:, :-1], data[:, 1:]
    fused = fused_adamw_available(device) if args.optimizer == "fused" else False
    if args.compile:
        allow_recompiles(2 * len(contenders))
    make = {c.name: partial(make_step, c, idx, targets, dtype, fused, args.compile) for c in contenders}
    steps = warm_up(make, args.warmup, device, args.time_limit, keep=not args.compile_only)
    if args.compile_only:
        return None
    contenders = [c for c in contenders if c.name in steps]
    cpu_peak = matmul_peak(device, args.clock) if device.type == "cpu" else None
    timings = time_interleaved(steps, args.reps, 0, device)
    if cpu_peak is not None:  # the best of before and after: the machine's load moves it
        cpu_peak = max(cpu_peak, matmul_peak(device, args.clock))
    print(f"\n{command_line()}\n{machine_line(device)}")
    if cpu_peak is not None:
        print(f"fp32 matmul peak of this machine, measured now: {cpu_peak / 1e9:.1f} GFLOP/s "
              f"({torch.get_num_threads()} thread(s), the best {MATMUL_N} x {MATMUL_N} sgemm on the {args.clock} clock); MFU below is "
              "the model's nominal FLOP/s (6 N + 12 L C T per token) as a fraction of it")
    print(
        f"shape: n_layer {shape.n_layer}, n_head {shape.n_head}, n_embd {shape.n_embd}, "
        f"block {shape.block_size}, batch {shape.batch_size}, vocab {shape.vocab_size}; dtype {args.dtype}"
        f"{' (autocast)' if dtype != torch.float32 else ''}; compile {args.compile}; "
        f"AdamW {'fused' if fused else 'foreach'}; {args.reps} reps after {args.warmup} warmup; "
        f"ratios on the {args.clock} clock; malloc {args.malloc}\n"
    )
    print(report(contenders, timings, args.clock, shape, device, dtype, cpu_peak))
    return timings


def report(
    contenders: list[Contender],
    timings: Timings,
    clock: str,
    shape: Shape,
    device: torch.device,
    dtype: torch.dtype,
    cpu_peak: Optional[float] = None,
) -> str:
    """One markdown row per contender: medians on both clocks, tokens/s and MFU on `clock`, and
    peer/ours on `clock` (above 1: ours is faster). MFU is against a known GPU's datasheet peak, or
    on CPU against `cpu_peak` (measured by `matmul_peak`)."""
    times = timings.on(clock)
    tokens = shape.batch_size * shape.block_size
    peak = peak_flops(device, dtype) or cpu_peak
    if peak:  # the nominal FLOPs of the shape (ours counts them), the same for every contender
        flops = GPT(shape.model_config(), config_class(contenders[0].encoding)()).flops_per_token(shape.block_size)
    ours_t = {c.encoding: median(times[c.name]) for c in contenders if c.is_ours}  # of those timed
    headers = ["encoding", "model", "params (M)", "wall ms", "cpu ms", "spread", "tokens/s"]
    headers += ["MFU"] if peak else []
    headers += ["peer/ours"]
    rows = []
    for c in contenders:
        t = median(times[c.name])
        params = sum(p.numel() for p in c.model.parameters()) / 1e6
        row = [c.encoding, c.name, f"{params:.2f}", f"{1e3 * median(timings.wall[c.name]):.0f}"]
        row += [f"{1e3 * median(timings.cpu[c.name]):.0f}", spread(times[c.name]), f"{tokens / t:,.0f}"]
        row += [f"{100 * flops * tokens / t / peak:.1f}%"] if peak else []
        row += ["-" if c.is_ours or c.encoding not in ours_t else f"{t / ours_t[c.encoding]:.2f}x"]
        rows.append(row)
    return markdown_table(headers, rows)


def add_shape_arguments(p: argparse.ArgumentParser) -> None:
    """The model and batch shape options (default: model=tiny, batch 8), as `Shape` takes them."""
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--vocab-size", type=int, default=VOCAB,
                   help="vocabulary of every contender (the cpu preset's data.vocab_size gives 8,256)")


def add_contender_arguments(p: argparse.ArgumentParser) -> None:
    """Which contenders `build_contenders` makes (encodings, with or without peers), and the seed."""
    p.add_argument("--encodings", nargs="+", choices=encoding_names(), default=encoding_names())
    p.add_argument("--no-peers", action="store_true", help="our model only")
    p.add_argument("--seed", type=int, default=0)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_arguments(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="non-float32 runs under autocast")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile every contender's forward + loss (use --warmup 3)"
    )
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="clock of the ratios; cpu (process time) resists a shared machine's load with --threads 1",
    )
    p.add_argument(
        "--malloc",
        choices=["default", "keep"],
        default="keep",
        help="keep (what train.py does on CPU): glibc keeps freed memory, no page faults on the per-step "
             "logits (training/cpu_memory.py); default: glibc's own policy",
    )
    p.add_argument("--optimizer", choices=["fused", "foreach"], default="fused")
    add_time_arguments(p)
    add_contender_arguments(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
