"""Exact ONNX graph rewrites that make ONNX Runtime's CPU kernels faster.

``fold_maxpool_into_conv``: ``Conv (k filters, KhxKw, stride 1) [-> activation] -> MaxPool 2x2/2``
becomes ``Conv (4k filters, (Kh+1)x(Kw+1), stride 2) [-> activation] -> Reshape -> ReduceMax``.
Filter ``p*k + o`` of the new conv is filter ``o`` shifted to pooling position ``p`` of the
2x2 window, so the new conv computes, at the quarter of the positions, exactly the four
values each pooling window takes the max of (max commutes with a non-decreasing activation).

Why: ONNX Runtime's NCHWc convolution computes output channels in blocks of 8 (AVX2) or 16
(AVX-512). A first conv with few filters (a pruned stem) costs as much as a full block at full
resolution, and its output is then pooled away; the folded conv fills the block with the four
pooling positions and runs at a quarter of the positions. It does more MACs ((K+1)^2/K^2), so
it only pays when 4k filters fit in fewer blocks than the original's: ``optimize_onnx(...,
mode="auto")`` times both graphs on this machine's ONNX Runtime, at batch 1 and 64, and keeps
the fold where it is not slower.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from ..runtime.bench import FASTER_MARGIN
from onnx import helper, numpy_helper

OptimizeMode = Literal["auto", "always", "never"]
# element-wise, non-decreasing: max over a window commutes with them
MONOTONE_ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu"}


@dataclass(frozen=True)
class GraphOptimization:
    """How export rewrites the graph: ``mode`` (``auto`` measures, see :func:`optimize_onnx`),
    and the batch sizes and ONNX Runtime threads ``auto`` measures with. One thread, as every
    speed-up edgeslim reports is measured (a decision taken at all cores kept a pruned LeNet-5's
    second fold out by 0.1%, and the file then ran 1.81x its dense original at one thread, not 2.1x)."""
    mode: OptimizeMode = "auto"
    batch: int | tuple[int, ...] = (1, 64)
    threads: int | None = 1

    @property
    def batches(self) -> tuple[int, ...]:
        return (self.batch,) if isinstance(self.batch, int) else tuple(self.batch)


def keeps_fold(speedups: list[float]) -> bool:
    """An exact rewrite is kept where it is not slower: no batch size measurably slower (beyond the
    timing noise FASTER_MARGIN allows) and faster on balance (geometric mean of the speed-ups >= 1)."""
    return min(speedups) >= 1 / FASTER_MARGIN and float(np.prod(speedups)) >= 1.0


@dataclass
class ConvPoolChain:
    conv: onnx.NodeProto
    activation: onnx.NodeProto | None
    pool: onnx.NodeProto
    pooled_hw: tuple[int, int]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    uses: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    return uses


def _foldable_conv(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    a = _attrs(node)
    weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
    bias_ok = len(node.input) < 3 or not node.input[2] or node.input[2] in initializers
    return (node.op_type == "Conv" and weight is not None and len(weight.dims) == 4 and bias_ok
            and weight.data_type == onnx.TensorProto.FLOAT and a.get("group", 1) == 1
            and all(s == 1 for s in a.get("strides", [1, 1])) and all(d == 1 for d in a.get("dilations", [1, 1]))
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))


def _foldable_activation(node: onnx.NodeProto, constants: set[str]) -> bool:
    if node.op_type not in MONOTONE_ACTIVATIONS:
        return False
    if node.op_type == "LeakyRelu":
        return _attrs(node).get("alpha", 0.01) >= 0
    # Clip's min/max must be constants for the op to be element-wise
    return all(not name or name in constants for name in node.input[1:])


def _is_2x2_maxpool(node: onnx.NodeProto) -> bool:
    a = _attrs(node)
    return (node.op_type == "MaxPool" and len(node.output) == 1 and list(a.get("kernel_shape", [])) == [2, 2]
            and list(a.get("strides", [1, 1])) == [2, 2] and not any(a.get("pads", [0, 0, 0, 0]))
            and all(d == 1 for d in a.get("dilations", [1, 1])) and a.get("ceil_mode", 0) == 0
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID") and a.get("storage_order", 0) == 0)


def find_conv_pool_chains(model: onnx.ModelProto) -> list[ConvPoolChain]:
    """Every ``Conv [-> monotone activation] -> MaxPool 2x2/2`` that can be folded: stride-1
    conv with constant float weights, intermediate results used only inside the chain, and
    a pooled output whose spatial size is known."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    constants = set(initializers) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    uses = _consumers(graph)
    outputs = {o.name for o in graph.output}
    shapes = _spatial_shapes(model)
    chains = []
    for conv in graph.node:
        if not _foldable_conv(conv, initializers):
            continue
        activation, tensor = None, conv.output[0]
        nxt = uses.get(tensor, [])
        if len(nxt) == 1 and tensor not in outputs and _foldable_activation(nxt[0], constants):
            activation, tensor = nxt[0], nxt[0].output[0]
            nxt = uses.get(tensor, [])
        if len(nxt) != 1 or tensor in outputs or not _is_2x2_maxpool(nxt[0]):
            continue
        hw = shapes.get(nxt[0].output[0])
        if hw is None:
            continue
        chains.append(ConvPoolChain(conv, activation, nxt[0], hw))
    return chains


def _spatial_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """(H, W) of every 4-D tensor whose spatial size shape inference can tell."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            out[vi.name] = (dims[2].dim_value, dims[3].dim_value)
    return out


def folded_weights(weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the stride-2 conv: filter ``p*k + o`` is filter ``o`` shifted by pooling
    position ``p = 2*row + col`` inside a kernel one larger on each side."""
    k, c, kh, kw = weight.shape
    folded = np.zeros((4, k, c, kh + 1, kw + 1), dtype=weight.dtype)
    for row in range(2):
        for col in range(2):
            folded[2 * row + col, :, :, row:row + kh, col:col + kw] = weight
    bias = np.zeros(k, dtype=weight.dtype) if bias is None else bias
    return folded.reshape(4 * k, c, kh + 1, kw + 1), np.tile(bias, 4)


def fold_maxpool_into_conv(model: onnx.ModelProto, chains: list[ConvPoolChain] | None = None
                           ) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` with the given chains (default: all foldable ones) folded; returns
    it and the folded conv node names. The pool's output tensor keeps its name, so split
    points and downstream nodes are unchanged."""
    model = _copy(model)
    chains = find_conv_pool_chains(model) if chains is None else _same_chains(model, chains)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    remove, folded = [], []
    for chain in chains:
        conv, pool = chain.conv, chain.pool
        weight = numpy_helper.to_array(initializers[conv.input[1]])
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        bias = numpy_helper.to_array(initializers[conv.input[2]]) if has_bias else None
        new_w, new_b = folded_weights(weight, bias)
        k, _, kh, kw = weight.shape
        prefix = (conv.name or conv.output[0]) + "_poolfold"
        graph.initializer.extend([numpy_helper.from_array(new_w, prefix + "_W"),
                                  numpy_helper.from_array(new_b, prefix + "_B"),
                                  numpy_helper.from_array(np.array([-1, 4, k, *chain.pooled_hw], np.int64),
                                                          prefix + "_shape")])
        pads = _attrs(conv).get("pads", [0, 0, 0, 0])
        new_nodes = [helper.make_node("Conv", [conv.input[0], prefix + "_W", prefix + "_B"], [prefix + "_conv"],
                                      name=prefix, kernel_shape=[kh + 1, kw + 1], strides=[2, 2], pads=list(pads))]
        tensor = prefix + "_conv"
        if chain.activation is not None:
            act = onnx.NodeProto()
            act.CopyFrom(chain.activation)
            act.input[0], act.output[0] = tensor, prefix + "_act"
            new_nodes.append(act)
            tensor = act.output[0]
        new_nodes += [helper.make_node("Reshape", [tensor, prefix + "_shape"], [prefix + "_positions"],
                                       name=prefix + "_reshape"),
                      _reduce_max_over_positions(model, graph, prefix, pool.output[0])]
        at = list(graph.node).index(pool)  # every input of the chain is defined by then
        for offset, node in enumerate(new_nodes):
            graph.node.insert(at + offset, node)
        remove += [n for n in (conv, chain.activation, pool) if n is not None]
        folded.append(conv.name or conv.output[0])
    for node in remove:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    onnx.checker.check_model(model)
    return model, folded


def _reduce_max_over_positions(model: onnx.ModelProto, graph: onnx.GraphProto, prefix: str, output: str
                               ) -> onnx.NodeProto:
    """ReduceMax over axis 1; its axes became an input in opset 18."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset < 18:
        return helper.make_node("ReduceMax", [prefix + "_positions"], [output], name=prefix + "_max", axes=[1],
                                keepdims=0)
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), prefix + "_axes"))
    return helper.make_node("ReduceMax", [prefix + "_positions", prefix + "_axes"], [output], name=prefix + "_max",
                            keepdims=0)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _same_chains(model: onnx.ModelProto, chains: list[ConvPoolChain]) -> list[ConvPoolChain]:
    wanted = {c.conv.output[0] for c in chains}
    return [c for c in find_conv_pool_chains(model) if c.conv.output[0] in wanted]


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)


def optimize_onnx(model: onnx.ModelProto, settings: GraphOptimization | OptimizeMode = "auto"
                  ) -> tuple[onnx.ModelProto, dict]:
    """Apply :func:`fold_maxpool_into_conv` per ``settings.mode``: ``always`` (every foldable
    chain), ``never``, or ``auto``: chain by chain, time the graph with and without the fold
    side by side on this machine's ONNX Runtime (at each of ``settings.batches``, with
    ``settings.threads``) and keep the fold where it is not slower (:func:`keeps_fold`). Returns
    the model and a report (chains folded, measured latencies) that export stores in the model's
    metadata; ``{}`` when nothing could be folded."""
    settings = GraphOptimization(settings) if isinstance(settings, str) else settings
    mode = settings.mode
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"optimize mode must be 'auto', 'always' or 'never', got {mode!r}")
    chains = [] if mode == "never" else find_conv_pool_chains(model)
    if not chains:
        return model, {}
    if mode == "always":
        model, folded = fold_maxpool_into_conv(model, chains)
        return model, {"rewrite": "fold_maxpool_into_conv", "mode": mode, "folded": folded}
    trials = []
    for chain in chains:
        candidate, _ = fold_maxpool_into_conv(model, [chain])
        times = [p50_ms([model, candidate], b, settings.threads, warmup=5, rounds=15, iters_per_round=5)
                 for b in settings.batches]
        keep = keeps_fold([current / folded for current, folded in times])
        trials.append({"node": chain.conv.name or chain.conv.output[0], "p50_ms": [round(t[0], 4) for t in times],
                       "folded_p50_ms": [round(t[1], 4) for t in times], "kept": keep})
        if keep:
            model = candidate
    return model, {"rewrite": "fold_maxpool_into_conv", "mode": mode, "batch": list(settings.batches),
                   "threads": settings.threads,
                   "folded": [t["node"] for t in trials if t["kept"]], "trials": trials}


def deployed_latencies_ms(models: list[onnx.ModelProto], batch: int = 1, threads: int | None = 1,
                          rounds: int = 10) -> list[float]:
    """p50 latency (ms) of each ONNX model as export can deploy it: the faster of its plain
    graph and its graph with every foldable max-pool folded. All variants of all models are
    timed in one interleaved run, so their ratios hold even while the machine's speed drifts."""
    variants, owner = [], []
    for i, model in enumerate(models):
        chains = find_conv_pool_chains(model)
        for variant in ([model, fold_maxpool_into_conv(model, chains)[0]] if chains else [model]):
            variants.append(variant)
            owner.append(i)
    times = p50_ms(variants, batch, threads, warmup=3, rounds=rounds, iters_per_round=3)
    return [min(t for t, o in zip(times, owner) if o == i) for i in range(len(models))]


def folded_nodes(path: str | Path) -> list[str]:
    """The conv nodes export folded a max-pool into, as recorded in the file's metadata."""
    import json

    from ..runtime.runner import METADATA_KEY

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props.get(METADATA_KEY, "{}")).get("graph_optimization", {}).get("folded", [])


def p50_ms(models: list[onnx.ModelProto], batch: int, threads: int | None, **timing: int) -> list[float]:
    """Median latency of each model, timed in one interleaved ``edgeslim.runtime.benchmark`` run."""
    from ..runtime import benchmark

    with tempfile.TemporaryDirectory(prefix="edgeslim-optimize-") as tmp:
        paths = [Path(tmp) / f"{i}.onnx" for i in range(len(models))]
        for path, proto in zip(paths, models):
            path.write_bytes(proto.SerializeToString())
        return [r["p50_ms"] for r in benchmark(paths, batch=batch, threads=threads, require_signature=False,
                                                 **timing)]  # candidates written here
