import pytest
import torch

from edgeslim.errors import ConfigError
from edgeslim.models import load_checkpoint, save_checkpoint
from edgeslim.prune.text import keep_layers, prune_ffn, prune_heads, shrink_encoder


def _feeds():
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 11, 3, 0]])
    return ids, (ids != 0).long()


def test_heads_and_neurons_are_really_removed(tiny_bert):
    kept = prune_heads(tiny_bert, 0.5)
    widths = prune_ffn(tiny_bert, 0.25)
    layer = tiny_bert.encoder.encoder.layer[0]
    assert [len(k) for k in kept] == [2, 2] and widths == [16, 16]
    assert layer.attention.self.query.weight.shape == (16, 32)
    assert layer.attention.output.dense.weight.shape == (32, 16)
    assert layer.intermediate.dense.weight.shape == (16, 32) and layer.output.dense.weight.shape == (32, 16)
    with torch.no_grad():
        emb = tiny_bert(*_feeds())
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()


def test_keeping_every_head_changes_nothing(tiny_bert):
    with torch.no_grad():
        before = tiny_bert(*_feeds())
        prune_heads(tiny_bert, 4)
        assert torch.allclose(before, tiny_bert(*_feeds()), atol=1e-6)
    with pytest.raises(ConfigError, match="keep_heads"):
        prune_heads(tiny_bert, 0.01)


def test_student_starts_from_teacher_layers_and_reloads(tiny_bert, tmp_path):
    student = shrink_encoder(tiny_bert, layers=[1], keep_heads=0.5, keep_neurons=0.5)
    assert len(student.encoder.encoder.layer) == 1 and len(tiny_bert.encoder.encoder.layer) == 2
    one = keep_layers(tiny_bert, [1])
    assert torch.equal(one.encoder.encoder.layer[0].output.dense.weight,
                       tiny_bert.encoder.encoder.layer[1].output.dense.weight)
    save_checkpoint(student, tmp_path / "s", {})
    again = load_checkpoint(tmp_path / "s").model
    with torch.no_grad():
        assert torch.allclose(student(*_feeds()), again(*_feeds()), atol=1e-6)
    with pytest.raises(ConfigError, match="layers"):
        keep_layers(tiny_bert, [5])
