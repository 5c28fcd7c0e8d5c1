"""reduce_range: where ONNX Runtime's U8S8 int8 kernels saturate (x86 without VNNI), 7-bit weights
keep them exact; the CPU detection that "auto" relies on predicts what this machine's ONNX Runtime
does."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import edgeslim.quantize as Q
from edgeslim.export import export_onnx
from edgeslim.quantize.affine import qparams_for, qrange
from edgeslim.quantize.kernels import cpu_flags, resolve_reduce_range, u8s8_saturates


def test_only_x86_without_vnni_saturates(tmp_path):
    assert u8s8_saturates("x86_64", {"avx2", "fma"})
    assert not u8s8_saturates("x86_64", {"avx2", "avx512f", "avx512_vnni"})
    assert not u8s8_saturates("x86_64", {"avx2", "avx_vnni"})
    assert not u8s8_saturates("aarch64", set())
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_vnni\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") is None
    assert resolve_reduce_range(True) and not resolve_reduce_range(False)
    assert resolve_reduce_range("auto") == u8s8_saturates()


def test_reduced_range_is_onnxruntime_7_bit_grid():
    assert qrange("int8", symmetric=True, reduce_range=True) == (-64, 64)
    w = np.linspace(-2, 1, 50, dtype=np.float32).reshape(5, 10)
    qp = qparams_for(w, "int8", symmetric=True, axis=0, reduce_range=True)
    q = qp.quantize(w)
    assert q.min() >= -64 and q.max() <= 64 and np.abs(q).max(1).tolist() == [64] * 5


def _int8_kernel_and_float_simulation(path, x):
    def run(level):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    # fully optimized: QDQ pairs fused into integer kernels; nothing optimized: DQ -> float Conv -> Q
    return run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL), run(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


def test_reduced_range_keeps_the_int8_kernels_exact_where_full_range_saturates(tmp_path):
    # every activation at 255 and every weight at 127: the largest pair sums, which a saturating
    # kernel clips at 32,767 (2 * 255 * 127 = 64,770); the input is constant, as a calibration tensor can be
    m = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.ReLU()).eval()
    with torch.no_grad():
        m[0].weight.fill_(1.0)
    float_onnx = export_onnx(m, tmp_path / "float.onnx", (16, 4, 4))
    x = np.ones((8, 16, 4, 4), np.float32)
    full = Q.quantize_onnx_static(float_onnx, tmp_path / "full.onnx", x, "minmax", reduce_range=False)
    kernel, simulated = _int8_kernel_and_float_simulation(full, x)
    assert simulated == pytest.approx(16.0, rel=0.01)
    assert (not np.allclose(kernel, simulated, rtol=0.01)) == u8s8_saturates()  # the detection is right here
    reduced = Q.quantize_onnx_static(float_onnx, tmp_path / "reduced.onnx", x, "minmax", reduce_range=True)
    kernel, simulated = _int8_kernel_and_float_simulation(reduced, x)
    assert np.allclose(kernel, simulated, rtol=0.01) and simulated == pytest.approx(16.0, rel=0.01)
    weights = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(reduced)).graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert weights and max(int(np.abs(w).max()) for w in weights) == 64


def test_quantize_records_the_weight_range(tmp_path, digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    r = Q.quantize(ckpt, {"method": "static", "reduce_range": True, "sensitivity": False, "benchmark": False,
                          "samples": 64}, data=digits.train, out=tmp_path)
    assert r.summary["weight_range"].startswith("7-bit")
    r = Q.quantize(ckpt, {"method": "dynamic", "reduce_range": False, "benchmark": False},
                   data=digits.train, out=tmp_path / "dyn")
    assert r.summary["weight_range"].startswith("8-bit")
