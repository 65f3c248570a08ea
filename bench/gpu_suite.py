"""One prepared GPU run: CUDA correctness, training-step speed against peers, compiled decode and
the h100 preset, in one command that returns every result it could get within its time budget.

    bash bench/gpu_suite.sh            # on a machine with one CUDA GPU, from the project root
    bash bench/gpu_suite.sh --cpu      # dry run: the same steps at tiny shapes on the CPU (a test runs it)

Steps, in order (each has its own time limit, and a failing or timed-out step does not stop the
others; the limits are clipped so that the whole run ends within --budget seconds):

    setup        install the wheels in .whl/ that this machine lacks (bench/fetch_gpu_wheels.sh
                 downloads them), print the machine and the versions
    pytest_cuda  python -m pytest -q -m cuda                                  } at the same time:
    warm         fill torch.compile's on-disk caches: bench/train_step.py and } correctness is not
                 bench/decode.py with --compile-only, in parallel processes   } timed
    train_step   bench/train_step.py at model=gpt2 (configs/model/gpt2.yaml), bf16, compiled: every
                 registered encoding, Hugging Face and x-transformers at the identical shape,
                 interleaved, MFU (the GPU alone: nothing else runs)
    decode       bench/decode.py --compile at model=gpt2: 1,024 new tokens, eager cached, compiled
                 fixed-shape step (CUDA graphs), Hugging Face generate
    compare      python compare.py preset=h100 seeds=[0], train.max_steps cut to --compare-steps so
                 that it fits its limit; the report goes into the output folder

Everything comes back in a handful of files under $OUT (else gpu_results/): summary.md (the table
of steps with status, time and output, then each step's results), summary.json, one log per
step, and bundle.tar.gz (the warm-up logs, pytest's junit XML, the h100 report with its plots, and
the compare runs' config, metrics and eval files; never checkpoints, which stay in the work folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (python bench/gpu_suite.py): find the project
    sys.path.insert(0, str(ROOT))

from model.positional import encoding_names  # noqa: E402

ENCODINGS = encoding_names()  # every registered encoding

# The modules the suite imports that a bare GPU machine may lack, and the wheels that provide them.
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime",
          "datasets": "datasets", "dill": "dill", "multiprocess": "multiprocess",
          "x_transformers": "x-transformers", "einx": "einx", "frozendict": "frozendict",
          "loguru": "loguru", "torch_einops_utils": "torch-einops-utils"}


@dataclass
class Result:
    name: str
    title: str
    status: str = "not run"
    seconds: float = 0.0
    limit: float = 0.0
    output: str = ""
    detail: str = ""
    commands: list[str] = field(default_factory=list)


class Suite:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cpu = args.cpu
        self.out = Path(args.out or os.environ.get("OUT") or ROOT / "gpu_results").resolve()
        if args.work:
            self.work = Path(args.work).resolve()
        elif os.environ.get("OUT") and not args.out:
            self.work = Path(tempfile.mkdtemp(prefix="posgpt_gpu_suite_"))  # $OUT holds only what comes back
        else:
            self.work = self.out / "work"
        self.logs = self.work / "logs"
        for d in (self.out, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.results: list[Result] = []
        self.env = self._env()

    # -- environment -------------------------------------------------------------------------

    def _env(self) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="disabled", HF_HUB_OFFLINE="1",
                   HF_DATASETS_OFFLINE="1", TORCHINDUCTOR_CACHE_DIR=str(self.work / "inductor_cache"))
        site = self.work / "site"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(ROOT), env.get("PYTHONPATH")) if p)
        if self.cpu:
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.start)

    # -- running -----------------------------------------------------------------------------

    def run_group(self, jobs: list[tuple[Result, list[list[str]], int]]) -> None:
        """Run several steps at once: each (result, commands, parallel) runs its commands with at
        most `parallel` at a time, all of its log in <out>/<name>.log (or logs/ for the warm-up),
        until done or its limit (each limit clipped to what is left of the budget)."""
        running = []  # [result, queue of commands, active [(proc, log, cmd)], deadline, parallel, t0, failures]
        for result, commands, parallel in jobs:
            available = self.left() - self.args.reserve
            result.limit = max(0.0, min(result.limit, available))
            result.commands = [" ".join(c) for c in commands]
            if available < self.args.min_step:
                result.status = f"skipped (only {max(self.left(), 0):.0f} s of the budget left)"
                continue
            running.append([result, list(commands), [], time.perf_counter() + result.limit, parallel,
                            time.perf_counter(), 0])
        while running:
            for item in list(running):
                result, queue, active, deadline, parallel, t0, _ = item
                for proc, log, cmd in list(active):
                    if proc.poll() is not None:
                        active.remove((proc, log, cmd))
                        log.close()
                        if proc.returncode != 0:
                            item[6] += 1
                            result.detail += f"`{cmd}` exited with {proc.returncode}. "
                now = time.perf_counter()
                if now > deadline:
                    for proc, log, cmd in active:
                        _stop(proc)
                        log.close()
                    result.status = f"timeout (limit {result.limit:.0f} s" + (
                        f"; {len(queue)} command(s) not started)" if queue else ")")
                    result.seconds = now - t0
                    running.remove(item)
                    continue
                while queue and len(active) < parallel:
                    cmd = queue.pop(0)
                    log = self._log_for(result, cmd, len(active) + len(queue))
                    log.write(f"$ {' '.join(cmd)}\n")
                    log.flush()
                    proc = subprocess.Popen(cmd, cwd=ROOT, env=self._step_env(result, parallel), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                    active.append((proc, log, " ".join(cmd)))
                if not queue and not active:
                    result.seconds = time.perf_counter() - t0
                    result.status = "ok" if item[6] == 0 else f"failed ({item[6]} of {len(result.commands)} command(s))"
                    running.remove(item)
            time.sleep(0.2)

    def _log_for(self, result: Result, cmd: list[str], index: int):
        if len(result.commands) == 1 or result.name != "warm":
            path = self.out / f"{result.name}.log"
            result.output = str(path)
            return open(path, "a")
        tag = "_".join(a for a in cmd if a in ENCODINGS) or str(index)
        path = self.logs / f"warm_{Path(cmd[1]).stem}_{tag}.log"
        result.output = f"{self.out / 'bundle.tar.gz'}: logs/warm_*.log"
        return open(path, "w")

    def _step_env(self, result: Result, parallel: int) -> dict:
        env = dict(self.env)
        if parallel > 1:  # share the cores between the parallel compilers
            env["TORCHINDUCTOR_COMPILE_THREADS"] = str(max(1, (os.cpu_count() or 2) // parallel))
        return env

    # -- steps -------------------------------------------------------------------------------

    def setup(self) -> None:
        r = Result("setup", "install the missing wheels; machine and versions", limit=self.args.limit_setup)
        self.results.append(r)
        t0 = time.perf_counter()
        log_path = self.out / "setup.log"
        r.output = str(log_path)
        lines = []
        missing = [NEEDED[mod] for mod in _not_importable(list(NEEDED), self.env)]
        wheels = sorted((ROOT / self.args.wheels).glob("*.whl"))
        pick = [w for w in wheels if _dist_of(w) in {_norm(d) for d in missing}]
        lines.append(f"missing here: {', '.join(missing) or 'nothing'}")
        ok = True
        if missing:
            absent = sorted({_norm(d) for d in missing} - {_dist_of(w) for w in pick})
            if absent:
                lines.append(f"no wheel in {self.args.wheels}/ for: {', '.join(absent)} "
                             "(run bash bench/fetch_gpu_wheels.sh where PyPI works, and carry .whl)")
                ok = False
            if pick:
                cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                       "--disable-pip-version-check", "--find-links", str(ROOT / self.args.wheels),
                       "--target", str(self.work / "site"), *map(str, pick)]
                r.commands.append(" ".join(cmd))
                proc = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True,
                                      timeout=max(10, r.limit))
                lines.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}(exit {proc.returncode})")
                ok = ok and proc.returncode == 0
        still = _not_importable(list(NEEDED), self.env)
        if still:
            lines.append(f"still not importable: {', '.join(still)}")
            ok = False
        report, imports = _machine_report(self.env)
        lines.append(report)
        if not imports:
            lines.append("importing datasets, hydra and x_transformers failed (the traceback is above)")
            ok = False
        log_path.write_text("\n".join(lines) + "\n")
        r.seconds = time.perf_counter() - t0
        r.status = "ok" if ok else "failed"
        r.detail = "" if ok else "; ".join(ln for ln in lines if "\n" not in ln)

    def shape_args(self) -> list[str]:
        if self.cpu:
            shape = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16}
        else:
            from omegaconf import OmegaConf  # configs/model/gpt2.yaml: model=gpt2

            shape = OmegaConf.load(ROOT / "configs" / "model" / "gpt2.yaml")
        return [f"--n-layer={shape['n_layer']}", f"--n-head={shape['n_head']}", f"--n-embd={shape['n_embd']}"]

    def train_step_cmd(self, encodings: list[str], compile_only: bool, time_limit: Optional[float] = None) -> list[str]:
        a = self.args
        block = 16 if self.cpu else 1024
        cmd = [sys.executable, "bench/train_step.py", *self.shape_args(), f"--block-size={block}",
               f"--batch-size={2 if self.cpu else a.batch_size}", "--device", self.device(),
               "--encodings", *encodings]
        if self.cpu:
            cmd += ["--reps", "2", "--warmup", "1"]
        else:
            cmd += ["--dtype", "bfloat16", "--compile", "--reps", str(a.reps), "--warmup", "2"]
        if compile_only:
            cmd += ["--compile-only"]
        if time_limit is not None:
            cmd += ["--time-limit", f"{time_limit:.0f}"]
        return cmd

    def decode_cmd(self, encodings: list[str], compile_only: bool, time_limit: Optional[float] = None) -> list[str]:
        cmd = [sys.executable, "bench/decode.py", *self.shape_args(), "--device", self.device(),
               "--no-uncached", "--encodings", *encodings, "--reps", "1", "--warmup", "1"]
        if self.cpu:  # no --compile: inductor on 2 CPU cores takes minutes per contender
            cmd += ["--prompt-len", "3", "--new-tokens", "8"]
        else:
            cmd += ["--compile", "--prompt-len", "16", "--new-tokens", "1024", "--dtype", "bfloat16"]
        if compile_only:
            cmd += ["--compile-only"]
        if time_limit is not None:
            cmd += ["--time-limit", f"{time_limit:.0f}"]
        return cmd

    def device(self) -> str:
        return "cpu" if self.cpu else "cuda"

    def compare_cmd(self) -> list[str]:
        a = self.args
        cmd = [sys.executable, "compare.py", "preset=h100", "seeds=[0]", "name=h100",
               f"out_dir={self.work / 'compare_runs'}", f"report_dir={self.work / 'report_h100'}",
               f"eval.cache_dir={self.work / 'eval_cache'}", "train.progress=false", "eval.progress=false"]
        if self.cpu:
            cmd += ["train.device=cpu", "eval.device=cpu", "model.n_layer=1", "model.n_head=2", "model.n_embd=32",
                    "model.block_size=16", "train.max_steps=2", "train.batch_size=2", "train.global_batch_size=2",
                    "train.warmup_steps=1", "train.eval_interval=2", "train.eval_batches=1",
                    "eval.multipliers=[1,2]", "eval.stride=8", "eval.variants=[none,yarn]", "eval.repeat.span=4",
                    "eval.repeat.spans=2",
                    "eval.batch_tokens=256", "eval.sets.tinystories.max_tokens=64",
                    "eval.sets.long_stories.max_tokens=64", "samples.max_new_tokens=4", "samples.num_samples=1"]
        else:
            cmd += [f"train.max_steps={a.compare_steps}"]
        return cmd + list(a.compare_arg)

    def plan(self) -> None:
        a = self.args
        self.setup()
        groups = _split(ENCODINGS, a.warm_jobs)
        warm = ([self.train_step_cmd(g, compile_only=True) for g in groups]
                + [self.decode_cmd(g, compile_only=True) + ["--no-hf"]
                   for g in _split(ENCODINGS, max(1, a.warm_jobs // 2))])
        pytest_cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                      f"--junitxml={self.logs / 'pytest_cuda.xml'}"]
        r_pytest = Result("pytest_cuda", "python -m pytest -q -m cuda", limit=a.limit_pytest)
        r_warm = Result("warm", f"compile caches: {len(warm)} --compile-only runs, {a.warm_jobs} at a time",
                        limit=a.limit_warm)
        self.results += [r_pytest, r_warm]
        self.run_group([(r_pytest, [pytest_cmd], 1), (r_warm, warm, a.warm_jobs)])

        for name, title, limit, timing, make in (
            ("train_step", "bench/train_step.py, model=gpt2, bf16, compiled, every encoding + peers",
             a.limit_train, a.timing_train, self.train_step_cmd),
            ("decode", "bench/decode.py --compile, model=gpt2, 1,024 new tokens", a.limit_decode, a.timing_decode,
             self.decode_cmd),
        ):
            r = Result(name, title, limit=limit)
            self.results.append(r)
            # contenders not warm when only `timing` seconds are left are left out, so the rest is timed
            cmd = make(ENCODINGS, compile_only=False, time_limit=max(1.0, min(limit, self.left() - a.reserve) - timing))
            self.run_group([(r, [cmd], 1)])

        r = Result("compare", f"compare.py preset=h100 seeds=[0], train.max_steps={a.compare_steps}"
                   if not self.cpu else "compare.py preset=h100 seeds=[0] at a tiny shape", limit=a.limit_compare)
        self.results.append(r)
        self.run_group([(r, [self.compare_cmd()], 1)])

    # -- summary -----------------------------------------------------------------------------

    def summarize(self) -> str:
        total = time.perf_counter() - self.start
        rows = ["| step | what | status | time (s) | limit (s) | output |", "| --- | --- | --- | ---: | ---: | --- |"]
        for r in self.results:
            rows.append(f"| {r.name} | {r.title} | {r.status} | {r.seconds:.0f} | {r.limit:.0f} | {r.output} |")
        head = [f"# GPU suite{' (CPU dry run)' if self.cpu else ''}: {_ok_count(self.results)} of "
                f"{len(self.results)} steps ok in {total:.0f} s (budget {self.args.budget:.0f} s)", "",
                f"`{' '.join([sys.executable, *sys.argv])}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"commit {_commit()}", "", *rows, ""]
        body = []
        for r in self.results:
            text = _read(Path(r.output)) if r.output.endswith(".log") else ""
            excerpt = _excerpt(r.name, text)
            body += [f"## {r.name}: {r.status}", "", *(f"    {c}" for c in r.commands), ""]
            if r.detail:
                body += [r.detail.strip(), ""]
            if excerpt:
                body += [excerpt, ""]
        report = self.work / "report_h100" / "report.md"
        if report.is_file():
            body += ["## compare: report.md", "", report.read_text(), ""]
        return "\n".join(head + body)

    def finish(self) -> None:
        self.bundle()
        summary = self.summarize()
        (self.out / "summary.md").write_text(summary)
        (self.out / "summary.json").write_text(json.dumps(
            {"cpu": self.cpu, "budget_s": self.args.budget, "wall_s": time.perf_counter() - self.start,
             "work_dir": str(self.work), "steps": [asdict(r) for r in self.results]}, indent=1) + "\n")
        print(summary.split("\n## ")[0])
        print(f"everything: {self.out} (summary.md, summary.json, *.log, bundle.tar.gz); work folder {self.work}")

    def bundle(self) -> None:
        """Logs, the h100 report and the compare runs' small files, in one archive."""
        with tarfile.open(self.out / "bundle.tar.gz", "w:gz") as tar:
            if self.logs.is_dir():
                tar.add(self.logs, arcname="logs")
            report = self.work / "report_h100"
            if report.is_dir():
                tar.add(report, arcname="report_h100")
            runs = self.work / "compare_runs"
            for path in sorted(runs.glob("*/*")) if runs.is_dir() else []:
                if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml"):
                    tar.add(path, arcname=f"compare_runs/{path.parent.name}/{path.name}")


def _split(items: list[str], n: int) -> list[list[str]]:
    n = max(1, min(n, len(items)))
    return [items[i::n] for i in range(n)]


def _norm(dist: str) -> str:
    return dist.lower().replace("_", "-")


def _dist_of(wheel: Path) -> str:
    return _norm(wheel.name.split("-")[0])


def _not_importable(modules: list[str], env: dict) -> list[str]:
    """The modules that the suite's Python, with the suite's PYTHONPATH, cannot find."""
    code = f"import importlib.util; print(' '.join(m for m in {modules!r} if importlib.util.find_spec(m) is None))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else list(modules)


def _machine_report(env: dict) -> tuple[str, bool]:
    """The versions, the GPU and the CPUs as text, and whether the suite's imports work."""
    code = """
import platform, torch
from importlib.metadata import version, PackageNotFoundError
def v(d):
    try: return version(d)
    except PackageNotFoundError: return "not installed"
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)")
print(", ".join(f"{d} {v(d)}" for d in ("transformers", "x-transformers", "hydra-core", "omegaconf", "datasets",
      "tiktoken", "triton", "numpy", "pyarrow", "huggingface-hub", "fsspec", "pandas")))
import datasets, hydra, x_transformers  # what the steps import
"""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = [proc.stdout.strip(), proc.stderr.strip()[-2000:]]
    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        lines.append(smi)
    except (OSError, subprocess.TimeoutExpired):
        lines.append("nvidia-smi: not available")
    lines.append(f"{platform.node()}: {os.cpu_count()} CPUs")
    return "\n".join(x for x in lines if x), proc.returncode == 0


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's own process group (start_new_session), SIGKILL after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _excerpt(name: str, text: str) -> str:
    """What the summary shows of a step's log: its tables, or its last lines."""
    lines = text.splitlines()
    if name in ("train_step", "decode"):
        keep = [ln for ln in lines if ln.startswith(("|", "shape:", "cached ==", "warm-up:")) or "torch " in ln[:80]]
        if any(ln.startswith("|") for ln in keep):
            return "\n".join(keep)
    tail = [ln for ln in lines if ln.strip()][-12:]
    return "```\n" + "\n".join(tail) + "\n```" if tail else ""


def _ok_count(results: list[Result]) -> int:
    return sum(r.status == "ok" for r in results)


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return (sha.strip() or "unknown") + (" (uncommitted changes)" if dirty.strip() else "")
    except OSError:
        return "unknown"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--cpu", action="store_true", help="dry run on the CPU: tiny shapes, a few steps, no compile")
    p.add_argument("--out", default=None, help="output folder (default: $OUT, else gpu_results/)")
    p.add_argument("--work", default=None,
                   help="scratch folder for checkpoints and caches (default: a temp folder when $OUT is set, "
                        "else <out>/work)")
    p.add_argument("--wheels", default=".whl", help="folder of wheels to install from (relative to the project)")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 530; 900 with --cpu)")
    p.add_argument("--reserve", type=float, default=10, help="seconds kept for the summary and the archive")
    p.add_argument("--min-step", type=float, default=15, help="a step with less time than this left is skipped")
    p.add_argument("--limit-setup", type=float, default=60, help="seconds (each step's limit)")
    p.add_argument("--limit-pytest", type=float, default=160)
    p.add_argument("--limit-warm", type=float, default=160)
    p.add_argument("--limit-train", type=float, default=120)
    p.add_argument("--limit-decode", type=float, default=100)
    p.add_argument("--limit-compare", type=float, default=140)
    p.add_argument("--timing-train", type=float, default=25,
                   help="seconds of train_step's limit kept for the timed repetitions (the warm-up gets the rest)")
    p.add_argument("--timing-decode", type=float, default=40, help="the same for decode")
    p.add_argument("--warm-jobs", type=int, default=None, help="parallel --compile-only processes (default 6; 2 with --cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="train_step batch (sequences of 1,024 tokens)")
    p.add_argument("--reps", type=int, default=10, help="train_step timed repetitions")
    p.add_argument("--compare-steps", type=int, default=200, help="train.max_steps of each compare run (preset: 800)")
    p.add_argument("--compare-arg", action="append", default=[], help="an extra compare.py override (repeatable)")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 900.0 if args.cpu else 530.0
    if args.warm_jobs is None:
        args.warm_jobs = 2 if args.cpu else 6
    return args


def main(argv: Optional[list[str]] = None) -> Suite:
    suite = Suite(parse_args(argv))
    try:
        suite.plan()
    finally:
        suite.finish()
    return suite


if __name__ == "__main__":
    main()
