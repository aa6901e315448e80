"""Field documentation for `--help`: the docstring under each field of a schema dataclass."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from typing import Any


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: the string literal right under its annotation} (what pydantic's
    `use_attribute_docstrings` reads), for `cls` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (built in an interactive session)
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
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
