"""Affine quantization r = S (q - Z) against hand-computed values and ONNX Runtime's own formula."""
import numpy as np
import pytest

from edgeslim.errors import ConfigError
from edgeslim.quantize.affine import qparams_for, qparams_from_range, qrange, sqnr_db


def test_asymmetric_uint8_hand_values():
    qp = qparams_from_range(-1.0, 3.0, "uint8", symmetric=False)
    assert qp.scale == pytest.approx(4 / 255)
    assert int(qp.zero_point) == 64  # round(0 - (-1) / (4/255)) = round(63.75)
    q = qp.quantize(np.array([-1.0, 0.0, 3.0, 10.0], np.float32))
    assert q.tolist() == [0, 64, 255, 255]  # 10 saturates
    assert qp.dequantize(q)[1] == 0.0  # zero is exact


def test_symmetric_int8_narrow_range_hand_values():
    qp = qparams_from_range(-2.0, 0.5, "int8", symmetric=True)
    assert qp.scale == pytest.approx(2 / 127) and int(qp.zero_point) == 0
    assert qp.quantize(np.array([-2.0, 0.5, 3.0], np.float32)).tolist() == [-127, 32, 127]  # 0.5*127/2 = 31.75
    assert qrange("int8", symmetric=True) == (-127, 127) and qrange("int8") == (-128, 127)


def test_symmetric_uint8_and_positive_range():
    qp = qparams_from_range(-1.0, 1.0, "uint8", symmetric=True)
    assert qp.scale == pytest.approx(2 / 255) and int(qp.zero_point) == 128
    pos = qparams_from_range(0.5, 2.0, "uint8")  # the range is extended to hold 0
    assert pos.scale == pytest.approx(2 / 255) and int(pos.zero_point) == 0
    zero = qparams_from_range(0.0, 0.0, "int8", symmetric=True)
    assert zero.scale == 1.0


def test_per_channel_vs_per_tensor():
    w = np.array([[1.0, -1.0], [0.1, 0.05]], np.float32)
    pc = qparams_for(w, "int8", symmetric=True, axis=0)
    assert pc.scale.tolist() == pytest.approx([1 / 127, 0.1 / 127])
    pt = qparams_for(w, "int8", symmetric=True)
    assert pt.scale == pytest.approx(1 / 127)
    # the small channel keeps much more precision per channel
    assert np.abs(pc.fake_quantize(w) - w)[1].max() < np.abs(pt.fake_quantize(w) - w)[1].max() / 5
    assert sqnr_db(w, pc.fake_quantize(w)) > sqnr_db(w, pt.fake_quantize(w))
    d = pc.to_dict()
    assert d["axis"] == 0 and len(d["scale"]) == 2 and d["zero_point"] == [0, 0]


@pytest.mark.parametrize("dtype,symmetric", [("uint8", False), ("int8", False), ("int8", True), ("uint8", True)])
def test_matches_onnxruntime_formula(dtype, symmetric):
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    rng = np.random.default_rng(0)
    for _ in range(20):
        lo, hi = -abs(rng.normal()) * 3, abs(rng.normal()) * 5
        qmin, qmax = qrange(dtype, symmetric)
        qt = np.int8 if dtype == "int8" else np.uint8
        zp, scale = compute_scale_zp(np.array(lo, np.float32), np.array(hi, np.float32), qt(qmin), qt(qmax),
                                     symmetric)
        ours = qparams_from_range(lo, hi, dtype, symmetric)
        assert float(ours.scale) == pytest.approx(float(scale), rel=1e-5)
        assert int(ours.zero_point) == int(zp)


def test_sqnr_and_errors():
    x = np.linspace(-1, 1, 100)
    assert sqnr_db(x, x) == float("inf")
    assert sqnr_db(x, x + 0.01) == pytest.approx(10 * np.log10(np.sum(x ** 2) / (100 * 1e-4)))
    with pytest.raises(ConfigError, match="dtype"):
        qparams_from_range(0, 1, "int4")
