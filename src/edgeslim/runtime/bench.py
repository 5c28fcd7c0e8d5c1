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

from ..errors import ArtifactError
from .formats import model_bytes
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


def _agreement(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    if ref.shape != got.shape:
        return {"max_abs_diff": float("nan"), "top1_agreement": float("nan")}
    return {"max_abs_diff": float(np.abs(ref - got).max()),
            "top1_agreement": float((ref.reshape(len(ref), -1).argmax(1) == got.reshape(len(got), -1).argmax(1)).mean())}


class _Inputs:
    """One set of inputs for every model, so timings and outputs compare like with like: a random
    image batch (and agreement batch), or, for a text model, ``batch`` rows of ``seq_len`` real
    tokens from its own tokenizer (timed and compared)."""

    def __init__(self, runner: Runner, batch: int, seq_len: int, rng: np.random.Generator,
                 agreement_inputs: np.ndarray | None, agreement_samples: int):
        from .text import is_text_model, text_embedder

        self.text = is_text_model(runner)
        self.shape = runner.input_shape if not self.text else None
        if self.text:
            self.timed = self.check = text_embedder(runner, runner.path).bench_inputs(batch, seq_len)
            return
        self.timed = rng.standard_normal((batch, *runner.input_shape)).astype(np.float32)
        self.check = (agreement_inputs if agreement_inputs is not None
                      else rng.standard_normal((agreement_samples, *runner.input_shape)).astype(np.float32))

    def feeds(self, runner: Runner, x) -> dict[str, np.ndarray]:
        if self.text:
            return x
        if runner.input_shape != self.shape:
            raise ArtifactError(f"{runner.name}: input shape {runner.input_shape} differs from the first model's "
                                f"{self.shape}; benchmark exports of one model side by side")
        return {runner.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def samples(self) -> int:
        return len(next(iter(self.check.values()))) if self.text else len(self.check)


def benchmark(paths: list[str | os.PathLike], batch: int = 1, threads: int | None = None,
              warmup: int = 10, rounds: int = 20, iters_per_round: int = 5, seed: int = 0,
              public_key: str | os.PathLike | None = None, require_signature: bool | None = None,
              agreement_inputs: np.ndarray | None = None, agreement_samples: int = 64,
              seq_len: int = 128) -> list[dict]:
    """Measure each model (any format ``load_model`` opens) on the same inputs; returns one dict
    per model, in the order given, with ratios to the first model (``speedup`` > 1 means faster
    than the first) and output agreement with it: max |diff| of the outputs and top-1 agreement
    on ``agreement_inputs`` (default: ``agreement_samples`` random inputs; pass real images).
    ``seq_len``: tokens per row for text models."""
    rng = np.random.default_rng(seed)
    runners: list[Runner] = []
    results: list[dict] = []
    inputs: _Inputs | None = None
    for p in paths:
        rss0 = current_rss_bytes()
        t0 = time.perf_counter()
        r = load_model(p, threads=threads, public_key=public_key, require_signature=require_signature)
        init_s = time.perf_counter() - t0
        inputs = inputs or _Inputs(r, batch, seq_len, rng, agreement_inputs, agreement_samples)
        feeds = inputs.feeds(r, inputs.timed)
        for _ in range(warmup):
            r.run(feeds)
        runners.append(r)
        results.append({"model": str(r.path), "runtime": r.format, "file_bytes": model_bytes(r.path), "batch": batch,
                        "threads": threads or os.cpu_count(), "session_init_ms": init_s * 1000,
                        "rss_increase_mb": (current_rss_bytes() - rss0) / 2**20, "_feeds": feeds, "_t": []})
    for _ in range(rounds):
        for r, res in zip(runners, results):
            for _ in range(iters_per_round):
                t0 = time.perf_counter()
                r.run(res["_feeds"])
                res["_t"].append(time.perf_counter() - t0)

    def first_output(r: Runner) -> np.ndarray:
        return r.run(inputs.feeds(r, inputs.check))[r.outputs[0].name]

    reference = first_output(runners[0])
    base = None
    for r, res in zip(runners, results):
        times = res.pop("_t")
        res.pop("_feeds")
        res.update(_percentiles(times))
        res["throughput_per_s"] = batch / (float(np.median(times)))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base = base or res
        res["speedup"] = base["p50_ms"] / res["p50_ms"]
        res["size_ratio"] = res["file_bytes"] / base["file_bytes"]
        res.update(_agreement(reference, first_output(r)))
        res["agreement_samples"] = inputs.samples()
    return results


def plot_benchmark(results: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """A PNG bar chart of p50 latency per model (p90 as the error bar), labelled with the runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..report.figures import save_figure

    labels = [f"{Path(r['model']).name}\n{r['runtime']}" for r in results]
    p50 = [r["p50_ms"] for r in results]
    above = [r["p90_ms"] - r["p50_ms"] for r in results]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(results)), 3.6))
    bars = ax.bar(labels, p50, yerr=[[0] * len(results), above], capsize=4, color="#4c72b0")
    for bar, r in zip(bars, results):
        ax.annotate(f"{r['speedup']:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel("p50 latency (ms; bar to p90)")
    ax.set_title(title or f"batch {results[0]['batch']}, {results[0]['threads']} threads")
    fig.tight_layout()
    return save_figure(fig, path)


FASTER_MARGIN = 1.05  # speedups below this are within timing noise: "not faster"


def slower_than_baseline(results: list[dict], tolerance: float = 0.97) -> list[str]:
    """Models (after the first) that are not faster than the first one: users must be told."""
    return [r["model"] for r in results[1:] if r["speedup"] < tolerance]
