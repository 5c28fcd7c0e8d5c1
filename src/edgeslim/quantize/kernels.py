"""What ONNX Runtime's int8 kernels compute on this CPU, and the weight range that keeps them exact.

On x86 CPUs without VNNI (AVX2, and AVX-512 before Cascade Lake), ONNX Runtime's U8S8 kernels
multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds each pair of
products into an int16 and saturates: 2 * 255 * 127 = 64,770 does not fit in 32,767. The model
file is correct (simulated in float it agrees with the float model) but the integer kernels
return clipped sums; EfficientNet-Lite0 measured 91% top-1 agreement with float on such a CPU
(99% simulated). With weights in [-64, 64] ("reduce range", 7-bit) the pair sum is at most
2 * 255 * 64 = 32,640 and nothing saturates. VNNI (``vpdpbusd``) and ARM kernels accumulate
in int32 and need no reduced range.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Literal, Union

ReduceRange = Union[bool, Literal["auto"]]

VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
X86_MACHINES = {"x86_64", "amd64", "i386", "i686", "x86"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The instruction-set flags of this CPU (Linux), or None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def u8s8_saturates(machine: str | None = None, flags: set[str] | None = None) -> bool:
    """True where ONNX Runtime's uint8 x int8 kernels saturate: x86 without VNNI. An x86 CPU
    whose flags cannot be read counts as saturating (the reduced range is exact everywhere)."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86_MACHINES:
        return False
    flags = cpu_flags() if flags is None else flags
    return flags is None or not (flags & VNNI_FLAGS)


def resolve_reduce_range(value: ReduceRange) -> bool:
    """``"auto"``: reduce where this machine's kernels saturate; True/False as given."""
    return u8s8_saturates() if value == "auto" else bool(value)


def weight_range_note(reduce_range: bool) -> str:
    if reduce_range:
        return ("7-bit weights in [-64, 64] (reduce_range): this CPU's U8S8 int8 kernels (x86 without VNNI) "
                "saturate on full-range weights")
    return "8-bit weights in [-127, 127]"
