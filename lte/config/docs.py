"""Field documentation for `--help`: the docstring under each field of a schema dataclass."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import typing
from typing import Any


@functools.cache
def _module_docs(module: str) -> dict[str, dict[str, str]]:
    """{class name: {field: docstring}} for every class of a module, from one parse of its
    source (inspect.getsource would parse the whole file again for each class)."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module]))
    except (OSError, TypeError, KeyError):  # no source (built in an interactive session)
        return {}
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            body = node.body
            out[node.name] = {
                field.target.id: " ".join(after.value.value.split())
                for field, after in zip(body, body[1:], strict=False)
                if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)}
    return out


def field_docs(cls: type) -> dict[str, str]:
    """{field name: the string literal right under its annotation} (what pydantic's
    `use_attribute_docstrings` reads), for `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_module_docs(klass.__module__).get(klass.__qualname__, {}))
    return docs


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per settable key (nested sections flattened): `key = default  doc`."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            lines.append(f"{prefix}{f.name}.*  {docs.get(f.name, '')}".rstrip())
            lines += describe(tp, f"{prefix}{f.name}.")
            continue
        default = _default(f)
        lines.append(f"{prefix}{f.name} = {default!r}  {docs.get(f.name, '')}".rstrip())
    return lines


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default
