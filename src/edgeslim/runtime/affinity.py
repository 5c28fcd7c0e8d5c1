"""Pin the calling thread to some CPUs for a while (stdlib only).

On Linux the affinity set with ``sched_setaffinity(0, ...)`` applies to the calling thread,
and ONNX Runtime at 1 intra-op thread computes on the calling thread: together they emulate
a 1-core device (or a 1-core server) on a bigger host.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator


@contextlib.contextmanager
def pinned_thread(cpus: Iterable[int] | None) -> Iterator[None]:
    wanted = set(cpus or ())
    if not wanted or not hasattr(os, "sched_setaffinity"):
        yield
        return
    available = os.sched_getaffinity(0)
    if not wanted <= available:
        raise ValueError(f"cannot pin to CPUs {sorted(wanted)}: this process may use {sorted(available)}")
    os.sched_setaffinity(0, wanted)
    try:
        yield
    finally:
        os.sched_setaffinity(0, available)
