"""ROME (Meng et al., 2022, "Locating and Editing Factual Associations in GPT"), written here.

One edit (subject s, prompt p, new target o) is a rank-one update of one MLP output projection W
(`mlp.down_proj` of layer L: its input is the key k, its output the value v):

1. **Key** k* = mean over context prefixes x_j ("{}" and short texts the model itself samples,
   ROME's context templates) of W's input at the last token of s in x_j + p.
2. **Value** v* = v + delta, where v is W's output at that token of the bare prompt and delta
   (added to that output during the forward pass) minimises
   -log p(o | x_j + p) averaged over j, + kl_factor x KL(after || before) of the next-token
   distribution after s in "{s} is a" (keeps what s is; EasyEdit's direction), + v_weight_decay
   x |delta| / |v|^2, with |delta| clamped to clamp_norm_factor x |v| after each Adam step
   (v_steps - 1 steps: the last loss is only scored, as in EasyEdit; early stop at loss 0.05).
3. **Update** W += (v* - W k) u^T / (u . k), u = C^-1 k* / |C^-1 k*|, k the key of the bare
   prompt (ROME's and EasyEdit's code; `update_key: templates` uses k* there, r-ROME's fix of
   the disabling edits, Gupta et al. 2024) and C = E[k k^T] over text tokens (the paper's key
   covariance). Wikipedia is not available offline, so C is estimated on the questions and
   answers of the evaluated file itself (`rome.cov_texts` texts, plus a small ridge so it
   inverts); `mom2_adjustment: false` uses C = I, as EasyEdit's LLaMA config does. C^-1 is
   computed once per file (`prepare`) and the context templates once per method, as EasyEdit
   caches both.

Batch and sequential protocols apply ROME edit after edit (each on the already edited weights);
`reset` restores W, so independent runs start from the same weights. Prompts are raw text, as
EasyEdit scores ROME.

Cost per edit: v_steps forward+backward passes over the (templates + 1) rewriting rows; the loss
reads the LM head only at the target and KL positions.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

from lte.config import ROMEConfig
from lte.data.record import EditRecord
from lte.editor import LTEEditor
from lte.eval import hparams
from lte.eval.ftl import layer_module
from lte.prompts import RAW

_START_WORDS = ("The", "Therefore", "Because", "I", "You")  # ROME's context-template seeds


def subject_last_index(tokenizer, text: str, subject: str) -> int:
    """Index, in `tokenizer(text)` ids, of the subject's last token (the last token if absent)."""
    return subject_last_in_ids(tokenizer, list(tokenizer(text)["input_ids"]), subject)


def subject_last_in_ids(tokenizer, ids: list[int], subject: str) -> int:
    """Index of the token that completes the subject's first occurrence in `ids` (however the
    text around it was templated); the last token if the subject is absent."""
    folded = subject.lower()
    if not subject or folded not in tokenizer.decode(ids).lower():
        return len(ids) - 1
    return next(i for i in range(len(ids))
                if folded in tokenizer.decode(ids[:i + 1]).lower())


def _right_pad(seqs, pad_id: int, device):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def stats_texts(records: list[EditRecord], limit: int) -> list[str]:
    """Text for the key covariance: the file's own questions and answers."""
    texts: list[str] = []
    for r in records:
        texts += [r.prompt, *r.rephrase_prompts]
        texts += [f"{qa.prompt} {qa.answer}" for qas in r.locality.values() for qa in qas]
        texts += [qa.prompt for qas in r.portability.values() for qa in qas]
        if len(texts) >= limit:
            break
    return [t for t in texts[:limit] if t.strip()]


class Target(NamedTuple):
    """One edit's keys and new value at the rewritten matrix (W's input and output)."""

    k_star: Any  # the key averaged over the context templates (the update's direction)
    k_bare: Any  # the key of the bare prompt
    v_star: Any  # the optimised value: the bare prompt's value plus delta


class ROME:
    name = "rome"
    retrieves = False
    fmt = RAW

    def __init__(self, editor: LTEEditor, cfg: ROMEConfig, seed: int = 0):
        self.editor, self.cfg, self.seed = editor, cfg, seed
        self.layer = hparams.resolve_layer(cfg.layer, editor.model, "rome_layer")
        self.module = layer_module(editor.model, self.layer, cfg.module, "rome")
        self.original = self.module.weight.detach().clone()
        self._templates: list[str] | None = None
        self._cov_inv = None  # inverse key covariance of the prepared file (None: I)

    # ---- Method protocol ---------------------------------------------------------------------

    def reset(self) -> None:
        import torch

        with torch.no_grad():
            self.module.weight.copy_(self.original)

    def contexts(self, questions, owners, k):
        return [[] for _ in questions], [[] for _ in questions]

    def prepare(self, records: list[EditRecord]) -> None:
        """Once per evaluated file, on the unedited weights: its key covariance."""
        import torch

        self.reset()
        self.templates()
        self._cov_inv = None
        if self.cfg.mom2_adjustment:  # inverted once, as EasyEdit caches its inverse
            cov = self.key_covariance(stats_texts(records, self.cfg.cov_texts))
            self._cov_inv = torch.linalg.inv(cov)

    def insert(self, records):
        for r in records:
            if r.target_new:
                self.apply(r)
        return {}

    # ---- the algorithm -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _hook(self, fn):
        handle = self.module.register_forward_hook(fn)
        try:
            yield
        finally:
            handle.remove()

    def templates(self) -> list[str]:
        """"{}" and prefixes the unedited model samples (ROME's context templates), cached."""
        if self._templates is None:
            from lte.modeling.sampling import sample_texts

            starts, ids = [], []
            for length, count in self.cfg.context_templates:
                for i in range(count):
                    starts.append((_START_WORDS[i % len(_START_WORDS)], length))
                    ids.append(f"rome-template-{length}-{i}")
            texts = [sample_texts(self.editor.model, self.editor.tokenizer, [w], [cid],
                                  length + 1, self.seed)[0]  # +1: the BOS token
                     for (w, length), cid in zip(starts, ids, strict=True)]
            self._templates = ["{}"] + [t.replace("{", " ").replace("}", " ") + ". {}"
                                        for t in texts]
        return self._templates

    def key_covariance(self, texts: list[str]):
        """E[k k^T] of the rewritten matrix's input over every token of `texts`."""
        import torch

        tok, model = self.editor.tokenizer, self.editor.model
        device = self.editor.device
        d = self.module.weight.shape[1]
        total = torch.zeros((d, d), dtype=torch.float64, device=device)
        count = 0
        rows: list = []

        def grab(_m, inputs, _out):
            rows.append(inputs[0].detach())

        batch = self.editor.batch_size
        with torch.no_grad(), self._hook(grab):
            for i in range(0, len(texts), batch):
                seqs = [tok(t)["input_ids"] for t in texts[i:i + batch]]
                ids, mask = _right_pad(seqs, self.editor.pad_id, device)
                rows.clear()
                model(input_ids=ids, attention_mask=mask)
                keys = rows[0][mask.bool()].double()
                total += keys.T @ keys
                count += keys.shape[0]
        cov = total / max(count, 1)
        ridge = self.cfg.cov_ridge * torch.diagonal(cov).mean()
        return cov + ridge * torch.eye(d, dtype=cov.dtype, device=device)

    def _lookup(self, ids: list[int], subject: str) -> int:
        if self.cfg.fact_token == "last":
            return len(ids) - 1
        return subject_last_in_ids(self.editor.tokenizer, ids, subject)

    def _rewriting_batch(self, record: EditRecord):
        """Template + prompt + target[:-1] per context template, then "{subject} is a".

        Returns (sequences, lookup positions, target (row, column, token) triples) or None when
        the target has no tokens; column c of row r predicts the token.
        """
        tok = self.editor.tokenizer
        seqs, lookups, targets = [], [], []
        for row, template in enumerate(self.templates()):
            text = template.format(record.prompt)
            p_ids, t_ids = self.fmt.encode(tok, text, [], record.target_new)
            if not t_ids:
                return None
            seqs.append(p_ids + t_ids[:-1])
            lookups.append(self._lookup(p_ids, record.subject))
            targets += [(row, len(p_ids) - 1 + j, t) for j, t in enumerate(t_ids)]
        kl_ids = list(tok(f"{record.subject} is a")["input_ids"])
        seqs.append(kl_ids)
        lookups.append(self._lookup(kl_ids, record.subject))
        return seqs, lookups, targets

    def apply(self, record: EditRecord) -> None:
        """One ROME edit of the current weights."""
        target = self.value(record)
        if target is not None:
            self.rewrite(target)

    def value(self, record: EditRecord) -> Target | None:
        """Steps 1-2: the keys and the new value of one edit (None: the target has no tokens)."""
        import torch
        import torch.nn.functional as F

        cfg, model, device = self.cfg, self.editor.model, self.editor.device
        batch = self._rewriting_batch(record)
        if batch is None:
            return None
        seqs, lookups, targets = batch
        n_rw = len(seqs) - 1  # the last row is the KL prompt
        ids, mask = _right_pad(seqs, self.editor.pad_id, device)
        rows = torch.arange(len(seqs), device=device)
        at = torch.tensor(lookups, device=device)
        t_row, t_col, t_tok = (torch.tensor(c, device=device) for c in zip(*targets, strict=True))
        per_row = torch.zeros(n_rw, device=device).index_add_(
            0, t_row, torch.ones(len(targets), device=device))

        head = model.get_output_embeddings()

        def scores():
            """(log-prob of each target token, the KL row's log-probs) of one forward pass."""
            # The head only where it is read: most positions' logits are never scored.
            hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = head(torch.cat([hidden[t_row, t_col], hidden[n_rw, lookups[n_rw]][None]]))
            lp = F.log_softmax(logits.float(), -1)
            return lp[:-1].gather(1, t_tok[:, None]).squeeze(1), lp[-1]

        # One unedited pass: the keys (W's inputs) and the bare prompt's value (W's output) at the
        # lookup token of every row, and the KL prompt's distribution before the edit.
        got: dict = {}

        def grab(_m, inputs, out):
            got["k"], got["v"] = inputs[0].detach()[rows, at].float(), out.detach()[rows, at]

        with torch.no_grad(), self._hook(grab):
            _, kl_init = scores()
        k_star = got["k"][:n_rw].mean(0)
        k_bare, v_bare = got["k"][0], got["v"][0].float()  # row 0: the "{}" template

        delta = torch.zeros_like(v_bare, requires_grad=True)

        def add_delta(_m, _inputs, out):
            out = out.clone()
            out[rows, at] = out[rows, at] + delta.to(out.dtype)
            return out

        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam([delta], lr=cfg.v_lr)
        max_norm = cfg.clamp_norm_factor * v_bare.norm()
        try:
            with torch.enable_grad(), self._hook(add_delta):
                for step in range(cfg.v_steps):
                    opt.zero_grad()
                    target_lp, kl_lp = scores()
                    nll = (torch.zeros(n_rw, device=device).index_add_(0, t_row, -target_lp)
                           / per_row).mean()
                    # EasyEdit's direction: KL(after || before), summed over the vocabulary.
                    kl = F.kl_div(kl_init, kl_lp, log_target=True, reduction="sum")
                    decay = cfg.v_weight_decay * delta.norm() / v_bare.norm() ** 2
                    loss = nll + cfg.kl_factor * kl + decay
                    # ROME's early stop; its last step is scored, not taken.
                    if loss.item() < 5e-2 or step == cfg.v_steps - 1:
                        break
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        if delta.norm() > max_norm:
                            delta.mul_(max_norm / delta.norm())
        finally:
            for n, p in model.named_parameters():
                p.requires_grad_(flags[n])
            model.eval()

        return Target(k_star, k_bare, v_bare + delta.detach())

    def rewrite(self, t: Target) -> None:
        """Step 3: the rank-one update that writes the new value at the edit's key."""
        import torch

        with torch.no_grad():
            w = self.module.weight
            u = t.k_star.double()
            if self._cov_inv is not None:
                u = self._cov_inv @ u
            u = (u / u.norm()).float()
            # ROME's code solves at the bare prompt's key, r-ROME at k*: W' k = v* either way.
            k = t.k_star if self.cfg.update_key == "templates" else t.k_bare
            residual = t.v_star - w.float() @ k
            w.add_(torch.outer(residual / torch.dot(k, u), u).to(w.dtype))
