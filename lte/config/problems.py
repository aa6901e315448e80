"""`Problems`: what is wrong with one config, collected so that the user sees every problem at once.

One object is passed through a whole build (YAML file, overrides, nested sections), so a direct
`MemoryConfig(...)`, `dataclasses.replace(cfg, ...)` and `load_config` check in the same way: the
first two make their own and raise at the end of `__post_init__`, a load raises once at the end.
"""

from __future__ import annotations

import math
from typing import Any

from lte.errors import UserError


class Problems:
    def __init__(self, prefix: str = "", items: list[str] | None = None):
        self.prefix = prefix  # dotted path of the section being built, for type and key problems
        self.items = [] if items is None else items

    def at(self, key: str) -> Problems:
        """The same collection, for the nested section `key`."""
        return Problems(f"{self.prefix}{key}.", self.items)

    def add(self, problem: str) -> None:
        self.items.append(problem)

    def __len__(self) -> int:
        return len(self.items)

    def choice(self, name: str, value: Any, choices) -> None:
        if value not in choices:
            self.add(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")

    def positive(self, name: str, value: Any) -> None:
        if _is_number(value) and value <= 0:
            self.add(f"{name}={value!r} must be > 0")

    def at_least(self, name: str, value: Any, low: float) -> None:
        if _is_number(value) and value < low:
            self.add(f"{name}={value!r} must be >= {low}")

    def within(self, name: str, value: Any, low: float, high: float, *, open_high=False) -> None:
        if _is_number(value) and not (low <= value < high if open_high else low <= value <= high):
            self.add(f"{name}={value!r} must be within [{low}, {high}{')' if open_high else ']'}")

    def raise_if_any(self, source: str = "config") -> None:
        if self.items:
            raise UserError(f"{source}: " + "; ".join(self.items))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
