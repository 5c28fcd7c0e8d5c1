"""Compression pipeline: YAML recipes of stages (prune, distill, share_weights, quantize,
export) run by ``compress``, and an accuracy-aware multi-objective ``search`` (Optuna,
imported only when a search runs)."""
from .autotune import SearchConfig, SearchSpace, rerank, search
from .compress import AccuracyBudgetExceeded, compress
from .recipe import Recipe, list_recipes, load_recipe, parse_recipe

__all__ = ["AccuracyBudgetExceeded", "compress", "Recipe", "list_recipes", "load_recipe", "parse_recipe", "rerank",
           "search", "SearchConfig", "SearchSpace"]
