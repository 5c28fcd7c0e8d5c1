"""Model size figures: parameters, non-zeros, MACs (counted at the aten level), bytes."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates for one sample, counted by FlopCounterMode at the aten level
    (MACs = FLOPs / 2). Unlike module hooks this sees custom conv modules too."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_shape)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


def file_bytes(path: str | os.PathLike) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def size_report(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    params = count_params(model)
    nonzero = count_nonzero_params(model)
    return {"params": params, "nonzero_params": nonzero, "sparsity": 1 - nonzero / max(params, 1),
            "macs": count_macs(model, input_shape),
            "float32_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
