"""Export to ONNX (dynamic batch) with the preprocessing spec and class names embedded,
and a parity check against PyTorch on real inputs."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn

from .._io import atomic_write_bytes, oserror_for, temp_path

from ..runtime.runner import METADATA_KEY  # one key, read by the torch-free runtime
from .optimize import GraphOptimization, OptimizeMode, optimize_onnx

OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...],
                metadata: dict[str, Any] | None = None, opset: int = OPSET,
                optimize: GraphOptimization | OptimizeMode = "never") -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis; ``metadata`` (preprocess, class
    names, ...) is stored as JSON in the model's metadata_props under "edgeslim".
    ``optimize``: exact graph rewrites for ONNX Runtime's CPU kernels (``"auto"`` keeps those
    not measured slower on this machine at batch 1 or 64; see ``edgeslim.export.optimize``); what was done is
    recorded in the metadata under "graph_optimization"."""
    model = model.eval()
    dummy = torch.zeros(1, *input_shape)
    # the exporter writes a file: a temporary one beside the target, gone even if the disk fills up
    with temp_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated but is the one that handles every
        # model here (custom same-padding convs included) fast and without tracing guards.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except OSError as e:
            raise oserror_for(e, Path(path)) from e
        proto = onnx.load(str(tmp))
    proto, report = optimize_onnx(proto, optimize)
    if report:
        metadata = {**(metadata or {}), "graph_optimization": report}
    if metadata:
        set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    return save_onnx(proto, path)


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> Path:
    return atomic_write_bytes(path, proto.SerializeToString())


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)


def parity(model: nn.Module, onnx_path: str | Path, inputs: torch.Tensor) -> dict[str, float]:
    """Max/mean absolute logit difference and top-1 agreement between torch and ONNX Runtime."""
    from ..runtime import load_model

    with torch.no_grad():
        ref = model.eval()(inputs).numpy()
    got = load_model(onnx_path, require_signature=False).predict(inputs.numpy())  # the file just written
    diff = np.abs(ref - got)
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()), "samples": len(inputs)}
