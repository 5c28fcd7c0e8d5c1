"""Model zoo: ``create("seed-cnn")``, ``list_models()`` and checkpoints."""
from . import zoo  # noqa: F401  (registers the built-in models)
from . import text  # noqa: F401  (registers all-minilm-l6-v2; transformers is imported lazily)
from .checkpoint import load_checkpoint, save_checkpoint, trusted_code, Checkpoint
from .registry import ModelSpec, create, list_models, model_spec, register_model
from .resolve import load_weights, resolve_model

__all__ = ["ModelSpec", "create", "list_models", "model_spec", "register_model", "load_checkpoint",
           "save_checkpoint", "trusted_code", "Checkpoint", "load_weights", "resolve_model"]
