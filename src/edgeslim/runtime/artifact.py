"""The ``.eslim`` compressed model file: the torch-free reader (numpy, onnx protobuf, zstandard,
cryptography). ``edgeslim.export.artifact`` writes it.

Layout (little-endian)::

    MAGIC (8 bytes)  "ESLIM\\0" + version + "\\n"
    u32 manifest length, u8 manifest codec (0 = plain JSON, 1 = zstd-compressed JSON)
    manifest.json bytes
    32 bytes: SHA-256 of the stored manifest bytes (what a signature signs)
    u16 signature length (0 or 64), ed25519 signature
    payload: the parts listed in the manifest, back to back
    32 bytes: SHA-256 of everything before it (covers the signature block and the header)

The manifest names the model, its input spec, class names, preprocessing and metrics,
lists every part (``graph.onnx``: the ONNX graph whose initializers point to tensor
parts instead of holding data; ``tensor/<name>``: one per weight) with offset, length
and SHA-256, and says how each tensor is encoded (see ``decode_tensor``).

Reading checks, in this order: the manifest's digest and, when a public key is given, its
signature (over the stored bytes, before anything is decompressed or parsed); then the
manifest is decompressed (at most ``MAX_MANIFEST_BYTES``) and validated against its schema
(``manifest.py``); then every part's digest and the whole-file digest. Only then are tensors
decoded, each decompression capped by the size the manifest declares. Nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from . import codecs
from .manifest import FORMAT, VERSION, Manifest, StreamSpec, TensorSpec, validate_manifest

MAGIC = b"ESLIM\x00\x01\n"
DIGEST_BYTES = 32
MANIFEST_PART = "manifest.json"
GRAPH_PART = "graph.onnx"
TENSOR_PREFIX = "tensor/"
EXTERNAL_PREFIX = "eslim:"  # ONNX external_data location of an initializer stored as a tensor part
MAX_MANIFEST_BYTES = 16 * 2**20  # decoded manifest JSON: real ones take about 1 KB per tensor
_ZSTD_CHUNK = 1 << 20


@dataclass
class ArtifactContents:
    """A verified artifact: its manifest, parts (stored bytes by name) and signature state."""
    path: str
    manifest: dict[str, Any]
    parts: dict[str, bytes]
    manifest_sha256: str
    signed: bool
    signature_verified: bool
    spec: Manifest  # the validated manifest


def _fail(path, message: str) -> ArtifactError:
    return ArtifactError(f"{path}: {message}; refusing to load it")


def _zstd_read(data: bytes, limit: int) -> bytes:
    """At most ``limit + 1`` decompressed bytes (one more than allowed tells "too big"), read
    in chunks: a zstd bomb costs no more memory than the limit."""
    import zstandard

    out = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while len(out) <= limit:
            chunk = reader.read(min(_ZSTD_CHUNK, limit + 1 - len(out)))
            if not chunk:
                break
            out += chunk
    return bytes(out)


def zstd_exact(data: bytes, size: int) -> bytes:
    """Decompress a zstd stream that must decode to exactly ``size`` bytes (the declared size)."""
    out = _zstd_read(data, size)
    if len(out) > size:
        raise ValueError(f"zstd data decodes to more than the {size} bytes the manifest declares")
    if len(out) < size:
        raise ValueError(f"zstd data decodes to {len(out)} bytes, the manifest declares {size}")
    return out


def read_artifact(path: str | os.PathLike, public_key: str | os.PathLike | None = None) -> ArtifactContents:
    """Read and verify an ``.eslim`` file: structure, manifest digest and, when ``public_key``
    (PEM path) is given, the ed25519 signature (both before anything is decompressed), then
    the manifest's schema, the digest of every part and the whole-file digest. Raises
    ``ArtifactError`` naming the first part that fails."""
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a directory, not an .eslim file")
    data = path.read_bytes()
    if not data.startswith(MAGIC[:6]):
        raise _fail(path, "not an .eslim artifact (bad magic bytes)")
    if data[:8] != MAGIC:
        raise _fail(path, f"unsupported .eslim version byte {data[6]} (this edgeslim reads version {VERSION})")
    try:
        m_len, m_codec = struct.unpack_from("<IB", data, 8)
        pos = 13
        m_stored = data[pos:pos + m_len]
        m_digest = data[pos + m_len:pos + m_len + DIGEST_BYTES]
        pos += m_len + DIGEST_BYTES
        (sig_len,) = struct.unpack_from("<H", data, pos)
        signature = data[pos + 2:pos + 2 + sig_len]
        payload_start = pos + 2 + sig_len
    except struct.error:
        raise _fail(path, "truncated header") from None
    if len(m_stored) != m_len or len(m_digest) != DIGEST_BYTES or len(signature) != sig_len \
            or payload_start + DIGEST_BYTES > len(data):
        raise _fail(path, "truncated header (file shorter than its header says)")
    if hashlib.sha256(m_stored).digest() != m_digest:
        raise _fail(path, f"part '{MANIFEST_PART}' is corrupt (sha256 mismatch)")
    verified = False
    if public_key is not None:  # before anything is decompressed or parsed
        from .signing import load_public_key, verify_digest

        if sig_len == 0:
            raise _fail(path, "it is not signed, but a public key was given: a signature is required")
        verify_digest(load_public_key(public_key), m_digest, signature, what=str(path))
        verified = True
    manifest, spec = _parse_manifest(path, m_stored, m_codec)
    payload_end = len(data) - DIGEST_BYTES
    parts = _verified_parts(path, spec, data, payload_start, payload_end)
    if hashlib.sha256(data[:payload_end]).digest() != data[payload_end:]:
        raise _fail(path, "the signature block or file checksum is corrupt (whole-file sha256 mismatch)")
    return ArtifactContents(str(path), manifest, parts, m_digest.hex(), sig_len > 0, verified, spec)


def _parse_manifest(path: Path, stored: bytes, codec: int) -> tuple[dict[str, Any], Manifest]:
    try:
        if codec not in (0, 1):
            raise ValueError(f"unknown manifest codec {codec}")
        raw = stored if codec == 0 else _zstd_read(stored, MAX_MANIFEST_BYTES)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValueError(f"it decodes to more than {MAX_MANIFEST_BYTES:,} bytes")
        manifest = json.loads(raw.decode("utf-8"))
    except Exception as e:  # a digest-valid but malformed manifest: a writer bug or a crafted file
        raise _fail(path, f"part '{MANIFEST_PART}' cannot be read ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise _fail(path, f"part '{MANIFEST_PART}' is not an {FORMAT} v{VERSION} manifest")
    try:
        return manifest, validate_manifest(manifest)
    except ValueError as e:
        raise _fail(path, f"part '{MANIFEST_PART}' is not a valid manifest ({e})") from None


def _verified_parts(path: Path, spec: Manifest, data: bytes, start: int, end: int) -> dict[str, bytes]:
    parts, expected_end = {}, start
    for p in spec.parts:
        lo, n = start + p.offset, p.length
        if lo + n > end:
            raise _fail(path, f"part '{p.name}' lies outside the file (truncated?)")
        blob = data[lo:lo + n]
        if hashlib.sha256(blob).hexdigest() != p.sha256:
            raise _fail(path, f"part '{p.name}' is corrupt (sha256 mismatch)")
        parts[p.name] = blob
        expected_end = max(expected_end, lo + n)
    if expected_end != end:
        raise _fail(path, f"payload size {end - start} bytes does not match the manifest ({expected_end - start})")
    return parts


# ---- tensor decoding --------------------------------------------------------------------

def _split_streams(blob: bytes, streams: list[StreamSpec]) -> list[bytes]:
    out, pos = [], 0
    for s in streams:
        out.append(blob[pos:pos + s.length])
        pos += s.length
    if pos != len(blob):
        raise ValueError(f"streams take {pos} bytes, the part has {len(blob)}")
    return out


def decode_stream(spec: StreamSpec, raw: bytes) -> np.ndarray:
    """One stream of a tensor part, never more than the ``count`` values it declares.
    ``symbols`` streams hold small integers (``packed`` at ``bits`` each, ``huffman`` or
    ``zstd`` one byte each); ``floats`` streams hold ``dtype`` numbers (``raw`` or ``zstd``)."""
    if spec.kind == "symbols":
        if spec.coder == "packed":
            arr = codecs.unpack_bits(raw, spec.bits, spec.count)
        elif spec.coder == "huffman":
            arr = codecs.huffman_decode(raw, spec.count)
        else:
            arr = np.frombuffer(zstd_exact(raw, spec.count), dtype=np.uint8)
    else:
        nbytes = spec.count * spec.itemsize
        data = raw if spec.coder == "raw" else zstd_exact(raw, nbytes)
        if len(data) != nbytes:
            raise ValueError(f"stream {spec.name!r} has {len(data)} bytes, expected {nbytes}")
        arr = np.frombuffer(data, dtype=np.dtype(spec.dtype).newbyteorder("<"))
    if arr.size != spec.count:
        raise ValueError(f"stream {spec.name!r} has {arr.size} values, expected {spec.count}")
    return arr


def decode_tensor(entry: TensorSpec | dict, blob: bytes) -> np.ndarray:
    """Rebuild a tensor. Encodings: ``raw`` (values), ``codebook`` (codebook[indices]),
    ``sparse`` (relative-index gaps + values), ``sparse_codebook`` (gaps + codebook[indices])."""
    if isinstance(entry, dict):
        entry = TensorSpec.model_validate(entry)
    streams = {s.name: decode_stream(s, raw) for s, raw in zip(entry.streams, _split_streams(blob, entry.streams))}
    dtype = np.dtype(entry.dtype)
    shape = tuple(entry.shape)
    enc = entry.encoding
    if enc in ("codebook", "sparse_codebook"):
        book = streams["codebook"].astype(dtype)
        idx = streams["indices"].astype(np.int64)
        if idx.size and int(idx.max()) >= book.size:
            raise ValueError("codebook index out of range")
        values = book[idx]
    else:
        values = streams["values"].astype(dtype)
    if enc in ("raw", "codebook"):
        return values.reshape(shape)  # the schema checked that the counts match the shape
    return codecs.sparse_decode(streams["gaps"], values, entry.size, dtype).reshape(shape)


def decode_tensors(contents: ArtifactContents) -> dict[str, np.ndarray]:
    out = {}
    for entry in contents.spec.tensors:
        try:
            out[entry.name] = decode_tensor(entry, contents.parts[entry.part])
        except Exception as e:
            raise _fail(contents.path, f"tensor {entry.name!r} cannot be decoded ({e})") from None
    return out


def artifact_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """The model metadata (preprocess, class names, input shape, metrics, ...) a Runner uses."""
    meta = dict(manifest.get("metadata", {}))
    for key in ("class_names", "preprocess", "metrics"):
        if key in manifest:
            meta[key] = manifest[key]
    shape = manifest.get("input", {}).get("shape")
    if shape and all(isinstance(d, int) for d in shape[1:]):
        meta["input_shape"] = list(shape[1:])
    return meta


def rebuild_onnx(contents: ArtifactContents) -> bytes:
    """The ONNX model with every initializer's data put back, serialized."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    from .onnx_file import external_tensors

    spec = contents.spec.graph
    raw = contents.parts[spec.part]
    try:
        graph_bytes = zstd_exact(raw, spec.onnx_bytes) if spec.coder == "zstd" else raw
        if len(graph_bytes) != spec.onnx_bytes:
            raise ValueError(f"{len(graph_bytes)} bytes, the manifest declares {spec.onnx_bytes}")
        model = onnx.ModelProto()
        model.ParseFromString(graph_bytes)
    except Exception as e:
        raise _fail(contents.path, f"part '{GRAPH_PART}' is not a valid ONNX graph ({e})") from None
    tensors = decode_tensors(contents)
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {kv.key: kv.value for kv in init.external_data}.get("location", "")
        name = location[len(EXTERNAL_PREFIX):] if location.startswith(EXTERNAL_PREFIX) else None
        if name not in tensors:
            raise _fail(contents.path, f"initializer {init.name!r} refers to missing tensor {location!r}")
        arr = tensors[name]
        want = np.dtype(tensor_dtype_to_np_dtype(init.data_type))
        if arr.dtype != want or list(arr.shape) != list(init.dims):
            raise _fail(contents.path, f"tensor {name!r} is {arr.dtype}{list(arr.shape)}, "
                                       f"graph expects {want}{list(init.dims)}")
        del init.external_data[:]
        init.data_location = onnx.TensorProto.DEFAULT
        init.raw_data = arr.astype(want.newbyteorder("<"), copy=False).tobytes()
    leftover = external_tensors(model)
    if leftover:  # ONNX Runtime would resolve these against the working directory
        raise _fail(contents.path, f"tensor {leftover[0][0]!r} refers to an outside file {leftover[0][1]!r}")
    meta = model.metadata_props.add()
    meta.key, meta.value = "edgeslim", json.dumps(artifact_metadata(contents.manifest))
    return model.SerializeToString()


def open_artifact(path: str | os.PathLike, public_key: str | os.PathLike | None = None
                  ) -> tuple[bytes, dict[str, Any]]:
    """Verify an ``.eslim`` file (digests, and the signature when ``public_key`` is given),
    then rebuild its ONNX model in memory: returns ``(onnx_model_bytes, metadata)``."""
    contents = read_artifact(path, public_key)
    metadata = artifact_metadata(contents.manifest)
    metadata["artifact"] = {"manifest_sha256": contents.manifest_sha256, "signed": contents.signed,
                            "signature_verified": contents.signature_verified}
    return rebuild_onnx(contents), metadata


def verify_artifact(path: str | os.PathLike, public_key: str | os.PathLike | None = None) -> dict[str, Any]:
    """Full check without running the model: digests, signature, every tensor decodes and
    the rebuilt ONNX passes ``onnx.checker``. Returns a summary."""
    import onnx

    contents = read_artifact(path, public_key)
    model_bytes = rebuild_onnx(contents)
    try:
        onnx.checker.check_model(onnx.load_from_string(model_bytes))
    except Exception as e:
        raise _fail(path, f"the rebuilt ONNX model is invalid ({e})") from None
    m = contents.manifest
    return {"path": str(path), "model": m.get("model_name"), "file_bytes": Path(path).stat().st_size,
            "onnx_bytes": len(model_bytes), "parts": len(m.get("parts", [])) + 1,
            "manifest_sha256": contents.manifest_sha256, "signed": contents.signed,
            "signature_verified": contents.signature_verified,
            "encodings": {t["name"]: t["encoding"] for t in m.get("tensors", [])}}
