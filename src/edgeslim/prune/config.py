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
    # magnitude = |w| (l1 is its alias); taylor = |w * dL/dw| over calibration batches;
    # bn_scale = |gamma| of the batch-norm after a conv (structured only)
    criterion: Literal["magnitude", "taylor", "l1", "bn_scale"] = "magnitude"
    sparsity: float = Field(0.9, description="fraction of weights to zero (structured: channel ratio)")
    layer_sparsity: Optional[dict[str, float]] = Field(
        None, description="per-layer sparsity (unstructured, e.g. from sensitivity analysis) or fixed "
                          "per-layer channel ratio (structured)")
    # default: global ranking for single weights, the same ratio per layer for channels
    scope: Optional[Literal["global", "layer", "sensitivity"]] = None
    schedule: Literal["oneshot", "gradual"] = "oneshot"
    initial_sparsity: float = Field(0.0, description="s_i of the cubic schedule")
    pruning_steps: int = Field(10, ge=1, description="n of the cubic schedule")
    pruning_fraction: float = Field(0.7, gt=0, le=1,
                                    description="share of fine-tuning during which sparsity rises (rest recovers)")
    target_macs: Optional[float] = Field(None, description="structured: keep at most this fraction of MACs")
    # structured: keep at most this fraction of the original's latency, measured on ONNX Runtime
    # at latency_batch / latency_threads; channel counts per layer are chosen by measurement
    target_latency: Optional[float] = None
    latency_batch: int = Field(1, ge=1)
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
    finetune_lr: float = Field(1e-3, gt=0)
    finetune_batch_size: int = Field(128, ge=1)
    # random flips + 2-pixel shifts while fine-tuning; None: the data set's default (on, except digits)
    finetune_augment: Optional[bool] = None
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

    @field_validator("target_macs", "target_latency")
    @classmethod
    def _fraction_kept(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not 0.0 < v <= 1.0:
            raise ValueError(f"must be a fraction of the original model's in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "PruneConfig":
        if self.criterion == "bn_scale" and self.method != "structured":
            raise ValueError("criterion 'bn_scale' ranks channels, so it needs method='structured'")
        if (self.method == "structured" and self.target_macs is None and self.target_latency is None
                and "sparsity" not in self.model_fields_set):
            raise ValueError("structured pruning needs target_macs (fraction of MACs to keep), target_latency "
                             "(fraction of latency to keep) or sparsity (fraction of channels to remove)")
        for name in ("target_macs", "target_latency"):
            if getattr(self, name) is not None and self.method != "structured":
                raise ValueError(f"{name} applies to method='structured' only")
        if self.target_latency is not None:
            if self.target_macs is not None:
                raise ValueError("give target_macs or target_latency, not both")
            if self.schedule != "oneshot" or self.round_to:
                raise ValueError("target_latency plans every layer's channel count once, by measurement: use "
                                 "schedule='oneshot' and no round_to")
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
    def effective_scope(self) -> str:
        return self.scope or ("layer" if self.method == "structured" else "global")

    @property
    def structured_importance(self) -> str:
        return {"magnitude": "l1", "l1": "l1"}.get(self.criterion, self.criterion)

    @property
    def needs_data(self) -> bool:
        return (self.criterion == "taylor" or self.finetune_epochs > 0 or self.scope == "sensitivity"
                or self.target_latency is not None)

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
                   "target_latency scores candidate layouts on calibration data" if self.target_latency else
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
