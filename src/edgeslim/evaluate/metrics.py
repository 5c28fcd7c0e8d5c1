"""Accuracy, loss, per-class accuracy and agreement between two models."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.datasets import Split


@torch.no_grad()
def predict_logits(model: nn.Module | Callable[[np.ndarray], np.ndarray], x: torch.Tensor,
                   batch_size: int = 512) -> torch.Tensor:
    """Logits of a torch model, or of any callable taking/returning numpy (e.g. an ONNX runner)."""
    if isinstance(model, nn.Module):
        model.eval()
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        if isinstance(model, nn.Module):
            outs.append(model(xb).float())
        else:
            outs.append(torch.from_numpy(np.asarray(model(xb.numpy()))).float())
    return torch.cat(outs)


def metrics_from_logits(logits: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> dict:
    pred = logits.argmax(1)
    k = num_classes or logits.shape[1]
    per_class = []
    for c in range(k):
        mask = y == c
        per_class.append(float((pred[mask] == c).float().mean()) if mask.any() else float("nan"))
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(y[:, None]).any(1).float().mean()
    return {"accuracy": float((pred == y).float().mean()), "top5": float(top5),
            "loss": float(F.cross_entropy(logits, y)), "per_class_accuracy": per_class, "samples": len(y)}


def evaluate_split(model, split: Split, batch_size: int = 512) -> dict:
    """accuracy, top5, loss, per-class accuracy on a split; ``model`` may be torch or a numpy callable."""
    return metrics_from_logits(predict_logits(model, split.x, batch_size), split.y)


def agreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of samples on which two models predict the same class."""
    return float((logits_a.argmax(1) == logits_b.argmax(1)).float().mean())
