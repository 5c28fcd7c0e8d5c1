"""Calibration batches for gradient-based importance, from whatever data the user has."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DataError
from ..train.loop import LossFn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def iter_batches(data: Any, num_batches: int, batch_size: int = 64, seed: int = 0
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``num_batches`` (x, y) batches from a ``DataBundle`` (its train split), a
    ``Split``, or any iterable of (x, y) pairs (e.g. a DataLoader)."""
    if data is None:
        raise DataError("this pruning criterion needs data: pass data= (a DataBundle, a Split "
                        "or an iterable of (x, y) batches)")
    split = getattr(data, "train", data)
    if hasattr(split, "x") and hasattr(split, "y"):
        order = torch.randperm(len(split.y), generator=torch.Generator().manual_seed(seed))
        for i in range(num_batches):
            idx = order[i * batch_size:(i + 1) * batch_size]
            if len(idx) == 0:
                return
            yield split.x[idx], split.y[idx]
        return
    for i, (x, y) in enumerate(split):
        if i >= num_batches:
            return
        yield x, y


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def accumulate_gradients(model: nn.Module, batches: Batches, loss_fn: LossFn | None = None,
                         on_batch=None) -> int:
    """Run forward/backward over ``batches``. ``on_batch()`` is called after each backward
    (e.g. to accumulate per-batch saliency); without it gradients sum up in ``.grad``.
    The model is kept in eval mode so that batch-norm statistics are not changed."""
    loss_fn = loss_fn or cross_entropy
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    n = 0
    for x, y in batches:
        loss, _ = loss_fn(model, x, y)
        loss.backward()
        n += 1
        if on_batch is not None:
            on_batch()
            model.zero_grad(set_to_none=True)
    model.train(was_training)
    if n == 0:
        raise DataError("no calibration batches: the data given to the pruner is empty")
    return n
