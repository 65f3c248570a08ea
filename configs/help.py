"""`--help` for the entry points: every option with its current value and what it means, read
from the typed configs (the comments beside each dataclass field, or the class docstring).

    python train.py --help                 # the options of train.py, at their defaults
    python train.py train=gpu pos=t5 --help   # ... as these overrides set them

Hydra's own help (its config dump and every config group under configs/) stays behind
`--hydra-help`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from enum import Enum
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from data.config import ROOT
from model.config import PosConfig
from model.positional import config_class, encoding_names

CONFIG_DIR = ROOT / "configs"
FIELD_LINE = re.compile(r"(\w+)\s*:[^=]+?(?:=.*?)?(?:\s#\s*(.*))?$")


def field_docs(cls: type) -> dict[str, str]:
    """field name -> the comment on its line, after the comment lines right above it (base
    classes first, so a subclass's comment wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()[1:]
        except (OSError, TypeError):
            continue
        names = {f.name for f in dataclasses.fields(klass)}
        above: list[str] = []
        for line in lines:
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("#").strip())
                continue
            m = FIELD_LINE.match(text)
            if m and m.group(1) in names and line.startswith("    ") and not line.startswith("     "):
                doc = " ".join(above + ([m.group(2)] if m.group(2) else []))
                if doc or m.group(1) not in docs:
                    docs[m.group(1)] = doc
            above = []
    return docs


def _choices(tp: Any) -> str:
    """`(a|b|c)` for an Enum field, else ''."""
    tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    return f" ({'|'.join(m.value for m in tp)})" if isinstance(tp, type) and issubclass(tp, Enum) else ""


def _value(node: DictConfig, key: str) -> str:
    if OmegaConf.is_missing(node, key):
        return "??? (required)"
    try:
        value = node[key]
    except Exception:  # an interpolation that needs Hydra's runtime: show it as written
        value = OmegaConf.to_container(node, resolve=False)[key]
    if isinstance(value, DictConfig):
        return "{" + ", ".join(str(k) for k in value) + "}"
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if isinstance(value, Enum):
        value = value.value
    return "null" if value is None else str(value)


def option_lines(cls: type, node: DictConfig, prefix: str = "") -> list[str]:
    """`key=value  meaning` for every field of dataclass `cls`, recursing into nested dataclasses."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
        if dataclasses.is_dataclass(inner) and isinstance(node.get(f.name), DictConfig):
            sub = node[f.name]
            if inner is PosConfig:  # the `pos` group: the chosen encoding's own class
                inner = config_class(sub.name)
            lines += option_lines(inner, sub, f"{prefix}{f.name}.")
            continue
        key = f"{prefix}{f.name}={_value(node, f.name)}"
        doc = (docs.get(f.name, "") + _choices(tp)).strip()
        lines.append(f"  {key:<40} {doc}".rstrip() if len(key) < 40 else f"  {key}\n  {'':<40} {doc}".rstrip())
    return lines


def group_options(group: str) -> list[str]:
    """The options of config group `group`: its YAML files, and for `pos` every encoding."""
    names = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
    if group == "pos":
        names |= set(encoding_names())
    return sorted(names)


def render(config_name: str, schema: type, doc: str, groups: list[str], overrides: list[str]) -> str:
    from configs.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    lines = [doc.strip(), ""]
    if groups:
        lines.append("Config groups (group=option; the one in use is marked *):")
        for g in groups:
            used = choices.get(g)
            opts = ", ".join(f"{o}*" if o == used else o for o in group_options(g))
            lines.append(f"  {g + '=':<14}{opts}" + ("" if used else "  (none by default)"))
        lines.append("")
    lines.append("Options (key=current value, then what it means):")
    lines += option_lines(schema, cfg)
    lines += ["", "Any option is set as key=value on the command line. HYDRA_FULL_ERROR=1 shows tracebacks; "
              "--hydra-help shows Hydra's own help."]
    return "\n".join(lines)


def exit_with_help_if_asked(config_name: str, schema: type, doc: str, groups: list[str] = (),
                            argv: Optional[list[str]] = None) -> None:
    """Print the help and exit when the command line holds --help or -h."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" not in argv and "-h" not in argv:
        return
    overrides = [a for a in argv if not a.startswith("-")]
    print(render(config_name, schema, doc, list(groups), overrides))
    sys.exit(0)
