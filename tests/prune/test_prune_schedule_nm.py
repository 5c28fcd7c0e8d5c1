"""Cubic schedule values and N:M mask validity."""
from __future__ import annotations

import pytest
import torch

import edgeslim.prune as P
from edgeslim.errors import ConfigError


def test_cubic_schedule_values():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3
    assert P.cubic_sparsity(0, 0.9, 0.0, t0=0, n=10, dt=100) == pytest.approx(0.0)
    assert P.cubic_sparsity(500, 0.9, 0.0, t0=0, n=10, dt=100) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert P.cubic_sparsity(1000, 0.9, 0.0, t0=0, n=10, dt=100) == pytest.approx(0.9)
    assert P.cubic_sparsity(5000, 0.9, 0.0, t0=0, n=10, dt=100) == pytest.approx(0.9)  # held after the end
    assert P.cubic_sparsity(150, 0.8, 0.2, t0=100, n=2, dt=50) == pytest.approx(0.8 - 0.6 * 0.5 ** 3)
    steps = P.cubic_steps(0.95, 0.0, 4)
    assert steps == pytest.approx([0.0, 0.95 - 0.95 * 0.75 ** 3, 0.95 - 0.95 * 0.5 ** 3, 0.95 - 0.95 * 0.25 ** 3,
                                   0.95])
    assert all(b > a for a, b in zip(steps, steps[1:]))
    with pytest.raises(ConfigError):
        P.cubic_sparsity(0, 0.9, n=0)


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8)])
def test_nm_mask_keeps_exactly_n_per_group(n, m):
    torch.manual_seed(0)
    for shape in [(6, 16), (8, 8, 3, 3)]:
        w = torch.randn(shape)
        mask = P.nm_mask(w.abs(), n, m)
        groups = P.nm._grouped(mask, m)
        assert torch.all(groups.sum(-1) == n)
        kept = w * mask
        assert P.is_nm_sparse(kept, n, m)
        # the kept entries are the largest |w| of their group
        g_w, g_m = P.nm._grouped(w.abs(), m), groups.bool()
        assert torch.all(g_w.masked_fill(~g_m, float("inf")).min(-1).values
                         >= g_w.masked_fill(g_m, -1).max(-1).values)


def test_nm_rejects_incompatible_shapes():
    with pytest.raises(ConfigError, match="multiple of m=4"):
        P.nm_mask(torch.randn(4, 9), 2, 4)


def test_prune_nm_on_model(digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    r = P.prune(ckpt.model, {"method": "nm", "finetune": {"epochs": 1}}, data=digits)
    pruned, s = r.model, r.summary
    assert s["nm_skipped"] == ["features.0"]  # 1 input channel x 3x3 = 9 inputs per filter
    for name, mod in pruned.named_modules():
        if name in s["nm_layers"]:
            assert P.is_nm_sparse(mod.weight, 2, 4)
            assert torch.all(P.nm._grouped(mod.weight != 0, 4).sum(-1) <= 2)
    assert not any(m._forward_pre_hooks for m in pruned.modules())
