"""Gradual pruning schedule of Zhu & Gupta (2017), "To prune, or not to prune"."""
from __future__ import annotations

from ..errors import ConfigError


def cubic_sparsity(t: int, final: float, initial: float = 0.0, t0: int = 0, n: int = 10, dt: int = 1) -> float:
    """``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`` for t0 <= t <= t0 + n*dt;
    ``s_i`` before t0 and ``s_f`` after the last step. Sparsity rises fast early, when
    redundant weights abound, and slowly near the end, when every weight counts."""
    if n < 1 or dt < 1:
        raise ConfigError(f"cubic schedule needs n >= 1 and dt >= 1 (got n={n}, dt={dt})")
    progress = min(max((t - t0) / (n * dt), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def cubic_steps(final: float, initial: float = 0.0, n: int = 10) -> list[float]:
    """The n + 1 sparsity levels of the schedule at t0, t0 + dt, ..., t0 + n*dt."""
    return [cubic_sparsity(k, final, initial, 0, n, 1) for k in range(n + 1)]
