"""Pruning that really shrinks models.

``edgeslim.prune(model, config, data=...)`` (this package is callable) or
``edgeslim.prune.prune(...)`` returns an ``edgeslim.Result`` (the pruned copy in ``.model``)
for every method:

- ``Unstructured(...)``: zero single weights by ``criterion="magnitude"`` (|w|) or
  ``"taylor"`` (|w * dL/dw| over calibration batches), ``scope="global" | "layer" |
  "sensitivity"``, ``schedule="oneshot" | "gradual"`` (cubic, Zhu & Gupta).
- ``Structured(...)``: remove channels through torch-pruning's dependency graph
  (``prune_structured``), to a channel ratio, a ``target_macs`` fraction, or a
  ``target_latency`` fraction measured on ONNX Runtime, each layer's channel count chosen by
  measurement (``edgeslim.prune.latency``, NetAdapt-style).
- ``NM(...)``: N:M semi-structured masks (2:4 by default).

Masks are always folded into plain tensors before the model is returned.
"""
from .._verb import callable_package
from .api import prune, prune_checkpoint
from .config import NM, PRUNE_CONFIGS, PruneMethod, Structured, Unstructured, prune_config
from .nm import is_nm_sparse, nm_mask
from .schedule import cubic_sparsity, cubic_steps
from .sensitivity import allocate_sparsity, plot_sensitivity, sensitivity_analysis
from .structured import StructuredResult, output_layers, prune_structured
from .unstructured import (apply_magnitude_masks, apply_masks, layer_sparsity, magnitude_scores, make_permanent,
                           masks_from_scores, prunable_layers, taylor_scores, weight_sparsity)

__all__ = ["prune", "prune_checkpoint", "prune_config", "Unstructured", "Structured", "NM", "PruneMethod",
           "PRUNE_CONFIGS", "prune_structured", "StructuredResult",
           "output_layers", "apply_magnitude_masks", "apply_masks", "layer_sparsity", "magnitude_scores",
           "make_permanent", "masks_from_scores", "prunable_layers", "taylor_scores", "weight_sparsity",
           "nm_mask", "is_nm_sparse", "cubic_sparsity", "cubic_steps", "sensitivity_analysis",
           "allocate_sparsity", "plot_sensitivity"]


callable_package(__name__, "edgeslim.prune.api:prune")
