"""`lte eval --serve URL`: the methods' metrics computed through a live `lte serve`.

`RemoteEditor` offers the question-level part of `LTEEditor` that scoring uses (`edit`,
`forget`, `contexts`, `predict_tokens`, `answer`) over the HTTP API, so `lte.eval.scoring` and
the protocols run unchanged and the two backends give the same numbers: edits go in through
`POST /v1/edits` (in order, `serve_edit_batch` per request), every retrieval, teacher-forced
prediction and generation is one `POST /v1/query` (the predictions come back as token ids, from
which the metrics are computed here exactly as in-process). Requests run `serve_concurrency` at
a time, so several Generator replicas share the work.

Methods that cannot run against a server are refused up front: `ft-l` changes the model's
weights, `prompt-only` needs the model before alignment, which the server does not hold.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lte.config import EvalConfig
from lte.editor import Answer, TokenPrediction
from lte.errors import UserError
from lte.memory.memory import Hit
from lte.prompts import CHAT, PromptFormat

TOKEN_ENV = "LTE_API_TOKEN"  # the variable `lte serve` reads its write token from
REMOTE_METHODS = ("lte", "no-edit", "gold-context")
REFUSED = {
    "ft-l": "fine-tunes the model's weights, which a server does not let a client change",
    "ft-m": "fine-tunes the model's weights, which a server does not let a client change",
    "rome": "rewrites the model's weights, which a server does not let a client change",
    "ice": "scores raw-text prompts on the base model, which the server does not hold",
    "prompt-only": "needs the model before alignment, which the server does not hold",
}
MAX_TARGETS_PER_QUERY = 64  # the server's list limit (lte.serve.validation.MAX_LIST_ITEMS)


def _served_format(fmt: PromptFormat) -> None:
    # The server encodes every query as LTE was aligned (chat template, training wording).
    if fmt != CHAT:
        raise UserError(f"lte eval --serve scores the served prompt only (chat template, training "
                        f"wording), not {fmt.template}/{fmt.variant}", field="prompt_variant")


class RemoteEditor:
    """The serving tier behind `LTEEditor`'s question-level interface."""

    def __init__(self, url: str, token: str | None, top_k: int, concurrency: int = 16,
                 edit_batch: int = 64, timeout_s: float = 600.0, progress: bool = True):
        import httpx

        self.url = url.rstrip("/")
        self.top_k = top_k
        self.concurrency = concurrency
        self.edit_batch = edit_batch
        self.progress = progress
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency))
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lte-eval")

    # ---- HTTP ----------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict | None = None, ok=(200,)) -> dict:
        import httpx

        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise UserError(f"cannot reach the server at {self.url} ({type(e).__name__}: {e})",
                            field="serve_url") from None
        if r.status_code in ok:
            return r.json()
        if r.status_code == 401:
            raise UserError(f"the server refused the write token; set {TOKEN_ENV} to the "
                            "token `lte serve` was started with", field=TOKEN_ENV)
        try:
            err = r.json()["error"]
            detail = f"{err['field']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            detail = r.text[:200]
        if 400 <= r.status_code < 500:
            raise UserError(f"the server refused {method} {path} ({r.status_code}) {detail}",
                            field="serve_url")
        raise RuntimeError(f"{method} {self.url}{path} failed with {r.status_code}: {detail}")

    def _queries(self, bodies: list[dict], what: str) -> list[dict]:
        """POST /v1/query for each body, `concurrency` at a time; answers in input order."""
        from tqdm import tqdm

        futures = [self._pool.submit(self._request, "POST", "/v1/query", b) for b in bodies]
        show = self.progress and len(bodies) > 1
        with tqdm(total=len(bodies), desc=f"eval --serve {what}", unit="req", leave=False,
                  disable=not show or None, file=sys.stderr) as bar:
            out = []
            for f in futures:
                out.append(f.result())
                bar.update(1)
        return out

    def health(self) -> dict:
        return self._request("GET", "/healthz")

    def memory_stats(self) -> dict:
        """The served memory's size, as /healthz reports it (edits live now, shards)."""
        health = self.health()
        return {"live": health.get("edits", 0), "shards": health.get("shards", 0)}

    # ---- memory --------------------------------------------------------------------------------

    def edit(self, records) -> list[int]:
        """Store edits in order (a later edit may supersede an earlier one, as in-process)."""
        records = list(records)
        ids: list[int] = []
        for start in range(0, len(records), self.edit_batch):
            chunk = records[start:start + self.edit_batch]
            body = {"edits": [{"subject": r.subject, "prompt": r.prompt,
                               "target_new": r.target_new, "case_id": r.case_id}
                              for r in chunk]}
            ids += self._request("POST", "/v1/edits", body)["ids"]
        return ids

    def forget(self, ids: Sequence[int]) -> int:
        # 404: superseded by a later edit of the run, so no longer live (in-process: a no-op).
        done = list(self._pool.map(
            lambda i: self._request("DELETE", f"/v1/edits/{int(i)}", ok=(200, 404)), ids))
        return sum(1 for d in done if "deleted" in d)

    def contexts(self, questions, k: int | None = None) -> tuple[list[list[str]], list[list]]:
        """(descriptors shown, hits retrieved) per question; as `LTEEditor.contexts`."""
        hits_k = max(k or self.top_k, self.top_k)
        answers = self._queries([{"question": q, "k": self.top_k, "hits_k": hits_k,
                                  "generate": False} for q in questions], "retrieve")
        hits = [[Hit(h["id"], h["descriptor"], h["score"], h["subject"]) for h in a["retrieved"]]
                for a in answers]
        return [[h.descriptor for h in hs[:self.top_k]] for hs in hits], hits

    # ---- scoring and generation ----------------------------------------------------------------

    def _context_fields(self, descriptors) -> dict:
        if descriptors is None:
            return {"k": self.top_k}
        return {"descriptors": list(descriptors)}

    def predict_tokens(self, questions, targets, descriptors=None,
                       fmt: PromptFormat = CHAT) -> list[TokenPrediction]:
        """Teacher-forced argmax at each target token, computed by the server's Generator."""
        _served_format(fmt)
        questions, targets = list(questions), list(targets)
        if len(questions) != len(targets):
            raise ValueError("one target per question")
        if descriptors is not None and len(descriptors) != len(questions):
            raise ValueError("descriptors must have one list per question")
        # Targets asked with the same prompt share one request (up to the server's list limit).
        groups: list[tuple[str, tuple | None, list[int]]] = []
        open_group: dict[tuple, int] = {}
        for i, q in enumerate(questions):
            key = (q, None if descriptors is None else tuple(descriptors[i]))
            g = open_group.get(key)
            if g is None or len(groups[g][2]) >= MAX_TARGETS_PER_QUERY:
                g = open_group[key] = len(groups)
                groups.append((*key, []))
            groups[g][2].append(i)
        bodies = [{"question": q, **self._context_fields(d), "generate": False,
                   "targets": [targets[i] for i in rows]} for q, d, rows in groups]
        out: list[TokenPrediction | None] = [None] * len(questions)
        for (_, _, rows), answer in zip(groups, self._queries(bodies, "score"), strict=True):
            for i, p in zip(rows, answer["predictions"], strict=True):
                out[i] = TokenPrediction(list(p["predicted_ids"]), list(p["target_ids"]))
        return out  # type: ignore[return-value]

    def sample_fluency(self, texts, case_ids, total_tokens: int, seed: int) -> list[str]:
        """The reference's Fluency texts, sampled by the server's Generator with the same seeds."""
        bodies = [{"question": t, "k": self.top_k, "generate": False,
                   "fluency_tokens": total_tokens, "fluency_seed": seed, "fluency_case_id": c}
                  for t, c in zip(texts, case_ids, strict=True)]
        return [a["fluency_text"] for a in self._queries(bodies, "fluency")]

    def answer(self, questions, descriptors=None, max_new_tokens: int | None = None,
               min_new_tokens: int = 0, fmt: PromptFormat = CHAT) -> list[Answer]:
        _served_format(fmt)
        questions = list(questions)
        bodies = []
        for i, q in enumerate(questions):
            body = {"question": q, **self._context_fields(
                None if descriptors is None else descriptors[i]), "generate": True,
                "min_new_tokens": min_new_tokens}
            if max_new_tokens:
                body["max_new_tokens"] = max_new_tokens
            bodies.append(body)
        answers = self._queries(bodies, "generate")
        return [Answer(a["answer"], [Hit(h["id"], h["descriptor"], h["score"], h["subject"])
                                     for h in a["retrieved"]]) for a in answers]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.http.close()


def build_remote_methods(cfg: EvalConfig, log=print) -> list:
    """The configured methods over `cfg.serve_url`; one line refuses those that cannot run."""
    from lte.eval.methods import GoldContext, NoEdit, RetrievalMethod
    from lte.eval.registry import method_names

    wanted = method_names(cfg)
    refused = [m for m in wanted if m in REFUSED]
    if refused:
        raise UserError("cannot run through --serve: " + "; ".join(
            f"{m} {REFUSED[m]}" for m in refused) + f" (run them without --serve, or set "
            f"methods to some of {', '.join(REMOTE_METHODS)})", field="methods")
    if cfg.prompt_variant != "training":
        raise UserError("lte eval --serve scores the served prompt (training wording) only",
                        field="prompt_variant")
    token = os.environ.get(TOKEN_ENV)
    if "lte" in wanted and not token:
        raise UserError(f"lte eval --serve stores edits; set {TOKEN_ENV} to the server's write "
                        "token", field=TOKEN_ENV)
    editor = RemoteEditor(cfg.serve_url, token, top_k=cfg.memory.top_k,
                          concurrency=cfg.serve_concurrency, edit_batch=cfg.serve_edit_batch)
    try:
        stored = editor.health().get("edits", 0)
    except BaseException:
        editor.close()
        raise
    if stored:
        log(f"eval: the server at {cfg.serve_url} already holds {stored} edits; they compete "
            "in retrieval (an in-process run starts from an empty memory)")
    makers = {"lte": lambda: RetrievalMethod("lte", editor), "no-edit": lambda: NoEdit(editor),
              "gold-context": lambda: GoldContext(editor)}
    return [makers[m]() for m in wanted]
