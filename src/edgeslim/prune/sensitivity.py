"""Sensitivity analysis: how much accuracy each layer loses when pruned alone, and the
per-layer sparsity that reaches a global target while losing the least."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..evaluate.metrics import evaluate_split
from .unstructured import masks_from_scores, prunable_layers

DEFAULT_LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


@torch.no_grad()
def sensitivity_analysis(model: nn.Module, split, levels: Sequence[float] = DEFAULT_LEVELS,
                         layers: list[str] | None = None, exclude: list[str] | None = None) -> dict:
    """Accuracy on ``split`` with one layer at a time pruned by magnitude to each level
    (the others dense). Returns ``{"baseline": acc, "levels": [...], "layers": {name:
    {"params": n, "accuracy": [acc per level]}}}``. The model is restored afterwards."""
    base = evaluate_split(model, split)["accuracy"]
    result = {"baseline": base, "levels": list(levels), "layers": {}}
    for name, module in prunable_layers(model, exclude, layers):
        original = module.weight.detach().clone()
        accs = []
        for level in levels:
            mask = masks_from_scores({name: original.abs()}, level, "layer")[name]
            module.weight.copy_(original * mask)
            accs.append(evaluate_split(model, split)["accuracy"])
        module.weight.copy_(original)
        result["layers"][name] = {"params": original.numel(), "accuracy": accs}
    return result


def allocate_sparsity(sensitivity: dict, target: float) -> dict[str, float]:
    """Per-layer sparsity reaching ``target`` over all analysed weights: each layer gets the
    highest level whose accuracy drop stays within a tolerance, and the tolerance is the
    smallest that reaches the target (bisection over the measured drops)."""
    levels = sensitivity["levels"]
    layers = sensitivity["layers"]
    total = sum(v["params"] for v in layers.values())
    drops = {n: [max(sensitivity["baseline"] - a, 0.0) for a in v["accuracy"]] for n, v in layers.items()}

    def plan(tolerance: float) -> dict[str, float]:
        out = {}
        for n, d in drops.items():
            level = 0.0
            for lv, drop in zip(levels, d):  # stop at the first level beyond tolerance
                if drop > tolerance:
                    break
                level = lv
            out[n] = level
        return out

    def reached(p: dict[str, float]) -> float:
        return sum(p[n] * layers[n]["params"] for n in p) / max(total, 1)

    for tolerance in sorted({0.0, *(x for d in drops.values() for x in d)}):
        p = plan(tolerance)
        if reached(p) >= target - 1e-9:
            return _trim(p, layers, target, total)
    raise ConfigError(f"sparsity {target} is out of reach with levels up to {max(levels)}; "
                      "analyse higher levels")


def _trim(plan: dict[str, float], layers: dict, target: float, total: int) -> dict[str, float]:
    """Scale the plan down to the target (levels are discrete, so the plan overshoots)."""
    reached = sum(plan[n] * layers[n]["params"] for n in plan) / max(total, 1)
    if reached <= 0:
        return plan
    factor = min(1.0, target / reached)
    return {n: s * factor for n, s in plan.items()}


def plot_sensitivity(sensitivity: dict, path: str | Path, title: str = "Sensitivity to pruning") -> Path:
    """A PNG figure: accuracy vs sparsity, one line per layer, dashed baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, v in sensitivity["layers"].items():
        ax.plot(sensitivity["levels"], v["accuracy"], marker="o", label=f"{name} ({v['params']:,} w)")
    ax.axhline(sensitivity["baseline"], color="gray", linestyle="--", label="dense")
    ax.set_xlabel("sparsity of the layer (others dense)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from ..report.figures import save_figure

    return save_figure(fig, path, dpi=100)
