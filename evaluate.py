"""evaluate.py: length extrapolation of trained checkpoints, perplexity at multiples of the training length.

    python evaluate.py ckpts=[runs/rope]                       # eval.json in the run directory
    python evaluate.py ckpts=[runs/rope,runs/alibi] out=results.json
    python evaluate.py ckpts=[runs/rope] eval.stride=1 eval.multipliers=[1,2,4] eval.sets.long_stories.max_tokens=4096
    python evaluate.py ckpts=[runs/rope] eval.sets.long_stories.max_tokens=null   # every book token
    python evaluate.py ckpts=[runs/rope] ~eval.sets.long_stories \\
        '+eval.sets.mine={files:[texts/*.txt],documents:eot}'    # your own text, one document per file

Both protocols of Press et al. (non-overlapping windows; a sliding window scoring its last
`eval.stride` tokens), on every set of `eval.sets` (configs/eval/default.yaml), the same tokens
scored at every length; each checkpoint once per inference-time variant (`eval.variants`: as trained,
RoPE's context extensions, log-length scaling `logn` for every encoding); the learned table past its
length shows "n/a". Before each checkpoint the plan (tokens forwarded per set, length and protocol)
is printed with a time estimate from a short warm-up; a plan above `eval.max_forward_tokens` is
refused. See evaluation/extrapolation.py.
Then the context probes of `eval.probes` (repeated span, key retrieval, attention statistics;
evaluation/probes/):
    python evaluate.py ckpts=[runs/rope] eval.probes=[]            # perplexity only
    python evaluate.py ckpts=[runs/rope] eval.probes=[repeat] eval.repeat.spans=32 eval.repeat.distances=[1,4]
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from configs.errors import user_errors
from configs.help import exit_with_help_if_asked
from configs.schema import EvalJob, register_configs
from data.config import project_path
from data.files import write_json_atomic
from evaluation.config import EvalConfig
from evaluation.extrapolation import evaluate_model, format_rows, load_texts
from evaluation.probes.run import run_probes
from training.checkpoint import CheckpointError, load_model_and_vocab, resolve_checkpoint
from training.device import resolve_device, set_threads

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with user_errors():
        evaluate(cfg)


def evaluate(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpts") or not cfg.ckpts:
        raise ValueError("no checkpoint given: pass ckpts=[RUN_DIR_OR_FILE,...]")
    eval_cfg: EvalConfig = OmegaConf.to_object(cfg.eval)  # validates the options (EvalConfig.__post_init__)
    eval_container = OmegaConf.to_container(cfg.eval, resolve=True, enum_to_str=True)
    device = resolve_device(eval_cfg.device, option="eval.device")
    set_threads(cfg.threads)
    paths = [resolve_checkpoint(project_path(c)) for c in cfg.ckpts]  # every one, before the first starts
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"checkpoint not found: {', '.join(missing)} (ckpts={list(cfg.ckpts)})")
    results = []
    for path in paths:
        model, _, vocab = load_model_and_vocab(path, device)
        print(f"== {path} ({model.pos_cfg.name}, trained at L={model.cfg.block_size}, "
              f"vocabulary {vocab.describe()})")
        texts = load_texts(eval_cfg, vocab)  # in the checkpoint's tokenizer and vocabulary
        result = {"checkpoint": str(path), "checkpoint_mtime_ns": path.stat().st_mtime_ns,
                  "eval_config": eval_container} | evaluate_model(model, eval_cfg, texts, device)
        result["probes"] = run_probes(model, eval_cfg, texts, vocab, device)
        print(format_rows(result))
        results.append(result)
        if cfg.out is None:
            print(f"wrote {write_json_atomic(path.parent / 'eval.json', result)}")
    if cfg.out is not None:
        print(f"wrote {write_json_atomic(project_path(cfg.out), {'results': results})}")


if __name__ == "__main__":
    exit_with_help_if_asked("evaluate", EvalJob, __doc__, groups=["eval"])
    main()
