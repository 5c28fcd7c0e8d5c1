"""N:M semi-structured sparsity (2:4 by default): in every group of M consecutive weights
along the reduction axis, only N are kept, the pattern sparse tensor cores accelerate."""
from __future__ import annotations

import torch

from ..errors import ConfigError


def _grouped(t: torch.Tensor, m: int) -> torch.Tensor:
    """(out, K) view with K ordered as the GEMM reduction axis (kh, kw, in) of a conv, so
    groups of M run along input channels as in NVIDIA's 2:4 layout."""
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1, m)


def nm_compatible(weight: torch.Tensor, m: int) -> bool:
    return weight.dim() >= 2 and (weight[0].numel() % m == 0)


def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Mask (same shape as ``scores``) keeping the ``n`` highest-scoring of every ``m``."""
    if not 0 < n < m:
        raise ConfigError(f"N:M sparsity needs 0 < n < m, got {n}:{m}")
    if not nm_compatible(scores, m):
        raise ConfigError(f"a weight of shape {tuple(scores.shape)} has {scores[0].numel()} inputs per output, "
                          f"not a multiple of m={m}")
    groups = _grouped(scores, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0)
    if scores.dim() == 4:
        o, c, kh, kw = scores.shape
        return mask.reshape(o, kh, kw, c).permute(0, 3, 1, 2).contiguous()
    return mask.reshape(scores.shape)


def is_nm_sparse(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True when every group of ``m`` holds at most ``n`` non-zeros."""
    return bool(((_grouped(weight, m) != 0).sum(-1) <= n).all())
