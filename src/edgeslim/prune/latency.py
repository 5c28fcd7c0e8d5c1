"""Latency-aware structured pruning: per-layer channel counts chosen by time measured on
ONNX Runtime, not by MACs (NetAdapt, Yang et al. 2018, scoring candidates by accuracy without
the short fine-tune NetAdapt gives each one).

Why: on ONNX Runtime's CPU kernels time is a step function of channel counts. Convolutions
compute output channels in blocks of 8 or 16 (NCHWc), a conv whose input has fewer channels
than a block pays per input channel, and a first conv costs the same for 1 to 16 filters
unless export folds its max-pool. A uniform channel ratio can halve the MACs and run no
faster; the right split depends on the runtime, so it is measured.

Each step asks every prunable layer for the most channels it can keep while bringing the
model's measured latency ``step`` (a fraction of the original latency) below the current one
(a binary search over its channel count), scores each such candidate by its accuracy on
calibration data, and keeps the best, until the latency target is met. The cuts save time in
steps, so the last one overshoots (a 35% MAC budget met at 21%); the plan then gives channels
back wherever they fit the target and cost no measurable time.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx
import torch
import torch.nn as nn

from ..errors import ConfigError
from .structured import ROOT_TYPES, _build_graph, _channels, plan_ignored_layers


def keep_ratio(channels: int, keep: int) -> float:
    """The channel ratio that makes torch-pruning keep exactly ``keep`` of ``channels``
    (it keeps ``int(channels * (1 - ratio))``); 0 keeps them all."""
    return 0.0 if keep >= channels else 1.0 - (keep + 0.5) / channels


@dataclass
class LatencyPlan:
    original: dict[str, int]  # layer -> output channels before
    keep: dict[str, int]  # layer -> output channels to keep
    original_latency_ms: float
    latency_ms: float
    steps: list[dict] = field(default_factory=list)
    reached: bool = True  # False: no further cut saved measurable time before the caller's goal was met

    @property
    def ratios(self) -> dict[str, float]:
        """``layer_ratios`` for ``prune_structured`` (only the layers that shrink)."""
        return {n: keep_ratio(self.original[n], k) for n, k in self.keep.items() if k < self.original[n]}

    @property
    def latency_fraction(self) -> float:
        return self.latency_ms / self.original_latency_ms

    def summary(self) -> dict:
        return {"original_latency_ms": round(self.original_latency_ms, 4), "latency_ms": round(self.latency_ms, 4),
                "latency_fraction": round(self.latency_fraction, 3), "keep": self.keep, "steps": self.steps,
                "reached": self.reached}


class DeployedLatency:
    """Latency (ms) of a torch model exported to ONNX and run by ONNX Runtime as export can
    deploy it (``edgeslim.export.optimize.deployed_latencies_ms``), measured side by side with
    the original model every time and scaled by the original's latency: at batch 1 a small
    model runs in tens of microseconds and single timings drift by 20%, their ratio much less.
    With several ``batches`` the fraction is the geometric mean of the fractions at each (a
    layout must pay at batch 1, where overheads dominate, and at batch 64, where compute does).
    Cached per channel layout, since time depends on the shapes, not on the weights.
    ``confirm`` measures again, longer: the search keeps the candidates whose quick measurement
    came out low, so the layouts it chooses are re-timed before they count."""

    def __init__(self, original: nn.Module, input_shape: tuple[int, ...], batches: int | list[int] = 1,
                 threads: int | None = 1, rounds: int = 10, confirm_rounds: int = 40):
        self.input_shape, self.threads = tuple(input_shape), threads
        self.batches = [batches] if isinstance(batches, int) else list(batches)
        self.rounds, self.confirm_rounds = rounds, confirm_rounds
        self.reference = self._proto(original)
        self.reference_ms = self._timed([self.reference], confirm_rounds)[0][0]
        self._cache: dict[tuple, float] = {}
        self.measurements = 0

    def __call__(self, model: nn.Module) -> float:
        key = tuple(sorted(_channels(model).items()))
        if key not in self._cache:
            self._cache[key] = self._relative(model, self.rounds)
        return self._cache[key]

    def confirm(self, model: nn.Module) -> float:
        return self._relative(model, self.confirm_rounds)

    def _relative(self, model: nn.Module, rounds: int) -> float:
        self.measurements += 1
        per_batch = self._timed([self.reference, self._proto(model)], rounds)
        fractions = [model_ms / reference_ms for reference_ms, model_ms in per_batch]
        return self.reference_ms * math.prod(fractions) ** (1 / len(fractions))

    def _timed(self, protos: list[onnx.ModelProto], rounds: int) -> list[list[float]]:
        """p50 ms of each model, one list per batch size."""
        from ..export.optimize import deployed_latencies_ms

        return [deployed_latencies_ms(protos, b, self.threads, rounds) for b in self.batches]

    def _proto(self, model: nn.Module) -> onnx.ModelProto:
        return onnx_proto(model, self.input_shape)


def onnx_proto(model: nn.Module, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    """``model`` exported by ``edgeslim.export.export_onnx``, in memory."""
    from ..export import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgeslim-latency-") as tmp:
        return onnx.load(str(export_onnx(model, Path(tmp) / "m.onnx", tuple(input_shape))))


def measured_speedup(original: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...],
                     batches: int | list[int] = 1, threads: int | None = 1, rounds: int = 20) -> list[dict]:
    """p50 latency of both models as ``edgeslim export`` writes them (its graph rewrites decided
    at these batch sizes and threads, as export decides them), timed side by side on ONNX
    Runtime at each batch size."""
    from ..export.optimize import GraphOptimization, optimize_onnx, p50_ms

    batches = [batches] if isinstance(batches, int) else list(batches)
    settings = GraphOptimization("auto", tuple(batches), threads)
    protos = [optimize_onnx(onnx_proto(m, input_shape), settings)[0] for m in (original, pruned)]
    out = []
    for batch in batches:
        original_ms, pruned_ms = p50_ms(protos, batch, threads, warmup=3, rounds=rounds, iters_per_round=3)
        out.append({"batch": batch, "threads": threads, "original_p50_ms": round(original_ms, 4),
                    "pruned_p50_ms": round(pruned_ms, 4), "speedup": round(original_ms / pruned_ms, 3)})
    return out


def candidate_layers(model: nn.Module, input_shape: tuple[int, ...], layers: list[str] | None = None,
                     exclude: list[str] | None = None) -> list[str]:
    """The layers whose output channels can be chosen, in module order: the root conv/linear
    of every prunable group (coupled layers, e.g. across a residual add, follow it)."""
    dg = _build_graph(model, torch.zeros(1, *input_shape))
    ignored = plan_ignored_layers(model, input_shape, layers, exclude, graph=dg)
    ignored_all = {id(s) for m in ignored for s in m.modules()}
    roots = {id(group[0][0].target.module) for group in dg.get_all_groups(
        ignored_layers=[m for m in model.modules() if id(m) in ignored_all], root_module_types=ROOT_TYPES)}
    return [n for n, m in model.named_modules() if id(m) in roots and isinstance(m, ROOT_TYPES)]


def plan_for_latency(model: nn.Module, candidates: list[str], target: float,
                     prune_to: Callable[[dict[str, float]], nn.Module], score: Callable[[nn.Module], float],
                     latency: Callable[[nn.Module], float], step: float = 0.1, min_step: float = 0.02,
                     progress: Callable[[str], None] | None = None,
                     confirm: Callable[[nn.Module], float] | None = None,
                     done: Callable[[nn.Module, float], bool] | None = None) -> LatencyPlan:
    """Channel counts per candidate layer that bring ``latency(model)`` to at most ``target``
    times the original. ``prune_to(layer_ratios)`` builds a pruned copy of ``model``,
    ``score(model)`` rates one (higher is better: accuracy on calibration data); ``confirm``
    (default ``latency``) re-times the original and each chosen layout. ``done(model,
    latency_fraction)`` replaces the latency target as the goal (e.g. a MAC budget: each step
    still takes the cut that saves the most measured time for the least accuracy)."""
    confirm = confirm or latency
    original = {n: c for n, c in _channels(model).items() if n in candidates}
    keep = dict(original)
    base = current = confirm(model)
    plan = LatencyPlan(original, keep, base, base)
    by_latency = done is None
    done = done or (lambda m, fraction: fraction <= target)
    current_model = model
    refused: set[str] = set()  # layers whose cut this step, re-timed, bought under half a step
    while not done(current_model, current / base):
        goal = current - step * base
        best = _best_scored([n for n in candidates if n not in refused], lambda name: _most_channels(
            name, keep, original, 1, keep[name] - 1, lambda m, ms: ms <= goal, prune_to, latency), score)
        if best is None:
            if step / 2 < min_step:
                if not by_latency:  # the caller's goal: it gets the fastest layout found and decides
                    plan.reached = False
                    break
                raise ConfigError(f"target_latency {target:.2f} is out of reach: the fastest layout found runs at "
                                  f"{current / base:.2f} of the original latency ({current:.4f} ms vs "
                                  f"{base:.4f} ms); ask for a larger fraction")
            step /= 2  # no layer can save a whole step any more: take smaller ones
            refused.clear()
            continue
        name, k, pruned, s = best
        ms = confirm(pruned)
        if ms > current - step * base / 2:
            # the quick timing was luck: a cut that buys little time still costs accuracy (toward a MAC
            # budget it would let a cheap-to-cut layer meet the budget while the model stays slow)
            refused.add(name)
            continue
        refused.clear()
        keep[name] = k
        current_model, current = pruned, ms
        plan.steps.append({"layer": name, "keep": k, "latency_ms": round(current, 4),
                           "latency_fraction": round(current / base, 3), "score": round(s, 4)})
        if progress:
            progress(f"{name} -> {k} channels: {current / base:.2f} of the original latency, score {s:.4f}")
    if plan.reached:
        # a MAC budget: keep the speed the cuts bought (channels given back within timing noise); a
        # looser limit (anything faster than the layout before the last cut) bought seed-cnn 0.3
        # points for 2.6x -> 2.0x at batch 64, and lenet-5 nothing
        limit = target * base if by_latency else current + REFILL_SLACK * base
        current_model, current = _refill(plan, candidates, current_model, current, limit, prune_to, score, latency,
                                         confirm, lambda m, ms: done(m, ms / base), progress)
    plan.latency_ms = current
    return plan


# in a MAC-budget plan, channels given back may cost this share of the original latency: the
# cuts bought the speed-up in steps of ``step``, and a few percent is within timing noise
REFILL_SLACK = 0.03


def _refill(plan: LatencyPlan, candidates: list[str], model: nn.Module, current: float, limit: float,
            prune_to: Callable[[dict[str, float]], nn.Module], score: Callable[[nn.Module], float],
            latency: Callable[[nn.Module], float], confirm: Callable[[nn.Module], float],
            fits: Callable[[nn.Module, float], bool], progress: Callable[[str], None] | None
            ) -> tuple[nn.Module, float]:
    """Give channels back where they cost no time: the cuts save latency in steps, so the last
    one usually overshoots (a 35% MAC budget met at 21%), and on ONNX Runtime a conv costs the
    same for every count within a channel block. Each round grows the layer whose largest
    count still within ``limit`` ms and ``fits`` (the MAC budget, the latency target) scores
    best, until none can grow; a growth the confirming measurement puts over the limit ends
    that layer's growth."""
    keep, original = plan.keep, plan.original
    closed: set[str] = set()
    while True:
        open_layers = [n for n in candidates if n not in closed and keep[n] < original[n]]
        best = _best_scored(open_layers, lambda name: _most_channels(
            name, keep, original, keep[name] + 1, original[name], lambda m, ms: ms <= limit and fits(m, ms),
            prune_to, latency), score, on_none=closed.add)
        if best is None:
            return model, current
        name, k, grown, s = best
        ms = confirm(grown)
        if ms > limit or not fits(grown, ms):
            closed.add(name)
            continue
        before = keep[name]
        keep[name], model, current = k, grown, ms
        plan.steps.append({"layer": name, "keep": k, "latency_ms": round(ms, 4),
                           "latency_fraction": round(ms / plan.original_latency_ms, 3), "score": round(s, 4),
                           "grown_from": before})
        if progress:
            progress(f"{name} back to {k} channels (from {before}, no slower): "
                     f"{ms / plan.original_latency_ms:.2f} of the original latency, score {s:.4f}")


def _best_scored(names: list[str], search: Callable[[str], tuple[int, nn.Module, float] | None],
                 score: Callable[[nn.Module], float], on_none: Callable[[str], None] = lambda name: None
                 ) -> tuple[str, int, nn.Module, float] | None:
    """(layer, channels, model, score) of the best-scoring layout ``search`` finds over ``names``;
    ``on_none(name)`` for each layer it finds none for."""
    best = None
    for name in names:
        found = search(name)
        if found is None:
            on_none(name)
            continue
        k, m, _ = found
        s = score(m)
        if best is None or s > best[3]:
            best = (name, k, m, s)
    return best


def _most_channels(name: str, keep: dict[str, int], original: dict[str, int], lo: int, hi: int,
                   accept: Callable[[nn.Module, float], bool],
                   prune_to: Callable[[dict[str, float]], nn.Module], latency: Callable[[nn.Module], float]
                   ) -> tuple[int, nn.Module, float] | None:
    """The largest channel count in [lo, hi] for ``name`` whose model ``accept`` takes (with its
    latency), by binary search: latency grows with channels, in steps, so acceptance is monotone.
    Returns (count, model, latency), or ``None`` when even ``lo`` is refused (or the range is empty)."""
    def build(k: int) -> tuple[nn.Module, float]:
        layout = {**keep, name: k}
        m = prune_to({n: keep_ratio(original[n], c) for n, c in layout.items() if c < original[n]})
        return m, latency(m)

    if lo > hi:
        return None
    model_lo, ms_lo = build(lo)
    if not accept(model_lo, ms_lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        m, ms = build(mid)
        if accept(m, ms):
            lo, model_lo, ms_lo = mid, m, ms
        else:
            hi = mid - 1
    return lo, model_lo, ms_lo
