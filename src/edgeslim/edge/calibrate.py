"""This host's speed (a short microbenchmark), small-device emulation (threads + CPU
affinity) and the memory check.

Per-layer times are measured on this host; the planner scales them to a device profile by
the ratio of effective GFLOP/s (host figure measured here, device figure from the profile).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConfigError
from ..runtime.affinity import pinned_thread
from .profiles import DeviceProfile

# One 3x3 convolution, 64 -> 64 channels on 56x56: a typical mid-network layer (115.6 M MACs).
_C, _HW, _K = 64, 56, 3


@dataclass
class HostCalibration:
    gflops_fp32: float
    int8_speedup: float
    threads: int
    cpus: list[int] | None
    conv_fp32_ms: float
    conv_int8_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_model(int8: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((_C, _C, _K, _K)).astype(np.float32) * 0.05
    shape = [1, _C, _HW, _HW]
    if not int8:
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
        inits = [numpy_helper.from_array(w, "w")]
        x_type = y_type = TensorProto.FLOAT
    else:  # the standard ONNX integer convolution, as ONNX Runtime runs a quantized model
        nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                                  pads=[1, 1, 1, 1])]
        inits = [numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
                 numpy_helper.from_array(np.array(128, np.uint8), "xz"),
                 numpy_helper.from_array(np.clip(w * 600, -127, 127).astype(np.int8), "w"),
                 numpy_helper.from_array(np.array(0.002, np.float32), "ws"),
                 numpy_helper.from_array(np.array(0, np.int8), "wz"),
                 numpy_helper.from_array(np.array(0.05, np.float32), "ys"),
                 numpy_helper.from_array(np.array(128, np.uint8), "yz")]
        x_type = y_type = TensorProto.UINT8
    graph = helper.make_graph(nodes, "calib", [helper.make_tensor_value_info("x", x_type, shape)],
                              [helper.make_tensor_value_info("y", y_type, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _time_model(proto: onnx.ModelProto, threads: int, repeats: int) -> float:
    import onnxruntime as ort

    from ..runtime.runner import session_options

    sess = ort.InferenceSession(proto.SerializeToString(), session_options(threads),
                                providers=["CPUExecutionProvider"])
    dtype = np.uint8 if proto.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8 else np.float32
    x = (np.random.default_rng(1).random((1, _C, _HW, _HW)) * 200).astype(dtype)
    for _ in range(3):
        sess.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def calibrate_host(threads: int = 1, cpus: list[int] | None = None, repeats: int = 15) -> HostCalibration:
    """Effective fp32 GFLOP/s and int8 speed-up of this host (a conv layer, ~0.5 s)."""
    with emulated_device(cpus):
        t_fp32 = _time_model(_conv_model(False), threads, repeats)
        t_int8 = _time_model(_conv_model(True), threads, repeats)
    flops = 2.0 * _C * _C * _K * _K * _HW * _HW
    return HostCalibration(gflops_fp32=flops / t_fp32 / 1e9, int8_speedup=max(1.0, t_fp32 / t_int8),
                           threads=threads, cpus=list(cpus) if cpus else None,
                           conv_fp32_ms=t_fp32 * 1e3, conv_int8_ms=t_int8 * 1e3)


@contextlib.contextmanager
def emulated_device(cpus: list[int] | set[int] | None) -> Iterator[None]:
    """Pin the calling thread to ``cpus`` (Linux: affinity is per thread), restore afterwards.
    With ONNX Runtime at 1 intra-op thread the kernels run on the calling thread, so this
    emulates a 1-core device on a bigger host."""
    try:
        with pinned_thread(cpus):
            yield
    except ValueError as e:
        if "cannot pin" in str(e):
            raise ConfigError(str(e)) from None
        raise


class MemoryRefusal(ConfigError):
    """The model (or its part) does not fit in the device's memory."""


def check_memory(need_bytes: int, device: DeviceProfile, what: str = "the model") -> None:
    """Refuse, with the figures, when weights + peak activations exceed the device memory."""
    budget = device.memory_mb * 2**20
    if need_bytes > budget:
        raise MemoryRefusal(f"{what} needs {need_bytes / 2**20:.1f} MiB (weights + peak activations) but "
                            f"device {device.name!r} allows {device.memory_mb:.4g} MiB; split the model, "
                            "offload it, or compress it (prune/quantize)")
