"""Compression pipeline: YAML recipes of stages (prune, distill, share_weights, quantize,
export) run by ``compress``, and an accuracy-aware multi-objective ``search`` (Optuna)."""
from .compress import AccuracyBudgetExceeded, compress
from .recipe import Recipe, list_recipes, load_recipe, parse_recipe

__all__ = ["AccuracyBudgetExceeded", "compress", "Recipe", "list_recipes", "load_recipe", "parse_recipe", "search"]


def __getattr__(name: str):
    if name == "search":  # optuna is imported only when a search runs
        from .search import search

        return search
    raise AttributeError(name)
