"""Reports of an evaluation: results.json, results.md tables, PNG plots per metric, W&B table."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from lte.errors import UserError
from lte.eval.aggregate import MARKDOWN_AGGREGATIONS
from lte.eval.metrics import EXTRA_METRICS, HEADLINE_METRICS

# Scaled x100 in tables like KnowEdit's (fluency is already on its x100 scale).
_PERCENT = {"edit_succ", "portability", "locality", "rephrase_succ", "gen_em",
            "retrieval_hit1", "retrieval_hitk"}


def _columns(runs: list[dict]) -> list[str]:
    present = {k for r in runs for k, v in r["metrics"].items() if v is not None}
    cols = [m for m in HEADLINE_METRICS + EXTRA_METRICS if m in present]
    cols += sorted(k for k in present if k.startswith(("portability_", "locality_")))
    return cols


def _fmt(name: str, value) -> str:
    if value is None:
        return "-"
    if name in _PERCENT or name.startswith(("portability_", "locality_")):
        return f"{100 * value:.2f}"
    return f"{value:.2f}"


def _aggregation(run: dict) -> str:
    return run.get("aggregation", "lte")  # results written before aggregations were named


def _label(run: dict) -> str:
    return run["protocol"] if run["phase"] == "final" else f"{run['protocol']} ({run['phase']})"


def render_markdown(results: dict) -> str:
    """One table per dataset x protocol phase x size x aggregation; rows are methods.

    Aggregations `lte` and `knowedit` are rendered (lte.eval.aggregate); all are in results.json.
    """
    runs = [r for r in results["runs"] if _aggregation(r) in MARKDOWN_AGGREGATIONS]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["dataset"], _label(r), r["size"], _aggregation(r))].append(r)
    model = results.get("config", {}).get("model", {}).get("name_or_path", "?")
    lines = ["# Evaluation results", "", f"Model: `{model}`. Accuracies and locality in %, "
             "fluency = 100 x n-gram entropy (`fluency`: the reference's, `fluency_gen`: ours), "
             "times in ms (formulas: lte/eval/metrics.py). Aggregation `lte`: every question; "
             "`knowedit`: the first question of each aspect, over the cases having it "
             "(lte/eval/aggregate.py).", ""]
    for (dataset, label, size, aggregation), rows in groups.items():
        cols = _columns(rows)
        lines += [f"## {dataset} - {label} - N={size} - aggregation: {aggregation}", "",
                  "| method | cases | " + " | ".join(cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for r in rows:
            cells = [_fmt(c, r["metrics"].get(c)) for c in cols]
            lines.append(f"| {r['method']} | {r['n_cases']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, out: Path) -> list[Path]:
    """metric_<name>.png: the metric against N, one line per dataset/method/protocol phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if _aggregation(r) == "lte"]
    paths = []
    for metric in _columns(runs):
        lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in runs:
            v = r["metrics"].get(metric)
            if v is not None:
                lines[f"{r['dataset']} {r['method']} {_label(r)}"].append((r["size"], v))
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("number of edits N")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = out / f"metric_{metric}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_all(results: dict, out: Path) -> None:
    out = Path(out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(render_markdown(results))
    plot(results, out)


def load(out_dir: str | Path) -> dict:
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise UserError("no results.json here; run `lte eval --out DIR` first", file=str(path))
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"not valid JSON ({e})", file=str(path)) from None
    except RecursionError:
        raise UserError("not an lte eval results file (nested too deep)", file=str(path)) from None
    if not isinstance(results, dict) or not isinstance(results.get("runs"), list):
        raise UserError("not an lte eval results file (no 'runs' list)", file=str(path))
    for i, run in enumerate(results["runs"]):
        _check_run(run, i, path)
    return results


# What the tables and plots read of each run, and the types they need.
_RUN_FIELDS = {"dataset": str, "method": str, "protocol": str, "phase": str, "size": int,
               "n_cases": int, "metrics": dict}


def _check_run(run, i: int, path: Path) -> None:
    if not isinstance(run, dict):
        raise UserError("each run is an object", file=str(path), record=i)
    for name, kind in _RUN_FIELDS.items():
        value = run.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"needs a {kind.__name__}, got {value!r:.60}", file=str(path),
                            record=i, field=name)
    for name, value in run["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"a metric is a number or null, got {value!r:.60}", file=str(path),
                            record=i, field=f"metrics.{name}")


def log_wandb(results: dict, project: str, out: Path, memory: dict | None = None) -> None:
    """W&B run of an evaluation (offline without an API key): the resolved config, one table per
    method and one of all runs, the metric plots, each run's metrics in the summary, and the
    memory's size (`memory/*`)."""
    from lte.tracking import table, wandb_run

    config = results.get("config") or {}
    runs = results["runs"]
    job = "eval-serve" if config.get("backend") == "serve" else "eval"
    with wandb_run(project, job, config=config, name=Path(out).name, folder=out) as run:
        if run is None:
            return
        import wandb

        cols = _columns(runs)
        head = ["dataset", "method", "protocol", "phase", "size", "n_cases", "aggregation"]
        rows = [[r[h] for h in head[:-1]] + [_aggregation(r)] + [r["metrics"].get(c) for c in cols]
                for r in runs]
        logged = {"results": table(head + cols, rows)}
        for method in dict.fromkeys(r["method"] for r in runs):
            logged[f"results/{method}"] = table(head + cols,
                                                [row for row in rows if row[1] == method])
        for path in sorted(Path(out).glob("metric_*.png")):
            logged[f"plots/{path.stem}"] = wandb.Image(str(path))
        run.log(logged)
        for r in runs:
            prefix = f"{r['dataset']}/{r['method']}/{r['protocol']}-{r['phase']}/N{r['size']}"
            for c in cols:
                if r["metrics"].get(c) is not None:
                    run.summary[f"{prefix}/{c}"] = r["metrics"][c]
        for key, value in (memory or {}).items():
            run.summary[f"memory/{key}"] = value
