"""QAT export running in ONNX Runtime with the learned ranges; dynamic int8; weight
sharing codebooks (size, reconstruction, zeros kept, fine-tuning)."""
import numpy as np
import onnx
import pytest
import torch

import edgeslim
import edgeslim.quantize as Q
from edgeslim.errors import ConfigError
from edgeslim.quantize.qat import FakeQuantize, finish_qat, prepare_qat
from edgeslim.quantize.static import onnx_logits, qdq_params
from edgeslim.quantize.weight_sharing import kmeans_codebook, reconstruct, share_weights


def test_fake_quantize_straight_through_gradient():
    fq = FakeQuantize("uint8").train()
    x = torch.linspace(-1, 3, 50, requires_grad=True)
    fq(x)  # observe [-1, 3]
    fq.observe = False
    y = fq(torch.tensor([-2.0, 0.5, 5.0], requires_grad=True))
    qp = fq.qparams()
    assert float(y[1].detach()) == pytest.approx(float(qp.fake_quantize(np.float32(0.5))), abs=1e-6)
    z = torch.tensor([-2.0, 0.5, 5.0], requires_grad=True)
    fq(z).sum().backward()
    assert z.grad.tolist() == [0.0, 1.0, 0.0]  # identity inside the range, zero outside


def test_qat_export_runs_in_ort_with_learned_ranges(tmp_path, digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    r = Q(ckpt, Q.QAT(finetune={"epochs": 1, "batch_size": 64}, samples=64, benchmark=False),
          data=digits, out=tmp_path)
    assert isinstance(r, edgeslim.Result) and r.model is not ckpt.model
    model = onnx.load(str(r.artifact))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    logits = onnx_logits(r.artifact, digits.test.x.numpy())
    assert (logits.argmax(1) == digits.test.y.numpy()).mean() > r.summary["float_accuracy"] - 0.05
    # the QDQ model carries the learned input range of the last layer exactly
    lo, hi = r.summary["learned_ranges"]["classifier.3"]
    expected = Q.qparams_from_range(lo, hi, "uint8")
    scales = {float(p.scale) for p in qdq_params(model).values() if p.axis is None}
    assert any(abs(s - float(expected.scale)) < 1e-7 for s in scales)
    assert r.summary["tensors_with_learned_ranges"]
    assert not any(hasattr(m, "input_fq") for m in r.model.modules())  # fake quantization removed


def test_prepare_and_finish_qat_restore_plain_modules():
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    prepare_qat(m)
    m.train()
    m(torch.randn(8, 4))
    ranges = finish_qat(m)
    assert set(ranges) == {"0", "2", ""} and ranges["0"][0] < ranges["0"][1]
    assert type(m[0].weight) is torch.nn.Parameter and not hasattr(m, "output_fq")


def test_dynamic_int8_for_linear_models(tmp_path, digits):
    from edgeslim.models import create

    m = create("lenet-300-100", in_features=32 * 32).eval()
    r = Q(m, {"method": "dynamic", "benchmark": False}, data=digits.train.x[:64], out=tmp_path)
    assert r.model is None and r.artifact == tmp_path / "model.onnx"
    assert r.summary["quantized_layers"] == 3
    ops = {n.op_type for n in onnx.load(str(r.artifact)).graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger"}
    x = digits.test.x.numpy()[:32]
    ref = m(torch.from_numpy(x)).detach().numpy()
    assert np.abs(onnx_logits(r.artifact, x) - ref).max() < 0.1 * np.abs(ref).max()


def test_weight_sharing_returns_the_shared_model_and_leaves_the_input_untouched(tmp_path, digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    r = edgeslim.quantize(ckpt, edgeslim.WeightSharing(conv_bits=2, linear_bits=3, finetune={"epochs": 0},
                                                       benchmark=False), data=digits.train.x[:64], out=tmp_path)
    assert isinstance(r, edgeslim.Result) and r.artifact == tmp_path / "model.onnx"
    assert all(torch.equal(before[k], v) for k, v in ckpt.model.state_dict().items())
    assert len(torch.unique(r.model.features[0].weight)) <= 4
    assert {layer["bits"] for layer in r.summary["layers"]} == {2, 3}
    assert r.warnings == r.summary["warnings"]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_kmeans_codebook_size_and_reconstruction(bits):
    w = torch.randn(32, 16, 3, 3)
    book, idx = kmeans_codebook(w, bits)
    assert book.dtype == np.float32 and idx.dtype == np.uint8 and idx.shape == tuple(w.shape)
    assert len(book) == 2 ** bits and idx.max() < 2 ** bits
    rec = reconstruct(book, idx)
    err = float(np.mean((rec - w.numpy()) ** 2))
    # k-means beats a uniform grid with the same number of levels
    grid = np.linspace(float(w.min()), float(w.max()), 2 ** bits)
    uniform = grid[np.abs(w.numpy()[..., None] - grid).argmin(-1)]
    assert err <= float(np.mean((uniform - w.numpy()) ** 2)) + 1e-9
    if bits == 8:
        assert Q.sqnr_db(w.numpy(), rec) > 35


def test_kmeans_keeps_pruned_zeros():
    w = torch.randn(64, 64)
    w[torch.rand_like(w) < 0.8] = 0
    book, idx = kmeans_codebook(w, 3)
    assert book[0] == 0 and (reconstruct(book, idx)[w.numpy() == 0] == 0).all()
    assert (idx[w.numpy() != 0] != 0).all()
    with pytest.raises(ConfigError, match="bits"):
        kmeans_codebook(w, 9)


def test_share_weights_with_centroid_finetuning(digits):
    from edgeslim.models import create
    from edgeslim.train import TrainConfig

    m = create("seed-cnn", num_classes=10)
    with torch.no_grad():
        m.classifier[1].weight[:, :100] = 0  # a pruned block must stay zero
    before = m.classifier[3].weight.detach().clone()
    m, books = share_weights(m, {"conv": 2, "linear": 3}, data=digits.train, finetune_epochs=1,
                             train_config=TrainConfig(epochs=1, max_steps=5, augment=False, hflip=False, lr=1e-2))
    assert set(books) == {"features.0", "features.3", "classifier.1", "classifier.3"}
    for name, (book, idx) in books.items():
        w = m.get_submodule(name).weight.detach().numpy()
        limit = 4 if name.startswith("features") else 8
        assert len(np.unique(w)) <= limit and np.array_equal(reconstruct(book, idx), w)
    assert (m.classifier[1].weight[:, :100] == 0).all()
    # fine-tuning moved the centroids away from the plain k-means ones
    plain, _ = kmeans_codebook(before, 3)
    assert not np.allclose(books["classifier.3"][0], plain)
    with pytest.raises(ConfigError, match="unknown layer kind"):
        share_weights(m, {"lstm": 4})
    with pytest.raises(ConfigError, match="needs data"):
        share_weights(m, 4, finetune_epochs=1)


def test_centroid_finetuning_distils_from_the_model_before_sharing(digits_checkpoint, digits):
    """The default: centroids learn the unshared model's outputs (WeightSharing.finetune.distill),
    through the loss_fn share_weights is given."""
    import copy

    from edgeslim.distill import kd_loss_fn
    from edgeslim.quantize import WeightSharing
    from edgeslim.train import TrainConfig

    assert WeightSharing().finetune.distill and WeightSharing().finetune.temperature == 1.0
    _, ckpt = digits_checkpoint
    kd = kd_loss_fn(ckpt.model, 1.0, 0.9)
    calls = []

    def loss_fn(model, x, y):
        calls.append(len(y))
        return kd(model, x, y)

    m, _ = share_weights(copy.deepcopy(ckpt.model), 3, data=digits.train, finetune_epochs=1, loss_fn=loss_fn,
                         train_config=TrainConfig(epochs=1, max_steps=4))
    assert len(calls) == 4
