"""The config system: YAML + `key.sub=value` overrides -> checked dataclasses, one error for all."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import pytest

from lte.config import (
    STAGES,
    AlignConfig,
    CorpusConfig,
    EditorConfig,
    EmbedderConfig,
    EvalConfig,
    MemoryConfig,
    ServeConfig,
    build_config,
    format_config,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
    stage_config_class,
)
from lte.errors import UserError


@dataclass
class Inner:
    size: int = 2
    ratio: float = 0.5


@dataclass
class Sample:
    name: str = "x"
    count: int = 1
    rate: float = 1e-3
    flag: bool = False
    limit: float | None = None
    tags: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)
    inners: list[Inner] = field(default_factory=list)


def yaml_file(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_yaml_or_overrides():
    assert load_config(MemoryConfig) == MemoryConfig()
    assert load_config(Sample) == Sample()


def test_yaml_then_overrides_win(tmp_path):
    path = yaml_file(tmp_path, "# lte memory ...\nindex: HNSW32\ntop_k: 3\n"
                               "embedder:\n  batch_size: 32\n")
    cfg = load_config(MemoryConfig, path, ["top_k=5", "embedder.device=cpu"])
    assert cfg.index == "HNSW32" and cfg.top_k == 5
    assert cfg.embedder == EmbedderConfig(batch_size=32, device="cpu")
    assert isinstance(cfg.embedder, EmbedderConfig)


def test_values_parse_as_yaml_scalars_and_types_are_kept():
    cfg = build_config(Sample, parse_overrides(
        ["name=abc", "count=7", "rate=2", "flag=true", "limit=0.25", "tags=[a, b]",
         "weights={x: 1, y: 0.5}", "inner.size=4", "inners=[{size: 9}]"]))
    assert cfg.name == "abc" and cfg.count == 7 and cfg.flag is True and cfg.limit == 0.25
    assert cfg.rate == 2.0 and isinstance(cfg.rate, float)  # int -> float is the one conversion
    assert cfg.tags == ["a", "b"] and cfg.weights == {"x": 1.0, "y": 0.5}
    assert cfg.inner == Inner(size=4) and cfg.inners == [Inner(size=9)]
    assert build_config(Sample, parse_overrides(["limit=null"])).limit is None
    assert build_config(Sample, parse_overrides(["name="])).name == ""


def test_scientific_notation_is_a_float(tmp_path):
    # PyYAML's YAML 1.1 reads `1e-5` as a string; learning rates are written that way.
    assert load_config(Sample, None, ["rate=1e-5"]).rate == 1e-5
    assert load_config(Sample, yaml_file(tmp_path, "rate: 3E+2\n")).rate == 300.0
    assert load_config(AlignConfig, None, ["lr=2e-5"]).lr == 2e-5


@pytest.mark.parametrize("override, problem", [
    ("count=1.5", "count=1.5 should be int"),
    ("count=abc", "count='abc' should be int"),
    ("count=true", "count=True should be int"),  # a bool is not a number here
    ("rate=fast", "rate='fast' should be float"),
    ("flag=1", "flag=1 should be bool"),
    ("name=[1]", "name=[1] should be str"),
    ("limit=high", "limit='high' should be float or null"),
    ("tags=a", "tags='a' should be a list"),
    ("tags=[1]", "tags[0]=1 should be str"),
    ("weights.x=big", "weights.x='big' should be float"),
    ("inner=3", "inner should be a mapping of Inner fields, got 3"),
    ("inner.size=x", "inner.size='x' should be int"),
])
def test_type_errors_name_key_and_value(override, problem):
    with pytest.raises(UserError) as e:
        load_config(Sample, None, [override])
    assert problem in str(e.value)


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(UserError) as e:
        load_config(MemoryConfig, yaml_file(tmp_path, "topk: 3\n"))
    valid = ", ".join(sorted(f.name for f in dataclasses.fields(MemoryConfig)))
    assert str(e.value) == f"{tmp_path / 'c.yaml'}: unknown key 'topk'; valid keys: {valid}"
    assert "top_k" in valid and "embedder" in valid
    with pytest.raises(UserError) as e:
        load_config(MemoryConfig, None, ["embedder.nme=foo"])
    valid = ", ".join(sorted(f.name for f in dataclasses.fields(EmbedderConfig)))
    assert str(e.value) == f"config: unknown key 'embedder.nme'; valid keys: {valid}"


def test_all_problems_collected_into_one_error(tmp_path):
    path = yaml_file(tmp_path, "top_k: 0\nkey: title\nbogus: 1\nembedder:\n  batch_size: many\n")
    with pytest.raises(UserError) as e:
        load_config(MemoryConfig, path, ["shards=-1"])
    msg = str(e.value)
    assert msg.startswith(str(path) + ": ") and "\n" not in msg
    for problem in ("memory.top_k=0 must be > 0", "memory.key='title' is not one of question",
                    "unknown key 'bogus'", "embedder.batch_size='many' should be int",
                    "memory.shards=-1 must be > 0"):
        assert problem in msg


@pytest.mark.parametrize("cls, override, problem", [
    (EvalConfig, "sizes=5", "sizes=5 should be a list"),
    (EvalConfig, "methods=lte", "methods='lte' should be a list"),
    (CorpusConfig, "max_distractors=two", "max_distractors='two' should be int"),
    (CorpusConfig, "rewrite_share=half", "rewrite_share='half' should be float"),
    (AlignConfig, "warmup_ratio=[1]", "warmup_ratio=[1] should be float"),
    (ServeConfig, "port=http", "port='http' should be int"),
])
def test_wrong_types_in_stage_configs_give_a_user_error_not_a_crash(cls, override, problem):
    # The checks in __post_init__ must not trip over a value whose type is already reported.
    with pytest.raises(UserError) as e:
        load_config(cls, None, [override])
    assert problem in str(e.value)


def test_checks_run_when_a_config_is_built_in_code():
    with pytest.raises(UserError, match="memory.top_k=0 must be > 0"):
        MemoryConfig(top_k=0)
    # A failed load leaves no collected state behind.
    with pytest.raises(UserError):
        load_config(MemoryConfig, None, ["top_k=0", "shards=0"])
    with pytest.raises(UserError, match="memory.shards=0 must be > 0"):
        MemoryConfig(shards=0)


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(EditorConfig, None, ["memory.top_k=3", "memory.threshold=0.42",
                                           "model.max_new_tokens=8", "batch_size=4"])
    path = save_config(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert load_config(EditorConfig, path) == cfg
    assert format_config(cfg) == path.read_text().rstrip()

    sample = build_config(Sample, {"rate": 2.5e-5, "inners": [{"size": 3}], "weights": {"a": 1}})
    assert load_config(Sample, save_config(sample, tmp_path, "s.yaml")) == sample


def test_parse_overrides_shapes_and_errors():
    assert parse_overrides(["a.b.c=1", "a.d=x", "e=[1, 2]"]) == {
        "a": {"b": {"c": 1}, "d": "x"}, "e": [1, 2]}
    assert parse_overrides(["a=b=c"]) == {"a": "b=c"}
    with pytest.raises(UserError, match="override 'top_k' should look like key.sub=value"):
        parse_overrides(["top_k"])
    with pytest.raises(UserError, match="conflicts with another override of 'a'"):
        parse_overrides(["a=1", "a.b=2"])


def test_read_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        read_yaml(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        read_yaml(yaml_file(tmp_path, "a: [1, 2\n", "bad.yaml"))
    with pytest.raises(UserError, match="list.yaml: a config must be a mapping"):
        read_yaml(yaml_file(tmp_path, "- a\n- b\n", "list.yaml"))
    assert read_yaml(yaml_file(tmp_path, "# only a comment\n", "empty.yaml")) == {}


def test_stage_config_class():
    assert stage_config_class("memory") is MemoryConfig
    assert stage_config_class("eval") is EvalConfig
    assert all(stage_config_class(name) is cls for name, cls in STAGES.items())
    with pytest.raises(UserError, match="no config class for stage 'nope'"):
        stage_config_class("nope")


def test_direct_construction_and_replace_check_like_a_load():
    # Types too, not only the rules in `check`; and every problem at once, not the first.
    with pytest.raises(UserError) as e:
        MemoryConfig(top_k="3", shards=0, key="title")
    msg = str(e.value)
    assert "top_k='3' should be int" in msg and "memory.shards=0 must be > 0" in msg
    assert "memory.key='title'" in msg and "\n" not in msg
    cfg = MemoryConfig(top_k=2)
    with pytest.raises(UserError, match="memory.top_k=0 must be > 0"):
        dataclasses.replace(cfg, top_k=0)
    with pytest.raises(UserError, match="embedder.batch_size=0 must be > 0"):
        dataclasses.replace(cfg, embedder=dataclasses.replace(cfg.embedder, batch_size=0))
    assert dataclasses.replace(cfg, top_k=3).top_k == 3
    assert AlignConfig(lr=1).lr == 1.0 and isinstance(AlignConfig(lr=1).lr, float)


@pytest.mark.parametrize("override", ["threshold=.nan", "threshold=.inf", "retrain_factor=-.inf",
                                      "embedder.hashing_dim=.nan"])
def test_non_finite_numbers_are_refused(override, tmp_path):
    # A NaN threshold would fail every comparison and so turn the relevance gate off silently.
    with pytest.raises(UserError) as e:
        load_config(MemoryConfig, None, [override])
    key = override.split("=")[0]
    assert key in str(e.value) and ("finite" in str(e.value) or "should be int" in str(e.value))
    with pytest.raises(UserError, match="threshold=nan should be a finite number"):
        load_config(MemoryConfig, yaml_file(tmp_path, "threshold: .NaN\n"))
    with pytest.raises(UserError, match="threshold=inf should be a finite number"):
        MemoryConfig(threshold=float("inf"))


@pytest.mark.parametrize("text", ["a: " + "[" * 100_000 + "]" * 100_000 + "\n",
                                  '{"a": ' * 100_000 + "1" + "}" * 100_000,
                                  "architecture: " + "[" * 40 + "]" * 40 + "\n"])
def test_deeply_nested_config_is_one_line(tmp_path, text):
    path = yaml_file(tmp_path, text, "deep.json")
    with pytest.raises(UserError) as e:
        load_config(AlignConfig, path)
    assert str(e.value) == f"{path}: nested deeper than 32 levels"
    with pytest.raises(UserError, match="override 'architecture=.*nested deeper than 32"):
        load_config(AlignConfig, None, ["architecture=" + "[" * 100_000])


def test_bad_yaml_inside_an_override_names_the_override():
    for override in ("tags=[a, b", "weights={x: 1", "name=!!python/object:os.system x",
                     "name=a: b: c"):
        with pytest.raises(UserError) as e:
            parse_overrides([override])
        assert str(e.value).startswith(f"override '{override}': not valid YAML (")
        assert "\n" not in str(e.value)


def test_non_utf8_config_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("out: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        read_yaml(path)
    assert str(e.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 8)"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_field_is_documented_and_reaches_help(stage, capsys):
    from lte.config.docs import describe, field_docs

    def walk(cls):
        docs, hints = field_docs(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            for tp in (hints[f.name], *typing.get_args(hints[f.name])):
                if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                    walk(tp)

    walk(STAGES[stage])
    lines = describe(STAGES[stage])
    assert len(lines) >= len(dataclasses.fields(STAGES[stage]))
