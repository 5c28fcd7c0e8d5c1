"""A small, safe binary format for one tensor on the wire (numpy + stdlib only; never pickle).

Layout, little-endian::

    magic   4 bytes  b"ESLT"
    version u8       1
    dtype   u8       code from DTYPES
    ndim    u8       0..MAX_NDIM
    flags   u8       bit 0: int8/uint8 payload quantized from float32 (scale, zero point follow)
    shape   ndim x u32
    [scale f32, zero_point i32]   only when flag bit 0 is set
    data    prod(shape) x itemsize bytes, C order

A quantized payload decodes to float32: (q - zero_point) * scale. Every field is checked
before any memory is allocated, so a hostile header cannot make the receiver allocate more
than ``max_elements`` elements.
"""
from __future__ import annotations

import struct

import numpy as np

MAGIC = b"ESLT"
VERSION = 1
MAX_NDIM = 8
DEFAULT_MAX_ELEMENTS = 64 * 2**20  # 256 MiB of float32
FLAG_QUANTIZED = 1
MEDIA_TYPE = "application/x-edgeslim-tensor"

DTYPES: dict[int, np.dtype] = {1: np.dtype("float32"), 2: np.dtype("float16"), 3: np.dtype("int8"),
                               4: np.dtype("uint8"), 5: np.dtype("int32"), 6: np.dtype("int64"),
                               7: np.dtype("float64"), 8: np.dtype("bool")}
CODES = {dt: code for code, dt in DTYPES.items()}
_HEAD = struct.Struct("<4sBBBB")
_QPARAMS = struct.Struct("<fi")


class TensorFormatError(ValueError):
    """The payload is not a valid tensor message; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def encode(array: np.ndarray, scale: float | None = None, zero_point: int | None = None) -> bytes:
    """Serialise ``array``; give ``scale``/``zero_point`` for an int8/uint8 array quantized from float."""
    array = np.asarray(array)  # tobytes() below always writes C order
    if array.dtype not in CODES:
        raise TensorFormatError(f"dtype {array.dtype} cannot be sent; use one of "
                                f"{sorted(d.name for d in CODES)}")
    if array.ndim > MAX_NDIM:
        raise TensorFormatError(f"{array.ndim} dimensions; at most {MAX_NDIM} can be sent")
    quantized = scale is not None
    if quantized and array.dtype not in (np.int8, np.uint8):
        raise TensorFormatError("a quantized payload must be int8 or uint8")
    parts = [_HEAD.pack(MAGIC, VERSION, CODES[array.dtype], array.ndim, FLAG_QUANTIZED if quantized else 0),
             struct.pack(f"<{array.ndim}I", *array.shape)]
    if quantized:
        parts.append(_QPARAMS.pack(float(scale), int(zero_point or 0)))
    parts.append(array.tobytes())
    return b"".join(parts)


def quantize_uint8(x: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Per-tensor asymmetric uint8 quantization (min/max range incl. 0): 4x fewer bytes than float32."""
    x = np.asarray(x, np.float32)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero_point = int(round(-lo / scale))
    q = np.clip(np.round(x / scale) + zero_point, 0, 255).astype(np.uint8)
    return q, scale, zero_point


def encode_quantized(x: np.ndarray) -> bytes:
    q, scale, zero_point = quantize_uint8(x)
    return encode(q, scale, zero_point)


def header_size(ndim: int, quantized: bool = False) -> int:
    return _HEAD.size + 4 * ndim + (_QPARAMS.size if quantized else 0)


def decode(payload: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Parse and validate a message; quantized payloads are returned dequantized (float32)."""
    if len(payload) < _HEAD.size:
        raise TensorFormatError(f"payload of {len(payload)} bytes is shorter than the {_HEAD.size}-byte header")
    magic, version, code, ndim, flags = _HEAD.unpack_from(payload)
    if magic != MAGIC:
        raise TensorFormatError(f"bad magic {magic!r}: not an edgeslim tensor message (expected {MAGIC!r})")
    if version != VERSION:
        raise TensorFormatError(f"unsupported format version {version}; this receiver reads version {VERSION}")
    if code not in DTYPES:
        raise TensorFormatError(f"unknown dtype code {code}; known codes: {sorted(DTYPES)}")
    if ndim > MAX_NDIM:
        raise TensorFormatError(f"ndim {ndim} is larger than the maximum {MAX_NDIM}")
    if flags & ~FLAG_QUANTIZED:
        raise TensorFormatError(f"unknown flags 0x{flags:02x}")
    quantized = bool(flags & FLAG_QUANTIZED)
    offset = _HEAD.size
    if len(payload) < header_size(ndim, quantized):
        raise TensorFormatError("payload ends inside the header (shape or quantization fields missing)")
    shape = struct.unpack_from(f"<{ndim}I", payload, offset)
    offset += 4 * ndim
    elements = 1
    for d in shape:
        elements *= d  # Python ints: no overflow
    if elements > max_elements:
        raise TensorFormatError(f"shape {tuple(shape)} has {elements:,} elements; this receiver accepts at "
                                f"most {max_elements:,}", status=413)
    dtype = DTYPES[code]
    scale = zero_point = None
    if quantized:
        if dtype not in (np.int8, np.uint8):
            raise TensorFormatError(f"a quantized payload must be int8 or uint8, not {dtype}")
        scale, zero_point = _QPARAMS.unpack_from(payload, offset)
        offset += _QPARAMS.size
        if not np.isfinite(scale) or scale <= 0:
            raise TensorFormatError(f"quantization scale {scale} must be a positive finite number")
    expected = elements * dtype.itemsize
    if len(payload) - offset != expected:
        raise TensorFormatError(f"data is {len(payload) - offset} bytes but shape {tuple(shape)} of {dtype} "
                                f"needs {expected} bytes")
    array = np.frombuffer(payload, dtype=dtype, count=elements, offset=offset).reshape(shape)
    if quantized:
        return (array.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return array.copy()  # writable, independent of the request buffer
