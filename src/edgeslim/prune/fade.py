"""Gradual structured pruning: the channels a planned layout removes fade out while the model
fine-tunes, and only then go.

Removing channels at once throws away what they computed and leaves fine-tuning to relearn it;
scaling them down step by step (Zhu & Gupta's cubic schedule, applied to a factor on whole
channels) lets the channels that stay take their work over while the loss still sees it. The
layout (which channels of which layer) is planned once, exactly as one-shot pruning plans it,
and recorded as torch-pruning's pruning history; fading multiplies every parameter coupled to a
removed output channel (conv/linear rows and biases, norm scales and shifts, through the same
dependency graph) by the factor, so at 0 those channels output exactly zero and replaying the
history removes them without changing the model's outputs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from ..errors import ConfigError
from .structured import _build_graph, _channels
from .unstructured import make_permanent

# modules whose output channels are indexed by dim 0 of their weight and bias
FADABLE = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
History = list  # torch-pruning's pruning history: [layer name, is output-channel pruning, indices]


class ChannelFade:
    """Fade the output channels a pruning ``history`` removes from ``model`` (in place), then
    remove them. ``set(f)`` scales them by ``f`` (1: untouched, 0: silent); ``remove()`` folds
    the factors in, replays the history and returns the largest change it caused in the outputs
    on ``example`` (0 up to rounding when the channels were silent)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, history: History):
        self.model, self.example, self.history = model, example, [list(h) for h in history]
        self.masks: list[tuple[nn.Module, str, torch.Tensor]] = []  # (module, tensor name, channel indices)
        dg = _build_graph(model, example)
        modules = dict(model.named_modules())
        counts = _channels(model)
        kept: dict[str, list[int]] = {}  # layer -> its channels (original numbering) not yet removed
        for name, is_out, idxs in self.history:
            if not is_out:
                raise ConfigError(f"schedule 'gradual' fades output channels, but the layout prunes the inputs "
                                  f"of {name!r}; use schedule='oneshot'")
            root = modules[name]
            channels = kept.setdefault(name, list(range(counts[name])))
            # an entry numbers the layer's channels as earlier entries left it (a layer can be pruned twice)
            original = [channels[i] for i in idxs]
            gone = set(original)
            kept[name] = [c for c in channels if c not in gone]
            group = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, original)
            for dep, dep_idxs in group:
                if dg.is_out_channel_pruning_fn(dep.handler):
                    self._mask(dep.target.module, [i.idx if hasattr(i, "idx") else int(i) for i in dep_idxs])

    def _mask(self, module: nn.Module, idxs: list[int]) -> None:
        params = [n for n in ("weight", "bias") if isinstance(getattr(module, n, None), nn.Parameter)
                  or hasattr(module, f"{n}_orig")]
        if not params:
            return  # an activation, pooling or reshape: nothing to scale
        if not isinstance(module, FADABLE):
            raise ConfigError(f"schedule 'gradual' cannot fade the channels of a {type(module).__name__}; use "
                              "schedule='oneshot'")
        index = torch.tensor(sorted(set(idxs)), dtype=torch.long)
        for name in params:
            if not hasattr(module, f"{name}_mask"):
                tprune.custom_from_mask(module, name, torch.ones_like(getattr(module, name)))
            self.masks.append((module, name, index))

    @torch.no_grad()
    def set(self, factor: float) -> None:
        for module, name, index in self.masks:
            mask = getattr(module, f"{name}_mask")
            mask[index] = factor  # in place: the optimiser's parameters stay the same
            setattr(module, name, getattr(module, f"{name}_orig") * mask)  # as the forward pre-hook does

    def remove(self) -> float:
        self.set(0.0)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            before = self.model(self.example)
        make_permanent(self.model)
        _build_graph(self.model, self.example).load_pruning_history(self.history)  # traces: needs autograd
        with torch.no_grad():
            after = self.model(self.example)
        self.model.train(was_training)
        return float((before - after).abs().max())
