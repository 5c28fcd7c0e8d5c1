"""Unstructured pruning: zero individual weights by importance, globally or per layer.

Masks are attached with ``torch.nn.utils.prune`` so that fine-tuning keeps pruned
weights at zero; ``make_permanent`` folds them into plain tensors at the end.
Importance is ``|w|`` (magnitude; ``w < threshold`` would also zero every negative
weight), ``|w|`` scaled within its layer (LAMP) or ``|w * dL/dw|`` (first-order Taylor estimate of the loss change),
accumulated over calibration batches.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from ..errors import ConfigError
from ..train.loop import LossFn
from ._data import Batches, accumulate_gradients

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module, exclude: list[str] | None = None,
                    layers: list[str] | None = None) -> list[tuple[str, nn.Module]]:
    """Conv2d/Linear layers, optionally only those named in ``layers``, minus ``exclude``."""
    exclude = set(exclude or [])
    wanted = set(layers) if layers else None
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, PRUNABLE) and n not in exclude and (wanted is None or n in wanted)]


def _effective(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward pass uses (masked when a mask is attached)."""
    return getattr(module, name)


def _trainable(module: nn.Module, name: str) -> nn.Parameter:
    return getattr(module, f"{name}_orig", None) if hasattr(module, f"{name}_mask") else getattr(module, name)


def targets_of(model: nn.Module, exclude: list[str] | None = None, layers: list[str] | None = None,
               biases: bool = False) -> dict[str, tuple[nn.Module, str]]:
    """``"layer.weight"`` (and ``"layer.bias"`` when asked) -> (module, tensor name)."""
    out = {}
    for n, m in prunable_layers(model, exclude, layers):
        out[f"{n}.weight"] = (m, "weight")
        if biases and m.bias is not None:
            out[f"{n}.bias"] = (m, "bias")
    return out


@torch.no_grad()
def magnitude_scores(targets: Mapping[str, tuple[nn.Module, str]]) -> dict[str, torch.Tensor]:
    return {k: _effective(m, t).detach().abs().clone() for k, (m, t) in targets.items()}


@torch.no_grad()
def lamp_scores(targets: Mapping[str, tuple[nn.Module, str]]) -> dict[str, torch.Tensor]:
    """LAMP scores (Lee et al. 2021): ``w_u^2 / sum(w_v^2 for |w_v| >= |w_u|)`` within each tensor.
    Ranking them globally keeps every layer's largest weights (each layer's largest scores 1), so
    a small layer is not emptied because its weights happen to be smaller; within one tensor the
    order is that of ``|w|``."""
    out = {}
    for k, magnitude in magnitude_scores(targets).items():
        squares = magnitude.flatten() ** 2
        order = torch.argsort(squares)
        ascending = squares[order]
        at_least = torch.flip(torch.cumsum(torch.flip(ascending, [0]), 0), [0])
        score = torch.empty_like(squares)
        score[order] = ascending / at_least.clamp_min(torch.finfo(squares.dtype).tiny)
        out[k] = score.view_as(magnitude)
    return out


def taylor_scores(model: nn.Module, targets: Mapping[str, tuple[nn.Module, str]], batches: Batches,
                  loss_fn: LossFn | None = None) -> dict[str, torch.Tensor]:
    """``sum_b |w * dL_b/dw|`` over calibration batches b. Summing per-batch magnitudes,
    rather than taking the magnitude of the summed gradient, keeps weights whose gradient
    is large but changes sign from batch to batch (the mean gradient of a trained model
    is close to zero)."""
    scores = {k: torch.zeros_like(_effective(m, t)) for k, (m, t) in targets.items()}

    def add_batch() -> None:
        with torch.no_grad():
            for k, (m, t) in targets.items():
                grad = _trainable(m, t).grad
                if grad is not None:
                    scores[k] += (_effective(m, t) * grad).abs()

    accumulate_gradients(model, batches, loss_fn, on_batch=add_batch)
    return scores


def current_masks(targets: Mapping[str, tuple[nn.Module, str]]) -> dict[str, torch.Tensor]:
    return {k: getattr(m, f"{t}_mask") for k, (m, t) in targets.items() if hasattr(m, f"{t}_mask")}


def masks_from_scores(scores: Mapping[str, torch.Tensor], sparsity: float | Mapping[str, float],
                      scope: str = "global", keep_pruned: Mapping[str, torch.Tensor] | None = None
                      ) -> dict[str, torch.Tensor]:
    """0/1 masks zeroing exactly ``round(sparsity * size)`` of the lowest-scoring entries,
    ranked across all tensors (``scope="global"``) or within each (``"layer"``). A dict
    ``sparsity`` gives each tensor its own level. Entries already masked in
    ``keep_pruned`` are ranked first, so gradual pruning never revives a weight."""
    scores = {k: s.float().clone() for k, s in scores.items()}
    for k, mask in (keep_pruned or {}).items():
        if k in scores:
            scores[k][mask == 0] = -1.0  # scores are >= 0: masked entries rank lowest
    if isinstance(sparsity, Mapping):
        return {k: _lowest_mask(s, sparsity.get(k, 0.0)) for k, s in scores.items()}
    if scope == "layer":
        return {k: _lowest_mask(s, sparsity) for k, s in scores.items()}
    if scope != "global":
        raise ConfigError(f"scope must be 'global' or 'layer', got {scope!r}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    flat_mask = _lowest_mask(flat, sparsity)
    masks, i = {}, 0
    for k, s in scores.items():
        masks[k] = flat_mask[i:i + s.numel()].view_as(s)
        i += s.numel()
    return masks


def _lowest_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = int(round(sparsity * scores.numel()))
    mask = torch.ones_like(scores)
    if k > 0:
        # ties are broken by position, so the count is exact even for many equal scores
        idx = torch.topk(scores.flatten(), k, largest=False, sorted=False).indices
        mask.view(-1)[idx] = 0.0
    return mask


@torch.no_grad()
def apply_masks(targets: Mapping[str, tuple[nn.Module, str]], masks: Mapping[str, torch.Tensor]) -> None:
    """Attach masks, or update them in place when already attached (fine-tuning keeps the
    same parameters, so an optimiser built earlier stays valid)."""
    for k, mask in masks.items():
        module, name = targets[k]
        if hasattr(module, f"{name}_mask"):
            getattr(module, f"{name}_mask").copy_(mask)
            setattr(module, name, getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask"))
        else:
            tprune.custom_from_mask(module, name, mask)


def apply_magnitude_masks(model: nn.Module, sparsity: float, scope: str = "global",
                          exclude: list[str] | None = None) -> None:
    """Attach masks (torch.nn.utils.prune) that zero a ``sparsity`` fraction of weights by |w|.
    Masks stay attached, so fine-tuning keeps pruned weights at zero; call ``make_permanent``."""
    targets = targets_of(model, exclude)
    apply_masks(targets, masks_from_scores(magnitude_scores(targets), sparsity, scope))


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


@torch.no_grad()
def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zeros over all conv/linear weights (biases and norms not counted)."""
    total = zeros = 0
    for _, m in prunable_layers(model):
        total += m.weight.numel()
        zeros += int((m.weight == 0).sum())
    return zeros / max(total, 1)
