"""The binary tensor message: round trips and every kind of malformed payload."""
import struct
import subprocess
import sys

import numpy as np
import pytest

from edgeslim.serve import tensor_format as tf


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "uint8", "int32", "int64", "float64", "bool"])
def test_round_trip(dtype):
    x = (np.random.default_rng(0).standard_normal((2, 3, 4)) * 10).astype(dtype)
    y = tf.decode(tf.encode(x))
    assert y.dtype == x.dtype and y.shape == x.shape and np.array_equal(x, y) and y.flags.writeable


def test_scalar_and_empty():
    assert tf.decode(tf.encode(np.float32(3.5))).shape == ()
    assert tf.decode(tf.encode(np.zeros((0, 4), np.float32))).shape == (0, 4)


def test_quantized_payload_is_four_times_smaller_and_close():
    x = np.random.default_rng(1).standard_normal((1, 64, 8, 8)).astype(np.float32)
    msg = tf.encode_quantized(x)
    assert len(msg) == tf.header_size(4, quantized=True) + x.size
    y = tf.decode(msg)
    assert y.dtype == np.float32 and np.abs(y - x).max() <= (x.max() - x.min()) / 255 * 0.51 + 1e-6


def _header(magic=b"ESLT", version=1, code=1, ndim=2, flags=0, shape=(2, 2)):
    return struct.pack("<4sBBBB", magic, version, code, ndim, flags) + struct.pack(f"<{len(shape)}I", *shape)


@pytest.mark.parametrize("payload, match, status", [
    (b"ESL", "shorter than", 400),
    (_header(magic=b"PKL\x80") + bytes(16), "bad magic", 400),
    (_header(version=9) + bytes(16), "version", 400),
    (_header(code=42) + bytes(16), "unknown dtype code", 400),
    (_header(ndim=9, shape=(1,) * 9) + bytes(4), "ndim", 400),
    (_header(flags=0x80) + bytes(16), "flags", 400),
    (_header() + bytes(15), "needs 16 bytes", 400),
    (_header() + bytes(17), "needs 16 bytes", 400),
    (_header(shape=(2,)), "header", 400),
    (_header(shape=(65536, 65536)) + bytes(16), "elements", 413),
    (_header(code=1, flags=1) + struct.pack("<fi", 0.1, 0) + bytes(4), "int8 or uint8", 400),
    (_header(code=4, flags=1) + struct.pack("<fi", -1.0, 0) + bytes(4), "scale", 400),
])
def test_malformed_payloads_are_rejected(payload, match, status):
    with pytest.raises(tf.TensorFormatError, match=match) as e:
        tf.decode(payload)
    assert e.value.status == status


def test_encode_refuses_unsupported_arrays():
    with pytest.raises(tf.TensorFormatError, match="dtype"):
        tf.encode(np.array(["a"]))
    with pytest.raises(tf.TensorFormatError, match="quantized"):
        tf.encode(np.zeros(3, np.float32), scale=0.1, zero_point=0)


def test_device_client_does_not_import_torch():
    code = ("import sys; import edgeslim.serve.client, edgeslim.serve.tensor_format, edgeslim.serve.netem; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert 'fastapi' not in sys.modules, 'fastapi was imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
