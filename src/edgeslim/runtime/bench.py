"""Latency benchmark of one or more models, measured side by side.

Models are timed in interleaved rounds (A, B, C, A, B, C, ...) so that machine noise
(other processes, frequency changes) hits every model alike and the ratios are fair.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from .runner import Runner, load_model


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def _timed_call(runner: Runner, path, batch: int, seq_len: int, rng: np.random.Generator):
    """What one timed inference runs: a random image batch, or, for a text model, ``batch`` rows of
    ``seq_len`` real tokens from its own tokenizer."""
    from .text import is_text_model, text_embedder

    if is_text_model(runner):
        feeds = text_embedder(runner, path).bench_inputs(batch, seq_len)
        return lambda: runner.session.run(None, feeds)
    x = rng.standard_normal((batch, *runner.input_shape)).astype(np.float32)
    return lambda: runner.predict(x)


def benchmark(paths: list[str | os.PathLike], batch: int = 1, threads: int | None = None,
              warmup: int = 10, rounds: int = 20, iters_per_round: int = 5, seed: int = 0,
              public_key: str | os.PathLike | None = None, require_signature: bool | None = None,
              seq_len: int = 128) -> list[dict]:
    """Measure each model; returns one dict per model, in the order given, with ratios to
    the first model (``speedup`` > 1 means faster than the first). ``seq_len``: tokens per
    row for text models."""
    rng = np.random.default_rng(seed)
    runners: list[Runner] = []
    results: list[dict] = []
    for p in paths:
        rss0 = current_rss_bytes()
        t0 = time.perf_counter()
        r = load_model(p, threads=threads, public_key=public_key, require_signature=require_signature)
        init_s = time.perf_counter() - t0
        call = _timed_call(r, p, batch, seq_len, rng)
        for _ in range(warmup):
            call()
        runners.append(r)
        results.append({"model": str(p), "file_bytes": Path(p).stat().st_size, "batch": batch,
                        "threads": threads or os.cpu_count(), "session_init_ms": init_s * 1000,
                        "rss_increase_mb": (current_rss_bytes() - rss0) / 2**20, "_call": call, "_t": []})
    for _ in range(rounds):
        for r, res in zip(runners, results):
            for _ in range(iters_per_round):
                t0 = time.perf_counter()
                res["_call"]()
                res["_t"].append(time.perf_counter() - t0)
    base = None
    for res in results:
        times = res.pop("_t")
        res.pop("_call")
        res.update(_percentiles(times))
        res["throughput_per_s"] = batch / (float(np.median(times)))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base = base or res
        res["speedup"] = base["p50_ms"] / res["p50_ms"]
        res["size_ratio"] = res["file_bytes"] / base["file_bytes"]
    return results


FASTER_MARGIN = 1.05  # speedups below this are within timing noise: "not faster"


def slower_than_baseline(results: list[dict], tolerance: float = 0.97) -> list[str]:
    """Models (after the first) that are not faster than the first one: users must be told."""
    return [r["model"] for r in results[1:] if r["speedup"] < tolerance]
