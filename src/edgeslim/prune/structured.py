"""Structured pruning: remove whole filters / neurons / channels, so the model really shrinks.

torch-pruning's DependencyGraph finds every tensor coupled to a channel (next layer's
inputs, batch-norm, residual adds, depthwise groups, concatenations, flatten->linear)
and its ``BasePruner`` removes them together. A MAC target is reached by bisection over
the channel pruning ratio; MACs are counted at the aten level with ``count_macs``
(FlopCounterMode), never with module hooks, which miss custom conv modules such as
EfficientNet-Lite0's same-padding convs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch_pruning as tp

from ..errors import ConfigError
from ..evaluate.size import count_macs, count_params
from ..train.loop import LossFn
from ._data import accumulate_gradients, iter_batches

IMPORTANCES = ("l1", "taylor", "bn_scale")
ROOT_TYPES = (nn.Conv2d, nn.Linear)


@dataclass
class StructuredResult:
    """The pruned model (a new module; the input model is left untouched) and its figures."""
    model: nn.Module
    ratio: float  # channel pruning ratio that was applied to each prunable group
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> (before, after) outputs
    # torch-pruning's pruning history ([layer, output channels?, indices], in order): replaying it on
    # the input model (``DependencyGraph.load_pruning_history``) removes the same channels
    history: list = field(default_factory=list)

    @property
    def macs_fraction(self) -> float:
        return self.macs_after / max(self.macs_before, 1)


def _importance(name: str) -> tp.importance.Importance:
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    raise ConfigError(f"importance: unknown structured importance {name!r}; use one of {', '.join(IMPORTANCES)}")


def _build_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    was_training = model.training
    model.eval()  # tracing runs a forward pass; keep batch-norm statistics untouched
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    model.train(was_training)
    return dg


def output_layers(model: nn.Module, input_shape: tuple[int, ...],
                  graph: tp.DependencyGraph | None = None) -> list[nn.Module]:
    """Conv/linear layers whose outputs reach the model output without passing another
    conv/linear layer (the classifier): their output channels are the classes and stay."""
    dg = graph or _build_graph(model, torch.zeros(1, *input_shape))
    # sinks: nodes nothing consumes (the output op, or the last layer itself)
    stack = [n for n in dg.module2node.values() if n.type == tp.ops.OPTYPE.OUTPUT or not n.outputs]
    found, seen = [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, ROOT_TYPES):
            if node.module not in found:
                found.append(node.module)
        else:
            stack.extend(node.inputs)
    return found


def _resolve(model: nn.Module, names: Iterable[str] | None, what: str) -> list[nn.Module]:
    modules = dict(model.named_modules())
    out = []
    for name in names or []:
        if name not in modules:
            raise ConfigError(f"{what}: no layer named {name!r} in {type(model).__name__}")
        out.append(modules[name])
    return out


def plan_ignored_layers(model: nn.Module, input_shape: tuple[int, ...], layers: list[str] | None = None,
                        exclude: list[str] | None = None, ignored_layers: list[nn.Module] | None = None,
                        graph: tp.DependencyGraph | None = None) -> list[nn.Module]:
    """Modules whose output channels must not change, checking that every layer named in
    ``layers`` can really be pruned. Raises ConfigError before any pruning happens."""
    dg = graph or _build_graph(model, torch.zeros(1, *input_shape))
    names = {m: n for n, m in model.named_modules()}
    ignored = list(ignored_layers or []) + _resolve(model, exclude, "exclude")
    outputs = output_layers(model, input_shape, dg)
    wanted = _resolve(model, layers, "layers")
    for m in wanted:
        if not isinstance(m, ROOT_TYPES):
            raise ConfigError(f"layers: {names[m]!r} is a {type(m).__name__}; only Conv2d and Linear layers "
                              "can be pruned structurally")
        if m in outputs:
            raise ConfigError(f"layers: {names[m]!r} produces the model output; removing its output channels "
                              "would remove classes, so it cannot be pruned structurally")
    ignored += outputs
    if wanted:  # prune only the named layers: every other conv/linear keeps its outputs
        ignored += [m for m in model.modules() if isinstance(m, ROOT_TYPES) and m not in wanted]
    ignored_all = {id(s) for m in ignored for s in m.modules()}
    prunable = set()
    for group in dg.get_all_groups(ignored_layers=[m for m in model.modules() if id(m) in ignored_all],
                                   root_module_types=ROOT_TYPES):
        for dep, _ in group:
            if dg.is_out_channel_pruning_fn(dep.handler):
                prunable.add(id(dep.target.module))
    for m in wanted:
        if id(m) not in prunable:
            raise ConfigError(f"layers: {names[m]!r} cannot be pruned structurally: its output channels are "
                              "tied (through residual adds, depthwise groups or concatenations) to layers "
                              "that must keep theirs; list those layers too or drop it")
    if not prunable:
        raise ConfigError("no layer can be pruned structurally: every conv/linear layer is excluded or feeds "
                          "the model output")
    return ignored


def _copy_grads(src: nn.Module, dst: nn.Module) -> None:
    grads = {n: p.grad for n, p in src.named_parameters()}
    for n, p in dst.named_parameters():
        if grads.get(n) is not None:
            p.grad = grads[n].clone()


def _prune_copy(model: nn.Module, example: torch.Tensor, ratio: float, importance: str,
                ignored_names: list[str], scope: str, max_ratio: float, round_to: int | None,
                layer_ratios: dict[str, float]) -> tuple[nn.Module, list]:
    """A pruned copy of ``model`` and its pruning history."""
    pruned = copy.deepcopy(model)
    if importance == "taylor":
        _copy_grads(model, pruned)  # deepcopy drops .grad; Taylor importance reads it
    if ratio <= 0 and not any(layer_ratios.values()):
        return pruned, []
    modules = dict(pruned.named_modules())
    pruner = tp.pruner.BasePruner(
        pruned, example, _importance(importance), global_pruning=(scope == "global"), pruning_ratio=ratio,
        pruning_ratio_dict={modules[n]: r for n, r in layer_ratios.items()} or None,
        max_pruning_ratio=max_ratio, ignored_layers=[modules[n] for n in ignored_names],
        root_module_types=list(ROOT_TYPES), round_to=round_to)
    was_training = pruned.training
    pruned.eval()
    pruner.step()
    pruned.train(was_training)
    pruned.zero_grad(set_to_none=True)
    return pruned, [list(h) for h in pruner.DG.pruning_history()]


def _channels(model: nn.Module) -> dict[str, int]:
    return {n: (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
            for n, m in model.named_modules() if isinstance(m, ROOT_TYPES)}


def prune_structured(model: nn.Module, input_shape: tuple[int, ...], target_macs: float | None = None,
                     ratio: float | None = None, importance: str = "l1",
                     ignored_layers: list[nn.Module] | None = None, layers: list[str] | None = None,
                     exclude: list[str] | None = None, scope: str = "layer", data: Any = None,
                     loss_fn: LossFn | None = None, calibration_batches: int = 8, batch_size: int = 64,
                     max_ratio: float = 0.9, round_to: int | None = None, tolerance: float = 0.01,
                     max_iterations: int = 14, layer_ratios: dict[str, float] | None = None) -> StructuredResult:
    """Remove whole output channels (conv filters, linear neurons) and everything coupled to them.

    Args:
        model: any ``nn.Module`` built from Conv2d/Linear/BatchNorm and ordinary tensor ops
            (residual adds, depthwise convs, concatenations, flatten are all handled by
            torch-pruning's dependency graph). It is not modified; a pruned copy is returned.
        input_shape: one sample's shape without the batch axis, e.g. ``(3, 224, 224)``.
        target_macs: keep at most this fraction of the model's MACs (0.35 = 35%); the channel
            ratio is found by bisection so that ``count_macs(pruned) <= target_macs * macs``,
            as close to it as ``tolerance`` (fraction of the original MACs) allows.
        ratio: alternatively, the channel pruning ratio itself (0.3 removes 30% of the
            channels of every prunable group). Give exactly one of ``target_macs`` / ``ratio``.
        importance: ``"l1"`` (filter L1 norm), ``"taylor"`` (|w * dL/dw| summed over
            ``calibration_batches`` batches of ``data``, needs ``data``), ``"bn_scale"``
            (|gamma| of the following batch-norm; layers without one are left alone).
        ignored_layers: modules whose output channels must stay (besides the classifier,
            which is always kept: its outputs are the classes).
        layers / exclude: module names (``model.named_modules()``) to prune only / to keep.
        scope: ``"layer"`` prunes every group by the same ratio; ``"global"`` ranks channels
            across layers (normalised importance), capped at ``max_ratio`` per layer.
        data, loss_fn: calibration data (DataBundle, Split or iterable of (x, y)) and the
            loss ``loss_fn(model, x, y) -> (loss, logits)`` for Taylor importance.
        round_to: keep channel counts multiples of this (e.g. 8 for SIMD-friendly shapes).
        layer_ratios: fixed channel ratios for named layers (e.g. ``{"features.0": 0.75}``:
            the full-resolution first conv often dominates latency more than its MACs say);
            the other layers get ``ratio`` or the ratio found for ``target_macs``.

    Returns:
        ``StructuredResult`` with ``.model`` (smaller tensors; saves with ``save_checkpoint``,
        reloads with ``load_checkpoint``, exports to ONNX), ``.ratio``, ``.macs_before``,
        ``.macs_after``, ``.params_before/after`` and per-layer ``.channels``.

    Example::

        res = prune_structured(model, (3, 224, 224), target_macs=0.75)
        small = res.model  # ~25% fewer MACs, fine-tune it (or distil into it) next
    """
    if (target_macs is None) == (ratio is None):
        raise ConfigError("give exactly one of target_macs (fraction of MACs to keep) or ratio (channel ratio)")
    if target_macs is not None and not 0 < target_macs <= 1:
        raise ConfigError(f"target_macs must be a fraction in (0, 1], got {target_macs}")
    if ratio is not None and not 0 <= ratio < 1:
        raise ConfigError(f"ratio must be in [0, 1), got {ratio}")
    if scope not in ("layer", "global"):
        raise ConfigError(f"scope must be 'layer' or 'global', got {scope!r}")
    _importance(importance)
    if importance == "bn_scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(f"importance 'bn_scale' needs batch-norm layers and {type(model).__name__} has none; "
                          "use 'l1' or 'taylor'")
    example = torch.zeros(1, *input_shape)
    dg = _build_graph(model, example)
    ignored = plan_ignored_layers(model, input_shape, layers, exclude, ignored_layers, dg)
    names = {id(m): n for n, m in model.named_modules()}
    ignored_names = sorted({names[id(s)] for m in ignored for s in m.modules() if id(s) in names})
    if importance == "taylor":
        accumulate_gradients(model, iter_batches(data, calibration_batches, batch_size), loss_fn)

    macs_before = count_macs(model, input_shape)

    fixed = dict(layer_ratios or {})
    for name, r in fixed.items():
        if name in ignored_names or not 0 <= r < 1:
            raise ConfigError(f"layer_ratios: {name!r} cannot take ratio {r} (it is excluded, feeds the output, "
                              "or the ratio is outside [0, 1))")
    _resolve(model, fixed, "layer_ratios")

    def attempt(r: float) -> tuple[tuple[nn.Module, list], int]:
        pruned = _prune_copy(model, example, r, importance, ignored_names, scope, max_ratio, round_to, fixed)
        return pruned, count_macs(pruned[0], input_shape)

    try:
        if ratio is not None:
            (best, history), best_ratio = attempt(ratio)[0], ratio
        else:
            (best, history), best_ratio = _bisect(attempt, macs_before, target_macs, max_ratio, tolerance,
                                                  max_iterations)
    finally:
        if importance == "taylor":
            model.zero_grad(set_to_none=True)
    before, after = _channels(model), _channels(best)
    return StructuredResult(best, best_ratio, macs_before, count_macs(best, input_shape),
                            count_params(model), count_params(best),
                            {n: (before[n], after[n]) for n in before if n in after}, history)


def _bisect(attempt, macs_before: int, target: float, max_ratio: float, tolerance: float,
            max_iterations: int) -> tuple[Any, float]:
    """Smallest channel ratio whose pruned model fits the MAC budget (MACs fall
    monotonically, roughly quadratically, with the ratio)."""
    budget = target * macs_before
    model0, macs0 = attempt(0.0)
    if macs0 <= budget:
        return model0, 0.0
    # global ranking can stall near max_ratio (groups hit their cap), so look for an upper
    # bracket that fits the budget on a coarse grid from the top
    least = 1.0
    for hi in [max_ratio * f for f in (1.0, 0.85, 0.7, 0.55)]:
        hi_model, hi_macs = attempt(hi)
        least = min(least, hi_macs / macs_before)
        if hi_macs <= budget:
            break
    else:
        raise ConfigError(f"target_macs {target:.2f} is out of reach: pruning up to {max_ratio:.0%} of the "
                          f"channels of every prunable layer leaves at least {least:.2f} of the MACs "
                          "(the classifier, excluded and unprunable layers keep theirs)")
    lo, best = 0.0, (hi_model, hi)
    for _ in range(max_iterations):
        mid = (lo + hi) / 2
        m, macs = attempt(mid)
        if macs <= budget:
            hi, best = mid, (m, mid)
            if budget - macs <= tolerance * macs_before:
                break
        else:
            lo = mid
    return best
