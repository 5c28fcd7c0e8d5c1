"""Budget-first compression: each stage gets a share of the accuracy budget and, when its
recipe setting would spend more, is weakened (bisection on a strength between 0, the stage
skipped, and 1, the recipe's setting) until it fits.

Strength maps onto each stage's own knob so that halfway means "half as much compression":
the kept fraction of weights, MACs, latency or channels is ``kept ** strength`` (geometric, so
sparsity 0.94 at strength 0.5 keeps 24% of the weights, not 53%); weight-sharing bits rise
from the recipe's towards 8; int8 quantization and N:M have no setting in between (on or off).

Decisions are made on the validation split held out of training, never on the test split.
The final result must fit by one standard error of the paired difference (from the samples on
which it and the original disagree): its measured drop plus that error stays inside the budget,
so that a result accepted on validation holds on unseen data too, not by luck of the draw. Each
stage is held to its share of what that leaves, ``share * (budget - stderr)``: its drop plus
``share`` standard errors within its allowance. An earlier stage that spent its whole share by
the measure alone left the last one no room for the error (seed-cnn's smallest recipe: pruning
kept 0.30 of 0.40 points, then even 8-bit weight sharing could not fit 0.30 + 0.21 into 0.5 and
was skipped, 22x instead of 50x); and of several tries the strongest that passed is the one
most likely measured lucky.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

# how much of the budget each stage type may spend, relative to the others (export spends none).
# Measured on Fashion-MNIST models (validation drops): int8 static 0.00, 5/4-bit weight sharing
# 0.10 after pruning, so they get a quarter of a pruning stage's share and pruning most of it
BUDGET_WEIGHTS = {"prune": 1.0, "distill": 1.0, "share_weights": 0.25, "quantize": 0.25, "export": 0.0}
MIN_STRENGTH_GAP = 0.125  # bisection stops when passing and failing strengths are this close
MAX_ATTEMPTS = 4  # per stage, the recipe's own setting included


def margins(allowed: list[float], budget: float) -> list[float]:
    """Standard errors each stage's measured drop must fit by: its share of the budget (1 for the
    last lossy stage), so that the final result keeps one standard error of room."""
    return [min(a / budget, 1.0) if budget > 0 else 1.0 for a in allowed]


def allowances(stage_types: list[str], budget: float) -> list[float]:
    """The cumulative accuracy drop (points) allowed after each stage: the budget shared out by
    BUDGET_WEIGHTS, so early stages leave room for the later ones; the last lossy stage gets it all."""
    weights = [BUDGET_WEIGHTS[t] for t in stage_types]
    total = sum(weights) or 1.0
    out, spent = [], 0.0
    for w in weights:
        spent += w
        out.append(budget * spent / total)
    return out


def paired_drop(reference_correct, candidate_correct) -> tuple[float, float]:
    """(drop in points, its standard error) of a candidate against the reference on the same samples."""
    n = len(reference_correct)
    lost = sum(1 for r, c in zip(reference_correct, candidate_correct) if r and not c)
    gained = sum(1 for r, c in zip(reference_correct, candidate_correct) if c and not r)
    drop = 100.0 * (lost - gained) / n
    # McNemar: the difference of two paired proportions has variance (b + c) / n^2 (minus a tiny term)
    stderr = 100.0 * math.sqrt(lost + gained) / n
    return drop, stderr


@dataclass
class Attempt:
    strength: float
    drop: float  # points, on the validation split, against the original model
    stderr: float
    passed: bool
    seconds: float
    setting: str  # the stage's summary at this strength
    folder: str | None = None  # where its output lives (relative to the run folder)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StageSearch:
    """Bisection over a stage's strength: 1 (the recipe) first, then between the strongest
    setting that passed (0, skipping the stage, always does) and the mildest that failed."""
    allowed: float
    has_knob: bool
    attempts: list[Attempt] = field(default_factory=list)
    margin: float = 0.0  # standard errors added to the measured drop (the stage's share of the budget)

    @property
    def best(self) -> Attempt | None:
        passed = [a for a in self.attempts if a.passed]
        return max(passed, key=lambda a: a.strength) if passed else None

    def next_strength(self, out_of_time: bool) -> float | None:
        """The next strength to try, or None when the search is over."""
        if not self.attempts:
            return 1.0
        best = self.best
        if best is not None and best.strength >= 1.0:
            return None
        if out_of_time or not self.has_knob or len(self.attempts) >= MAX_ATTEMPTS:
            return None
        lo = best.strength if best else 0.0
        hi = min(a.strength for a in self.attempts if not a.passed)
        if hi - lo < MIN_STRENGTH_GAP + 1e-9:
            return None
        return (lo + hi) / 2

    def judge(self, drop: float, stderr: float) -> bool:
        return drop + self.margin * stderr <= self.allowed + 1e-9


# ---- each stage type's knob ---------------------------------------------------------------

def _kept(fraction_kept: float, strength: float) -> float:
    return fraction_kept ** strength


def _weaken_prune(stage, x: float):
    config, update = stage.config, {}
    if config.method == "nm":
        return None  # N:M has no setting in between
    if getattr(config, "target_macs", None) is not None:
        update["target_macs"] = _kept(config.target_macs, x)
    elif getattr(config, "target_latency", None) is not None:
        update["target_latency"] = _kept(config.target_latency, x)
    elif config.sparsity is not None:
        update["sparsity"] = 1 - _kept(1 - config.sparsity, x)
    if config.layer_sparsity:
        update["layer_sparsity"] = {n: 1 - _kept(1 - s, x) for n, s in config.layer_sparsity.items()}
    return _copy(stage, config=update) if update else None


def _weaken_share(stage, x: float):
    def bits(b):
        return None if b is None else int(round(b + (8 - b) * (1 - x)))
    return _copy(stage, config={"conv_bits": bits(stage.config.conv_bits),
                                "linear_bits": bits(stage.config.linear_bits)})


def _weaken_distill(stage, x: float):
    return _copy(stage, {"width": _kept(stage.width, x)}) if stage.width else None


WEAKEN: dict[str, Callable[[Any, float], Any]] = {
    "prune": _weaken_prune, "share_weights": _weaken_share, "distill": _weaken_distill,
}


def _copy(stage, update: dict[str, Any] | None = None, config: dict[str, Any] | None = None):
    """``stage`` with ``update`` on its own fields and ``config`` on its verb config's, re-validated,
    so a weakened stage obeys the same checks as one written by hand."""
    from pydantic import ValidationError

    from ..errors import config_error

    verb = {"method": stage.config.method, **stage.config.model_dump(exclude_unset=True), **(config or {})}
    try:
        return type(stage).model_validate({**stage.model_dump(exclude_unset=True), **(update or {}), "config": verb})
    except ValidationError as e:
        raise config_error(e, f"weakened {stage.type} stage", (stage.type, stage.config.method)) from None


def weakened(stage, strength: float):
    """The stage at ``strength`` (1: as written; 0: skipped, returns None); for stages without
    a setting in between (int8, N:M, export) only 1 exists."""
    if strength >= 1.0:
        return stage
    if strength <= 0.0:
        return None
    weaken = WEAKEN.get(stage.type)
    return weaken(stage, strength) if weaken else None


def has_knob(stage) -> bool:
    return weakened(stage, 0.5) is not None


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"1.5h"`` (or plain seconds) -> seconds."""
    from ..errors import ConfigError

    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    try:
        value = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        raise ConfigError(f"time budget: expected a duration such as 90s, 30m or 1.5h, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"time budget: must be positive, got {text!r}")
    return value
