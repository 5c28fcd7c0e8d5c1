"""Weight sharing (Deep Compression, Han et al. 2016): every Conv2d / Linear weight is
replaced by a per-layer codebook of 2**b centroids plus one small index per weight.

The indices are what a compressed artifact stores (b bits each, e.g. Huffman- or
zstd-coded) together with the float32 codebook; ``codebook[indices]`` rebuilds the
layer exactly. Pruned zeros stay exactly zero: when a layer has zeros, codebook entry 0
is reserved for 0.0 and is never fine-tuned.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from ..errors import ConfigError

SHAREABLE = {"conv": nn.Conv2d, "linear": nn.Linear}
Codebooks = dict[str, tuple[np.ndarray, np.ndarray]]


def _lloyd_1d(values: torch.Tensor, k: int, iters: int = 40) -> torch.Tensor:
    """1-D k-means (exact Lloyd steps on sorted values), linear initialisation, which
    Han et al. found best because it keeps the rare large weights represented."""
    lo, hi = float(values.min()), float(values.max())
    centroids = torch.linspace(lo, hi, k, dtype=torch.float64)
    v = values.double()
    for _ in range(iters):
        idx = torch.bucketize(v, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, v)
        counts = torch.bincount(idx, minlength=k).double()
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        new, _ = new.sort()
        if torch.allclose(new, centroids):
            break
        centroids = new
    return centroids.float()


def kmeans_codebook(weight: torch.Tensor | np.ndarray, bits: int, keep_zeros: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(codebook float32 of 2**bits entries, uint8 indices shaped like ``weight``).
    With ``keep_zeros`` and exact zeros present, entry 0 is 0.0 and only zeros map to it."""
    if not 1 <= bits <= 8:
        raise ConfigError(f"bits={bits}: weight sharing supports 1 to 8 bits per index")
    w = torch.as_tensor(np.asarray(weight) if not isinstance(weight, torch.Tensor) else weight.detach())
    w = w.float().reshape(-1)
    k = 2 ** bits
    zeros = (w == 0) if keep_zeros else torch.zeros_like(w, dtype=torch.bool)
    nonzero = w[~zeros]
    reserve = bool(zeros.any()) and k > 1
    n_free = k - 1 if reserve else k
    if len(nonzero) == 0:
        centroids = torch.zeros(n_free)
    else:
        centroids = _lloyd_1d(nonzero, min(n_free, max(1, len(torch.unique(nonzero)))))
        centroids = torch.cat([centroids, centroids[-1:].expand(n_free - len(centroids))])  # pad (unused)
    mids = (centroids[1:] + centroids[:-1]) / 2
    idx = torch.bucketize(w, mids)
    if reserve:
        centroids = torch.cat([torch.zeros(1), centroids])
        idx = torch.where(zeros, torch.zeros_like(idx), idx + 1)
    return centroids.numpy().astype(np.float32), idx.reshape(weight.shape).numpy().astype(np.uint8)


class _SharedWeight(nn.Module):
    """Parametrisation weight = codebook[indices]: autograd sums the gradients of all the
    weights of a cluster into its centroid, which is exactly Deep Compression's update."""

    def __init__(self, codebook: np.ndarray, indices: np.ndarray, zero_entry: bool):
        super().__init__()
        self.codebook = nn.Parameter(torch.from_numpy(codebook.copy()))
        self.register_buffer("indices", torch.from_numpy(indices.astype(np.int64)))
        frozen = torch.zeros(len(codebook), dtype=torch.bool)
        frozen[0] = zero_entry
        self.register_buffer("frozen", frozen)

    def forward(self, _original: torch.Tensor) -> torch.Tensor:
        book = torch.where(self.frozen, torch.zeros_like(self.codebook), self.codebook)
        return book[self.indices]


def shareable_layers(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(name, kind, module) for every Conv2d ("conv") and Linear ("linear") layer."""
    out = []
    for name, m in model.named_modules():
        for kind, cls in SHAREABLE.items():
            if isinstance(m, cls):
                out.append((name, kind, m))
    return out


def share_weights(model: nn.Module, bits: Mapping[str, int] | int = None, data=None, finetune_epochs: int = 0,
                  train_config=None, keep_zeros: bool = True, progress: bool = False, val=None, loss_fn=None
                  ) -> tuple[nn.Module, Codebooks]:
    """Cluster each layer's weights into a codebook, optionally fine-tune the centroids.

    Args:
        model: a torch model; modified in place and returned.
        bits: index width per layer kind, e.g. ``{"conv": 4, "linear": 5}`` (2..8 in
            practice; an int applies to both). Layer kinds not named are left float.
        data: a training ``Split`` for centroid fine-tuning (needed if ``finetune_epochs``).
        finetune_epochs: epochs of centroid fine-tuning with ``edgeslim.train.fit``;
            only codebooks (and biases / norm parameters) are trained, indices are fixed.
        train_config: a ``TrainConfig`` for fine-tuning (default: lr 5e-4, no schedule tricks).
        keep_zeros: pruned (exactly zero) weights stay zero and take codebook entry 0.
        val: a validation ``Split`` (held out of training): fine-tuning ends with the centroids
            of the epoch that scored best on it (or, when none beats them, those k-means found).
        loss_fn: the fine-tuning loss (``fit``'s; e.g. ``edgeslim.distill.kd_loss_fn(teacher)``),
            default cross-entropy on the labels.

    Returns:
        ``(model, codebooks)`` where every shared layer's ``weight`` has at most 2**b
        distinct values and ``codebooks[layer_name] = (codebook float32 (2**b,),
        indices uint8 shaped like the weight)`` with ``codebook[indices] == weight``.
    """
    bits = {"conv": 4, "linear": 5} if bits is None else bits
    bits = {"conv": bits, "linear": bits} if isinstance(bits, int) else dict(bits)
    unknown = set(bits) - set(SHAREABLE)
    if unknown:
        raise ConfigError(f"bits: unknown layer kind(s) {sorted(unknown)}; use {sorted(SHAREABLE)}")
    for kind, b in bits.items():
        if not 1 <= int(b) <= 8:
            raise ConfigError(f"bits[{kind!r}]={b}: use 1..8 bits (2 to 256 centroids)")
    if finetune_epochs and data is None:
        raise ConfigError("finetune_epochs > 0 needs data= (a training Split) for centroid fine-tuning")
    layers = [(n, m, int(bits[kind])) for n, kind, m in shareable_layers(model) if kind in bits]
    for name, module, b in layers:
        book, idx = kmeans_codebook(module.weight, b, keep_zeros)
        zero_entry = bool(keep_zeros and (module.weight == 0).any())
        parametrize.register_parametrization(module, "weight", _SharedWeight(book, idx, zero_entry))
    if finetune_epochs:
        from ..train import TrainConfig, fit

        for _, module, _ in layers:  # the original dense weights are replaced; do not train them
            module.parametrizations.weight.original.requires_grad_(False)
        config = train_config or TrainConfig(epochs=finetune_epochs, lr=5e-4)
        fit(model, data, config.model_copy(update={"epochs": finetune_epochs}), loss_fn=loss_fn, val=val,
            progress=progress, description="centroid fine-tune")
    codebooks: Codebooks = {}
    for name, module, _ in layers:
        p = module.parametrizations.weight[0]
        book = torch.where(p.frozen, torch.zeros_like(p.codebook), p.codebook).detach().numpy().astype(np.float32)
        codebooks[name] = (book, p.indices.numpy().astype(np.uint8))
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        module.weight.requires_grad_(True)
    model.eval()
    return model, codebooks


def reconstruct(codebook: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The float32 weight a (codebook, indices) pair stands for."""
    return np.asarray(codebook, dtype=np.float32)[np.asarray(indices)]
