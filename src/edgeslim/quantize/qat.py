"""Quantization-aware training: fake quantization with a straight-through estimator.

Each Conv2d/Linear gets int8 per-channel symmetric fake-quantized weights (the exact
grid ONNX Runtime will use) and uint8 fake-quantized inputs whose ranges are learned
during fine-tuning (moving-average min/max, as torch.ao's observers). The model output
is fake-quantized too, like the QDQ model's logits. ``torch.fake_quantize_*`` gives the
gradient: identity inside the range, zero outside (the clipped STE).

After training the float weights and the learned input ranges are exported; ONNX
Runtime's ``quantize_static`` writes the QDQ model with those ranges
(``TensorQuantOverrides`` carrying the learned scale/zero point of every layer input).
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from .affine import qparams_from_range, qrange


class FakeQuantize(nn.Module):
    """Fake quantization of an activation with a moving-average min/max range."""

    def __init__(self, dtype: str = "uint8", symmetric: bool = False, momentum: float = 0.01):
        super().__init__()
        self.dtype, self.symmetric, self.momentum = dtype, symmetric, momentum
        self.register_buffer("rmin", torch.tensor(0.0))
        self.register_buffer("rmax", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.observe = True

    def qparams(self):
        return qparams_from_range(float(self.rmin), float(self.rmax), self.dtype, self.symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observe:
            lo, hi = x.detach().min(), x.detach().max()
            if not bool(self.initialized):
                self.rmin.copy_(lo), self.rmax.copy_(hi), self.initialized.fill_(True)
            else:
                self.rmin.lerp_(lo, self.momentum), self.rmax.lerp_(hi, self.momentum)
        if not bool(self.initialized):
            return x
        qp = self.qparams()
        qmin, qmax = qrange(self.dtype, self.symmetric)
        return torch.fake_quantize_per_tensor_affine(x, float(qp.scale), int(qp.zero_point), qmin, qmax)


class WeightFakeQuantize(nn.Module):
    """Per-channel (output axis) symmetric int8 fake quantization of a weight ([-127, 127], or
    [-64, 64] with ``reduce_range``, as ONNX Runtime will quantize it)."""

    def __init__(self, per_channel: bool = True, reduce_range: bool = False):
        super().__init__()
        self.per_channel = per_channel
        self.qmax = qrange("int8", symmetric=True, reduce_range=reduce_range)[1]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = self.qmax
        if self.per_channel:
            absmax = w.detach().abs().reshape(w.shape[0], -1).amax(1)
            scale = torch.where(absmax > 0, absmax / q, torch.ones_like(absmax)).float()
            zero = torch.zeros(w.shape[0], dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -q, q)
        absmax = float(w.detach().abs().max())
        return torch.fake_quantize_per_tensor_affine(w, absmax / q if absmax > 0 else 1.0, 0, -q, q)


QAT_LAYERS = (nn.Conv2d, nn.Linear)


def prepare_qat(model: nn.Module, per_channel: bool = True, symmetric_activations: bool = False,
                reduce_range: bool = False) -> nn.Module:
    """Attach fake quantization in place (weights via parametrization, inputs via a
    pre-hook, the output via a hook); ``finish_qat`` removes it."""
    dtype = "int8" if symmetric_activations else "uint8"
    for _, m in model.named_modules():
        if isinstance(m, QAT_LAYERS):
            parametrize.register_parametrization(m, "weight", WeightFakeQuantize(per_channel, reduce_range))
            m.input_fq = FakeQuantize(dtype, symmetric_activations)
            m._qat_hook = m.register_forward_pre_hook(lambda mod, args: (mod.input_fq(args[0]), *args[1:]))
    model.output_fq = FakeQuantize(dtype, symmetric_activations)
    model._qat_hook = model.register_forward_hook(lambda mod, args, out: mod.output_fq(out))
    return model


def learned_ranges(model: nn.Module) -> dict[str, tuple[float, float]]:
    """{layer name: (rmin, rmax) of its input}; "" is the model output."""
    out = {n: (float(m.input_fq.rmin), float(m.input_fq.rmax))
           for n, m in model.named_modules() if hasattr(m, "input_fq")}
    if hasattr(model, "output_fq"):
        out[""] = (float(model.output_fq.rmin), float(model.output_fq.rmax))
    return out


def finish_qat(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Remove the fake quantization (float weights kept as trained); return the learned ranges."""
    ranges = learned_ranges(model)
    for _, m in model.named_modules():
        if hasattr(m, "input_fq"):
            m._qat_hook.remove()
            del m.input_fq, m._qat_hook
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    if hasattr(model, "output_fq"):
        model._qat_hook.remove()
        del model.output_fq, model._qat_hook
    return ranges


def map_layers_to_nodes(model: nn.Module, onnx_model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Torch layer name -> ONNX node, matched by identical weights (names change on export)."""
    from .static import weighted_nodes

    inits = {i.name: i for i in onnx_model.graph.initializer}
    nodes = [(n, onnx.numpy_helper.to_array(inits[n.input[1]])) for n in weighted_nodes(onnx_model)]
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, QAT_LAYERS):
            continue
        w = m.weight.detach().numpy()
        for node, arr in nodes:
            cand = arr.T if node.op_type == "MatMul" else arr
            if cand.shape == w.shape and np.allclose(cand, w, rtol=0, atol=1e-7):
                out[name] = node
                break
    return out


PASS_THROUGH = ("MaxPool", "Flatten", "Reshape", "Relu", "Identity", "Squeeze", "Unsqueeze")


def qat_tensor_ranges(model: nn.Module, pre_onnx: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                      output_name: str) -> dict[str, tuple[float, float]]:
    """ONNX tensor -> learned range: each layer's input tensor, and upstream through
    range-preserving ops (MaxPool, Flatten, ReLU...) whose output feeds only that layer."""
    producers = {o: n for n in pre_onnx.graph.node for o in n.output}
    out = {}
    for layer, node in map_layers_to_nodes(model, pre_onnx).items():
        if layer not in ranges:
            continue
        tensor = node.input[0]
        out[tensor] = ranges[layer]
        prod = producers.get(tensor)
        while prod is not None and prod.op_type in PASS_THROUGH:
            out[prod.input[0]] = ranges[layer]
            prod = producers.get(prod.input[0])
    if "" in ranges:
        out[output_name] = ranges[""]
    return out
