"""Compression recipes: an ordered list of stages plus an accuracy budget, written in YAML
and validated by pydantic, so a typo is reported by name (``stages[1].sparsity: ...``)
before any work starts.

Each stage holds the config of the verb it runs (``PruneStage.config`` is an ``Unstructured``,
``Structured`` or ``NM``, as ``edgeslim.prune`` takes), written flat in YAML: the keys that are
not the stage's own (``type``, ``keep_float_if_slower``, ``width``...) are that config's.

Stages run in order on one model. ``prune``, ``distill`` and ``share_weights`` work on the
PyTorch model; ``quantize`` (static int8 through ONNX Runtime) and ``export`` turn it into a
deployable file, after which no PyTorch stage can follow.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._io import read_yaml_mapping
from ..config import Timing
from ..distill.config import Distill
from ..errors import ConfigError, config_error
from ..prune.config import PruneMethod
from ..quantize.config import QuantizeMethod, WeightSharing

RECIPES_DIR = Path(__file__).with_name("recipes")
TORCH_STAGES = ("prune", "distill", "share_weights")
STAGE_TYPES = (*TORCH_STAGES, "quantize", "export")
METHODS = ("unstructured", "structured", "nm", "static", "dynamic", "qat", "weight_sharing", "distill")
# Unknown fields are refused; recipes are validated in strict mode (parse_recipe), so values of
# the wrong type are too: `epochs: true` or `epochs: "3"` is a mistake, not 1 or 3 (an int still
# fills a float field).


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _merged(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` on top of ``defaults``, block by block (``finetune: {lr: ...}`` keeps the stage's epochs)."""
    out = dict(defaults)
    for key, value in given.items():
        out[key] = _merged(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


class _VerbStage(_Strict):
    """A stage that runs one verb with that verb's own config (``config``: the same class
    ``edgeslim.prune`` / ``quantize`` / ``distill`` take, ``method`` picking it). YAML writes it
    flat: every key that is not the stage's own belongs to ``config``."""
    DEFAULT_METHOD: ClassVar[str]
    # where a recipe starts from other values than the verb (e.g. a quantize stage is not timed on
    # its own: the report times every stage side by side)
    VERB_DEFAULTS: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _flat_yaml(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "config" in data:  # written nested (or a dumped recipe read back)
            own, given = {k: v for k, v in data.items() if k != "config"}, data["config"]
        else:
            own = {k: v for k, v in data.items() if k in cls.model_fields}
            given = {k: v for k, v in data.items() if k not in cls.model_fields}
        if isinstance(given, dict):
            given = _merged({"method": cls.DEFAULT_METHOD, **cls.VERB_DEFAULTS}, given)
        return {**own, "config": given}

    def summary(self) -> str:
        return self.config.summary()


class PruneStage(_VerbStage):
    """``edgeslim.prune`` with an ``Unstructured`` / ``Structured`` / ``NM`` config (criterion,
    sparsity or target_macs / target_latency, scope, schedule oneshot / gradual, ``finetune``
    distilled from the original model or learnt from the labels only...)."""
    DEFAULT_METHOD = "unstructured"
    type: Literal["prune"]
    config: PruneMethod


class DistillStage(_VerbStage):
    """Knowledge distillation from the original model (``edgeslim.distill`` with a ``Distill``
    config). With ``width`` a fresh student (the teacher's architecture with channels scaled by
    ``width``) replaces the model; without it, the current model is the student (recovery after
    pruning). Augmentation defaults to how the original model was trained."""
    DEFAULT_METHOD = "distill"
    VERB_DEFAULTS = {"finetune": {"epochs": 5, "augment": None}}
    type: Literal["distill"]
    width: float | None = Field(None, gt=0, le=1)
    from_teacher: bool = False  # width student = the teacher shrunk by structured pruning (keeps its weights)
    config: Distill

    def summary(self) -> str:
        student = f"width {self.width:g} student" if self.width else "current model"
        return f"{student}, {self.config.summary()}"


class ShareWeightsStage(_VerbStage):
    """Deep Compression weight sharing on the PyTorch model (a ``WeightSharing`` config: per-layer
    k-means codebooks of 2**bits centroids, then centroid fine-tuning); later stages continue
    from the shared model."""
    DEFAULT_METHOD = "weight_sharing"
    VERB_DEFAULTS = {"finetune": {"epochs": 1, "lr": 5e-4}, "benchmark": False}
    type: Literal["share_weights"]
    config: WeightSharing


class QuantizeStage(_VerbStage):
    """``edgeslim.quantize`` (``StaticInt8`` / ``DynamicInt8`` / ``QAT`` / ``WeightSharing``:
    calibration, samples, equalization, bias correction, mixed precision...). The output is an
    ONNX file, so no PyTorch stage may follow."""
    DEFAULT_METHOD = "static"
    VERB_DEFAULTS = {"benchmark": False}  # the pipeline report times every stage side by side already
    type: Literal["quantize"]
    # time int8 against float with the recipe's bench settings and ship the faster one (Timing.faster)
    keep_float_if_slower: bool = False
    config: QuantizeMethod

    def summary(self) -> str:
        return self.config.summary() + (", float kept if int8 is not faster" if self.keep_float_if_slower else "")


class ExportStage(_Strict):
    """Write the deployable file: ``onnx``, ``eslim`` (Deep Compression artifact), ``openvino``
    (IR, from the ONNX model: a quantize stage's int8 QDQ model stays int8), ``tflite`` or
    ``executorch`` (from the PyTorch model; ``int8: true`` uses the format's own quantizer:
    ai-edge-quantizer for tflite, XNNPACK's PT2E for executorch)."""
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


class BenchSettings(Timing):
    """Latency measurement of the report (edgeslim.runtime.benchmark, interleaved rounds, at the
    first ``batch``): ``Timing`` plus which stages the report times."""
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
                    stage.config.check_layer_names(model)
                except ConfigError as e:
                    raise ConfigError(f"invalid recipe {self.name}: stages[{i}].{e}") from None


def parse_recipe(data: dict[str, Any], source: str = "<dict>") -> Recipe:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid recipe {source}: expected a mapping with 'stages', got {type(data).__name__}")
    try:
        return Recipe.model_validate(data, strict=True)
    except ValidationError as e:
        raise config_error(e, f"recipe {source}", (*STAGE_TYPES, *METHODS)) from None


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
