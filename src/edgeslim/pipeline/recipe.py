"""Compression recipes: an ordered list of stages plus an accuracy budget, written in YAML
and validated by pydantic, so a typo is reported by name (``stages[1].sparsity: ...``)
before any work starts.

Stages run in order on one model. ``prune``, ``distill`` and ``share_weights`` work on the
PyTorch model; ``quantize`` (static int8 through ONNX Runtime) and ``export`` turn it into a
deployable file, after which no PyTorch stage can follow.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._io import read_yaml_mapping
from ..errors import ConfigError, config_error
from ..prune import PruneConfig
from ..quantize.api import QuantizeConfig

RECIPES_DIR = Path(__file__).with_name("recipes")
TORCH_STAGES = ("prune", "distill", "share_weights")
STAGE_TYPES = (*TORCH_STAGES, "quantize", "export")
# Unknown fields are refused, and so are values of the wrong type: `epochs: true` or
# `epochs: "3"` is a mistake, not 1 or 3 (an int still fills a float field).
STRICT = ConfigDict(extra="forbid", strict=True)


class _Strict(BaseModel):
    model_config = STRICT


class PruneStage(PruneConfig):
    """Every ``edgeslim.prune`` setting (``PruneConfig``: method unstructured / structured /
    nm, criterion, sparsity or target_macs, scope, schedule oneshot / gradual, fine-tuning
    distilled from the original model or learnt from the labels only...)."""
    type: Literal["prune"]
    model_config = STRICT

    def prune_config(self) -> PruneConfig:
        # only the fields the recipe set, so PruneConfig's own defaults and checks apply unchanged
        return PruneConfig(**self.model_dump(exclude_unset=True, exclude={"type"}))

    def summary(self) -> str:
        ft = f", {self.finetune_epochs} fine-tune epoch(s){' KD' if self.distill else ''}" if self.finetune_epochs else ""
        if self.method == "structured":
            what = (f"target_macs {self.target_macs:.2f}" if self.target_macs else
                    f"target_latency {self.target_latency:.2f} (batch {', '.join(map(str, self.latency_batch))})"
                    if self.target_latency
                    else f"channel ratio {self.sparsity:.2f}")
            return f"structured {what} ({self.structured_importance}, {self.schedule}){ft}"
        if self.method == "nm":
            return f"{self.n}:{self.m} semi-structured ({self.criterion}){ft}"
        return f"unstructured {self.sparsity:.0%} ({self.criterion}, {self.effective_scope}, {self.schedule}){ft}"


class DistillStage(_Strict):
    """Knowledge distillation from the original model. With ``width`` a fresh student (the
    teacher's architecture with channels scaled by ``width``) replaces the model; without
    it, the current model is the student (recovery after pruning)."""
    type: Literal["distill"]
    width: float | None = Field(None, gt=0, le=1)
    from_teacher: bool = False  # width student = the teacher shrunk by structured pruning (keeps its weights)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)
    epochs: int = Field(5, ge=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(128, ge=1)

    def summary(self) -> str:
        student = f"width {self.width:g} student" if self.width else "current model"
        return f"{student}, T={self.temperature:g}, {self.epochs} epoch(s)"


class ShareWeightsStage(_Strict):
    """Deep Compression weight sharing: per-layer k-means codebooks of 2**bits centroids,
    then centroid fine-tuning."""
    type: Literal["share_weights"]
    conv_bits: int | None = Field(4, ge=1, le=8)
    linear_bits: int | None = Field(5, ge=1, le=8)
    finetune_epochs: int = Field(1, ge=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(5e-4, gt=0)

    @model_validator(mode="after")
    def _some_bits(self) -> "ShareWeightsStage":
        if self.conv_bits is None and self.linear_bits is None:
            raise ValueError("set conv_bits and/or linear_bits (both null shares nothing)")
        return self

    def bits(self) -> dict[str, int]:
        return {k: b for k, b in (("conv", self.conv_bits), ("linear", self.linear_bits)) if b is not None}

    def summary(self) -> str:
        return ", ".join(f"{k} {b} bits" for k, b in self.bits().items())


class QuantizeStage(QuantizeConfig):
    """Every ``edgeslim.quantize`` setting (``QuantizeConfig``: method static / dynamic / qat /
    weight_sharing, calibration, samples, equalization, bias correction, mixed precision...).
    The output is an ONNX file, so no PyTorch stage may follow."""
    type: Literal["quantize"]
    benchmark: bool = False  # the pipeline report times every stage side by side already
    # time int8 against float with the recipe's latency settings and ship the faster one
    keep_float_if_slower: bool = False
    model_config = STRICT

    def quantize_config(self) -> QuantizeConfig:
        return QuantizeConfig(**self.model_dump(exclude={"type", "keep_float_if_slower"}))

    def summary(self) -> str:
        if self.method == "weight_sharing":
            return f"weight sharing conv {self.bits_conv} / linear {self.bits_linear} bits"
        if self.method == "dynamic":
            return "int8 dynamic"
        text = f"int8 {self.method}, {self.samples} calibration samples ({self.calibration})"
        return text + (", float kept if int8 is slower" if self.keep_float_if_slower else "")


class ExportStage(_Strict):
    """Write the deployable file: ``onnx``, ``eslim`` (Deep Compression artifact), ``openvino``
    (IR, from the ONNX model: a quantize stage's int8 QDQ model stays int8), ``tflite`` or
    ``executorch`` (from the PyTorch model; ``int8: true`` uses the format's own PT2E quantizer)."""
    type: Literal["export"]
    format: Literal["onnx", "eslim", "openvino", "tflite", "executorch"] = "onnx"
    int8: bool = False

    @model_validator(mode="after")
    def _int8_needs_a_pt2e_format(self) -> "ExportStage":
        if self.int8 and self.format not in ("tflite", "executorch"):
            raise ValueError(f"int8 applies to tflite and executorch (their own quantizers); for {self.format} "
                             "put a quantize stage before the export")
        return self

    def summary(self) -> str:
        return f"{self.format}{' int8' if self.int8 else ''} file"


Stage = Annotated[Union[PruneStage, DistillStage, ShareWeightsStage, QuantizeStage, ExportStage],
                  Field(discriminator="type")]


class BenchSettings(_Strict):
    """Latency measurement of the report (edgeslim.runtime.benchmark, interleaved rounds)."""
    batch: int = Field(1, ge=1)
    threads: int | None = Field(1, ge=1)
    rounds: int = Field(20, ge=1)
    warmup: int = Field(5, ge=0)
    stages: Literal["all", "final"] = "all"


class Recipe(_Strict):
    name: str = "custom"
    description: str = ""
    max_accuracy_drop: float = Field(1.0, ge=0, description="accuracy budget in points (1.0 = 1%)")
    dataset: str | None = None  # default: the data set recorded in the checkpoint
    train_samples: int | None = Field(None, ge=1)  # subset for fine-tuning, distillation, calibration
    eval_samples: int | None = Field(None, ge=1)  # subset of the test split for every accuracy figure
    seed: int = 0
    bench: BenchSettings = Field(default_factory=BenchSettings)
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _torch_before_onnx(self) -> "Recipe":
        onnx_from = None
        for i, stage in enumerate(self.stages):
            if stage.type in TORCH_STAGES and onnx_from is not None:
                raise ValueError(f"stages[{i}]: '{stage.type}' works on the PyTorch model, but stages[{onnx_from}] "
                                 f"('{self.stages[onnx_from].type}') already turned it into a deployable file; "
                                 "put prune/distill/share_weights before quantize/export")
            if stage.type in ("quantize", "export") and onnx_from is None:
                onnx_from = i
            if stage.type == "quantize" and i > 0 and any(s.type == "export" and s.format == "eslim"
                                                          for s in self.stages[:i]):
                raise ValueError(f"stages[{i}]: quantize cannot follow an eslim export")
        return self

    def check_layer_names(self, model: Any) -> None:
        """Refuse a prune stage naming a layer ``model`` lacks, before any stage runs (it
        would otherwise surface only when that stage starts, after the baseline is measured).
        Every stage keeps the layer names of the input model, so it is the one to check."""
        for i, stage in enumerate(self.stages):
            if isinstance(stage, PruneStage):
                try:
                    stage.prune_config().check_layer_names(model)
                except ConfigError as e:
                    raise ConfigError(f"invalid recipe {self.name}: stages[{i}].{e}") from None


def parse_recipe(data: dict[str, Any], source: str = "<dict>") -> Recipe:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid recipe {source}: expected a mapping with 'stages', got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise config_error(e, f"recipe {source}", STAGE_TYPES) from None


def builtin_recipe_path(name: str) -> Path:
    return RECIPES_DIR / f"{name}.yaml"


def load_recipe(name_or_path: str | Path | Recipe | dict) -> Recipe:
    """A built-in recipe by name (``smallest``, ``fastest``, ``balanced``), a YAML file path,
    a dict, or a ``Recipe`` (returned as is)."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    if isinstance(name_or_path, dict):
        return parse_recipe(name_or_path)
    path = Path(name_or_path)
    if not path.suffix and builtin_recipe_path(str(name_or_path)).exists():
        path = builtin_recipe_path(str(name_or_path))
    if not path.exists():
        raise ConfigError(f"recipe {str(name_or_path)!r} not found: use a built-in one "
                          f"({', '.join(r['name'] for r in list_recipes())}) or a YAML file path")
    data = read_yaml_mapping(path, "recipe", "'stages' (a list of stages)")
    if "name" not in data:
        data["name"] = path.stem
    return parse_recipe(data, str(path))


def list_recipes() -> list[dict[str, str]]:
    """The built-in recipes: name, one-line description and the stage types."""
    out = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        r = load_recipe(path)
        out.append({"name": r.name, "description": r.description,
                    "stages": " -> ".join(s.type for s in r.stages),
                    "max_accuracy_drop": r.max_accuracy_drop})
    return out
