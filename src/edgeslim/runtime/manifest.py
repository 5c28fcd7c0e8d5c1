"""The schema of an ``.eslim`` manifest (pydantic; torch-free).

A manifest is validated before any of it is used: types, value ranges, which streams each
tensor encoding needs and how many values each stream declares, that every referenced part
exists, and that the declared decoded sizes stay under ``MAX_DECODED_BYTES``. Decoders
are then capped by those declared sizes, so a crafted file cannot make them allocate more.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

FORMAT = "edgeslim-artifact"
VERSION = 1
# The rebuilt ONNX model is one protobuf message, which cannot exceed 2 GiB.
MAX_DECODED_BYTES = 2**31 - 1
MAX_DIMS = 16

Count = Annotated[int, Field(strict=True, ge=0, le=MAX_DECODED_BYTES)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


def _numeric_dtype(value: str) -> np.dtype:
    try:
        dt = np.dtype(value)
    except TypeError:
        raise ValueError(f"unknown dtype {value!r}") from None
    if dt.kind not in "biuf" or dt.itemsize > 8:
        raise ValueError(f"dtype {value!r} is not a numeric type")
    return dt


class _Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StreamSpec(_Spec):
    name: Literal["values", "codebook", "indices", "gaps"]
    kind: Literal["symbols", "floats"]
    coder: Literal["packed", "huffman", "zstd", "raw"]
    count: Count
    length: Count
    bits: Optional[Annotated[int, Field(strict=True, ge=1, le=16)]] = None
    dtype: Optional[str] = None

    @model_validator(mode="after")
    def _kind_fields(self) -> "StreamSpec":
        if self.kind == "symbols":
            if self.coder not in ("packed", "huffman", "zstd") or self.bits is None:
                raise ValueError(f"symbol stream {self.name!r} needs bits and coder packed, huffman or zstd")
        else:
            if self.coder not in ("raw", "zstd") or self.dtype is None:
                raise ValueError(f"float stream {self.name!r} needs a dtype and coder raw or zstd")
            _numeric_dtype(self.dtype)
        if self.decoded_bytes > MAX_DECODED_BYTES:
            raise ValueError(f"stream {self.name!r} declares {self.decoded_bytes:,} decoded bytes")
        return self

    @property
    def itemsize(self) -> int:
        return 1 if self.kind == "symbols" else _numeric_dtype(self.dtype).itemsize

    @property
    def decoded_bytes(self) -> int:
        """What its decoder may produce (symbols are at most 1 byte once decoded from zstd)."""
        return self.count * self.itemsize


_NEEDS = {"raw": {"values"}, "codebook": {"codebook", "indices"}, "sparse": {"gaps", "values"},
          "sparse_codebook": {"gaps", "codebook", "indices"}}
_KINDS = {"values": "floats", "codebook": "floats", "indices": "symbols", "gaps": "symbols"}


class TensorSpec(_Spec):
    name: Name
    part: Name
    dtype: str
    shape: list[Count] = Field(max_length=MAX_DIMS)
    encoding: Literal["raw", "codebook", "sparse", "sparse_codebook"]
    gap_bits: Optional[Annotated[int, Field(strict=True, ge=1, le=16)]] = None
    streams: list[StreamSpec] = Field(max_length=3)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        _numeric_dtype(v)
        return v

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=object))

    @property
    def decoded_bytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize + sum(s.decoded_bytes for s in self.streams)

    def stream(self, name: str) -> StreamSpec:
        return next(s for s in self.streams if s.name == name)

    @model_validator(mode="after")
    def _streams_fit_encoding(self) -> "TensorSpec":
        names = [s.name for s in self.streams]
        if sorted(names) != sorted(_NEEDS[self.encoding]):
            raise ValueError(f"encoding {self.encoding!r} needs streams {sorted(_NEEDS[self.encoding])}, got {names}")
        for s in self.streams:
            if s.kind != _KINDS[s.name]:
                raise ValueError(f"stream {s.name!r} must be of kind {_KINDS[s.name]!r}")
        if self.size > MAX_DECODED_BYTES:
            raise ValueError(f"shape {self.shape} has {self.size:,} elements")
        entries = "indices" if self.encoding == "codebook" else "gaps" if "sparse" in self.encoding else "values"
        if not self.encoding.startswith("sparse") and self.stream(entries).count != self.size:
            raise ValueError(f"stream {entries!r} declares {self.stream(entries).count} values for shape {self.shape}")
        if self.encoding.startswith("sparse"):
            per_entry = "indices" if self.encoding == "sparse_codebook" else "values"
            if self.stream(per_entry).count != self.stream("gaps").count:
                raise ValueError(f"streams 'gaps' and {per_entry!r} declare different counts")
        return self


class PartSpec(_Spec):
    name: Name
    offset: Count
    length: Count
    sha256: Sha256


class GraphSpec(_Spec):
    part: Name
    coder: Literal["zstd", "raw"]
    onnx_bytes: Count


class InputSpec(_Spec):
    name: str
    shape: list[Union[Count, str, None]] = Field(max_length=MAX_DIMS)
    dtype: str = "float32"


class Manifest(_Spec):
    format: Literal["edgeslim-artifact"]  # FORMAT
    version: Literal[1]  # VERSION
    model_name: Optional[str] = None
    input: InputSpec
    class_names: list[str] = []
    preprocess: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    graph: GraphSpec
    tensors: list[TensorSpec]
    parts: list[PartSpec]
    encoder: dict[str, Any] = {}

    @model_validator(mode="after")
    def _references(self) -> "Manifest":
        parts = [p.name for p in self.parts]
        if len(set(parts)) != len(parts):
            raise ValueError("parts: duplicate part names")
        tensors = [t.name for t in self.tensors]
        if len(set(tensors)) != len(tensors):
            raise ValueError("tensors: duplicate tensor names")
        for ref in [self.graph.part] + [t.part for t in self.tensors]:
            if ref not in parts:
                raise ValueError(f"part {ref!r} is referenced but not listed in parts")
        total = self.graph.onnx_bytes + sum(t.decoded_bytes for t in self.tensors)
        if total > MAX_DECODED_BYTES:
            raise ValueError(f"the model declares {total:,} decoded bytes, more than an ONNX model can hold")
        return self


def validate_manifest(obj: Any) -> Manifest:
    """The validated manifest; ``ValueError`` naming the first (up to 3) bad fields."""
    from pydantic import ValidationError

    try:
        return Manifest.model_validate(obj)
    except ValidationError as e:
        errors = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'manifest'}: {x['msg']}" for x in e.errors()[:3])
        raise ValueError(errors) from None
