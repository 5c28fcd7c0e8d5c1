"""Distillation losses: Hinton's soft-target loss and feature (hint) matching.

Hinton et al. 2015: ``alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(z_s, y)``.
The ``T^2`` factor keeps the soft-target gradients at the same scale as the hard-label
ones when the temperature changes. FitNets-style hints (Romero et al. 2015) match an
intermediate student activation, mapped by a learned adapter, to a teacher activation.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def hinton_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
                temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Soft-target KD loss. ``targets=None`` (unlabeled data) means the soft term only
    (``alpha`` is then ignored: the teacher is the only supervision)."""
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=1)
    # KL(p_t || p_s) = sum p_t (log p_t - log p_s), averaged over the batch
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    soft = (t * t) * kl
    if targets is None:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, targets)


class FeatureCapture:
    """Forward hooks that keep the latest output of named submodules."""

    def __init__(self, model: nn.Module, layer_names: list[str]):
        modules = dict(model.named_modules())
        missing = [n for n in layer_names if n not in modules]
        if missing:
            raise KeyError(f"no such layer(s) {missing}; layers are: {[n for n in modules if n][:40]}")
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in layer_names]

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self.outputs[name] = output
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def make_adapter(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """A learned map from a student activation to the teacher's: a 1x1 convolution for
    feature maps (spatial size must match), a linear layer for vectors."""
    if len(student_shape) == 4 and len(teacher_shape) == 4:
        if student_shape[2:] != teacher_shape[2:]:
            raise ValueError(f"hint feature maps differ in spatial size: student {tuple(student_shape)} "
                             f"vs teacher {tuple(teacher_shape)}; pick layers at the same resolution")
        return nn.Conv2d(student_shape[1], teacher_shape[1], kernel_size=1, bias=False)
    if len(student_shape) == 2 and len(teacher_shape) == 2:
        return nn.Linear(student_shape[1], teacher_shape[1], bias=False)
    raise ValueError(f"cannot adapt a student activation of shape {tuple(student_shape)} "
                     f"to a teacher activation of shape {tuple(teacher_shape)}")


def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Mean squared error between the adapted student feature and the teacher feature."""
    return F.mse_loss(adapter(student_feature), teacher_feature.detach())
