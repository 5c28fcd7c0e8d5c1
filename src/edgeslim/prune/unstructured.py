"""Unstructured magnitude pruning: zero the smallest-|w| weights, globally or per layer."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module, exclude: list[str] | None = None) -> list[tuple[str, nn.Module]]:
    exclude = set(exclude or [])
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE) and n not in exclude]


def apply_magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global",
                          exclude: list[str] | None = None) -> None:
    """Attach masks (torch.nn.utils.prune) that zero a ``sparsity`` fraction of weights by |w|.
    Masks stay attached, so fine-tuning keeps pruned weights at zero; call ``make_permanent``."""
    layers = prunable_layers(model, exclude)
    if scope == "global":
        tprune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=tprune.L1Unstructured,
                                   amount=sparsity)
    else:
        for _, m in layers:
            tprune.l1_unstructured(m, "weight", amount=sparsity)


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into plain weight tensors; no reparametrisation hooks remain."""
    for _, m in model.named_modules():
        if tprune.is_pruned(m):
            for hook in list(m._forward_pre_hooks.values()):
                if isinstance(hook, tprune.BasePruningMethod):
                    tprune.remove(m, hook._tensor_name)
    return model


@torch.no_grad()
def layer_sparsity(model: nn.Module) -> dict[str, float]:
    return {n: float((m.weight == 0).float().mean()) for n, m in prunable_layers(model)}
