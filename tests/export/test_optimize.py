import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from edgeslim.export import GraphOptimization, export_onnx, fold_maxpool_into_conv, folded_nodes, optimize_onnx
from edgeslim.export.optimize import find_conv_pool_chains, folded_weights, keeps_fold
from edgeslim.models import create


def _export(model: nn.Module, tmp_path, shape, name="m.onnx", **kw):
    torch.manual_seed(0)
    for p in model.parameters():  # biases too: a zero bias would hide a wrong tiling
        nn.init.normal_(p, std=0.3)
    return onnx.load(str(export_onnx(model.eval(), tmp_path / name, shape, **kw)))


def _outputs(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _ops(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


class Block(nn.Module):
    """conv -> activation -> pool -> flatten -> linear, for the variants below."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module, pool: nn.Module, side: int):
        super().__init__()
        self.conv, self.act, self.pool = conv, act, pool
        self.fc = nn.Linear(conv.out_channels * side * side, 3)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


@pytest.mark.parametrize("name,opset", [("lenet-5", 17), ("seed-cnn", 17), ("lenet-5", 18)])
def test_fold_keeps_outputs_of_zoo_models(name, opset, tmp_path):
    proto = _export(create(name), tmp_path, (1, 32, 32), opset=opset)
    chains = find_conv_pool_chains(proto)
    assert len(chains) == 2 and all(c.activation.op_type == "Relu" for c in chains)
    folded, names = fold_maxpool_into_conv(proto)
    assert names == [c.conv.name for c in chains]
    assert "MaxPool" not in _ops(folded) and _ops(folded).count("ReduceMax") == 2
    x = np.random.default_rng(0).standard_normal((7, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_outputs(folded, x), _outputs(proto, x), rtol=1e-5, atol=1e-5)
    # the pool's output tensor keeps its name: split points after the block still exist
    outputs = {o for n in folded.graph.node for o in n.output}
    assert {n.output[0] for n in proto.graph.node if n.op_type == "MaxPool"} <= outputs


@pytest.mark.parametrize("act,pad,side,kernel", [
    (nn.Identity(), 0, 15, 3),  # no activation; odd conv output (13): the pool drops the last row
    (nn.LeakyReLU(0.1), 1, 12, 3),  # padded conv
    (nn.ReLU6(), 2, 10, 5),  # Clip with constant bounds
    (nn.Sigmoid(), 0, 9, 1),  # 1x1 kernel
])
def test_fold_variants_are_exact(act, pad, side, kernel, tmp_path):
    conv = nn.Conv2d(2, 3, kernel, padding=pad)
    conv_side = side + 2 * pad - kernel + 1
    proto = _export(Block(conv, act, nn.MaxPool2d(2), conv_side // 2), tmp_path, (2, side, side))
    folded, names = fold_maxpool_into_conv(proto)
    assert len(names) == 1
    x = np.random.default_rng(1).standard_normal((5, 2, side, side)).astype(np.float32)
    np.testing.assert_allclose(_outputs(folded, x), _outputs(proto, x), rtol=1e-5, atol=1e-5)


class Branch(nn.Module):
    """The conv output is used twice: folding would drop the second use."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        y = self.conv(x)
        return nn.functional.max_pool2d(y, 2).flatten(1).sum(1, keepdim=True) + y.mean((1, 2, 3))[:, None]


@pytest.mark.parametrize("model,shape", [
    (Block(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2), 3), (1, 15, 15)),  # strided conv
    (Block(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3), 4), (1, 14, 14)),  # 3x3 pool
    (Block(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), 7), (1, 15, 15)),  # ceil mode
    (Block(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), 6), (1, 14, 14)),  # not a max
    (Block(nn.Conv2d(2, 2, 3, groups=2), nn.ReLU(), nn.MaxPool2d(2), 6), (2, 14, 14)),  # grouped
    (Block(nn.Conv2d(1, 2, 3), nn.GELU(), nn.MaxPool2d(2), 6), (1, 14, 14)),  # not monotone
    (Branch(), (1, 10, 10)),
])
def test_unfoldable_chains_are_left_alone(model, shape, tmp_path):
    proto = _export(model, tmp_path, shape)
    assert find_conv_pool_chains(proto) == []
    assert optimize_onnx(proto, "always") == (proto, {})


def test_folded_weights_place_the_kernel_at_each_pool_position():
    w = np.array([[[[2.0]]]], dtype=np.float32)  # one 1x1 filter
    folded, bias = folded_weights(w, np.array([0.5], dtype=np.float32))
    assert folded.shape == (4, 1, 2, 2)
    for position in range(4):
        expected = np.zeros((2, 2), np.float32)
        expected[divmod(position, 2)] = 2.0
        np.testing.assert_array_equal(folded[position, 0], expected)
    np.testing.assert_array_equal(bias, [0.5] * 4)


def test_export_records_the_rewrite_in_metadata(tmp_path):
    proto = _export(create("lenet-5"), tmp_path, (1, 32, 32), optimize="always", metadata={"dataset": "x"})
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["edgeslim"])
    assert meta["dataset"] == "x"
    assert meta["graph_optimization"]["folded"] == ["/features/features.0/Conv", "/features/features.3/Conv"]
    assert folded_nodes(tmp_path / "m.onnx") == meta["graph_optimization"]["folded"]
    plain = _export(create("lenet-5"), tmp_path, (1, 32, 32), name="plain.onnx")
    assert "MaxPool" in _ops(plain) and not plain.metadata_props and folded_nodes(tmp_path / "plain.onnx") == []


def test_auto_keeps_only_folds_it_measured(tmp_path):
    proto = _export(create("lenet-5"), tmp_path, (1, 32, 32))
    model, report = optimize_onnx(proto, GraphOptimization("auto", batch=(1, 4), threads=1))
    assert [t["node"] for t in report["trials"]] == ["/features/features.0/Conv", "/features/features.3/Conv"]
    assert report["folded"] == [t["node"] for t in report["trials"] if t["kept"]] and report["batch"] == [1, 4]
    for t in report["trials"]:  # kept exactly when not slower at either batch and faster on balance
        speedups = [a / b for a, b in zip(t["p50_ms"], t["folded_p50_ms"])]
        assert t["kept"] == (min(speedups) >= 1 / 1.05 and np.prod(speedups) >= 1)
    assert _ops(model).count("ReduceMax") == len(report["folded"])
    x = np.random.default_rng(2).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_outputs(model, x), _outputs(proto, x), rtol=1e-5, atol=1e-5)


def test_bad_mode():
    with pytest.raises(ValueError, match="'auto', 'always' or 'never'"):
        optimize_onnx(onnx.ModelProto(), "fast")


def test_a_fold_is_kept_where_it_is_not_slower():
    assert keeps_fold([1.049, 1.2])  # within noise at one batch, faster at the other
    assert keeps_fold([1.0, 1.0])  # exact and no slower: nothing lost by keeping it
    assert not keeps_fold([0.94, 1.5])  # measurably slower at one batch size
    assert not keeps_fold([0.97, 1.02])  # slower on balance
