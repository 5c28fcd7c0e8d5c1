"""The prune configs, one class per method (``method`` picks it): :class:`Unstructured` (single
weights), :class:`Structured` (whole channels) and :class:`NM` (N:M semi-structured masks), each
with the shared :class:`~edgeslim.config.FineTune` recovery block (and, for structured pruning,
:class:`~edgeslim.config.Timing`).

Field-level checks run when the config is built; ``check_against(model, data)`` checks
it against a concrete model (layer names, structural prunability, data needs) before
any pruning or training starts.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

import torch.nn as nn
from pydantic import Field, field_validator, model_validator

from ..config import FINETUNE_RENAMED, TIMING_RENAMED, FineTune, MethodConfig, Timing, make_config, with_defaults
from ..errors import ConfigError
from .nm import nm_compatible
from .unstructured import PRUNABLE

# augmentation defaults to how the model was trained; fine-tuning distils from the unpruned model
PruneFineTune = with_defaults(FineTune, "PruneFineTune", epochs=0, lr=1e-3, batch_size=128, augment=None,
                              distill=True, temperature=4.0, alpha=0.7)
# a gradual fine-tune changes the masks as it goes and recovers best at a higher rate (lenet-300-100
# at 95%, 8 epochs: -0.76 points at 2e-3 vs -0.98 at 1e-3)
UnstructuredFineTune = with_defaults(PruneFineTune, "UnstructuredFineTune", lr=2e-3)
# a model that lost whole channels has more to relearn: lenet-5 at 33% of the MACs (2/11/120/84
# channels), 8 epochs: -2.05 points at 1e-3, -1.61 at 2e-3, -1.02 at 4e-3, -0.96 at 8e-3 (but
# 2/16/52/36: -1.15 at 4e-3, -1.31 at 8e-3); seed-cnn at 31%: -0.61 at 1e-3, -0.46 at 4e-3.
# Its fewer channels cannot also copy the teacher's dark knowledge: distil at T=1, half on the labels
# (lenet-5 at 2/8/120/84, 4e-3, two seeds: -1.56/-1.64 at T=4 alpha 0.7, -0.90/-1.18 at T=1 alpha 0.5;
# one seed: T=1 alpha 0.7 -1.06, alpha 0.3 -1.15, T=2 alpha 0.5 -1.45, T=4 alpha 0.3 -1.15)
StructuredFineTune = with_defaults(PruneFineTune, "StructuredFineTune", lr=4e-3, temperature=1.0, alpha=0.5)
# the latency layout and the speed check measure at batch 1 and 64 (the layout pays at all of them)
PruneTiming = with_defaults(Timing, "PruneTiming", batch=[1, 64], threads=1)


def _check_fraction(v: Optional[float]) -> Optional[float]:
    if v is not None and not 0.0 <= v < 1.0:
        raise ValueError(f"must be in [0, 1) (a fraction of weights), got {v}")
    return v


def _check_fractions(v: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
    for name, s in (v or {}).items():
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity of layer {name!r} must be in [0, 1), got {s}")
    return v


class _Checks:
    """Checks of a prune config against a concrete model (shared by every method)."""

    def check_layer_names(self, model: nn.Module) -> None:
        """Raise ConfigError for a layer name (layers, exclude, layer_sparsity) that ``model``
        lacks or that names a layer which cannot be pruned."""
        modules = dict(model.named_modules())
        for field_name, names in (("layers", self.layers or []), ("exclude", self.exclude),
                                  ("layer_sparsity", list(self.layer_values))):
            for name in names:
                if name not in modules:
                    close = [n for n in modules if n and (name in n or n in name)][:3]
                    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                    raise ConfigError(f"{field_name}: no layer named {name!r} in {type(model).__name__}{hint}")
                if not isinstance(modules[name], PRUNABLE) and field_name != "exclude":
                    raise ConfigError(f"{field_name}: {name!r} is a {type(modules[name]).__name__}; only Conv2d "
                                      "and Linear layers can be pruned")

    def check_against(self, model: nn.Module, data: Any = None) -> None:
        """Raise ConfigError for anything that would fail later: unknown layer names,
        layers that cannot be pruned by this method, missing data."""
        self.check_layer_names(model)
        modules = dict(model.named_modules())
        if isinstance(self, NM):
            for name in self.layers or []:
                if not nm_compatible(modules[name].weight, self.m):
                    raise ConfigError(f"layers: {name!r} has {modules[name].weight[0].numel()} inputs per output, "
                                      f"not a multiple of m={self.m}, so it cannot take an {self.n}:{self.m} "
                                      "pattern")
        if self.needs_data and data is None:
            raise ConfigError(f"{self._why_data()}: pass data= (a DataBundle, or a Split)")


class _Prune(_Checks, MethodConfig):
    """What every prune method shares: which layers, the criterion's calibration batches and the
    recovery fine-tune."""
    RENAMED = {**FINETUNE_RENAMED, **TIMING_RENAMED}

    # magnitude = |w| (l1 is its alias); taylor = |w * dL/dw| over calibration batches
    criterion: Literal["magnitude", "taylor", "l1"] = "magnitude"
    layers: Optional[list[str]] = None
    exclude: list[str] = Field(default_factory=list)
    finetune: PruneFineTune = Field(default_factory=PruneFineTune)
    calibration_batches: int = Field(8, ge=1)
    calibration_batch_size: int = Field(64, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _no_crop_flip(self) -> "_Prune":
        if self.finetune.augment == "crop_flip":
            raise ValueError("finetune.augment 'crop_flip' applies to distillation only; use true, false or null")
        return self

    @property
    def layer_values(self) -> dict[str, float]:
        """Per-layer sparsity / channel ratio given by the user (none for N:M)."""
        return dict(getattr(self, "layer_sparsity", None) or {})

    @property
    def effective_layout(self) -> str | None:
        return None

    @property
    def needs_data(self) -> bool:
        return self.criterion == "taylor" or self.finetune.epochs > 0

    def _why_data(self) -> str:
        return ("taylor importance needs calibration batches" if self.criterion == "taylor" else
                "fine-tuning needs training data")


class _Sparsity(_Prune):
    """Unstructured and structured pruning: a level (or one per layer) and a schedule."""
    layer_sparsity: Optional[dict[str, float]] = Field(
        None, description="per-layer sparsity (unstructured, e.g. from sensitivity analysis) or fixed "
                          "per-layer channel ratio (structured)")
    # None: gradual for unstructured pruning with >= 2 fine-tune epochs to spread it over, else oneshot
    # (structured layouts are planned once, by MACs or measured latency, then fine-tuned)
    schedule: Optional[Literal["oneshot", "gradual"]] = None
    pruning_steps: int = Field(10, ge=1, description="n of the cubic schedule")
    # share of fine-tuning during which sparsity rises (structured: the removed channels fade out);
    # the rest recovers at the final sparsity (lenet-300-100 at 95%, 8 epochs: 0.7 -> -0.76 points,
    # 0.5 -> -0.54, 0.35 -> -0.27 with lamp)
    pruning_fraction: float = Field(0.35, gt=0, le=1)

    _fractions = field_validator("layer_sparsity")(classmethod(lambda cls, v: _check_fractions(v)))

    @model_validator(mode="after")
    def _schedule(self) -> "_Sparsity":
        if self.schedule is None:
            gradual = self.method == "unstructured" and self.finetune.epochs >= 2
            object.__setattr__(self, "schedule", "gradual" if gradual else "oneshot")  # stays "unset"
        if self.schedule == "gradual" and self.finetune.epochs == 0:
            raise ValueError("schedule 'gradual' fine-tunes between pruning steps: set finetune.epochs >= 1")
        return self


class Unstructured(_Sparsity):
    """Zero single weights: ``sparsity`` of them, ranked over the whole model (``scope="global"``),
    per layer, or per layer as a sensitivity analysis allots; at once or on the cubic schedule of
    Zhu & Gupta (``schedule="gradual"``)."""
    method: Literal["unstructured"] = "unstructured"
    # lamp = |w| scaled within its layer (LAMP, Lee et al. 2021: w^2 over the sum of the squares of
    # the layer's weights at least as large), so one global ranking respects each layer's scale
    # (lenet-300-100 at 95%, 8 fine-tune epochs: -0.27 points vs -0.64 by plain magnitude)
    criterion: Literal["lamp", "magnitude", "taylor", "l1"] = "lamp"
    sparsity: float = Field(0.9, description="fraction of weights to zero")
    scope: Literal["global", "layer", "sensitivity"] = "global"
    initial_sparsity: float = Field(0.0, description="s_i of the cubic schedule")
    finetune: UnstructuredFineTune = Field(default_factory=UnstructuredFineTune)
    prune_biases: bool = False

    _fraction = field_validator("sparsity", "initial_sparsity")(classmethod(lambda cls, v: _check_fraction(v)))

    @model_validator(mode="after")
    def _initial(self) -> "Unstructured":
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity {self.initial_sparsity} exceeds sparsity {self.sparsity}")
        return self

    @property
    def effective_scope(self) -> str:
        return self.scope

    @property
    def needs_data(self) -> bool:
        return super().needs_data or self.scope == "sensitivity"

    def _why_data(self) -> str:
        return super()._why_data() if super().needs_data else "sensitivity analysis needs evaluation data"

    def summary(self) -> str:
        return f"unstructured {self.sparsity:.0%} ({self.criterion}, {self.scope}, {self.schedule}){_ft(self)}"


class Structured(_Sparsity):
    """Remove whole channels (the dense model really shrinks), through torch-pruning's dependency
    graph: ``sparsity`` is the channel ratio removed from each layer, or give ``target_macs`` /
    ``target_latency`` (fractions of the original's MACs / ONNX Runtime latency to keep)."""
    method: Literal["structured"] = "structured"
    # bn_scale = |gamma| of the batch-norm after a conv
    criterion: Literal["magnitude", "taylor", "l1", "bn_scale"] = "magnitude"
    sparsity: Optional[float] = Field(None, description="fraction of channels to remove from each layer")
    target_macs: Optional[float] = Field(None, description="keep at most this fraction of MACs")
    # keep at most this fraction of the original's latency, measured on ONNX Runtime at timing.batch /
    # timing.threads; channel counts per layer are chosen by measurement
    target_latency: Optional[float] = None
    # how the target spreads over layers: "latency" picks every layer's channel count by measuring
    # ONNX Runtime (NetAdapt-style; a uniform ratio can halve the MACs and run no faster), "uniform"
    # removes the same ratio everywhere. None: latency for target_latency and for target_macs
    # without round_to, else uniform
    layout: Optional[Literal["uniform", "latency"]] = None
    scope: Literal["global", "layer"] = "layer"
    # the latency layout and the speed check (the original and the pruned model timed side by side,
    # a warning when the pruned one is not faster by timing.margin)
    timing: PruneTiming = Field(default_factory=PruneTiming)
    measure_speed: bool = True
    # latency cut per planning step (of the original). None: 0.1 for target_latency; 0.05 for
    # target_macs, where the last cut overshoots the MAC budget by up to a step and finer cuts land
    # closer to it (lenet-5 at 35%: 2/8/120/84 channels at 0.1, 3/8/92/84 at 0.05, both >= 2x at
    # batch 64; seed-cnn: 8/16/128 and 8/16/99)
    latency_step: Optional[float] = Field(None, gt=0, le=0.5)
    round_to: Optional[int] = Field(None, ge=1)
    finetune: StructuredFineTune = Field(default_factory=StructuredFineTune)

    _fraction = field_validator("sparsity")(classmethod(lambda cls, v: _check_fraction(v)))

    @field_validator("target_macs", "target_latency")
    @classmethod
    def _fraction_kept(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError(f"must be a fraction of the original model's in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> "Structured":
        targets = [n for n in ("sparsity", "target_macs", "target_latency") if getattr(self, n) is not None]
        if not targets:
            raise ValueError("structured pruning needs target_macs (fraction of MACs to keep), target_latency "
                             "(fraction of latency to keep) or sparsity (fraction of channels to remove)")
        if len(targets) > 1:
            raise ValueError(f"give one of sparsity, target_macs, target_latency, not {' and '.join(targets)}")
        if self.target_latency is not None and self.layout == "uniform":
            raise ValueError("target_latency chooses channel counts by measurement: layout must be 'latency'")
        if self.effective_layout == "latency":
            if not (self.target_latency or self.target_macs):
                raise ValueError("layout 'latency' plans a structured prune to target_latency or target_macs")
            if self.round_to:
                raise ValueError("the latency layout chooses every layer's channel count by measurement: use no "
                                 "round_to (or layout='uniform')")
        return self

    @property
    def effective_layout(self) -> str:
        if self.layout:
            return self.layout
        planned = self.target_latency is not None or (self.target_macs is not None and not self.round_to)
        return "latency" if planned else "uniform"

    @property
    def effective_scope(self) -> str:
        return self.scope

    @property
    def effective_latency_step(self) -> float:
        return self.latency_step or (0.05 if self.target_macs else 0.1)

    @property
    def structured_importance(self) -> str:
        return {"magnitude": "l1", "l1": "l1"}.get(self.criterion, self.criterion)

    @property
    def needs_data(self) -> bool:
        return super().needs_data or self.effective_layout == "latency"

    def _why_data(self) -> str:
        return super()._why_data() if super().needs_data else \
            "the latency layout scores candidate layouts on calibration data"

    def summary(self) -> str:
        what = (f"target_macs {self.target_macs:.2f}" if self.target_macs else
                f"target_latency {self.target_latency:.2f} (batch {', '.join(map(str, self.timing.batch))})"
                if self.target_latency else f"channel ratio {self.sparsity:.2f}")
        return f"structured {what} ({self.structured_importance}, {self.schedule}){_ft(self)}"


class NM(_Prune):
    """N:M semi-structured masks (``n`` of every ``m`` consecutive input weights kept; 2:4 by
    default), applied in one shot, then fine-tuned."""
    method: Literal["nm"] = "nm"
    n: int = Field(2, ge=1)
    m: int = Field(4, ge=2)

    @model_validator(mode="after")
    def _n_below_m(self) -> "NM":
        if not self.n < self.m:
            raise ValueError(f"N:M sparsity needs n < m, got {self.n}:{self.m}")
        return self

    @property
    def schedule(self) -> str:
        return "oneshot"

    def summary(self) -> str:
        return f"{self.n}:{self.m} semi-structured ({self.criterion}){_ft(self)}"


PruneMethod = Annotated[Union[Unstructured, Structured, NM], Field(discriminator="method")]
PRUNE_CONFIGS = (Unstructured, Structured, NM)


def prune_config(config: Any = None, source: str = "prune config") -> Unstructured | Structured | NM:
    """A prune config from an ``Unstructured`` / ``Structured`` / ``NM`` (returned as is), a dict
    (``method`` picks the class; default unstructured) or None; ConfigError names a bad field."""
    return make_config(PruneMethod, config, source, "unstructured")


def _ft(config: _Prune) -> str:
    ft = config.finetune
    return f", {ft.epochs} fine-tune epoch(s){' KD' if ft.distill else ''}" if ft.epochs else ""


def parse_layer_values(text: str | None) -> dict[str, float] | None:
    """``"features.0=0.75,classifier.1=0.5"`` -> ``{"features.0": 0.75, "classifier.1": 0.5}``."""
    if not text:
        return None
    out = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"layer_sparsity: expected NAME=FRACTION pairs separated by commas, got {item!r}") \
                from None
    return out
