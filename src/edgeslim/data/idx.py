"""Reader for the IDX format used by MNIST and Fashion-MNIST (raw or gzip)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file; truncated or malformed files raise DataError naming the file."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot decompress/read ({e}); the file is corrupt or truncated, "
                        "download it again or reinstall dataset-fashion-mnist") from None
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, not an IDX file")
    zero, dtype_code, ndim = data[0] << 8 | data[1], data[2], data[3]
    if zero != 0 or dtype_code not in _DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{path}: bad IDX header {data[:4].hex()} (expected 0000 + type + ndim)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[dtype_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: expected {expected} data bytes for shape {shape}, found "
                        f"{len(data) - header}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
