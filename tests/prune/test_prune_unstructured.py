"""Unstructured pruning: exact sparsity, |w| ranking, Taylor saliency, permanent masks."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import edgeslim.prune as P
from edgeslim.models import create


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_global_magnitude_keeps_large_negative_weights():
    model = _mlp()
    with torch.no_grad():
        model[1].weight.fill_(0.01)
        model[1].weight[0, :8] = -5.0  # large negative weights must survive: importance is |w|
    P.apply_magnitude_masks(model, 0.5)
    P.make_permanent(model)
    assert torch.all(model[1].weight[0, :8] == -5.0)
    total = sum(m.weight.numel() for m in (model[1], model[3]))
    zeros = sum(int((m.weight == 0).sum()) for m in (model[1], model[3]))
    assert zeros == round(0.5 * total)


def test_lamp_keeps_a_small_scale_layer_that_global_magnitude_empties():
    from edgeslim.prune import NM, Structured, Unstructured
    from edgeslim.prune.unstructured import lamp_scores, targets_of

    model = _mlp()
    with torch.no_grad():
        model[3].weight.mul_(0.01)  # the output layer's weights are all smaller than the first layer's
    targets = targets_of(model)
    by_magnitude = P.masks_from_scores(P.magnitude_scores(targets), 0.8, "global")
    by_lamp = P.masks_from_scores(lamp_scores(targets), 0.8, "global")
    assert by_magnitude["3.weight"].sum() == 0  # global |w| removes the whole small-scale layer
    assert by_lamp["3.weight"].sum() > 0 and sum(m.sum() for m in by_lamp.values()) == round(0.2 * (64 * 32 + 320))
    # within one tensor LAMP keeps the order of |w|: the kept weights are the layer's largest
    w = model[1].weight.abs()
    kept = by_lamp["1.weight"].bool()
    assert w[kept].min() >= w[~kept].max()
    assert Unstructured().criterion == "lamp" and Unstructured().finetune.lr == 2e-3
    assert Structured(sparsity=0.5).criterion == "magnitude" and Structured(sparsity=0.5).finetune.lr == 4e-3
    with pytest.raises(ValueError, match="criterion"):
        NM(criterion="lamp")


def test_layer_scope_gives_each_layer_the_same_sparsity():
    model = _mlp()
    targets = P.unstructured.targets_of(model)
    P.apply_masks(targets, P.masks_from_scores(P.magnitude_scores(targets), 0.75, "layer"))
    P.make_permanent(model)
    sp = P.layer_sparsity(model)
    assert sp == {"1": pytest.approx(0.75), "3": pytest.approx(0.75)}
    assert torch.count_nonzero(model[1].bias) == 32  # biases are left alone unless asked


def test_gradual_masks_never_revive_pruned_weights():
    scores = {"w": torch.arange(10.0)}
    first = P.masks_from_scores(scores, 0.3)
    reversed_scores = {"w": torch.arange(10.0).flip(0)}  # now the pruned ones look important
    second = P.masks_from_scores(reversed_scores, 0.5, keep_pruned=first)
    assert torch.all(second["w"][first["w"] == 0] == 0)
    assert int((second["w"] == 0).sum()) == 5


def test_taylor_scores_are_weight_times_gradient(digits):
    model = create("seed-cnn")
    targets = P.unstructured.targets_of(model)
    x, y = digits.train.x[:32], digits.train.y[:32]
    scores = P.taylor_scores(model, targets, [(x, y)])
    model.zero_grad()
    nn.functional.cross_entropy(model.eval()(x), y).backward()
    w = model.classifier[1].weight
    assert torch.allclose(scores["classifier.1.weight"], (w * w.grad).abs())


@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_prune_unstructured_is_permanent_and_exports(digits_checkpoint, digits, criterion, tmp_path):
    _, ckpt = digits_checkpoint
    before = copy.deepcopy(ckpt.model.state_dict())
    r = P.prune(ckpt.model, {"method": "unstructured", "criterion": criterion, "sparsity": 0.8}, data=digits)
    pruned, summary = r.model, r.summary
    assert all(torch.equal(v, ckpt.model.state_dict()[k]) for k, v in before.items())  # input untouched
    assert summary["after"]["weight_sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert set(pruned.state_dict()) == set(before)  # no weight_orig / weight_mask entries
    assert not any(m._forward_pre_hooks for m in pruned.modules())
    assert all(type(t) is torch.Tensor or isinstance(t, nn.Parameter) for t in pruned.state_dict().values())
    from edgeslim.export import export_onnx
    from edgeslim.evaluate.onnx_stats import onnx_weight_stats

    path = export_onnx(pruned, tmp_path / "p.onnx", (1, 32, 32))
    stats = onnx_weight_stats(path)
    assert stats["weight_nonzero"] <= 0.21 * stats["weight_params"]


def test_gradual_schedule_with_finetuning_reaches_target(digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    r = P.prune(ckpt.model, P.Unstructured(sparsity=0.9, schedule="gradual", finetune={"epochs": 2},
                                           pruning_steps=4), data=digits)
    pruned, s = r.model, r.summary
    levels = [round(e["sparsity"], 4) for e in s["schedule"]]
    assert levels == [round(v, 4) for v in P.cubic_steps(0.9, 0.0, 4)]
    assert P.weight_sparsity(pruned) == pytest.approx(0.9, abs=1e-4)
    assert s["after"]["accuracy"] > 0.5
