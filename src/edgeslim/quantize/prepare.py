"""Torch-side preparation before export (Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction"):

- ``fold_batchnorm``: Conv+BatchNorm pairs become one Conv (what the int8 model runs);
- ``equalize_cross_layer``: rescale output channels of a layer and the matching input
  channels of the next so that both have similar per-channel weight ranges;
- ``correct_bias``: remove the mean output shift that weight quantization causes.

Layer pairs are found on a torch.fx trace; Conv2d/Linear subclasses (e.g. "same"
padding convolutions) are kept as leaves so that their module names survive.
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .affine import qparams_for

LEAVES = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.Identity,
          nn.Dropout)
# Activations f with f(s*x) = s*f(x) for s > 0: equalization scales pass through them exactly.
HOMOGENEOUS = (nn.ReLU, nn.MaxPool2d, nn.Identity, nn.Dropout)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.Graph | None:
    """The model's fx graph, or None when it cannot be traced (then the step is skipped)."""
    try:
        return _Tracer().trace(model)
    except Exception:  # data-dependent control flow etc.: not an error, only no rewrite
        return None


def _module(model: nn.Module, node: fx.Node) -> nn.Module | None:
    return model.get_submodule(node.target) if node.op == "call_module" else None


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> list[str]:
    """Fold every BatchNorm that directly follows a Conv2d (with no other user) into it,
    in place; the BatchNorm becomes Identity. Returns the folded conv names."""
    graph = trace(model.eval())
    folded = []
    if graph is None:
        return folded
    for node in graph.nodes:
        bn = _module(model, node)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not node.args:
            continue
        prev = node.args[0]
        conv = _module(model, prev) if isinstance(prev, fx.Node) else None
        if isinstance(conv, nn.Conv2d) and len(prev.users) == 1 and bn.track_running_stats:
            fused = fuse_conv_bn_eval(conv, bn)
            conv.weight = fused.weight
            conv.bias = fused.bias
            _set_module(model, node.target, nn.Identity())
            folded.append(prev.target)
    return folded


def _layer_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(first, second) layers connected only through scale-equivariant ops, where the
    first's output channels are exactly the second's input channels."""
    graph = trace(model)
    if graph is None:
        return []
    pairs = []
    for node in graph.nodes:
        first = _module(model, node)
        if not isinstance(first, (nn.Conv2d, nn.Linear)):
            continue
        cur = node
        while len(cur.users) == 1:
            cur = next(iter(cur.users))
            m = _module(model, cur)
            if not isinstance(m, HOMOGENEOUS):
                break
        second = _module(model, cur) if cur is not node else None
        both_conv = isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d)
        both_linear = isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        if (both_conv and second.in_channels == first.out_channels) or (
                both_linear and second.in_features == first.out_features):
            pairs.append((node.target, cur.target))
    return pairs


def _out_ranges(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().abs().reshape(m.weight.shape[0], -1).amax(1)


def _in_ranges(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach().abs()
    if isinstance(m, nn.Conv2d) and m.groups > 1:  # depthwise: input channel c is output channel c
        return w.reshape(w.shape[0], -1).amax(1)
    return w.transpose(0, 1).reshape(w.shape[1], -1).amax(1)


@torch.no_grad()
def equalize_cross_layer(model: nn.Module, iterations: int = 4) -> list[tuple[str, str]]:
    """Cross-layer equalization in place; returns the equalized (first, second) pairs.
    Channel i of the first layer is divided by s_i = sqrt(r1_i / r2_i) and the matching
    input channel of the second multiplied by it, so both ranges become sqrt(r1_i r2_i)."""
    pairs = _layer_pairs(model)
    for _ in range(iterations):
        for a, b in pairs:
            m1, m2 = model.get_submodule(a), model.get_submodule(b)
            depthwise = isinstance(m2, nn.Conv2d) and m2.groups > 1
            if isinstance(m2, nn.Conv2d) and m2.groups > 1 and not (m2.groups == m2.in_channels):
                continue  # grouped (not depthwise) convs: channel mapping is not one-to-one
            r1, r2 = _out_ranges(m1), _in_ranges(m2)
            s = torch.sqrt(r1 / r2.clamp(min=1e-12)).clamp(1e-4, 1e4)
            s = torch.where((r1 > 0) & (r2 > 0), s, torch.ones_like(s))
            shape1 = (-1,) + (1,) * (m1.weight.dim() - 1)
            m1.weight.div_(s.reshape(shape1))
            if m1.bias is not None:
                m1.bias.div_(s)
            if depthwise:
                m2.weight.mul_(s.reshape((-1,) + (1,) * (m2.weight.dim() - 1)))
            else:
                m2.weight.mul_(s.reshape((1, -1) + (1,) * (m2.weight.dim() - 2)))
    return pairs


def _weight_error(m: nn.Module, per_channel: bool, reduce_range: bool) -> torch.Tensor:
    """W_q - W for int8 symmetric weights, as ONNX Runtime quantizes them."""
    w = m.weight.detach().numpy()
    qp = qparams_for(w, "int8", symmetric=True, axis=0 if per_channel else None, reduce_range=reduce_range)
    return torch.from_numpy(qp.fake_quantize(w) - w)


@torch.no_grad()
def correct_bias(model: nn.Module, calib: torch.Tensor, per_channel: bool = True, batch_size: int = 64,
                 reduce_range: bool = False) -> dict[str, float]:
    """Empirical bias correction: for each Conv2d/Linear, the expected output shift
    E[(W_q - W) x] is estimated from the mean of its real inputs and subtracted from
    the bias (a bias is added where missing). Returns the largest |shift| per layer."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def fn(module, args):
            x = args[0].detach()
            dims = [0, 2, 3] if x.dim() == 4 else list(range(x.dim() - 1))
            sums[name] = sums.get(name, 0) + x.sum(dims)
            counts[name] = counts.get(name, 0) + x.numel() // x.shape[1 if x.dim() == 4 else -1]
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    try:
        model.eval()
        for i in range(0, len(calib), batch_size):
            model(calib[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
    shifts = {}
    for name, m in layers.items():
        if name not in sums:
            continue
        mean_in = sums[name] / counts[name]
        err = _weight_error(m, per_channel, reduce_range)
        if isinstance(m, nn.Linear):
            shift = err @ mean_in
        elif m.groups == 1:
            shift = err.sum((2, 3)) @ mean_in
        else:  # grouped / depthwise: each output channel sees its own group of inputs
            per_group = err.sum((2, 3))  # (out, in/groups)
            groups_in = mean_in.reshape(m.groups, -1)
            out_per_group = m.out_channels // m.groups
            shift = (per_group.reshape(m.groups, out_per_group, -1) * groups_in[:, None, :]).sum(-1).reshape(-1)
        if m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.weight.shape[0]))
        m.bias.sub_(shift)
        shifts[name] = float(shift.abs().max())
    return shifts
