"""edgeslim: make trained PyTorch models small and fast enough for edge devices, then run them there.

The library comes first; the ``edgeslim`` command line only calls it. Heavy
sub-packages are imported lazily so ``import edgeslim.runtime`` stays torch-free.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": ("edgeslim.models", "create"),
    "list_models": ("edgeslim.models", "list_models"),
    "load_checkpoint": ("edgeslim.models", "load_checkpoint"),
    "save_checkpoint": ("edgeslim.models", "save_checkpoint"),
    "trusted_code": ("edgeslim.models", "trusted_code"),
    "load_dataset": ("edgeslim.data", "load_dataset"),
    "export_onnx": ("edgeslim.export", "export_onnx"),
    "load_model": ("edgeslim.runtime", "load_model"),
    "benchmark": ("edgeslim.runtime", "benchmark"),
    "run_demo": ("edgeslim.pipeline.demo", "run_demo"),
    # one config class per method (``method`` picks it from a dict or YAML), shared blocks, one Result
    "Result": ("edgeslim.config", "Result"),
    "FineTune": ("edgeslim.config", "FineTune"),
    "Timing": ("edgeslim.config", "Timing"),
    "Unstructured": ("edgeslim.prune.config", "Unstructured"),
    "Structured": ("edgeslim.prune.config", "Structured"),
    "NM": ("edgeslim.prune.config", "NM"),
    "StaticInt8": ("edgeslim.quantize.config", "StaticInt8"),
    "DynamicInt8": ("edgeslim.quantize.config", "DynamicInt8"),
    "QAT": ("edgeslim.quantize.config", "QAT"),
    "WeightSharing": ("edgeslim.quantize.config", "WeightSharing"),
    "Distill": ("edgeslim.distill.config", "Distill"),
    "TrainConfig": ("edgeslim.train", "TrainConfig"),
    "Evaluate": ("edgeslim.evaluate.api", "Evaluate"),
    "Export": ("edgeslim.export.api", "Export"),
    "SearchConfig": ("edgeslim.pipeline.autotune", "SearchConfig"),
    # the verbs that are not a sub-package's name (train, evaluate, export, prune, quantize, distill are
    # callable packages: edgeslim._verb)
    "compress": ("edgeslim.pipeline.compress", "compress"),
    "search": ("edgeslim.pipeline.autotune", "search"),
}


# Sub-packages load on first use; `edgeslim.train(...)`, `edgeslim.evaluate(...)`, `edgeslim.export(...)`,
# `edgeslim.prune(...)`, `edgeslim.quantize(...)` and `edgeslim.distill(...)` are callable packages (one verb,
# one config object, one Result), so they work right after `import edgeslim`, as compress and search do.
_SUBPACKAGES = {"data", "models", "train", "prune", "quantize", "distill", "pipeline", "evaluate", "export",
                "runtime", "edge", "serve", "report"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"edgeslim.{name}")
    raise AttributeError(f"module 'edgeslim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBPACKAGES])
