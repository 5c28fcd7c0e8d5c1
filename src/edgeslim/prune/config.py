"""``PruneConfig``: what to prune, by which criterion, how far and on which schedule.

Field-level checks run when the config is built; ``check_against(model, data)`` checks
it against a concrete model (layer names, structural prunability, data needs) before
any pruning or training starts.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError
from .nm import nm_compatible
from .unstructured import PRUNABLE


class PruneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["unstructured", "structured", "nm"] = "unstructured"
    # magnitude = |w| (l1 is its alias); lamp = |w| scaled within its layer (LAMP, Lee et al. 2021:
    # w^2 over the sum of the squares of the layer's weights at least as large), so one global
    # ranking respects each layer's scale (unstructured only); taylor = |w * dL/dw| over calibration
    # batches; bn_scale = |gamma| of the batch-norm after a conv (structured only).
    # None: lamp for unstructured (measured on lenet-300-100 at 95%, 8 fine-tune epochs: -0.27
    # points vs -0.64 for magnitude), magnitude otherwise
    criterion: Optional[Literal["magnitude", "lamp", "taylor", "l1", "bn_scale"]] = None
    sparsity: float = Field(0.9, description="fraction of weights to zero (structured: channel ratio)")
    layer_sparsity: Optional[dict[str, float]] = Field(
        None, description="per-layer sparsity (unstructured, e.g. from sensitivity analysis) or fixed "
                          "per-layer channel ratio (structured)")
    # default: global ranking for single weights, the same ratio per layer for channels
    scope: Optional[Literal["global", "layer", "sensitivity"]] = None
    # None: gradual for unstructured pruning with >= 2 fine-tune epochs to spread it over, else oneshot
    # (structured layouts are planned once, by MACs or measured latency, then fine-tuned)
    schedule: Optional[Literal["oneshot", "gradual"]] = None
    initial_sparsity: float = Field(0.0, description="s_i of the cubic schedule")
    pruning_steps: int = Field(10, ge=1, description="n of the cubic schedule")
    # share of fine-tuning during which sparsity rises; the rest recovers at the final sparsity
    # (lenet-300-100 at 95%, 8 epochs: 0.7 -> -0.76 points, 0.5 -> -0.54, 0.35 -> -0.27 with lamp)
    pruning_fraction: float = Field(0.35, gt=0, le=1)
    target_macs: Optional[float] = Field(None, description="structured: keep at most this fraction of MACs")
    # structured: keep at most this fraction of the original's latency, measured on ONNX Runtime
    # at latency_batch / latency_threads; channel counts per layer are chosen by measurement
    target_latency: Optional[float] = None
    # how a structured target spreads over layers: "latency" picks every layer's channel count by
    # measuring ONNX Runtime (NetAdapt-style; a uniform ratio can halve the MACs and run no faster),
    # "uniform" removes the same ratio everywhere. None: latency for target_latency and for a
    # one-shot target_macs without round_to, else uniform
    layout: Optional[Literal["uniform", "latency"]] = None
    # batch sizes the latency layout and the speed check measure at (the layout pays at all of them)
    latency_batch: list[int] = Field(default_factory=lambda: [1, 64])
    latency_threads: Optional[int] = Field(1, ge=1)
    # structured: time the original and the pruned model side by side on ONNX Runtime (at
    # latency_batch / latency_threads) and warn when the pruned one is not faster
    measure_speed: bool = True
    latency_step: float = Field(0.1, gt=0, le=0.5, description="latency cut per planning step (of the original)")
    layers: Optional[list[str]] = None
    exclude: list[str] = Field(default_factory=list)
    prune_biases: bool = False
    n: int = Field(2, ge=1)
    m: int = Field(4, ge=2)
    finetune_epochs: int = Field(0, ge=0)
    # None: 2e-3 for unstructured (masks change during a gradual fine-tune; lenet-300-100 at 95%:
    # -0.76 points vs -0.98 at 1e-3), 1e-3 for structured and N:M (lenet-5 at 35% MACs: -1.19 vs
    # -1.50 at 2e-3)
    finetune_lr: Optional[float] = Field(None, gt=0)
    finetune_batch_size: int = Field(128, ge=1)
    # random flips + 2-pixel shifts while fine-tuning; None: as the model was trained (its checkpoint's
    # train_config; none recorded: off)
    finetune_augment: Optional[bool] = None
    # fine-tuning distils from the unpruned model (Hinton loss at this temperature, alpha on the
    # soft targets) instead of learning from the labels alone
    distill: bool = True
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1)
    calibration_batches: int = Field(8, ge=1)
    calibration_batch_size: int = Field(64, ge=1)
    round_to: Optional[int] = Field(None, ge=1)
    seed: int = 0

    @field_validator("sparsity", "initial_sparsity")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"must be in [0, 1) (a fraction of weights), got {v}")
        return v

    @field_validator("layer_sparsity")
    @classmethod
    def _fractions(cls, v: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
        for name, s in (v or {}).items():
            if not 0.0 <= s < 1.0:
                raise ValueError(f"sparsity of layer {name!r} must be in [0, 1), got {s}")
        return v

    @field_validator("latency_batch", mode="before")
    @classmethod
    def _batches(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("latency_batch")
    @classmethod
    def _positive_batches(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError(f"batch sizes must be >= 1 (at least one), got {v}")
        return v

    @field_validator("target_macs", "target_latency")
    @classmethod
    def _fraction_kept(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError(f"must be a fraction of the original model's in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "PruneConfig":
        if self.schedule is None:
            gradual = self.method == "unstructured" and self.finetune_epochs >= 2
            object.__setattr__(self, "schedule", "gradual" if gradual else "oneshot")  # stays "unset"
        if self.finetune_lr is None:
            object.__setattr__(self, "finetune_lr", 2e-3 if self.method == "unstructured" else 1e-3)
        if self.criterion is None:
            object.__setattr__(self, "criterion", "lamp" if self.method == "unstructured" else "magnitude")
        if self.criterion == "lamp" and self.method != "unstructured":
            raise ValueError("criterion 'lamp' ranks single weights across layers, so it needs method='unstructured'")
        if self.criterion == "bn_scale" and self.method != "structured":
            raise ValueError("criterion 'bn_scale' ranks channels, so it needs method='structured'")
        if (self.method == "structured" and self.target_macs is None and self.target_latency is None
                and "sparsity" not in self.model_fields_set):
            raise ValueError("structured pruning needs target_macs (fraction of MACs to keep), target_latency "
                             "(fraction of latency to keep) or sparsity (fraction of channels to remove)")
        for name in ("target_macs", "target_latency"):
            if getattr(self, name) is not None and self.method != "structured":
                raise ValueError(f"{name} applies to method='structured' only")
        if self.target_latency is not None and self.target_macs is not None:
            raise ValueError("give target_macs or target_latency, not both")
        if self.target_latency is not None and self.layout == "uniform":
            raise ValueError("target_latency chooses channel counts by measurement: layout must be 'latency'")
        if self.effective_layout == "latency":
            if self.method != "structured" or not (self.target_latency or self.target_macs):
                raise ValueError("layout 'latency' plans a structured prune to target_latency or target_macs")
            if self.schedule != "oneshot" or self.round_to:
                raise ValueError("the latency layout plans every layer's channel count once, by measurement: use "
                                 "schedule='oneshot' and no round_to (or layout='uniform')")
        if self.method == "nm" and not self.n < self.m:
            raise ValueError(f"N:M sparsity needs n < m, got {self.n}:{self.m}")
        if self.method == "nm" and self.schedule == "gradual":
            raise ValueError("schedule 'gradual' applies to unstructured and structured pruning; N:M masks are "
                             "applied in one shot (then fine-tuned)")
        if self.schedule == "gradual" and self.finetune_epochs == 0:
            raise ValueError("schedule 'gradual' fine-tunes between pruning steps: set finetune_epochs >= 1")
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity {self.initial_sparsity} exceeds sparsity {self.sparsity}")
        if self.scope == "sensitivity" and self.method != "unstructured":
            raise ValueError("scope 'sensitivity' chooses per-layer sparsity for method='unstructured'")
        return self

    @property
    def effective_layout(self) -> str | None:
        if self.method != "structured":
            return None
        if self.layout:
            return self.layout
        planned = self.target_latency is not None or (
            self.target_macs is not None and self.schedule == "oneshot" and not self.round_to)
        return "latency" if planned else "uniform"

    @property
    def effective_scope(self) -> str:
        return self.scope or ("layer" if self.method == "structured" else "global")

    @property
    def structured_importance(self) -> str:
        return {"magnitude": "l1", "l1": "l1"}.get(self.criterion, self.criterion)

    @property
    def needs_data(self) -> bool:
        return (self.criterion == "taylor" or self.finetune_epochs > 0 or self.scope == "sensitivity"
                or self.effective_layout == "latency")

    def check_layer_names(self, model: nn.Module) -> None:
        """Raise ConfigError for a layer name (layers, exclude, layer_sparsity) that ``model``
        lacks or that names a layer which cannot be pruned."""
        modules = dict(model.named_modules())
        for field_name, names in (("layers", self.layers or []), ("exclude", self.exclude),
                                  ("layer_sparsity", list(self.layer_sparsity or {}))):
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
        if self.method == "nm":
            for name in self.layers or []:
                if not nm_compatible(modules[name].weight, self.m):
                    raise ConfigError(f"layers: {name!r} has {modules[name].weight[0].numel()} inputs per output, "
                                      f"not a multiple of m={self.m}, so it cannot take an {self.n}:{self.m} "
                                      "pattern")
        if self.needs_data and data is None:
            why = ("taylor importance needs calibration batches" if self.criterion == "taylor" else
                   "fine-tuning needs training data" if self.finetune_epochs else
                   "the latency layout scores candidate layouts on calibration data"
                   if self.effective_layout == "latency" else
                   "sensitivity analysis needs evaluation data")
            raise ConfigError(f"{why}: pass data= (a DataBundle, or a Split)")


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
