"""The config machinery: YAML + `key.sub=value` overrides -> checked dataclasses, and back to YAML.

A stage config is a dataclass deriving from `Schema`. Building one checks every field against its
annotation (the one conversion: int -> float) and then the class's own `check`; problems are
collected in a `Problems` object handed down through nested sections and raised together as one
`UserError` line. Unknown keys and values of the wrong type are errors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import KW_ONLY, InitVar, dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lte.config.problems import Problems
from lte.errors import UserError

T = TypeVar("T")

# Deeper configs are refused as they are read: nothing real nests this far, and deeper data only
# moves a RecursionError to a later step (printing, saving the resolved config).
MAX_DEPTH = 32


@dataclass
class Schema:
    """Base of the stage configs: every construction (direct, `replace`, a load) is checked."""

    _: KW_ONLY
    problems: InitVar[Problems | None] = None

    def __post_init__(self, problems: Problems | None) -> None:
        own = problems is None
        p = Problems() if own else problems
        _coerce_fields(self, p)
        self.check(p)
        if own:
            p.raise_if_any()

    def check(self, p: Problems) -> None:
        """Rules beyond the field types (ranges, choices); report each with `p`."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _coerce_fields(obj: Any, p: Problems) -> None:
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        before = len(p)
        value = _coerce(p, f.name, getattr(obj, f.name), hints[f.name])
        # A value whose type is reported gets its default, so that `check` (comparisons, loops)
        # never sees it and every problem still gets listed.
        setattr(obj, f.name, value if len(p) == before else _default(f))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(p: Problems, name: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; convert only int -> float. Reports problems."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    where = p.prefix + name
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in (a for a in args if a is not type(None)):
            if _matches(value, a):
                return _coerce(p, name, value, a)
        p.add(f"{where}={value!r} should be {' or '.join(_type_name(a) for a in args)}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            p.add(f"{where} should be a mapping of {tp.__name__} fields, got {value!r}")
            return value
        return _build(tp, value, p.at(name))
    if origin is list:
        if not isinstance(value, list):
            p.add(f"{where}={value!r} should be a list")
            return value
        return [_coerce(p, f"{name}[{i}]", v, args[0]) if args else v for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            p.add(f"{where}={value!r} should be a mapping")
            return value
        if len(args) == 2:
            return {k: _coerce(p, f"{name}.{k}", v, args[1]) for k, v in value.items()}
        return value
    if not _matches(value, tp):
        p.add(f"{where}={value!r} should be {_type_name(tp)}")
        return value
    if tp is float:
        if not math.isfinite(value):  # `.nan` would silently fail every comparison (a gate off)
            p.add(f"{where}={value!r} should be a finite number")
        return float(value)
    return value


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    if _is_dataclass_type(tp):
        return isinstance(value, (dict, tp))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(origin, type):
        return isinstance(value, origin)
    return True


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _build(cls: type[T], data: dict, p: Problems) -> T:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            p.add(f"unknown key '{p.prefix}{key}'; valid keys: {', '.join(sorted(names))}")
            continue
        before = len(p)
        coerced = _coerce(p, key, value, hints[key])
        if len(p) == before:
            kwargs[key] = coerced
    if issubclass(cls, Schema):
        return cls(**kwargs, problems=p)
    return cls(**kwargs)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1, PyYAML's, needs `1.0e-5`)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _depth(value: Any) -> int:
    """Nesting depth of lists and mappings, without recursion (the input may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((v, d + 1) for v in node)
    return deepest


def _flow_depth(text: str) -> int:
    """Deepest `[`/`{` nesting outside quotes and comments: refused before PyYAML, whose scanner
    takes seconds on 10^5 open brackets before its composer runs out of stack."""
    depth = deepest = 0
    quote = None  # the open quote character, or "#" inside a comment
    for i, ch in enumerate(text):
        if quote == "#":
            if ch == "\n":
                quote = None
        elif quote:
            if ch == quote and (quote == "'" or text[i - 1] != "\\"):
                quote = None
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch in "\"'#" and (i == 0 or text[i - 1] in " \t\n[{,:"):
            quote = ch
    return deepest


def parse_yaml(text: str, where: str) -> Any:
    """`text` as YAML (JSON included); any problem is one line naming `where`."""
    if _flow_depth(text) > MAX_DEPTH:
        raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    try:
        value = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as e:
        raise UserError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    if _depth(value) > MAX_DEPTH:
        raise UserError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    return value


def parse_overrides(overrides: list[str]) -> dict:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'}; values are parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' should look like key.sub=value")
        key, raw = item.split("=", 1)
        value = parse_yaml(raw, f"override '{item}'") if raw != "" else ""
        _set_dotted(tree, key.strip(), value, item)
    return tree


def dotted_tree(values: dict[str, Any]) -> dict:
    """{'model.name_or_path': x} -> {'model': {'name_or_path': x}}: typed values, not parsed."""
    tree: dict = {}
    for key, value in values.items():
        _set_dotted(tree, key, value, key)
    return tree


def _set_dotted(tree: dict, key: str, value: Any, item: str) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override '{item}' conflicts with another override of '{part}'")
    node[parts[-1]] = value


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", file=str(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                        file=str(path)) from None
    try:
        data = parse_yaml(text, "config") or {}
    except UserError as e:
        raise UserError(str(e).removeprefix("config: "), file=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a config must be a mapping of keys", file=str(path))
    return data


def build_config(cls: type[T], data: dict, source: str = "config") -> T:
    """Build `cls` from a dict; every problem is collected and reported in one UserError."""
    p = Problems()
    cfg = _build(cls, data, p)
    p.raise_if_any(source)
    return cfg


def load_config(cls: type[T], path: str | Path | None = None,
                overrides: list[str] | None = None, values: dict[str, Any] | None = None) -> T:
    """YAML file (optional), then `key.sub=value` overrides, then `values` (dotted keys, typed,
    e.g. from CLI flags) -> a checked `cls` instance. Later sources win."""
    data = read_yaml(path) if path else {}
    data = _merge(data, parse_overrides(overrides or []))
    data = _merge(data, dotted_tree(values or {}))
    return build_config(cls, data, source=str(path) if path else "config")


def format_config(cfg: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False).rstrip()


def save_config(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config next to an output, so every run says how it was made."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    return path
