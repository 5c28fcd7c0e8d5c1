"""Model zoo: ``create("seed-cnn")``, ``list_models()`` and checkpoints."""
from . import zoo  # noqa: F401  (registers the built-in models)
from . import text  # noqa: F401  (registers all-minilm-l6-v2; transformers is imported lazily)
from .checkpoint import load_checkpoint, save_checkpoint, trusted_code, Checkpoint
from .registry import create, list_models, model_spec, register_model

__all__ = ["create", "list_models", "model_spec", "register_model", "load_checkpoint",
           "save_checkpoint", "trusted_code", "Checkpoint"]
