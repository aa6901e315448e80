"""FT-L and FT-M, as EasyEdit's FT baseline: fine-tune one MLP matrix on the edits.

EasyEdit (`models/ft/ft_main.py`) tunes `model.layers.{L}.mlp.down_proj.weight` with Adam for
`num_steps` passes over the edits in mini-batches, and after every step clamps each weight to
within `norm_constraint` of its value before the edit call ("L" for the L-infinity constraint;
EasyEdit's LLaMA config has none, its Qwen config 5e-5). Objective `prompt_last` (`ft-l`):
maximize log p(target token) for every target token at the last prompt position; `target_new`
(`ft-m`, the strongest row of EasyEdit's KnowEdit table): teacher-forced cross entropy on the
target. Layer and constraint default to EasyEdit's per-family values (`lte.eval.hparams`). The
question is raw text (no chat template, no descriptors), as EasyEdit trains and scores it.

Single protocol: each edit is applied then undone (`reset`); batch: one call on all edits;
sequential: calls accumulate, each constrained around the weights it started from.
"""

from __future__ import annotations

from lte.config import FTLConfig
from lte.editor import LTEEditor
from lte.eval import hparams
from lte.modeling.batching import left_pad
from lte.prompts import RAW, PromptFormat


def layer_module(model, layer: int, module: str, section: str):
    """`module` (e.g. mlp.down_proj) of decoder layer `layer`, or a UserError naming `section`."""
    layers = model.get_decoder().layers
    try:
        return layers[layer].get_submodule(module)
    except (AttributeError, IndexError) as e:
        from lte.errors import UserError

        raise UserError(f"no module '{module}' in decoder layer {layer} ({e}); the model has "
                        f"{len(layers)} layers", field=section) from None


class FTL:
    retrieves = False

    def __init__(self, editor: LTEEditor, cfg: FTLConfig, name: str = "ft-l",
                 fmt: PromptFormat = RAW):
        self.editor, self.name, self.fmt = editor, name, fmt
        self.objective = "target_new" if name == "ft-m" else cfg.objective
        self.layer = hparams.resolve_layer(cfg.layer, editor.model, "ft_layer")
        self.norm_constraint = hparams.ft_norm_constraint(cfg.norm_constraint, editor.model)
        self.cfg = cfg
        self.param = layer_module(editor.model, self.layer, cfg.module, "ftl").weight
        self.original = self.param.detach().clone()

    def reset(self) -> None:
        import torch

        with torch.no_grad():
            self.param.copy_(self.original)

    def contexts(self, questions, owners, k):
        return [[] for _ in questions], [[] for _ in questions]

    def _loss(self, records):
        import torch
        import torch.nn.functional as F

        tok, model = self.editor.tokenizer, self.editor.model
        pairs = [self.fmt.encode(tok, r.prompt, [], r.target_new) for r in records]
        if self.objective == "prompt_last":
            ids, mask, pos = left_pad([p for p, _ in pairs], self.editor.pad_id,
                                      self.editor.device)
            logp = F.log_softmax(model(input_ids=ids, attention_mask=mask,
                                       position_ids=pos).logits[:, -1].float(), -1)
            per_edit = [-logp[i, torch.tensor(t, device=logp.device)].mean()
                        for i, (_, t) in enumerate(pairs) if t]
            return torch.stack(per_edit).mean()
        seqs = [p + t for p, t in pairs]
        ids, mask, pos = left_pad(seqs, self.editor.pad_id, self.editor.device)
        labels = torch.full_like(ids, -100)
        for i, (_, t) in enumerate(pairs):
            if t:
                labels[i, ids.shape[1] - len(t):] = torch.tensor(t, device=ids.device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                               labels[:, 1:].reshape(-1), ignore_index=-100)

    def insert(self, records):
        import torch

        records = [r for r in records if r.target_new]
        if not records:
            return {}
        model = self.editor.model
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        self.param.requires_grad_(True)
        start = self.param.detach().clone()
        opt = torch.optim.Adam([self.param], lr=self.cfg.lr, weight_decay=0.0)
        eps = self.norm_constraint
        try:
            with torch.enable_grad():
                for _ in range(self.cfg.steps):
                    for i in range(0, len(records), self.cfg.batch_size):
                        opt.zero_grad()
                        loss = self._loss(records[i:i + self.cfg.batch_size])
                        loss.backward()
                        opt.step()
                        if eps and eps > 0:
                            with torch.no_grad():
                                self.param.copy_(torch.clamp(self.param, start - eps,
                                                             start + eps))
        finally:
            for n, p in model.named_parameters():
                p.requires_grad_(flags[n])
            model.eval()
        return {}
