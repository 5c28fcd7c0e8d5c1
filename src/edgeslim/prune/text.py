"""Structured pruning of BERT-style sentence encoders: attention heads, FFN neurons, layers.

Heads and neurons are removed by slicing the weight matrices, so the model really gets
smaller and faster (no masks). Hugging Face's BERT reshapes q/k/v with ``view(..., -1, head_size)``,
so a layer with fewer heads needs no other change, and checkpoints reload through the usual
shape fitting. Importance is data-free by default (weight magnitude: how much a head / neuron
can write into the residual stream), or the mean |activation| on given text.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError


def _layers(model) -> nn.ModuleList:
    return model.encoder.encoder.layer


def _slice_linear(linear: nn.Linear, keep: torch.Tensor, dim: int) -> None:
    """Keep the given output rows (``dim=0``) or input columns (``dim=1``) of ``linear``, in place."""
    with torch.no_grad():
        linear.weight = nn.Parameter(linear.weight.index_select(dim, keep).clone())
        if dim == 0 and linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.index_select(0, keep).clone())
    linear.out_features, linear.in_features = linear.weight.shape


def _count(n: int, keep: float | int, what: str) -> int:
    k = round(n * keep) if isinstance(keep, float) else int(keep)
    if not 1 <= k <= n:
        raise ConfigError(f"keep_{what} must leave between 1 and {n} {what} per layer, got {keep}")
    return k


def head_importance(layer, head_size: int) -> torch.Tensor:
    """Per head: norm of its value rows times norm of its output-projection columns."""
    v = layer.attention.self.value.weight.view(-1, head_size, layer.attention.self.value.in_features)
    o = layer.attention.output.dense.weight.view(layer.attention.output.dense.out_features, -1, head_size)
    return v.flatten(1).norm(dim=1) * o.transpose(0, 1).flatten(1).norm(dim=1)


def prune_heads(model, keep_heads: float | int) -> list[list[int]]:
    """Keep ``keep_heads`` (fraction, or a count) of the attention heads in every layer, the most
    important ones; returns the kept head indices per layer. In place."""
    head = model.config.hidden_size // model.config.num_attention_heads
    kept = []
    for layer in _layers(model):
        imp = head_importance(layer, head)
        k = _count(len(imp), keep_heads, "heads")
        heads = imp.topk(k).indices.sort().values
        rows = (heads[:, None] * head + torch.arange(head)).flatten()
        att = layer.attention
        for lin in (att.self.query, att.self.key, att.self.value):
            _slice_linear(lin, rows, 0)
        _slice_linear(att.output.dense, rows, 1)
        kept.append(heads.tolist())
    return kept


def ffn_importance(layer) -> torch.Tensor:
    """Per FFN neuron: norm of its input row times norm of its output column."""
    return layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0)


def prune_ffn(model, keep_neurons: float | int) -> list[int]:
    """Keep ``keep_neurons`` (fraction or count) of each layer's FFN neurons; returns the widths. In place."""
    widths = []
    for layer in _layers(model):
        imp = ffn_importance(layer)
        keep = imp.topk(_count(len(imp), keep_neurons, "neurons")).indices.sort().values
        _slice_linear(layer.intermediate.dense, keep, 0)
        _slice_linear(layer.output.dense, keep, 1)
        widths.append(len(keep))
    return widths


def keep_layers(model, layers: Sequence[int]):
    """A copy of ``model`` with only the given transformer layers (in that order), each
    initialised from the teacher's layer: the usual way to start a shallower student."""
    n = len(_layers(model))
    if not layers or any(not 0 <= i < n for i in layers):
        raise ConfigError(f"layers must be indices in 0..{n - 1}, got {list(layers)}")
    student = copy.deepcopy(model)
    student.encoder.encoder.layer = nn.ModuleList(copy.deepcopy(_layers(model)[i]) for i in layers)
    student.encoder.config.num_hidden_layers = len(layers)
    for idx, layer in enumerate(_layers(student)):  # attention modules know their position
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = idx
    return student


def architecture_config(model) -> dict:
    """The BERT config dict that rebuilds ``model``'s architecture (its checkpoint kwargs);
    pruned widths come back from the saved tensor shapes."""
    cfg = model.config.to_dict()
    return {k: v for k, v in cfg.items() if isinstance(v, (int, float, str, bool, type(None)))
            and k not in ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype")}


def shrink_encoder(model, layers: Sequence[int] | None = None, keep_heads: float | int = 1.0,
                   keep_neurons: float | int = 1.0):
    """Student = the given layers of the teacher, heads and FFN neurons pruned (a new model)."""
    student = keep_layers(model, layers if layers is not None else range(len(_layers(model))))
    if keep_heads != 1.0:
        prune_heads(student, keep_heads)
    if keep_neurons != 1.0:
        prune_ffn(student, keep_neurons)
    student.edgeslim_arch = {"name": "all-minilm-l6-v2", "kwargs": {"config": architecture_config(student)}}
    return student
