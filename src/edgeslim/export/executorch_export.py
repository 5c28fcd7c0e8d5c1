"""torch -> ExecuTorch ``.pte`` with the XNNPACK backend (float, or int8 with XNNPACK's PT2E
quantizer), the metadata in the JSON sidecar ``model.pte.json``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._io import atomic_write_files
from ..runtime.formats import require, sidecar_path

# The batch axis is dynamic up to this bound (memory is planned for the bound the program reports;
# the runner splits larger batches, e.g. evaluation's, into chunks of that size).
MAX_BATCH = 64


def _exported(model: nn.Module, input_shape: tuple[int, ...]):
    from torch.export import Dim

    example = (torch.zeros(2, *input_shape),)  # batch 2: a batch of 1 would be specialised away
    return torch.export.export(model, example, dynamic_shapes=({0: Dim("batch", min=1, max=MAX_BATCH)},))


def _fuse_conv_clamp(model: torch.fx.GraphModule) -> None:
    """Quantize a conv followed by a clamp (ReLU6 = hardtanh(0, 6)) at the clamp's output only,
    as XNNPACK's quantizer does for conv + ReLU. Left alone, the clamp shares the conv's observer,
    so each ReLU6 is quantized over the range of the values before clamping, several times wider
    than [0, 6] (EfficientNet-Lite0: top-1 agreement with the float model 87.5% -> 100%). XNNPACK
    runs the pair as one conv with an output clamp either way."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec

    aten = torch.ops.aten
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in (aten.hardtanh.default, aten.hardtanh_.default):
            continue
        conv = node.args[0]
        annotation = conv.meta.get("quantization_annotation")
        if (getattr(conv, "target", None) in (aten.conv2d.default, aten.convolution.default) and len(conv.users) == 1
                and annotation is not None and isinstance(annotation.output_qspec, QuantizationSpec)):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={}, output_qspec=annotation.output_qspec, _annotated=True)
            annotation.output_qspec = None


def quantize_xnnpack(model: nn.Module, input_shape: tuple[int, ...], calib: np.ndarray) -> nn.Module:
    """XNNPACK's int8 PT2E quantization (per-channel symmetric weights, int8 activations, conv +
    clamp quantized as one op), calibrated on ``calib`` (preprocessed inputs)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                        get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class ClampFusingQuantizer(XNNPACKQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            _fuse_conv_clamp(model)
            return model

    quantizer = ClampFusingQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(_exported(model.eval(), input_shape).module(), quantizer)
    with torch.no_grad():
        for chunk in np.array_split(calib, max(1, len(calib) // 32)):
            prepared(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)))
    return convert_pt2e(prepared)


def export_executorch(model: nn.Module, out: str | Path, input_shape: tuple[int, ...],
                      metadata: dict[str, Any] | None = None, calib: np.ndarray | None = None) -> Path:
    """Write ``model`` as a ``.pte`` (float; int8 when ``calib`` inputs are given) and its sidecar."""
    import json

    require("executorch.exir", "executorch", "--format executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    out = Path(out)
    # a quantized (exported) graph module must not be switched with .eval(): eval the float model first
    model = quantize_xnnpack(model, input_shape, calib) if calib is not None else model.eval()
    program = to_edge_transform_and_lower(_exported(model, input_shape), partitioner=[XnnpackPartitioner()])
    meta = {**(metadata or {}), "io_names": {"inputs": ["input"], "outputs": ["logits"]},
            "int8": calib is not None}
    atomic_write_files({out: program.to_executorch().buffer,
                        sidecar_path(out): json.dumps(meta, indent=1).encode("utf-8")})
    return out
