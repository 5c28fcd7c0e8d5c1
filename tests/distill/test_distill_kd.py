"""Knowledge distillation: the loss against a hand computation, hints, and training."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import edgeslim
from edgeslim.distill import (Distill, FeatureCapture, crop_flip, distill, distill_checkpoint, distill_config,
                              hinton_loss, kd_loss_fn, make_adapter, width_student)
from edgeslim.errors import ConfigError
from edgeslim.evaluate import evaluate_split
from edgeslim.models import create, load_checkpoint
from edgeslim.train import TrainConfig, fit


def _hand_kd(zs, zt, y, T, alpha):
    """alpha*T^2*KL(softmax(zt/T)||softmax(zs/T)) + (1-alpha)*CE, sample by sample in plain Python."""
    total = 0.0
    for s_row, t_row, label in zip(zs, zt, y):
        ps = [math.exp(v / T) for v in s_row]
        pt = [math.exp(v / T) for v in t_row]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        kl = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))
        p = [math.exp(v) for v in s_row]
        ce = -math.log(p[label] / sum(p))
        total += alpha * T * T * kl + (1 - alpha) * ce
    return total / len(y)


def test_hinton_loss_matches_hand_computation():
    zs = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    zt = [[2.0, 0.0, 1.0], [0.5, 0.5, 2.5]]
    y = [1, 2]
    for T, alpha in [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0), (3.0, 1.0)]:
        got = hinton_loss(torch.tensor(zs), torch.tensor(zt), torch.tensor(y), T, alpha)
        assert float(got) == pytest.approx(_hand_kd(zs, zt, y, T, alpha), rel=1e-5, abs=1e-6)
    soft_only = hinton_loss(torch.tensor(zs), torch.tensor(zt), None, 4.0, 0.3)
    assert float(soft_only) == pytest.approx(_hand_kd(zs, zt, y, 4.0, 1.0), rel=1e-5)
    same = hinton_loss(torch.tensor(zt), torch.tensor(zt), None, 4.0)
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_adapter_shapes():
    conv = make_adapter(torch.Size([2, 4, 8, 8]), torch.Size([2, 16, 8, 8]))
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    assert conv(torch.zeros(2, 4, 8, 8)).shape == (2, 16, 8, 8)
    lin = make_adapter(torch.Size([2, 32]), torch.Size([2, 128]))
    assert lin(torch.zeros(2, 32)).shape == (2, 128)
    with pytest.raises(ValueError, match="spatial"):
        make_adapter(torch.Size([2, 4, 8, 8]), torch.Size([2, 16, 4, 4]))
    with pytest.raises(KeyError, match="no such layer"):
        FeatureCapture(create("seed-cnn"), ["features.99"])


def test_config_rejects_unknown_and_bad_fields():
    with pytest.raises(ConfigError, match="temprature: unknown field"):
        Distill(temprature=4)
    with pytest.raises(ConfigError, match="finetune.alpha: must be <= 1"):
        Distill(finetune={"alpha": 1.5})
    with pytest.raises(ConfigError, match="hint_layers"):
        Distill(hint_layers=[("a", "b"), ("a", "c")])
    with pytest.raises(ConfigError, match="'augmentation' was renamed: use 'finetune.augment'"):
        distill_config({"augmentation": "none"})
    assert type(distill_config({"method": "distill"})) is Distill and Distill().finetune.alpha == 0.9


def test_hint_distillation_trains_adapters_and_leaves_teacher_alone(digits):
    torch.manual_seed(0)
    teacher = create("seed-cnn", num_classes=10)
    student = width_student(teacher, 0.25)
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = Distill(finetune={"epochs": 1, "max_steps": 5, "batch_size": 32},
                  hint_layers=[("features.2", "features.2"), ("classifier.2", "classifier.2")])
    from edgeslim.distill import KDLoss

    loss = KDLoss(teacher, hint_layers=cfg.hint_layers)
    trainable = loss.attach(student, digits.train.x[:2])
    shapes = {k: tuple(m.weight.shape) for k, m in loss.adapters.items()}
    assert shapes == {"features__2": (16, 4, 1, 1), "classifier__2": (128, 32)}
    a_before = {k: m.weight.detach().clone() for k, m in loss.adapters.items()}
    fit(trainable, digits.train, cfg.train_config(), loss_fn=loss, progress=False)
    loss.detach()
    assert all(not torch.equal(a_before[k], m.weight) for k, m in loss.adapters.items())
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and all(p.grad is None for p in teacher.parameters())
    assert all(p.requires_grad for p in teacher.parameters())  # copies of the teacher stay trainable
    assert not student._forward_hooks and not teacher.features[2]._forward_hooks
    # distill() runs the same path end to end, on a copy of the student
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    res = distill(student, cfg, digits.train.subset(128), teacher=teacher, progress=False)
    assert isinstance(res, edgeslim.Result) and res.model is not student and len(res.summary["history"]) == 1
    assert all(torch.equal(s_before[k], v) for k, v in student.state_dict().items())


def test_kd_loss_fn_plugs_into_fit_and_student_learns(digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    teacher_acc = evaluate_split(ckpt.model, digits.test)["accuracy"]
    student = width_student(ckpt.model, 0.5)
    fit(student, digits.train, TrainConfig(epochs=4, batch_size=64, lr=5e-3, augment=False),
        loss_fn=kd_loss_fn(ckpt.model, temperature=4.0, alpha=0.9), progress=False)
    acc = evaluate_split(student, digits.test)["accuracy"]
    assert teacher_acc > 0.8 and acc > 0.7, (teacher_acc, acc)


def test_unlabeled_distillation_ignores_labels(digits_checkpoint, digits):
    _, ckpt = digits_checkpoint
    from edgeslim.data.datasets import Split

    garbage = Split(digits.train.x, torch.zeros_like(digits.train.y))  # labels must not matter
    student = width_student(ckpt.model, 0.5)
    res = edgeslim.distill(student, Distill(finetune={"epochs": 4, "batch_size": 64, "lr": 5e-3, "augment": False},
                                            unlabeled=True), garbage, teacher=ckpt.model, progress=False)
    assert evaluate_split(res.model, digits.test)["accuracy"] > 0.6


def test_crop_flip_keeps_shape_and_is_identity_at_full_scale():
    x = torch.randn(6, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert crop_flip(x, g).shape == x.shape
    y = crop_flip(x, g, min_scale=1.0)
    for i in range(6):
        assert torch.allclose(y[i], x[i], atol=1e-5) or torch.allclose(y[i], x[i].flip(-1), atol=1e-5)


def test_distill_checkpoint_writes_a_loadable_student(digits_checkpoint, tmp_path):
    folder, _ = digits_checkpoint
    r = distill_checkpoint(folder, width=0.5, config=Distill(finetune={"epochs": 1, "batch_size": 64}),
                           out=tmp_path / "s", dataset="digits", progress=False)
    assert isinstance(r, edgeslim.Result) and r.artifact == tmp_path / "s"
    loaded = load_checkpoint(tmp_path / "s")
    assert loaded.model.features[0].out_channels == 8
    assert loaded.meta["distill"]["width"] == 0.5 and 0 <= r.summary["metrics"]["accuracy"] <= 1


def test_width_student_of_any_module_uses_structured_pruning():
    teacher = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    from edgeslim.errors import ConfigError

    with pytest.raises(ConfigError, match="input_shape"):
        width_student(teacher, 0.5)
    student = width_student(teacher, 0.5, input_shape=(1, 8, 8))
    assert student[0].out_channels == 8 and student[3].out_features == 10
    assert student(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert teacher[0].out_channels == 16  # the teacher is untouched
    with pytest.raises(ConfigError, match="width"):
        width_student(teacher, 0.0, input_shape=(1, 8, 8))


def test_recalibrate_batchnorm_matches_the_data_statistics():
    from edgeslim.distill import recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.01)).eval()
    x = torch.randn(64, 3, 4, 4) * 3 + 2
    recalibrate_batchnorm(model, x, batch_size=16)
    with torch.no_grad():
        feats = model[0](x)
    assert torch.allclose(model[1].running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    assert model[1].momentum == 0.01 and not model.training  # settings restored


def test_cached_teacher_logits_train_the_same_student_as_a_live_teacher(digits_checkpoint, digits):
    from edgeslim.distill import KDLoss, cache_teacher_logits

    _, ckpt = digits_checkpoint
    cfg = Distill(finetune={"epochs": 2, "batch_size": 64, "lr": 5e-3, "augment": False}, seed=3)
    cached = cache_teacher_logits(ckpt.model, digits.train, cfg)
    assert cached is not None and cached.shape == (len(digits.train), 10)
    students = []
    for logits in (None, cached):
        torch.manual_seed(0)
        student = width_student(ckpt.model, 0.5)
        fit(student, digits.train, cfg.train_config(), loss_fn=KDLoss(ckpt.model, 4.0, 0.9, teacher_logits=logits),
            progress=False)
        students.append(student)
    for a, b in zip(students[0].parameters(), students[1].parameters()):
        assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(Exception, match="sample indices"):
        KDLoss(ckpt.model, teacher_logits=cached)(students[0], digits.train.x[:4], digits.train.y[:4])


def test_teacher_logits_are_not_cached_when_inputs_change_every_epoch(digits_checkpoint, digits):
    from edgeslim.distill import cache_teacher_logits

    _, ckpt = digits_checkpoint
    assert cache_teacher_logits(ckpt.model, digits.train, Distill(finetune={"augment": True})) is None
    assert cache_teacher_logits(ckpt.model, digits.train, Distill(
        finetune={"augment": False}, hint_layers=[("features.0", "features.0")])) is None
    # None: as the teacher was trained (the digits fixture trained without augmentation)
    assert cache_teacher_logits(ckpt.model, digits.train, Distill(finetune={"augment": None}),
                                ckpt.meta.get("train_config")) is not None
