"""The quantize configs, one class per method (``method`` picks it): :class:`StaticInt8`
(calibrated QDQ int8 with equalization, bias correction, sensitivity and mixed precision),
:class:`DynamicInt8`, :class:`QAT` (quantization-aware training) and :class:`WeightSharing`
(k-means codebooks, Deep Compression). ``max_accuracy_drop`` is in points (0.5 = half a
percentage point). Every method times the result beside the float model a user deploys
(``timing``; "faster" is ``Timing.faster``)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, model_validator

from ..config import (BITS_RENAMED, FINETUNE_RENAMED, TIMING_RENAMED, FineTune, MethodConfig, Timing, make_config,
                      with_defaults)
from .kernels import ReduceRange

# QAT and centroid fine-tuning: as the model was trained, at a small constant lr, from the labels
QuantizeFineTune = with_defaults(FineTune, "QuantizeFineTune", epochs=2, lr=1e-4, batch_size=128, augment=None,
                                 distill=False)
# centroid fine-tuning distils from the model before sharing, near-hard targets (seed-cnn at 96%
# sparsity, 5/4 bits, 2 epochs at 1e-4, validation drop vs the original: clustering alone 0.62, labels
# 0.56, T=4 alpha 0.7 0.62, T=1 alpha 0.5 0.50, T=1 alpha 0.9 0.48; lenet-300-100 at 94%: 0.26, 0.12,
# 0.26, 0.02, 0.08)
ShareFineTune = with_defaults(QuantizeFineTune, "ShareFineTune", distill=True, temperature=1.0, alpha=0.9)
# ONNX Runtime's default threads (all cores), batch 1
QuantizeTiming = with_defaults(Timing, "QuantizeTiming", batch=[1], threads=None, rounds=10, warmup=10)


class _Quantize(MethodConfig):
    RENAMED = {**FINETUNE_RENAMED, **TIMING_RENAMED, **BITS_RENAMED}

    samples: int = Field(256, ge=8, description="calibration samples drawn from the data")
    benchmark: bool = True  # time float vs quantized side by side (ONNX Runtime)
    timing: QuantizeTiming = Field(default_factory=QuantizeTiming)  # threads also run the accuracy checks
    seed: int = 0


class _Int8(_Quantize):
    """Methods whose result runs on ONNX Runtime's int8 kernels."""
    per_channel: bool = True
    # 7-bit weights ([-64, 64]) so that x86 CPUs without VNNI do not saturate (edgeslim.quantize.kernels);
    # "auto": where the machine that quantizes has such a CPU. Set true when the target device has one.
    reduce_range: ReduceRange = "auto"


class StaticInt8(_Int8):
    method: Literal["static"] = "static"
    calibration: Literal["minmax", "percentile", "entropy", "mse"] = "mse"
    percentile: float = Field(99.99, gt=50, le=100)
    symmetric: bool = False  # symmetric int8 activations (S8S8) instead of asymmetric uint8 (U8S8)
    equalize: bool = True
    bias_correction: bool = True
    max_accuracy_drop: Optional[float] = Field(None, ge=0)
    sensitivity: bool = True  # per-layer sensitivity when labelled evaluation data is given
    sensitivity_samples: int = Field(512, ge=8)
    exclude: list[str] = Field(default_factory=list)  # ONNX node names to keep float

    def summary(self) -> str:
        return f"int8 static, {self.samples} calibration samples ({self.calibration})"


class DynamicInt8(_Int8):
    method: Literal["dynamic"] = "dynamic"

    def summary(self) -> str:
        return "int8 dynamic"


class QAT(_Int8):
    """Fake-quantized fine-tuning (``finetune``; ``finetune.distill`` learns from the float model),
    then the learnt ranges in a QDQ int8 file."""
    method: Literal["qat"] = "qat"
    symmetric: bool = False
    exclude: list[str] = Field(default_factory=list)
    finetune: QuantizeFineTune = Field(default_factory=QuantizeFineTune)

    @model_validator(mode="after")
    def _no_crop_flip(self) -> "QAT":
        if self.finetune.augment == "crop_flip":
            raise ValueError("finetune.augment 'crop_flip' applies to distillation only; use true, false or null")
        return self

    def summary(self) -> str:
        return f"int8 qat, {self.finetune.epochs} epoch(s)"


class WeightSharing(_Quantize):
    """Per-layer k-means codebooks of 2**bits centroids (a kind left at null stays float), then
    centroid fine-tuning (``finetune.epochs``; 0: none; ``finetune.distill``: from the model as it
    was before sharing, else from the labels)."""
    method: Literal["weight_sharing"] = "weight_sharing"
    conv_bits: Optional[int] = Field(4, ge=1, le=8)
    linear_bits: Optional[int] = Field(5, ge=1, le=8)
    finetune: ShareFineTune = Field(default_factory=ShareFineTune)

    @model_validator(mode="after")
    def _some_bits(self) -> "WeightSharing":
        if self.conv_bits is None and self.linear_bits is None:
            raise ValueError("set conv_bits and/or linear_bits (both null shares nothing)")
        if self.finetune.augment == "crop_flip":
            raise ValueError("finetune.augment 'crop_flip' applies to distillation only; use true, false or null")
        return self

    def bits(self) -> dict[str, int]:
        return {k: b for k, b in (("conv", self.conv_bits), ("linear", self.linear_bits)) if b is not None}

    def summary(self) -> str:
        return "weight sharing " + ", ".join(f"{k} {b} bits" for k, b in self.bits().items())


QuantizeMethod = Annotated[Union[StaticInt8, DynamicInt8, QAT, WeightSharing], Field(discriminator="method")]
QUANTIZE_CONFIGS = (StaticInt8, DynamicInt8, QAT, WeightSharing)


def quantize_config(config: Any = None, source: str = "quantize config"
                    ) -> StaticInt8 | DynamicInt8 | QAT | WeightSharing:
    """A quantize config from a config object (returned as is), a dict (``method`` picks the
    class; default static) or None; ConfigError names a bad field."""
    return make_config(QuantizeMethod, config, source, "static")
