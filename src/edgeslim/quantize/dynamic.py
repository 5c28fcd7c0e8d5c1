"""Dynamic int8 quantization (weights int8 ahead of time, activation ranges computed per
batch at run time) for Linear/MatMul-heavy models: MLPs and transformers."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

DYNAMIC_OPS = ["MatMul", "Gemm", "Attention", "LSTM", "GRU"]


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite Gemm(x, W^T, b) (how torch exports Linear) as MatMul + Add: ONNX Runtime's
    dynamic quantizer has integer kernels (MatMulInteger / DynamicQuantizeMatMul) for MatMul."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        w = w.T if attrs.get("transB", 0) else w
        wt_name = node.input[1] + "_kn"
        model.graph.initializer.append(numpy_helper.from_array(w.copy(), wt_name))
        mm_out = node.output[0] + "_mm" if len(node.input) > 2 and node.input[2] else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], wt_name], [mm_out], name=node.name + "_MatMul"))
        if mm_out != node.output[0]:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def quantize_onnx_dynamic(float_onnx: str | Path, out: str | Path, per_channel: bool = False,
                          reduce_range: bool = False) -> Path:
    """int8 weights for every MatMul/Gemm (Linear) layer; other ops stay float. ``reduce_range``:
    7-bit weights (see ``kernels.py``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .static import copy_metadata, preprocess_onnx

    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocess_onnx(float_onnx, Path(tmp) / "pre.onnx")
        model = gemm_to_matmul(onnx.load(str(pre)))
        onnx.save(model, str(pre))
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=reduce_range, op_types_to_quantize=DYNAMIC_OPS)
        finally:
            logging.getLogger().setLevel(level)
    copy_metadata(float_onnx, out)
    return Path(out)


def summarize_dynamic(path: str | Path) -> dict:
    """Which layers got int8 weights (dynamic integer kernels) and which stayed float."""
    from onnx import numpy_helper

    from .static import WEIGHTED_OPS

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    layers, float_layers = [], []
    for node in model.graph.node:
        if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger"):
            w = node.input[1]
            scale_name = w.replace("_quantized", "_scale")
            entry = {"layer": node.name, "op": node.op_type, "bits": 8, "weight": w,
                     "activations": "uint8, range computed per batch at run time"}
            if scale_name in inits:
                scale = numpy_helper.to_array(inits[scale_name])
                entry["weight_scale"] = [float(v) for v in np.atleast_1d(scale)][:64]
            layers.append(entry)
        elif node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in inits:
            reason = ("dynamic quantization targets MatMul/Gemm; use method=static for convolutions"
                      if node.op_type == "Conv" else "not quantized by ONNX Runtime")
            float_layers.append({"layer": node.name, "reason": reason})
            layers.append({"layer": node.name, "op": node.op_type, "bits": 32, "reason": reason})
    return {"layers": layers, "float_layers": float_layers, "quantized_layers": sum(e["bits"] == 8 for e in layers)}
