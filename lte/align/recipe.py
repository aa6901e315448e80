"""The alignment run, top to bottom: config -> corpus -> model -> Trainer (+ DeepSpeed) -> final/.

The same function serves `lte align` under torchrun / the deepspeed launcher / srun (one process
per device) and a plain single-process call (the demo). Global batch is fixed by the config and
the gradient accumulation is derived from the world size, so a run means the same on 1 GPU or 64.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lte.align import distributed as dist
from lte.align.answer_logits import AnswerLogits
from lte.align.checkpoint import checkpoints, code_version, newest_checkpoint
from lte.align.data import ExampleDataset, load_corpus, read_manifest
from lte.align.preemption import make_callback as preemption_callback
from lte.align.sampling import LengthGroupedSampler
from lte.align.tracking import (
    ComputedTokens,
    Throughput,
    flops_per_token,
    log_run_config,
    peak_memory,
    peak_tflops,
    setup_wandb,
    training_log,
)
from lte.config import AlignConfig, format_config, save_config
from lte.errors import UserError
from lte.layout import FINAL_DIR, TOKENIZER_DIR, write_meta
from lte.modeling.batching import PadCollator
from lte.modeling.packing import PackedCollator, check_packing_support

log = logging.getLogger("lte.align")
VERIFY_FILE = "verify_save.safetensors"


def grad_accumulation(global_batch: int, micro_batch: int, world: int) -> int:
    """Accumulation steps that keep `global_batch` sequences per optimizer step."""
    per_step = micro_batch * world
    if global_batch % per_step:
        fits = [m for m in range(1, global_batch + 1) if global_batch % (m * world) == 0]
        raise UserError(f"global_batch_size={global_batch} is not a multiple of "
                        f"micro_batch_size x processes = {micro_batch} x {world}; micro batch "
                        f"sizes that fit {world} processes: {', '.join(map(str, fits[:8]))}",
                        field="micro_batch_size")
    return global_batch // per_step


def _use_cpu(cfg: AlignConfig) -> bool:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda, but no CUDA device is visible", field="device")
    return cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def _resume_point(cfg: AlignConfig, resume: bool) -> Path | None:
    found = newest_checkpoint(cfg.out)
    if found and not resume:
        raise UserError(f"holds checkpoints ({', '.join(p.name for p in checkpoints(cfg.out))}); "
                        "pass --resume to continue, or choose another --out", file=cfg.out)
    if resume and not found:
        log.warning("--resume: no complete checkpoint in %s; starting from step 0", cfg.out)
    return found


def _trainer_kwargs(cfg: AlignConfig, accumulation: int, report_to: list[str],
                    run_name: str) -> dict:
    """TrainingArguments fields from the config (the session adds DeepSpeed and the device)."""
    import dataclasses

    from transformers import TrainingArguments

    # transformers 5 renamed these; 4.x takes the old names (and a warmup ratio field).
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else \
        "gradient_checkpointing"
    warmup = "warmup_ratio" if "warmup_ratio" in names else "warmup_steps"  # < 1: a ratio
    return dict(
        output_dir=cfg.out, run_name=run_name, report_to=report_to or "none",
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler, **{warmup: cfg.warmup_ratio},
        weight_decay=cfg.weight_decay, adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.precision == "bf16", fp16=cfg.precision == "fp16",
        **{ckpt: cfg.gradient_checkpointing, f"{ckpt}_kwargs": {"use_reentrant": False}},
        seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, dataloader_num_workers=cfg.dataloader_workers,
        remove_unused_columns=False,
        # a packed row has no padding and no attention_mask to count it by: count every token
        include_num_input_tokens_seen="all" if cfg.packing == "padding_free" else "non_padding",
    )


def _tokenizer_name(cfg: AlignConfig) -> str:
    """The configured tokenizer; else the one the corpus trained for itself; else the model's."""
    if cfg.tokenizer:
        return cfg.tokenizer
    manifest, _ = read_manifest(cfg.corpus)
    trained = Path(cfg.corpus) / TOKENIZER_DIR
    if manifest.get("tokenizer") == "train" and trained.is_dir():
        return str(trained)
    return cfg.model.name_or_path


def _load_tokenizer(cfg: AlignConfig):
    from lte.modeling.load import load_tokenizer

    return load_tokenizer(_tokenizer_name(cfg), cfg.model.chat_format,
                          cfg.model.trust_remote_code)


def _build_model(cfg: AlignConfig, tokenizer):
    """Pretrained weights, or fresh ones of the same architecture (+ `architecture` overrides).

    Built after `Session.training_args`, so that under ZeRO-3 every rank only holds its partition.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed

    from lte.modeling.load import resolve_model_path

    path = resolve_model_path(cfg.model.name_or_path)
    dtype = getattr(torch, cfg.model.dtype)
    set_seed(cfg.seed)
    try:
        if cfg.init == "scratch":
            config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
            overrides = {"vocab_size": len(tokenizer), **cfg.architecture}
            resized = {"hidden_size", "num_attention_heads"} & set(cfg.architecture)
            if getattr(config, "head_dim", None) and resized and "head_dim" not in overrides:
                # a stored head_dim belongs to the old shape; derive it from the new one
                hidden = overrides.get("hidden_size", config.hidden_size)
                overrides["head_dim"] = hidden // overrides.get("num_attention_heads",
                                                                config.num_attention_heads)
            for key, value in overrides.items():
                if not hasattr(config, key):
                    raise UserError(f"the {config.model_type} config has no field '{key}'",
                                    field=f"architecture.{key}")
                setattr(config, key, value)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype,
                                                     trust_remote_code=cfg.model.trust_remote_code)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise UserError(f"cannot load model '{cfg.model.name_or_path}' "
                        f"({str(e).splitlines()[0]})", field="model.name_or_path") from None
    model.config.use_cache = False  # no KV cache in training; required by checkpointing
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def save_initial_model(cfg: AlignConfig, out: str | Path) -> Path:
    """The model `run_alignment(cfg)` starts from (same seed, tokenizer and architecture), as an
    HF folder: the "before alignment" model of the prompt-only baseline for a from-scratch run."""
    tokenizer = _load_tokenizer(cfg)
    model = _build_model(cfg, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def _make_trainer(cfg, args, model, dataset, collator, throughput, meta_for_wandb, preemption,
                  sampler=None):
    from transformers import Trainer, TrainerCallback

    computed = ComputedTokens(dist.world_size())
    narrow = AnswerLogits(model) if cfg.head_positions == "labels" else None

    class AlignTrainer(Trainer):
        def compute_loss(self, model, inputs, *a, **kw):
            if narrow is not None:
                narrow.expect(inputs)
            return super().compute_loss(model, inputs, *a, **kw)

        def log(self, logs, *a, **kw):
            if "loss" in logs:  # training logs only, not the final summary
                now = time.perf_counter()
                logs.update(throughput.update(self.state.num_input_tokens_seen, now))
                logs.update(computed.update(now))
                logs.update(peak_memory())
            super().log(logs, *a, **kw)

        def training_step(self, model, inputs, *a, **kw):
            computed.count(inputs)
            return super().training_step(model, inputs, *a, **kw)

        def _get_train_sampler(self, *a, **kw):  # group_by_length: ours, seeded per epoch
            return sampler or super()._get_train_sampler(*a, **kw)

    class RunInfo(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            throughput.update(state.num_input_tokens_seen, time.perf_counter())
            computed.update(time.perf_counter())
            # start_step: where this rank (re)started; a resume must agree on it across ranks
            part = {**dist.partition_summary(model), "start_step": state.global_step}
            rank_dir = Path(cfg.out) / "ranks"
            rank_dir.mkdir(parents=True, exist_ok=True)
            (rank_dir / f"rank{part['rank']}.json").write_text(json.dumps(part) + "\n")
            if dist.is_main():
                log.info("partition on rank 0: %s", part)
                if args.report_to and "wandb" in args.report_to:
                    log_run_config(meta_for_wandb)

    return AlignTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                        callbacks=[RunInfo(), preemption],
                        compute_loss_func=narrow.loss if narrow is not None else None)


def _collator_and_sampler(cfg: AlignConfig, model, tokenizer, examples: list[dict], use_cpu: bool):
    """packing / group_by_length: how micro batches are cut and in which order they come."""
    if cfg.packing == "padding_free":
        check_packing_support(model.config, cfg.model.trust_remote_code)
        flash = str(getattr(model.config, "_attn_implementation", "")).startswith("flash")
        return PackedCollator(flash_attn_kwargs=flash), None
    collator = PadCollator(tokenizer.pad_token_id, pad_to_multiple_of=None if use_cpu else 8)
    sampler = LengthGroupedSampler([len(e["input_ids"]) for e in examples],
                                   cfg.micro_batch_size, cfg.seed) if cfg.group_by_length else None
    return collator, sampler


def _verify_save(session, trainer, final: Path, example: dict, out: Path) -> dict:
    """Logits of the trained engine vs. the reloaded final/ folder on one corpus example.

    Under ZeRO-3 the engine's forward gathers parameters collectively, so every rank runs it.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([example["input_ids"][:64]])
    module = session.unwrap(trainer)
    module.eval()
    device = next(module.parameters()).device
    with torch.no_grad():
        trained = module(input_ids=ids.to(device)).logits.float().cpu()
    result = {}
    if dist.is_main():
        with session.outside_zero3():
            reloaded = AutoModelForCausalLM.from_pretrained(final, dtype="auto")
        reloaded.to(device).eval()  # same device, same kernels: differences are the weights'
        with torch.no_grad():
            again = reloaded(input_ids=ids.to(device)).logits.float().cpu()
        diff = float((again - trained).abs().max())
        tol = 1e-4 if next(reloaded.parameters()).dtype == torch.float32 else 5e-2
        result = {"max_abs_logit_diff": diff, "tolerance": tol, "ok": diff <= tol}
        save_file({"input_ids": ids, "logits": trained.contiguous()}, str(out / VERIFY_FILE))
    return dist.broadcast_object(result)


@dataclass
class _Run:
    """What setup hands to train and finish."""

    cfg: AlignConfig
    trainer: object
    tokenizer: object
    corpus: object
    meta: dict
    resume_from: Path | None
    preemption: object  # lte.align.preemption's callback: .stopped_at


def run_alignment(cfg: AlignConfig, resume: bool = False) -> Path:
    """Train per `cfg`; returns the final checkpoint folder (`cfg.out`/final), or the
    `checkpoint-N` folder saved when a pre-emption signal stopped training (`lte.align.preemption`).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with dist.Session(cfg.deepspeed, _use_cpu(cfg)) as session:
        run = _setup(cfg, session, resume)
        stopped_at = _train(run)
        if stopped_at is not None:
            saved = Path(cfg.out) / f"checkpoint-{stopped_at}"
            if dist.is_main():
                log.warning("stopped by the pre-emption signal; %s is the resume point "
                            "(--resume)", saved)
            return saved
        return _finish(run, session)


def _setup(cfg: AlignConfig, session: dist.Session, resume: bool) -> _Run:
    """Arguments, tokenizer, corpus and model; the run folder's config; the Trainer."""
    import torch

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    accumulation = grad_accumulation(cfg.global_batch_size, cfg.micro_batch_size, session.world)
    ckpt = _resume_point(cfg, resume)
    run_name = cfg.wandb.run_name or Path(cfg.out).resolve().name
    args = session.training_args(**_trainer_kwargs(cfg, accumulation, setup_wandb(cfg, run_name),
                                                   run_name))
    tokenizer = _load_tokenizer(cfg)
    corpus = load_corpus(cfg.corpus, tokenizer, cfg.max_length)
    model = _build_model(cfg, tokenizer)
    n_params = session.param_count(model)
    throughput = Throughput(flops_per_token(model.config, n_params, corpus.tokens /
                                            len(corpus.examples)), peak_tflops(cfg), session.world)
    meta = {
        "config": asdict(cfg), "corpus_manifest_sha256": corpus.manifest_sha256,
        "corpus_manifest": corpus.manifest, "code_version": code_version(),
        "world_size": session.world, "gradient_accumulation": accumulation,
        "zero_stage": session.zero_stage, "parameters": n_params,
        "examples": len(corpus.examples), "examples_truncated": corpus.truncated,
        "examples_dropped": corpus.dropped, "resumed_from": str(ckpt) if ckpt else None,
    }
    if dist.is_main():
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg.out)
        log.info("resolved config:\n%s", format_config(cfg))
        log.info("%d examples (%d truncated, %d dropped), %d processes x micro batch %d x "
                 "accumulation %d = global batch %d, %.1fM parameters, ZeRO stage %d",
                 len(corpus.examples), corpus.truncated, corpus.dropped, session.world,
                 cfg.micro_batch_size, accumulation, cfg.global_batch_size, n_params / 1e6,
                 session.zero_stage)
    collator, sampler = _collator_and_sampler(cfg, model, tokenizer, corpus.examples,
                                              session.use_cpu)
    preemption = preemption_callback()
    trainer = _make_trainer(cfg, args, model, ExampleDataset(corpus.examples), collator,
                            throughput, meta, preemption, sampler)
    return _Run(cfg, trainer, tokenizer, corpus, meta, ckpt, preemption)


def _train(run: _Run) -> int | None:
    """The Trainer's loop; the step a pre-emption signal stopped it at, else None."""
    run.trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    return run.preemption.stopped_at


def _finish(run: _Run, session: dist.Session) -> Path:
    """final/ (gathered weights + tokenizer), its check against the engine, lte_meta.json."""
    cfg, trainer, meta = run.cfg, run.trainer, run.meta
    out = Path(cfg.out)
    final = out / FINAL_DIR
    trainer.save_model(str(final))  # ZeRO-3: gathers the 16-bit weights onto rank 0
    if dist.is_main():
        (final / "training_args.bin").unlink(missing_ok=True)  # a pickle; checkpoints keep theirs
        run.tokenizer.save_pretrained(final)
    if cfg.verify_save:
        dist.barrier()
        meta["verify_save"] = _verify_save(session, trainer, final, run.corpus.examples[0], out)
        if not meta["verify_save"]["ok"]:
            raise RuntimeError(f"saved checkpoint differs from the trained engine: "
                               f"{meta['verify_save']}")
    if dist.is_main():
        meta["global_step"] = trainer.state.global_step
        meta.update(training_log(trainer.state.log_history))
        write_meta(final, meta)
        write_meta(out, meta)
        log.info("final checkpoint: %s", final)
    return final
