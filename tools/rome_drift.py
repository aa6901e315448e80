"""Where sequential ROME loses its edits: ROME applied edit after edit, measured as it goes.

    python tools/rome_drift.py                                  # shipped tiny model, ZsRE, N=100
    python tools/rome_drift.py --n 100 rome.update_key=templates rome.clamp_norm_factor=1

At 1, 10, 25, 50 and N edits: Edit Succ of each edit right after its own insert (what one edit
can do) and of all edits so far (what survives the later ones), Locality against the unedited
model's predictions (first locality question of every case), and the size of the accumulated
change |W - W0| against |W0|. Teacher-forced token accuracy on raw text, as `lte eval` scores
ROME, on the cases `lte eval` samples (same seed). Config and overrides as `lte eval`'s.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/eval/tiny.yaml")
    ap.add_argument("--data", default="../shared/data/knowedit/ZsRE-test-all.json")
    ap.add_argument("--n", type=int, default=100, help="edits applied one after another")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("overrides", nargs="*", help="key=value, as lte eval's")
    args = ap.parse_args()

    import torch

    from lte.config import EvalConfig, load_config
    from lte.data.readers import read_records
    from lte.editor import LTEEditor
    from lte.eval import metrics as M
    from lte.eval.rome import ROME
    from lte.eval.run import sample_records
    from lte.modeling.load import load_model_and_tokenizer
    from lte.prompts import RAW

    cfg = load_config(EvalConfig, args.config, args.overrides)
    model, tok = load_model_and_tokenizer(cfg.model.name_or_path)
    editor = LTEEditor(model, tok, None, top_k=1, batch_size=cfg.batch_size,
                       max_new_tokens=cfg.model.max_new_tokens)
    records = sample_records(read_records(args.data), cfg.seed)[:args.n]
    rome = ROME(editor, cfg.rome, seed=cfg.seed)
    rome.prepare(records)

    rewrites = [RAW.encode(tok, r.prompt, [], r.target_new) for r in records]
    local = [RAW.encode(tok, qas[0].prompt, [], qas[0].answer)
             for r in records for qas in r.locality.values() if qas]
    unedited = [p.predicted for p in editor.predict_pairs(local)]

    def edit_succ(idx) -> float:
        return M.mean(p.accuracy for p in editor.predict_pairs([rewrites[i] for i in idx]))

    def locality() -> float:
        return M.mean(M.agreement(u, p.predicted)
                      for p, u in zip(editor.predict_pairs(local), unedited, strict=True))

    w0 = rome.module.weight.detach().clone()
    rows = [{"edits": 0, "own_insert": None, "all_so_far": edit_succ(range(len(records))),
             "locality": 1.0, "dW_over_W0": 0.0}]
    own, start = [], time.perf_counter()
    marks = {m for m in (1, 10, 25, 50, args.n) if m <= args.n}
    for i, r in enumerate(records):
        rome.insert([r])
        own.append(edit_succ([i]))
        if i + 1 in marks:
            rows.append({"edits": i + 1, "own_insert": sum(own) / len(own),
                         "all_so_far": edit_succ(range(i + 1)), "locality": locality(),
                         "dW_over_W0": ((rome.module.weight - w0).norm() / w0.norm()).item(),
                         "seconds": round(time.perf_counter() - start, 1)})
    rome.reset()
    assert torch.equal(rome.module.weight, w0)

    print(f"ROME edit after edit: {cfg.model.name_or_path}, {args.data}, layer {rome.layer}, "
          f"{' '.join(args.overrides) or 'config as is'} (row 0: no edit, all {len(records)} cases)")
    print("| edits | Edit Succ right after its insert | Edit Succ of all so far | Locality "
          "| abs(W - W0) / abs(W0) |\n|---|---|---|---|---|")
    for row in rows:
        own_txt = "-" if row["own_insert"] is None else f"{100 * row['own_insert']:.1f}"
        print(f"| {row['edits']} | {own_txt} | {100 * row['all_so_far']:.1f} "
              f"| {100 * row['locality']:.1f} | {row['dW_over_W0']:.2f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"overrides": args.overrides, "data": args.data, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
