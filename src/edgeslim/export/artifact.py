"""Write ``.eslim`` artifacts: Deep Compression storage of an ONNX model (Han et al. 2016).

Every weight (ONNX initializer) is encoded on its own, choosing the smallest of:

- ``raw``: the values as they are (float32 by default, which is lossless; ``float16=True``
  halves them at a precision cost);
- ``codebook``: a tensor with at most ``2**max_codebook_bits`` distinct values (weight
  sharing, e.g. ``edgeslim.quantize.share_weights``, or any tensor that happens to have
  few values) becomes a float codebook plus ``b``-bit indices;
- ``sparse`` / ``sparse_codebook``: a tensor with zeros keeps only its non-zeros, each with
  the number of zeros skipped before it in ``gap_bits`` bits (1..8, chosen per tensor;
  longer gaps are bridged by filler zero entries), values as floats or codebook indices.

Each integer stream (gaps, indices) is then stored bit-packed, Huffman-coded or
zstd-compressed, and each float stream raw or zstd-compressed: whichever is smallest,
within the ``entropy`` policy (``best`` tries everything). The graph is the ONNX model
whose initializers point to these tensor parts (``external_data`` location ``eslim:NAME``).
The loader is ``edgeslim.runtime.artifact`` (torch-free). With the default options the
encoding is lossless: the rebuilt ONNX model computes exactly what the original did.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import BaseModel, ConfigDict, Field

from .._io import atomic_write_bytes
from ..errors import ArtifactError
from ..runtime import codecs
from ..runtime.artifact import (EXTERNAL_PREFIX, FORMAT, GRAPH_PART, MAGIC, TENSOR_PREFIX, VERSION)
from .onnx_export import METADATA_KEY

TOP_LEVEL_META = ("class_names", "preprocess", "metrics")
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


class PackOptions(BaseModel):
    """How ``.eslim`` weights are encoded (the defaults give the smallest lossless file)."""
    model_config = ConfigDict(extra="forbid")

    sparse: bool = True
    codebook: bool = True
    max_codebook_bits: int = Field(8, ge=1, le=8)
    entropy: Literal["best", "huffman", "zstd", "none"] = "best"
    float16: bool = False
    zstd_level: int = Field(19, ge=1, le=22)
    max_gap_bits: int = Field(8, ge=1, le=8)


def _zstd(data: bytes, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


Stream = tuple[dict[str, Any], bytes]


def encode_symbols(name: str, symbols: np.ndarray, bits: int, opts: PackOptions) -> Stream:
    """Integers < 2**bits: bit-packed, Huffman or zstd (one byte per symbol), smallest wins."""
    symbols = np.asarray(symbols, dtype=np.uint32).reshape(-1)
    options = {"packed": codecs.pack_bits(symbols, bits)}
    if opts.entropy in ("huffman", "best"):
        options["huffman"] = codecs.huffman_encode(symbols, 1 << bits)
    if opts.entropy in ("zstd", "best"):
        options["zstd"] = _zstd(symbols.astype(np.uint8).tobytes(), opts.zstd_level)
    coder = min(options, key=lambda k: len(options[k]))
    spec = {"name": name, "kind": "symbols", "coder": coder, "bits": bits, "count": int(symbols.size),
            "length": len(options[coder])}
    return spec, options[coder]


def encode_floats(name: str, values: np.ndarray, opts: PackOptions) -> Stream:
    values = np.asarray(values).reshape(-1)
    if opts.float16 and values.dtype == np.float32:
        values = values.astype(np.float16)
    raw = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    options = {"raw": raw}
    if opts.entropy in ("zstd", "best"):
        options["zstd"] = _zstd(raw, opts.zstd_level)
    coder = min(options, key=lambda k: len(options[k]))
    spec = {"name": name, "kind": "floats", "coder": coder, "dtype": values.dtype.str.lstrip("<>="),
            "count": int(values.size), "length": len(options[coder])}
    return spec, options[coder]


def _codebook_streams(values: np.ndarray, book: np.ndarray, opts: PackOptions) -> list[Stream]:
    idx = np.searchsorted(book, values)
    return [encode_floats("codebook", book, opts), encode_symbols("indices", idx, codecs.bits_for(book.size), opts)]


def _candidates(flat: np.ndarray, opts: PackOptions) -> list[tuple[str, dict, list[Stream]]]:
    """(encoding, parameters, streams) for every encoding that applies to this tensor."""
    out: list[tuple[str, dict, list[Stream]]] = [("raw", {}, [encode_floats("values", flat, opts)])]
    if flat.dtype.kind != "f" or flat.size == 0:
        return out
    max_book = 1 << opts.max_codebook_bits
    book = np.unique(flat)
    if opts.codebook and book.size <= max_book:
        out.append(("codebook", {}, _codebook_streams(flat, book, opts)))
    nonzero = int(np.count_nonzero(flat))
    if opts.sparse and nonzero < flat.size:
        for g in range(1, opts.max_gap_bits + 1):
            gaps, pos = codecs.sparse_encode(flat, g)
            values = np.where(pos >= 0, flat[np.maximum(pos, 0)], 0).astype(flat.dtype)
            gap_stream = encode_symbols("gaps", gaps, g, opts)
            out.append(("sparse", {"gap_bits": g}, [gap_stream, encode_floats("values", values, opts)]))
            sparse_book = np.unique(values)
            if opts.codebook and sparse_book.size <= max_book:
                out.append(("sparse_codebook", {"gap_bits": g},
                            [gap_stream, *_codebook_streams(values, sparse_book, opts)]))
    return out


def encode_tensor(name: str, array: np.ndarray, opts: PackOptions | None = None) -> tuple[dict, bytes]:
    """The smallest encoding of one tensor: (manifest entry, part bytes)."""
    opts = opts or PackOptions()
    flat = np.ascontiguousarray(array).reshape(-1)
    best = min(_candidates(flat, opts), key=lambda c: sum(len(b) for _, b in c[2]))
    encoding, params, streams = best
    entry = {"name": name, "part": TENSOR_PREFIX + name, "dtype": array.dtype.name, "shape": list(array.shape),
             "encoding": encoding, **params, "streams": [s for s, _ in streams]}
    return entry, b"".join(b for _, b in streams)


def _load_proto(model: onnx.ModelProto | bytes | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto
    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    from ..runtime.onnx_file import load_onnx  # a user's file: checked like every other ONNX input

    return load_onnx(model)


def _strip_initializers(proto: onnx.ModelProto, opts: PackOptions) -> tuple[list[dict], list[tuple[str, bytes]]]:
    """Encode every initializer and replace its data by a reference to its tensor part."""
    entries, parts = [], []
    for init in proto.graph.initializer:
        entry, blob = encode_tensor(init.name, numpy_helper.to_array(init), opts)
        entries.append(entry)
        parts.append((entry["part"], blob))
        for f in _DATA_FIELDS:
            init.ClearField(f)
        del init.external_data[:]
        init.data_location = onnx.TensorProto.EXTERNAL
        ref = init.external_data.add()
        ref.key, ref.value = "location", EXTERNAL_PREFIX + init.name
    return entries, parts


def _input_spec(proto: onnx.ModelProto, metadata: dict) -> dict:
    inp = proto.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in inp.type.tensor_type.shape.dim]
    if "input_shape" in metadata:
        dims = [dims[0] if dims else "batch", *metadata["input_shape"]]
    elem = inp.type.tensor_type.elem_type  # int64 for text models (token ids)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "float32"
    return {"name": inp.name, "shape": dims, "dtype": dtype}


def build_artifact(model: onnx.ModelProto | bytes | str | os.PathLike, metadata: dict | None = None,
                   model_name: str | None = None, options: PackOptions | None = None,
                   sign_key: str | os.PathLike | None = None) -> tuple[bytes, dict]:
    """Encode an ONNX model as ``.eslim`` bytes; returns ``(bytes, report)`` where the report
    gives the size of every part and each tensor's encoding."""
    opts = options or PackOptions()
    metadata = dict(metadata or {})
    proto = _load_proto(model)
    for prop in list(proto.metadata_props):  # the manifest carries the metadata
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    entries, tensor_parts = _strip_initializers(proto, opts)
    graph_raw = proto.SerializeToString()
    graph_zstd = _zstd(graph_raw, opts.zstd_level)
    use_zstd = opts.entropy != "none" and len(graph_zstd) < len(graph_raw)
    graph_blob = graph_zstd if use_zstd else graph_raw
    parts, offset = [], 0
    for name, blob in [(GRAPH_PART, graph_blob), *tensor_parts]:
        parts.append({"name": name, "offset": offset, "length": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
        offset += len(blob)
    manifest = {
        "format": FORMAT, "version": VERSION,
        "model_name": model_name or metadata.get("architecture", {}).get("name", proto.graph.name),
        "input": _input_spec(proto, metadata),
        **{k: metadata[k] for k in TOP_LEVEL_META if k in metadata},
        "metadata": {k: v for k, v in metadata.items() if k not in TOP_LEVEL_META},
        "graph": {"part": GRAPH_PART, "coder": "zstd" if use_zstd else "raw", "onnx_bytes": len(graph_raw)},
        "tensors": entries, "parts": parts,
        "encoder": {"options": opts.model_dump()},
    }
    manifest_raw = json.dumps(manifest, separators=(",", ":")).encode("utf-8")
    manifest_zstd = _zstd(manifest_raw, opts.zstd_level)
    m_codec, m_stored = (1, manifest_zstd) if len(manifest_zstd) < len(manifest_raw) else (0, manifest_raw)
    digest = hashlib.sha256(m_stored).digest()
    signature = b""
    if sign_key is not None:
        from ..runtime.signing import load_private_key, sign_digest

        signature = sign_digest(load_private_key(sign_key), digest)
    body = b"".join([MAGIC, struct.pack("<IB", len(m_stored), m_codec), m_stored, digest,
                     struct.pack("<H", len(signature)), signature, graph_blob, *(b for _, b in tensor_parts)])
    data = body + hashlib.sha256(body).digest()
    report = {"bytes": len(data), "manifest_bytes": len(m_stored), "graph_bytes": len(graph_blob),
              "signed": bool(signature), "manifest_sha256": digest.hex(),
              "tensor_bytes": sum(len(b) for _, b in tensor_parts),
              "tensors": [{"name": e["name"], "encoding": e["encoding"], "shape": e["shape"],
                           "bytes": p["length"], "coders": "+".join(s["coder"] for s in e["streams"]),
                           **({"gap_bits": e["gap_bits"]} if "gap_bits" in e else {})}
                          for e, p in zip(entries, parts[1:])]}
    return data, report


def write_artifact(model: onnx.ModelProto | bytes | str | os.PathLike, out: str | os.PathLike,
                   metadata: dict | None = None, model_name: str | None = None,
                   options: PackOptions | None = None, sign_key: str | os.PathLike | None = None) -> dict:
    """Write an ONNX model as an ``.eslim`` file (atomically); returns the size report."""
    data, report = build_artifact(model, metadata, model_name, options, sign_key)
    atomic_write_bytes(out, data)
    return {"path": str(out), **report}


def export_eslim(model, out: str | os.PathLike, meta: dict, options: PackOptions | None = None,
                 sign_key: str | os.PathLike | None = None, model_name: str | None = None) -> dict:
    """Write a torch model straight to ``.eslim``. ``meta`` is checkpoint metadata (``input_shape``,
    ``preprocess``, ``class_names``, ``metrics``...), as in ``model.json``."""
    from ..models.checkpoint import Checkpoint, architecture_of
    from .api import onnx_metadata
    from .onnx_export import export_onnx

    out = Path(out)
    if out.suffix != ".eslim":
        raise ArtifactError(f"{out}: an artifact file name must end in .eslim (the runtime dispatches on it)")
    if "input_shape" not in meta:
        raise ArtifactError("meta needs input_shape (e.g. [1, 32, 32]) to export the model")
    ckpt = Checkpoint(model, {"architecture": architecture_of(model), **meta})
    metadata = onnx_metadata(ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", ckpt.input_shape)
        return write_artifact(onnx_path, out, metadata, model_name or ckpt.meta["architecture"]["name"], options,
                              sign_key)


def pack_checkpoint(folder: str | os.PathLike, out: str | os.PathLike | None = None,
                    sign_key: str | os.PathLike | None = None, options: PackOptions | None = None) -> dict:
    """``edgeslim pack``: checkpoint folder -> ``.eslim`` (default ``FOLDER/model.eslim``).
    Prune and share weights first (``edgeslim prune``, ``share_weights``): the encoder finds
    zeros and repeated values by itself."""
    from ..models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder)
    return export_eslim(ckpt.model, Path(out) if out else Path(folder) / "model.eslim", ckpt.meta, options, sign_key)


def pack_onnx(path: str | os.PathLike, out: str | os.PathLike | None = None,
              sign_key: str | os.PathLike | None = None, options: PackOptions | None = None) -> dict:
    """``edgeslim pack model.onnx``: an exported ONNX file -> ``.eslim`` (default: beside it). Its
    edgeslim metadata becomes the manifest's; other metadata entries (a text model's tokenizer)
    stay in the graph part, covered by the digests and signature."""
    import json

    from ..runtime.runner import METADATA_KEY

    path = Path(path)
    proto = _load_proto(path)
    meta = next((json.loads(p.value) for p in proto.metadata_props if p.key == METADATA_KEY), {})
    return write_artifact(proto, Path(out) if out else path.with_suffix(".eslim"), meta, path.stem, options,
                          sign_key)
