"""Gradual structured pruning: channels fade out while fine-tuning, then go without changing the outputs."""
from __future__ import annotations

import pytest
import torch

import edgeslim.prune as P
from edgeslim.models import create
from edgeslim.prune.fade import ChannelFade
from edgeslim.prune.structured import prune_structured


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_silent_channels_are_removed_without_changing_the_outputs(name):
    """Residual adds, batch-norm, depthwise convs and squeeze-excite: every parameter coupled to a
    removed channel fades, so removing the silent channels leaves the outputs as they were, and the
    result has the planned shapes."""
    torch.manual_seed(0)
    model = create(name, num_classes=10, in_channels=1, small_input=True, width=0.25).eval()
    x = torch.randn(4, 1, 32, 32)
    planned = prune_structured(model, (1, 32, 32), ratio=0.5)
    assert planned.history
    fade = ChannelFade(model, x, planned.history)
    fade.set(0.0)
    with torch.no_grad():
        silent = model(x)
    assert fade.remove() < 1e-4
    with torch.no_grad():
        assert torch.allclose(model(x), silent, atol=1e-4)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in planned.model.state_dict().items()}


def test_a_fading_channel_is_scaled_and_the_others_are_not():
    torch.manual_seed(0)
    model = create("lenet-5")
    conv = model.features[0]
    weight = conv.weight.detach().clone()
    planned = prune_structured(model, (1, 32, 32), layer_ratios={"features.0": 0.5}, ratio=0.0)
    (name, is_out, removed), = [h for h in planned.history if h[0] == "features.0"]
    fade = ChannelFade(model, torch.randn(2, 1, 32, 32), planned.history)
    fade.set(0.25)
    kept = [c for c in range(6) if c not in removed]
    assert torch.allclose(conv.weight[removed], 0.25 * weight[removed])
    assert torch.equal(conv.weight[kept], weight[kept])


def test_gradual_structured_prune_fades_then_removes(digits, digits_checkpoint):
    _, ckpt = digits_checkpoint
    cfg = P.Structured(sparsity=0.5, schedule="gradual", pruning_steps=4, measure_speed=False,
                       finetune={"epochs": 2, "batch_size": 64, "distill": False})
    res = P.prune(ckpt.model, cfg, digits)
    s = res.summary
    factors = [step["factor"] for step in s["schedule"]]
    assert factors[0] == 1.0 and factors[-1] == 0.0 and factors == sorted(factors, reverse=True)
    assert s["removal_max_change"] < 1e-4
    channels = {n: m.out_channels for n, m in res.model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert channels == {"features.0": 8, "features.3": 16}
    assert not any(n.endswith("_orig") for n, _ in res.model.named_parameters())  # plain tensors again
    assert s["after"]["accuracy"] > s["before"]["accuracy"] - 0.1


def test_the_latency_layout_can_be_reached_gradually():
    cfg = P.Structured(target_latency=0.5, schedule="gradual", finetune={"epochs": 2})
    assert cfg.effective_layout == "latency" and cfg.schedule == "gradual"
