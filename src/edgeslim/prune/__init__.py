"""Pruning: unstructured magnitude (global or per layer), with masks made permanent."""
from .unstructured import apply_magnitude_masks, layer_sparsity, make_permanent, prunable_layers

__all__ = ["apply_magnitude_masks", "layer_sparsity", "make_permanent", "prunable_layers"]
