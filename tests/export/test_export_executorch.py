"""ExecuTorch int8: XNNPACK's PT2E quantizer with conv + clamp (ReLU6) quantized as one op."""
import pytest
import torch
import torch.nn as nn

pytest.importorskip("executorch", reason="ExecuTorch is an optional extra: pip install 'edgeslim[executorch]'")


def test_relu6_is_quantized_over_its_own_range_not_the_convs():
    """The conv's outputs span about +-50 and ReLU6 keeps [0, 6]: the int8 grid after the clamp must
    cover [0, 6] (a step of 6 / 255), not the conv's range (a step near 0.4), which is what a clamp
    sharing the conv's observer gets."""
    from edgeslim.export.executorch_export import quantize_xnnpack

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 3)).eval()
    x = 20 * torch.randn(64, 1, 8, 8)
    quantized = quantize_xnnpack(model, (1, 8, 8), x.numpy())
    clamp = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
    scales = [float(n.args[1]) for n in quantized.graph.nodes
              if "quantize_per_tensor" in str(n.target) and getattr(n.args[0], "target", None) in clamp]
    assert scales and all(s == pytest.approx(6 / 255, rel=0.02) for s in scales)
    with torch.no_grad():
        assert float((quantized(x) - model(x)).abs().max()) < 0.1 * float(model(x).abs().max())
