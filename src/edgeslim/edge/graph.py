"""ONNX graph analysis for split inference: candidate cut points, tensor bytes, MACs,
memory need, and the head/tail split itself.

Split planning works on a *prepared* model: batch fixed to 1 (one inference on a device)
and ONNX Runtime's basic, portable graph optimizations applied (constant folding, padding
folded into convolutions, shape sub-graphs removed). That leaves a clean data-flow graph
whose cut points are meaningful, and it is exactly what the head and tail files run.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from .._io import atomic_write_files
from ..errors import ConfigError

# Ops whose presence means the model runs integer kernels (int8 device speed applies).
INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
            "MatMulInteger", "DynamicQuantizeLinear"}


@dataclass
class NodeInfo:
    index: int
    name: str
    op_type: str
    outputs: list[str]
    output_bytes: int
    macs: int


@dataclass
class CutPoint:
    """A tensor whose removal splits the graph: the head computes it, the tail starts from it.
    ``position`` is the index of the last head node (-1: the model input, i.e. full offload)."""

    tensor: str
    position: int
    bytes: int
    shape: tuple[int, ...]
    dtype: str


@dataclass
class GraphInfo:
    model: onnx.ModelProto = field(repr=False)
    input_name: str
    output_names: list[str]
    nodes: list[NodeInfo]
    cut_points: list[CutPoint]
    tensor_bytes: dict[str, int] = field(repr=False)
    weight_bytes_per_node: list[int] = field(repr=False)
    last_use: dict[str, int] = field(repr=False)
    produced_at: dict[str, int] = field(repr=False)

    @property
    def is_int8(self) -> bool:
        return any(n.op_type in INT8_OPS for n in self.nodes)

    def cut(self, tensor: str) -> CutPoint:
        for c in self.cut_points:
            if c.tensor == tensor:
                return c
        names = ", ".join(c.tensor for c in self.cut_points)
        raise ConfigError(f"{tensor!r} is not a valid cut point of this model (a cut tensor must carry "
                          f"everything the rest of the graph needs). Valid cut points: {names}")

    def memory_bytes(self, start: int, end: int) -> int:
        """Weights + peak live activations of nodes ``start..end`` (inclusive), batch 1."""
        weights = sum(self.weight_bytes_per_node[start:end + 1])
        return weights + self._peak_activations(start, end)

    def _peak_activations(self, start: int, end: int) -> int:
        live: dict[str, int] = {}
        for t, pos in self.produced_at.items():  # tensors entering the range from outside
            if pos < start and self.last_use.get(t, -1) >= start:
                live[t] = self.tensor_bytes.get(t, 0)
        peak = sum(live.values())
        for node in self.nodes[start:end + 1]:
            for o in node.outputs:
                live[o] = self.tensor_bytes.get(o, 0)
            peak = max(peak, sum(live.values()))
            for t in [t for t in live if self.last_use.get(t, -1) <= node.index]:
                del live[t]
        return peak


def _load(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    from ..runtime.onnx_file import load_onnx  # the checked loader every user ONNX file goes through

    return model if isinstance(model, onnx.ModelProto) else load_onnx(model)


def _fix_batch(model: onnx.ModelProto) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1


def prepare_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Batch 1 + ONNX Runtime basic optimizations (portable ONNX ops only), shapes inferred."""
    import onnxruntime as ort

    proto = onnx.ModelProto()
    proto.CopyFrom(_load(model))
    real_inputs = [i for i in proto.graph.input if i.name not in {x.name for x in proto.graph.initializer}]
    if len(real_inputs) != 1:
        raise ConfigError(f"split planning needs a model with exactly one input; this one has {len(real_inputs)}")
    _fix_batch(proto)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "basic.onnx"
        onnx.save(proto, str(src))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(dst)
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        prepared = onnx.load(str(dst))
    del prepared.metadata_props[:]
    prepared.metadata_props.extend(proto.metadata_props)
    return shape_inference.infer_shapes(prepared)


def _value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    g = model.graph
    return {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}


def _shape_dtype(v: onnx.ValueInfoProto | None) -> tuple[tuple[int, ...], str]:
    if v is None or not v.type.HasField("tensor_type"):
        return (), "unknown"
    tt = v.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
    return shape, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    if dtype == "unknown":
        return 0
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of compute-heavy ops (Conv, Gemm, MatMul and their int8 forms)."""
    out = shapes.get(node.output[0], ())
    out_elems = int(np.prod(out, dtype=np.int64)) if out else 0
    op = node.op_type
    if op in ("Conv", "ConvInteger") and len(node.input) > 1:
        w = shapes.get(node.input[1], ())
        return out_elems * int(np.prod(w[1:], dtype=np.int64)) if w else 0
    if op == "QLinearConv":
        w = shapes.get(node.input[3], ())
        return out_elems * int(np.prod(w[1:], dtype=np.int64)) if w else 0
    if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shapes.get(node.input[0], ())
        if not a:
            return 0
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        k = a[0] if (op == "Gemm" and trans_a) else a[-1]
        return out_elems * int(k)
    return 0


def _constant_tensors(model: onnx.ModelProto) -> set[str]:
    """Initializers and tensors computed from constants only: duplicated, never cut or sent."""
    const = {i.name for i in model.graph.initializer} | {""}
    for node in model.graph.node:
        if all(i in const for i in node.input):
            const.update(node.output)
    return const


def analyze(model: str | os.PathLike | onnx.ModelProto, prepared: bool = False) -> GraphInfo:
    """Nodes (output bytes, MACs), cut points and memory data of ``model`` (prepared first
    unless ``prepared``)."""
    proto = _load(model) if prepared else prepare_model(model)
    g = proto.graph
    infos = _value_infos(proto)
    inits = {i.name: i for i in g.initializer}
    const = _constant_tensors(proto)
    shapes: dict[str, tuple[int, ...]] = {n: tuple(i.dims) for n, i in inits.items()}
    dtypes: dict[str, str] = {}
    for name, v in infos.items():
        shapes[name], dtypes[name] = _shape_dtype(v)
    input_name = next(i.name for i in g.input if i.name not in inits)
    output_names = [o.name for o in g.output]

    n = len(g.node)
    produced_at = {input_name: -1}
    last_use: dict[str, int] = {}
    nodes, weight_bytes = [], []
    for idx, node in enumerate(g.node):
        for t in node.input:
            if t and t not in const:
                last_use[t] = idx
        for o in node.output:
            if o not in const:
                produced_at[o] = idx
        data_outs = [o for o in node.output if o not in const]
        nodes.append(NodeInfo(idx, node.name or f"{node.op_type}_{idx}", node.op_type, list(node.output),
                              sum(_nbytes(shapes.get(o, ()), dtypes.get(o, "unknown")) for o in data_outs),
                              _macs(node, shapes)))
        weight_bytes.append(sum(numpy_helper.to_array(inits[t]).nbytes for t in node.input if t in inits))
    for o in output_names:
        last_use[o] = n  # graph outputs are needed after the last node
    tensor_bytes = {t: _nbytes(shapes.get(t, ()), dtypes.get(t, "unknown")) for t in produced_at}
    cuts = _cut_points(produced_at, last_use, shapes, dtypes, tensor_bytes, n)
    return GraphInfo(proto, input_name, output_names, nodes, cuts, tensor_bytes, weight_bytes, last_use,
                     produced_at)


def _cut_points(produced_at, last_use, shapes, dtypes, tensor_bytes, n) -> list[CutPoint]:
    """A tensor t produced at position p is a valid cut iff no OTHER data tensor produced at or
    before p is consumed after p: then every path from the input to the outputs crosses t.
    Chains give one cut per layer; residual blocks only give their boundaries."""
    by_pos: dict[int, list[str]] = {}
    for t, p in produced_at.items():
        by_pos.setdefault(p, []).append(t)
    cuts, reach_before = [], -1  # max last use over tensors produced strictly before p
    for p in range(-1, n):
        here = by_pos.get(p, [])
        live_here = [t for t in here if last_use.get(t, -1) > p]
        if len(live_here) == 1 and reach_before <= p:
            t = live_here[0]
            cuts.append(CutPoint(t, p, tensor_bytes[t], shapes.get(t, ()), dtypes.get(t, "unknown")))
        for t in here:
            reach_before = max(reach_before, last_use.get(t, -1))
    return cuts


def split_model(model: str | os.PathLike | onnx.ModelProto, at: str,
                out_dir: str | os.PathLike | None = None) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Head (input -> ``at``) and tail (``at`` -> outputs) of the prepared model; written to
    ``out_dir``/head.onnx and tail.onnx when given. Cutting at the input or the output is
    refused: those are full offload and on-device, which need no split."""
    info = analyze(model)
    cut = info.cut(at)
    if cut.position < 0 or at in info.output_names:
        raise ConfigError(f"{at!r} is the model input or output; split at an inner cut point")
    extractor = onnx.utils.Extractor(info.model)
    head = extractor.extract_model([info.input_name], [at])
    tail = extractor.extract_model([at], info.output_names)
    for part, role in ((head, "head"), (tail, "tail")):
        part.metadata_props.extend(info.model.metadata_props)
        entry = part.metadata_props.add()
        entry.key, entry.value = "edgeslim_split", json.dumps({"role": role, "cut": at})
        onnx.checker.check_model(part)
    if out_dir is not None:
        out = Path(out_dir)
        # both or neither: a head without its tail (disk full, Ctrl-C) would pass for a split
        atomic_write_files({out / "head.onnx": head.SerializeToString(), out / "tail.onnx": tail.SerializeToString()})
    return head, tail
