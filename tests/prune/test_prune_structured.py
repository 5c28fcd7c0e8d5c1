"""Structured pruning: real shape reduction, equivalence at 0%, MAC targets, checkpoints."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgeslim.prune as P
from edgeslim.errors import ConfigError
from edgeslim.evaluate import count_macs
from edgeslim.models import create, load_checkpoint, save_checkpoint


class ResidualNet(nn.Module):
    """A user's module: residual add, depthwise conv, batch-norm, concatenation."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.branch = nn.Conv2d(16, 8, 1)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.pw(self.dw(x)))
        x = torch.cat([x, self.branch(x)], 1)
        return self.head(x.mean((2, 3)))


def test_zero_ratio_is_forward_equivalent():
    torch.manual_seed(0)
    model = create("seed-cnn").eval()
    res = P.prune_structured(model, (1, 32, 32), ratio=0.0)
    x = torch.randn(4, 1, 32, 32)
    assert torch.equal(res.model.eval()(x), model(x))
    assert res.macs_after == res.macs_before


def test_shapes_shrink_and_classifier_keeps_classes():
    model = create("lenet-5")
    res = P.prune_structured(model, (1, 32, 32), ratio=0.5)
    m = res.model
    assert m.features[0].out_channels == 3 and m.features[3].in_channels == 3
    assert m.features[3].out_channels == 8
    assert m.classifier[1].in_features == 8 * 5 * 5 and m.classifier[-1].out_features == 10
    assert res.params_after < 0.4 * res.params_before
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_target_macs_is_reached_and_counted_at_aten_level():
    model = create("seed-cnn")
    res = P.prune_structured(model, (1, 32, 32), target_macs=0.35)
    assert res.macs_after == count_macs(res.model, (1, 32, 32))
    assert 0.30 <= res.macs_after / res.macs_before <= 0.35


def test_user_module_with_residual_depthwise_and_concat():
    torch.manual_seed(0)
    model = ResidualNet().eval()
    res = P.prune_structured(model, (1, 16, 16), ratio=0.5)
    m = res.model.eval()
    assert m.dw[0].groups == m.dw[0].in_channels == m.dw[0].out_channels == m.stem[0].out_channels == 8
    assert m.pw[0].out_channels == 8 and m.head.in_features == 8 + m.branch.out_channels
    assert m(torch.randn(2, 1, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("importance", ["l1", "taylor", "bn_scale"])
def test_importances_and_checkpoint_round_trip(importance, digits, tmp_path):
    torch.manual_seed(0)
    model = ResidualNet().eval()
    res = P.prune_structured(model, (1, 32, 32), ratio=0.25, importance=importance, data=digits,
                             calibration_batches=2)
    save_checkpoint(res.model, tmp_path / "p", {"input_shape": [1, 32, 32]})
    # a user's class is rebuilt from its import path: pass the instance instead
    back = load_checkpoint(tmp_path / "p", model=ResidualNet())
    x = torch.randn(3, 1, 32, 32)
    assert torch.allclose(back.model(x), res.model.eval()(x), atol=1e-6)


def test_prune_structured_checkpoint_round_trip_and_export(digits_checkpoint, digits, tmp_path):
    _, ckpt = digits_checkpoint
    r = P.prune(ckpt.model, {"method": "structured", "target_macs": 0.5, "layout": "uniform",
                             "finetune": {"epochs": 1}}, data=digits)
    pruned, s = r.model, r.summary
    assert s["after"]["macs"] <= 0.5 * s["before"]["macs"]
    save_checkpoint(pruned, tmp_path / "p", ckpt.meta)
    back = load_checkpoint(tmp_path / "p")
    assert back.model.features[0].out_channels == pruned.features[0].out_channels < 16
    x = digits.test.x[:8]
    assert torch.allclose(back.model(x), pruned(x), atol=1e-6)
    from edgeslim.export import export_onnx, parity

    path = export_onnx(back.model, tmp_path / "p.onnx", (1, 32, 32))
    assert parity(back.model, path, x)["top1_agreement"] == 1.0


def test_structured_error_paths():
    model = create("seed-cnn")
    with pytest.raises(ConfigError, match="produces the model output"):
        P.prune_structured(model, (1, 32, 32), ratio=0.3, layers=["classifier.3"])
    with pytest.raises(ConfigError, match="only Conv2d and Linear"):
        P.prune_structured(model, (1, 32, 32), ratio=0.3, layers=["features.1"])
    with pytest.raises(ConfigError, match="no layer named"):
        P.prune_structured(model, (1, 32, 32), ratio=0.3, exclude=["nope"])
    with pytest.raises(ConfigError, match="batch-norm"):
        P.prune_structured(model, (1, 32, 32), ratio=0.3, importance="bn_scale")
    with pytest.raises(ConfigError, match="out of reach"):
        P.prune_structured(model, (1, 32, 32), target_macs=0.05, layers=["classifier.1"])
    with pytest.raises(ConfigError, match="exactly one"):
        P.prune_structured(model, (1, 32, 32))


def test_layer_tied_to_kept_layers_cannot_be_pruned_alone():
    model = ResidualNet()
    # pw's outputs are added to the stem's: pruning pw alone would break the residual add
    with pytest.raises(ConfigError, match="tied"):
        P.prune_structured(model, (1, 16, 16), ratio=0.3, layers=["pw.0"])


def test_layers_restricts_pruning():
    model = create("seed-cnn")
    res = P.prune_structured(model, (1, 32, 32), ratio=0.5, layers=["classifier.1"])
    assert res.channels["features.0"] == (16, 16) and res.channels["features.3"] == (32, 32)
    assert res.channels["classifier.1"] == (128, 64)
