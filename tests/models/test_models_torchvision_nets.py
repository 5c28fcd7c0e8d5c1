"""resnet18 / mobilenet_v2 / mobilenet_v3_small: torchvision's names and sizes, the small-input
stem, and depthwise + squeeze-excite + hard-swish through structured pruning, int8 and export."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeslim.models import create, model_spec

# torchvision's published parameter counts (torchvision.models docs, "Params")
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856}
# a few keys of each torchvision state_dict, layer names as torchvision writes them
TORCHVISION_KEYS = {
    "resnet18": ["conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight",
                 "layer2.0.downsample.1.bias", "layer4.1.bn2.num_batches_tracked", "fc.weight"],
    "mobilenet_v2": ["features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                     "features.2.conv.0.0.weight", "features.2.conv.3.running_mean", "features.18.0.weight",
                     "classifier.1.weight"],
    "mobilenet_v3_small": ["features.0.0.weight", "features.1.block.0.0.weight", "features.1.block.1.fc1.weight",
                           "features.1.block.1.fc2.bias", "features.1.block.2.1.weight",
                           "features.4.block.2.fc1.weight", "features.12.0.weight", "classifier.0.weight",
                           "classifier.3.bias"],
}
SMALL = dict(num_classes=10, in_channels=1, small_input=True, width=0.25)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_torchvision_names_and_parameter_counts(name):
    model = create(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]
    assert set(TORCHVISION_KEYS[name]) <= set(model.state_dict())


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_small_input_stem_keeps_spatial_detail(name):
    small, full = create(name, **SMALL).eval(), create(name, **{**SMALL, "small_input": False}).eval()
    assert small(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    assert set(small.state_dict()) == set(full.state_dict())  # same names: only the stem's shape/stride differ
    feats = {}
    for tag, m in (("small", small), ("full", full)):
        last_conv = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)][-1]
        last_conv.register_forward_hook(lambda _m, _i, out, tag=tag: feats.__setitem__(tag, out.shape[-1]))
        m(torch.zeros(1, 1, 32, 32))
    assert feats["small"] > feats["full"]


def test_spec_fits_small_images_and_records_preprocessing():
    spec = model_spec("mobilenet_v3_small")
    assert spec.kwargs_for((1, 32, 32), 10) == {"num_classes": 10, "in_channels": 1, "small_input": True}
    assert spec.kwargs_for((3, 224, 224), 1000)["small_input"] is False
    eff = model_spec("efficientnet-lite0")
    assert (eff.preprocess.resize_short, eff.preprocess.crop, eff.preprocess.mean) == (256, 224, (0.5, 0.5, 0.5))
    assert eff.without_pretrained({"num_classes": 10}) == {"num_classes": 10, "pretrained": False}
    assert model_spec("seed-cnn").without_pretrained({"width": 0.5}) == {"width": 0.5}


def _modules_of(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "resnet18", "mobilenet_v2"])
def test_structured_prune_int8_and_export_keep_the_blocks(name, tmp_path):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgeslim.export import export_onnx
    from edgeslim.export.onnx_export import parity
    from edgeslim.prune import prune_structured
    from edgeslim.quantize.ort_static import ArrayCalibrationReader

    torch.manual_seed(0)
    model = create(name, **{**SMALL, "width": 0.5}).eval()
    res = prune_structured(model, (1, 32, 32), target_macs=0.5)
    pruned = res.model.eval()
    assert res.macs_fraction <= 0.5 + 0.011
    if name == "mobilenet_v3_small":
        assert _modules_of(pruned, nn.Hardswish) and _modules_of(pruned, nn.Hardsigmoid)
        se = [m for m in pruned.modules() if type(m).__name__ == "SqueezeExcitation"]
        assert se and all(s.fc2.out_channels == s.fc1.in_channels for s in se)
    depthwise = [c for c in _modules_of(pruned, nn.Conv2d) if c.groups > 1]
    assert name == "resnet18" or all(c.groups == c.in_channels == c.out_channels for c in depthwise) and depthwise
    x = torch.randn(16, 1, 32, 32)
    path = export_onnx(pruned, tmp_path / "m.onnx", (1, 32, 32))
    assert parity(pruned, path, x)["max_abs_diff"] < 1e-4
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if name == "mobilenet_v3_small":
        assert {"HardSwish", "HardSigmoid"} <= ops or "Mul" in ops
    q = tmp_path / "q.onnx"
    quantize_static(str(path), str(q), ArrayCalibrationReader("input", x.numpy()), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    import onnxruntime as ort

    out = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert out.shape == (16, 10) and np.isfinite(out).all()
