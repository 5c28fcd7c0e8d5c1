"""Measure a model: accuracy, agreement, size and MACs."""
from .metrics import agreement, evaluate_split, metrics_from_logits, predict_logits
from .size import count_macs, count_nonzero_params, count_params, file_bytes, size_report
from .api import evaluate_checkpoint

__all__ = ["agreement", "evaluate_split", "metrics_from_logits", "predict_logits", "count_macs",
           "count_nonzero_params", "count_params", "file_bytes", "size_report", "evaluate_checkpoint"]
