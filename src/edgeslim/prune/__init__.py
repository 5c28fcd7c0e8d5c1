"""Pruning: unstructured magnitude (global or per layer), with masks made permanent;
structured channel pruning (``prune_structured``) through torch-pruning's dependency graph."""
from .structured import StructuredResult, output_layers, prune_structured
from .unstructured import apply_magnitude_masks, layer_sparsity, make_permanent, prunable_layers

__all__ = ["apply_magnitude_masks", "layer_sparsity", "make_permanent", "prunable_layers",
           "prune_structured", "StructuredResult", "output_layers"]
