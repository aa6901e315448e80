"""EasyEdit's per-family baseline hyper-parameters, and their layers scaled to a model's depth.

From zjunlp/EasyEdit `hparams/FT/llama-7b.yaml`, `hparams/FT/qwen-7b.yaml` and
`hparams/ROME/llama-7b.yaml` (all for 32-layer 7B models): FT tunes layer 21 (LLaMA, no norm
constraint) or 31 (Qwen, L-inf 5e-5) with lr 5e-4 for 25 steps; ROME rewrites layer 5. A model
of another depth gets the same relative depth: round(layer x depth / 32).
"""

from __future__ import annotations

REFERENCE_DEPTH = 32
FAMILIES = {
    "llama": {"ft_layer": 21, "ft_norm_constraint": 0.0, "rome_layer": 5},
    "qwen": {"ft_layer": 31, "ft_norm_constraint": 5e-5, "rome_layer": 5},
}
# HF model_type -> family; anything else is treated as LLaMA (the paper's main model).
_MODEL_TYPES = {"llama": "llama", "qwen": "qwen", "qwen2": "qwen", "qwen3": "qwen"}


def family(model) -> str:
    return _MODEL_TYPES.get(getattr(model.config, "model_type", ""), "llama")


def depth(model) -> int:
    return len(model.get_decoder().layers)


def scaled_layer(layer_of_32: int, n_layers: int) -> int:
    """The layer at the same relative depth in a model of `n_layers` layers."""
    return max(0, min(n_layers - 1, round(layer_of_32 * n_layers / REFERENCE_DEPTH)))


def resolve_layer(configured: int | None, model, key: str) -> int:
    """`configured` (negative counts from the end), else the family's layer, scaled."""
    n = depth(model)
    if configured is None:
        return scaled_layer(FAMILIES[family(model)][key], n)
    return configured % n if configured < 0 else configured


def ft_norm_constraint(configured: float | None, model) -> float:
    if configured is None:
        return FAMILIES[family(model)]["ft_norm_constraint"]
    return configured
