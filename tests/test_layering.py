"""Layering: no module under lte/ imports a module of a later stage (AST scan, function-local
imports included, since those are where upward imports hide).

Stages, lowest first: errors and layout; config; the shared pieces (prompts, embedding,
modeling, availability, tracking); data; corpus and memory; align and editor; eval; serve; demo; the
command line. A module may import its own stage and any earlier one.
"""

from __future__ import annotations

import ast
from pathlib import Path

LTE = Path(__file__).resolve().parents[1] / "lte"

# (prefix, rank): the longest matching prefix decides a module's stage.
STAGES = {
    "lte": 0, "lte.errors": 0, "lte.layout": 0,
    "lte.config": 1,
    "lte.prompts": 2, "lte.embedding": 2, "lte.embedding_onnx": 2, "lte.modeling": 2, "lte.availability": 2,
    "lte.tracking": 2,
    "lte.data": 3,
    "lte.corpus": 4, "lte.memory": 4,
    "lte.align": 5, "lte.editor": 5,
    "lte.eval": 6,
    "lte.serve": 7,
    "lte.demo": 8,
    "lte.cli": 9, "lte.__main__": 9,
}
# Known upward edges; none today (add one only with the reason beside it).
ALLOWED: set[tuple[str, str]] = set()


def stage(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in STAGES:
            return STAGES[prefix]
    raise AssertionError(f"{module} has no stage in tests/test_layering.py STAGES")


def module_name(path: Path, root: Path = LTE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, root: Path = LTE) -> set[str]:
    """Every `lte...` module `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lte"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.split(".")[0] == "lte":
                # `from lte.x import y` may import the submodule lte.x.y
                subs = {f"{name}.{a.name}" for a in node.names
                        if (root.parent / f"{name}.{a.name}".replace(".", "/")).with_suffix(
                            ".py").is_file()}
                out |= subs or {name}
    return out


def edges() -> list[tuple[str, str]]:
    return [(module_name(p), target) for p in sorted(LTE.rglob("*.py"))
            for target in sorted(imported(p))]


def test_no_module_imports_a_later_stage():
    upward = [f"{src} (stage {stage(src)}) imports {dst} (stage {stage(dst)})"
              for src, dst in edges()
              if stage(dst) > stage(src) and (src, dst) not in ALLOWED]
    assert not upward, "\n".join(upward)


def test_the_scan_sees_function_local_and_relative_imports(tmp_path):
    """The checker itself: upward imports hidden in a function or written relative are found."""
    root = tmp_path / "lte"
    (root / "serve").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "serve" / "api.py").write_text("")
    probe = root / "data" / "probe.py"
    probe.write_text("import json\n\ndef f():\n    from lte.serve import api\n"
                     "    from ..errors import UserError\n    from . import record\n")
    assert imported(probe, root) == {"lte.serve.api", "lte.errors", "lte.data"}
    assert stage("lte.serve.api") > stage(module_name(probe, root)) == stage("lte.data")
