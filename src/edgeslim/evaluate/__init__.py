"""Measure a model: accuracy, agreement, size and MACs. ``edgeslim.evaluate(model, Evaluate(...), data=...)``
(this package is callable: :func:`edgeslim.evaluate.api.evaluate`) returns them in ``Result.summary``."""
from .._verb import callable_package
from .metrics import agreement, evaluate_split, metrics_from_logits, predict_logits
from .size import count_macs, count_nonzero_params, count_params, file_bytes, size_report
from .api import Evaluate, evaluate

__all__ = ["agreement", "evaluate_split", "metrics_from_logits", "predict_logits", "count_macs",
           "count_nonzero_params", "count_params", "file_bytes", "size_report", "evaluate", "Evaluate"]

callable_package(__name__, "edgeslim.evaluate.api:evaluate")
