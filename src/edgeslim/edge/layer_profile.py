"""Per-layer latency of an ONNX model from ONNX Runtime's own profiler.

The model is prepared (batch 1, portable optimizations; see ``graph.prepare_model``) and run
with full optimizations, as a device would run it. ONNX Runtime then renames some kernels
(fused nodes, NCHWc layout variants, layout reorders); each profiler event is mapped back to
a node of the prepared graph by node name, then by output tensor name, and a kernel that
matches neither (a layout reorder) is charged to the node that ran just before it.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .calibrate import emulated_device
from .graph import CutPoint, GraphInfo, analyze

_SUFFIXES = ("_kernel_time",)
_TENSOR_SUFFIXES = ("_nchwc", "_nhwc")
_TOKEN = re.compile(r"_token_\d+$")


@dataclass
class LayerProfile:
    info: GraphInfo = field(repr=False)
    node_ms: list[float]
    run_ms: float  # median latency of one whole run (no profiler attached)
    overhead_ms: float  # run_ms minus the kernel times: per-run fixed cost of the runtime
    threads: int
    cpus: list[int] | None

    def head_ms(self, cut: CutPoint) -> float:
        return float(sum(self.node_ms[:cut.position + 1]))

    def tail_ms(self, cut: CutPoint) -> float:
        return float(sum(self.node_ms[cut.position + 1:]))

    def head_macs(self, cut: CutPoint) -> int:
        return sum(n.macs for n in self.info.nodes[:cut.position + 1])

    def node_rows(self) -> list[dict]:
        return [{"index": n.index, "name": n.name, "op": n.op_type, "ms": ms, "output_bytes": n.output_bytes,
                 "macs": n.macs} for n, ms in zip(self.info.nodes, self.node_ms)]

    def cut_rows(self) -> list[dict]:
        return [{"cut": c.tensor, "position": c.position, "shape": "x".join(map(str, c.shape)),
                 "bytes": c.bytes, "head_ms": self.head_ms(c), "tail_ms": self.tail_ms(c),
                 "head_macs": self.head_macs(c)} for c in self.info.cut_points]


def _node_lookup(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, int]]:
    by_name = {n.name: i for i, n in enumerate(model.graph.node) if n.name}
    by_output = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    return by_name, by_output


def _event_node(name: str, by_name: dict[str, int], by_output: dict[str, int]) -> int | None:
    for s in _SUFFIXES:
        name = name.removesuffix(s)
    name = name.removeprefix("fused ")
    name = _TOKEN.sub("", name)  # layout transformer copies (NHWC int8 kernels): "<node>_token_7"
    if name in by_name:
        return by_name[name]
    for s in _TENSOR_SUFFIXES:
        name = name.removesuffix(s)
    return by_output.get(name)


def parse_profile(events: list[dict], model: onnx.ModelProto, skip_runs: int = 0) -> list[list[float]]:
    """Per-run kernel milliseconds per node: ``result[run][node]``."""
    by_name, by_output = _node_lookup(model)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    kernels = sorted((e["ts"], e["name"], e["dur"]) for e in events
                     if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"))
    n = len(model.graph.node)
    per_run: list[list[float]] = []
    k = 0
    for start, end in runs:
        times, pending, last = [0.0] * n, 0.0, None
        while k < len(kernels) and kernels[k][0] < start:
            k += 1
        while k < len(kernels) and kernels[k][0] <= end:
            _, name, dur = kernels[k]
            idx = _event_node(name, by_name, by_output)
            if idx is None:
                idx = last  # a layout reorder: charge it to the node that ran before it
            if idx is None:
                pending += dur / 1e3  # before any known node: charge it to the next one
            else:
                times[idx] += dur / 1e3 + pending
                pending, last = 0.0, idx
            k += 1
        per_run.append(times)
    return per_run[skip_runs:]


def _session(model: onnx.ModelProto, threads: int, profile_dir: str | None):
    import onnxruntime as ort

    from ..runtime.runner import session_options

    opts = session_options(threads)
    if profile_dir:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(profile_dir) / "ort")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _input_array(info: GraphInfo, seed: int = 0) -> np.ndarray:
    cut = info.cut_points[0]  # the model input
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(cut.dtype), np.integer):
        return rng.integers(0, 100, cut.shape).astype(cut.dtype)
    return rng.standard_normal(cut.shape).astype(cut.dtype)


def profile_layers(model: str | os.PathLike | onnx.ModelProto, threads: int = 1, cpus: list[int] | None = None,
                   runs: int = 20, warmup: int = 5, info: GraphInfo | None = None) -> LayerProfile:
    """Median per-node latency (ms) over ``runs`` profiled runs, at ``threads`` ONNX Runtime
    threads, pinned to ``cpus`` (emulating a small device). Kernel times are rescaled so that
    they add up to the median un-profiled run (the profiler itself adds a little per kernel)."""
    info = info or analyze(model)
    feed = {info.input_name: _input_array(info)}
    plain_s = []
    with emulated_device(cpus), tempfile.TemporaryDirectory() as tmp:
        plain, profiled = _session(info.model, threads, None), _session(info.model, threads, tmp)
        for i in range(warmup + runs):  # interleaved: both see the same machine noise
            profiled.run(None, feed)
            t0 = time.perf_counter()
            plain.run(None, feed)
            if i >= warmup:
                plain_s.append(time.perf_counter() - t0)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    run_ms = float(np.median(plain_s)) * 1e3
    per_run = np.asarray(parse_profile(events, info.model, skip_runs=warmup))
    node_ms = np.median(per_run, axis=0)
    kernel_ms = float(node_ms.sum())
    if kernel_ms > run_ms:  # profiler overhead inflated the kernels: scale them to the real run
        node_ms *= run_ms / kernel_ms
        kernel_ms = run_ms
    return LayerProfile(info, [float(x) for x in node_ms], run_ms, run_ms - kernel_ms, threads,
                        list(cpus) if cpus else None)
