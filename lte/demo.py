"""`lte demo`: the whole LTE loop on the embedded default, on a laptop CPU, offline.

synthetic world -> parallel corpus (Ray Data, local) -> a short alignment run through the real
entry point -> edit memory (MiniLM + FAISS + SQLite log) -> the shipped pre-aligned tiny
checkpoint answers held-out edits. Everything lands under `--out`; `metrics.json` holds the
shipped checkpoint's figures on edits it never saw in training.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from lte.config import DemoConfig
from lte.config.cli import add_config_args, stage_config
from lte.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole loop on the embedded default (CPU, offline, ~10 min)",
        description=__doc__)
    p.add_argument("--out", default=None, help="output folder (default: ./lte-demo)")
    add_config_args(p, DemoConfig, preset=False)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from lte.config import format_config

    cfg = stage_config(args, DemoConfig, {"out": "out"})
    print(format_config(cfg), flush=True)
    run_demo(cfg)
    return 0


class _Stages:
    """Times each stage and prints one banner line per stage, so a reader sees where time goes."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"--- {name}: {self.seconds[name]:.1f} s", flush=True)
        return result


def run_demo(cfg: DemoConfig) -> dict:
    out = Path(cfg.out)
    for name in ("align", "memory"):  # before minutes of work, not after
        _check_own(out / name)
    out.mkdir(parents=True, exist_ok=True)
    from lte.config import save_config

    save_config(cfg, out)
    stages = _Stages()
    world = stages.run("1. synthetic world", _synth_world, cfg, out)
    corpus = stages.run("2. parallel corpus (Ray Data)", _build_corpus, cfg, out)
    align = stages.run("3. alignment (short run, real entry point)", _align, cfg, out)
    gate = stages.run("4. relevance gate calibrated on a dev world", _calibrate, cfg)
    memory, ids = stages.run("5. edit memory (MiniLM + FAISS + SQLite log)", _memory, cfg, out,
                             world, gate)
    result, editor = stages.run("6. shipped pre-aligned checkpoint answers held-out edits",
                                _answer, cfg, out, world, memory, ids)
    memory.close()
    real = (stages.run("7. real-world edits (written for the demo)", _real_world, out, gate,
                       editor) if cfg.real_edits else None)

    metrics = {
        "model": cfg.model,
        "n_heldout_edits": len(world),
        **{k: result["metrics"][k] for k in ("edit_succ", "rephrase_succ", "locality",
                                             "retrieval_hit1")},
        "gen_em": result["metrics"].get("gen_em"),
        "portability": result["metrics"].get("portability"),
        "fluency": result["metrics"].get("fluency"),
        "relevance_gate": gate,
        "without_gate": result.get("without_gate"),
        "stage_seconds": stages.seconds,
        "corpus": {k: corpus[k] for k in ("examples", "capability", "n_descriptors")
                   if k in corpus},
        "short_alignment": align,
        "real_world": real,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _print_summary(metrics, result["table"], out)
    return metrics


# Real questions about nothing the demo edits: their answers must not move.
UNRELATED_QUESTIONS = ("What is the capital of France?", "Who painted the Mona Lisa?",
                       "Which planet is closest to the Sun?")
REAL_EDITS = Path(__file__).resolve().parent / "assets" / "demo-real-edits.jsonl"


# ---- stages ------------------------------------------------------------------------------------


def _synth_world(cfg: DemoConfig, out: Path):
    """Held-out edits: a world seed the shipped checkpoint never trained on."""
    from lte.data.readers import read_records
    from lte.data.synth import write_world

    path = write_world(out / "heldout-world.json", cfg.heldout_edits, cfg.heldout_seed)
    records = read_records(path)
    print(f"{len(records)} held-out edits (seed {cfg.heldout_seed}) -> {path}")
    return records


def _build_corpus(cfg: DemoConfig, out: Path) -> dict:
    from lte.config import CorpusConfig, load_config
    from lte.corpus.build import build_corpus

    ccfg = load_config(CorpusConfig, _preset("corpus"), [
        f"synth_edits={cfg.corpus_edits}", f"max_instructions={cfg.corpus_edits // 2}",
        f"tokenizer={cfg.model}",
        f"out={out / 'corpus'}"])
    manifest = build_corpus(ccfg, out / "corpus")
    print(f"corpus: {manifest.get('examples')} examples -> {out / 'corpus'}")
    return manifest


# Written into each folder the demo creates and later replaces: `--out` may name a folder that
# holds someone's own memory or run, which the demo must never delete.
DEMO_MARKER = ".made-by-lte-demo"


def _check_own(folder: Path) -> None:
    if folder.exists() and not (folder / DEMO_MARKER).is_file():
        raise UserError(f"exists and was not made by `lte demo` (no {DEMO_MARKER}); the demo "
                        f"would replace it: pick another --out, or move it away",
                        file=str(folder))


def _clear_own(folder: Path) -> None:
    _check_own(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _mark_own(folder: Path) -> None:
    (folder / DEMO_MARKER).write_text("made by `lte demo`; a re-run replaces this folder\n")


def _align(cfg: DemoConfig, out: Path) -> dict:
    """A from-scratch tiny model for a minute or two: shows the stage runs, not a good editor."""
    from lte.align.recipe import run_alignment
    from lte.config import AlignConfig, load_config
    from lte.layout import read_meta

    _clear_own(out / "align")  # the demo's own earlier run: start afresh
    acfg = load_config(AlignConfig, _preset("align"), [
        f"corpus={out / 'corpus'}", f"out={out / 'align'}", "deepspeed=null",
        f"model.name_or_path={cfg.model}",
        f"max_steps={cfg.align_steps}", "save_steps=1000000", "torch_threads=2"])
    final = run_alignment(acfg)
    _mark_own(out / "align")
    losses = [e["loss"] for e in read_meta(final)["loss_history"]]
    figures = {"checkpoint": str(final), "steps": cfg.align_steps,
               "loss_first": losses[0] if losses else None,
               "loss_last": losses[-1] if losses else None}
    print(f"short alignment: loss {figures['loss_first']} -> {figures['loss_last']} over "
          f"{cfg.align_steps} steps; checkpoint {final}")
    return figures


def _calibrate(cfg: DemoConfig) -> dict:
    """The similarity threshold below which a retrieved edit is not shown (after RECIPE).

    Chosen on a dev world (another seed), never on the held-out edits: paraphrases of stored
    edits must pass, questions about other facts must not.
    """
    from lte.config import MemoryConfig
    from lte.data.synth import generate_world, to_edit_record
    from lte.memory.calibrate import calibrate

    if not cfg.gate:
        print("relevance gate off (gate=false): every query gets its top-1 edit, as in the paper")
        return {"threshold": None}
    dev = [to_edit_record(d) for d in generate_world(cfg.dev_edits, cfg.dev_seed)]
    cal = calibrate(dev, MemoryConfig(top_k=1))
    print(cal.summary())
    return cal.to_dict()


def _memory(cfg: DemoConfig, out: Path, records, gate: dict):
    from lte.config import MemoryConfig
    from lte.memory import EditMemory

    folder = out / "memory"
    _clear_own(folder)  # the demo's own earlier run: start from an empty memory
    memory = EditMemory.create(folder, MemoryConfig(top_k=1, threshold=gate["threshold"]))
    _mark_own(folder)
    t0 = time.perf_counter()
    ids = memory.add(records, show_progress=True)
    dt = time.perf_counter() - t0
    print(f"{len(ids)} edits stored in {dt:.1f} s ({len(ids) / max(dt, 1e-9):.0f} edits/s) "
          f"-> {folder}")
    return memory, ids


def _answer(cfg: DemoConfig, out: Path, records, memory, ids):
    """(figures, the editor): step 7 asks the same loaded model through another memory."""
    from lte.config import EditorConfig
    from lte.editor import LTEEditor
    from lte.eval.run import evaluate
    from lte.modeling.load import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(cfg.model)
    defaults = EditorConfig()
    editor = LTEEditor(model, tokenizer, memory, top_k=memory.top_k,
                       batch_size=defaults.batch_size, max_new_tokens=defaults.model.max_new_tokens)
    table = _before_after(editor, records[: cfg.table_rows])
    # The batch protocol inserts the edits itself (timing them) and removes them afterwards, so
    # it starts from a memory without the copies stored above.
    memory.delete(ids)
    metrics = evaluate(editor, records, protocol="batch")
    result = {"metrics": metrics, "table": table}
    gate = memory.threshold
    if gate is not None and cfg.compare_without_gate:
        # The paper's setting on the same memory: the top-1 edit is always shown.
        memory.set_threshold(None)
        plain = evaluate(editor, records, protocol="batch")
        result["without_gate"] = {k: plain[k] for k in ("edit_succ", "rephrase_succ", "locality",
                                                        "retrieval_hit1", "gen_em", "portability")}
        memory.set_threshold(gate)
    # Leave the held-out edits in DIR/memory, so `lte memory search DIR/memory "..."` finds them.
    memory.add(records)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result, editor


def _real_world(out: Path, gate: dict, editor) -> dict:
    """A handful of real edits (lte/assets/demo-real-edits.jsonl), each asked in other words,
    answered bare and with the memory; unrelated real questions before and after. `editor`:
    step 6's, pointed at a memory of these edits alone."""
    from lte.config import MemoryConfig
    from lte.data.readers import read_records
    from lte.editor import LTEEditor
    from lte.memory import EditMemory

    records = read_records(REAL_EDITS, "edit")
    folder = out / "memory-real"
    _clear_own(folder)
    memory = EditMemory.create(folder, MemoryConfig(top_k=1, threshold=gate["threshold"]))
    _mark_own(folder)
    memory.add(records)
    editor = LTEEditor(editor.model, editor.tokenizer, memory, top_k=1,
                       batch_size=editor.batch_size, max_new_tokens=editor.max_new_tokens)
    questions = [r.rephrase_prompts[0] for r in records] + list(UNRELATED_QUESTIONS)
    before = editor.answer(questions, descriptors=[[] for _ in questions])
    after = editor.answer(questions)
    memory.close()
    targets = [r.target_new for r in records] + [None] * len(UNRELATED_QUESTIONS)
    rows = [{"question": q, "no_edit": b.text, "with_edit": a.text, "target_new": t,
             "retrieved": a.hits[0].descriptor if a.hits else "",
             "score": round(a.hits[0].score, 3) if a.hits else None}
            for q, b, a, t in zip(questions, before, after, targets, strict=True)]
    edited = rows[:len(records)]
    unrelated = rows[len(records):]
    return {"edits": len(records), "rows": rows,
            "answered_new": sum(gives_answer(r["with_edit"], r["target_new"]) for r in edited),
            "unrelated_unchanged": sum(r["no_edit"] == r["with_edit"] for r in unrelated),
            "unrelated": len(unrelated)}


def gives_answer(answer: str, target: str) -> bool:
    """The answer gives the new object (the generation may run on after it)."""
    return " ".join(answer.casefold().split()).startswith(" ".join(target.casefold().split()))


def _before_after(editor, records) -> list[dict]:
    """A paraphrased question, answered bare and with the retrieved edit; an unrelated question."""
    questions = [r.rephrase_prompts[0] if r.rephrase_prompts else r.prompt for r in records]
    unrelated = [next(iter(r.locality.values()))[0] for r in records]
    before = editor.answer(questions, descriptors=[[] for _ in questions])
    after = editor.answer(questions)
    loc_before = editor.answer([qa.prompt for qa in unrelated],
                               descriptors=[[] for _ in unrelated])
    loc_after = editor.answer([qa.prompt for qa in unrelated])
    return [{"question": q, "no_edit": b.text, "with_edit": a.text, "target_new": r.target_new,
             "retrieved": a.hits[0].descriptor if a.hits else "",
             "unrelated_question": u.prompt, "unrelated_before": lb.text,
             "unrelated_after": la.text}
            for q, b, a, r, u, lb, la in zip(questions, before, after, records, unrelated,
                                             loc_before, loc_after, strict=True)]


# ---- helpers -----------------------------------------------------------------------------------


def _preset(stage: str) -> Path:
    """The shipped tiny preset of a stage (configs/ of the checkout the package runs from)."""
    from lte.errors import UserError

    path = Path(__file__).resolve().parents[1] / "configs" / stage / "tiny.yaml"
    if not path.is_file():
        raise UserError("the demo needs the configs/ folder of a checkout (run it from the "
                        "repository: make demo)", file=str(path))
    return path


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def _print_summary(metrics: dict, table: list[dict], out: Path) -> None:
    print("\n=== before / after (held-out edits, paraphrased questions) ===")
    for row in table:
        print(f"Q: {row['question']}")
        print(f"   no edit     : {row['no_edit']}")
        print(f"   with edit   : {row['with_edit']}   (new answer: {row['target_new']}; "
              f"retrieved: {row['retrieved']!r})")
        print(f"   unrelated Q : {row['unrelated_question']}")
        print(f"      before {row['unrelated_before']!r} / after {row['unrelated_after']!r}")
    print("\n=== stage times (s) ===")
    for name, s in metrics["stage_seconds"].items():
        print(f"{s:8.1f}  {name}")
    print(f"\n=== shipped checkpoint on {metrics['n_heldout_edits']} held-out edits ===")
    plain = metrics.get("without_gate") or {}
    print(f"{'':18s} {'with gate':>10s} {'no gate':>10s}   "
          f"(gate: similarity >= {metrics['relevance_gate'].get('threshold')})")
    for k in ("edit_succ", "rephrase_succ", "locality", "retrieval_hit1", "gen_em",
              "portability"):
        print(f"{k:18s} {_fmt(metrics.get(k)):>10s} {_fmt(plain.get(k)):>10s}")
    real = metrics.get("real_world")
    if real:
        print(f"\n=== real-world edits: {real['answered_new']}/{real['edits']} answered with the "
              f"new object, {real['unrelated_unchanged']}/{real['unrelated']} unrelated answers "
              f"unchanged ===")
        for row in real["rows"]:
            new = f"   (new answer: {row['target_new']})" if row["target_new"] else ""
            print(f"Q: {row['question']}\n   no edit {row['no_edit']!r} / with edit "
                  f"{row['with_edit']!r}{new}")
    print(f"\nwritten: {out / 'metrics.json'}")
