"""Typed configs: YAML -> dataclasses, `key.sub=value` overrides, every problem listed at once.

- `schema`: the stage dataclasses (the only home of every default, each field documented);
- `load`: the machinery (YAML, overrides, type checks, save) and the `Schema` base class;
- `problems`: the collector handed through one build; `index_spec`: FAISS factory strings;
- `docs`: field docstrings for `--help`.
`STAGES` maps the name of a `configs/<stage>/` folder to the dataclass its presets fill.
"""

from __future__ import annotations

from lte.config.index_spec import INDEX_PRESETS, INDEX_SPEC, check_index_spec, resolve_index_spec
from lte.config.load import (
    Schema,
    build_config,
    dotted_tree,
    format_config,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
)
from lte.config.problems import Problems
from lte.config.schema import (
    CORPUS_DERIVED_INSTRUCTIONS,
    DEFAULT_EMBEDDER,
    DEFAULT_MODEL,
    AlignConfig,
    CorpusConfig,
    CorpusSource,
    DemoConfig,
    EditorConfig,
    EmbedderConfig,
    EvalConfig,
    FTLConfig,
    MemoryConfig,
    ModelConfig,
    ROMEConfig,
    ServeConfig,
    WandbConfig,
)
from lte.errors import UserError

STAGES: dict[str, type] = {
    "corpus": CorpusConfig,
    "align": AlignConfig,
    "memory": MemoryConfig,
    "editor": EditorConfig,
    "eval": EvalConfig,
    "serve": ServeConfig,
    "demo": DemoConfig,
}


def stage_config_class(stage: str) -> type:
    """The dataclass that `configs/<stage>/*.yaml` presets fill."""
    cls = STAGES.get(stage)
    if cls is None:
        raise UserError(f"no config class for stage '{stage}' (stages: {', '.join(STAGES)})")
    return cls


__all__ = [
    "CORPUS_DERIVED_INSTRUCTIONS", "DEFAULT_EMBEDDER", "DEFAULT_MODEL", "INDEX_PRESETS",
    "INDEX_SPEC", "STAGES", "AlignConfig", "CorpusConfig", "CorpusSource", "DemoConfig",
    "EditorConfig", "EmbedderConfig", "EvalConfig", "FTLConfig", "ROMEConfig", "MemoryConfig", "ModelConfig",
    "Problems", "Schema", "ServeConfig", "WandbConfig", "build_config", "check_index_spec",
    "dotted_tree", "format_config", "load_config", "parse_overrides",
    "read_yaml", "resolve_index_spec", "save_config", "stage_config_class",
]
