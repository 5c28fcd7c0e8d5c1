import json

import onnx
import pytest

from edgeslim.errors import ConfigError
import edgeslim
from edgeslim.export import Export


def test_export_parity_on_real_images(digits_checkpoint, tmp_path):
    folder, _ = digits_checkpoint
    res = edgeslim.export(folder, Export(), out=tmp_path / "m.onnx")
    r = res.summary
    assert res.artifact == tmp_path / "m.onnx" and res.artifact.is_file() and res.model is None
    assert r["parity_inputs"] == "digits test images" and r["samples"] == 256
    assert r["max_abs_diff"] < 1e-4 and r["top1_agreement"] == 1.0


def test_export_with_conv_pool_folding_keeps_parity(digits_checkpoint, tmp_path):
    folder, _ = digits_checkpoint
    r = edgeslim.export(folder, Export(optimize="always"), out=tmp_path / "m.onnx").summary
    assert r["folded_conv_pool"] == ["/features/features.0/Conv", "/features/features.3/Conv"]
    assert r["max_abs_diff"] < 1e-4 and r["top1_agreement"] == 1.0


def test_export_has_dynamic_batch_and_metadata(digits_onnx):
    model = onnx.load(str(digits_onnx))
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param  # symbolic batch dimension
    meta = json.loads({p.key: p.value for p in model.metadata_props}["edgeslim"])
    assert meta["class_names"][3] == "3" and meta["preprocess"]["pad_to"] == [32, 32]


def test_unknown_format(digits_checkpoint):
    with pytest.raises(ConfigError, match="^invalid Export config: format: "):
        edgeslim.export(digits_checkpoint[0], {"format": "coreml"})
    with pytest.raises(ConfigError, match="parity_samples"):
        edgeslim.export(digits_checkpoint[0], Export(parity_samples=0))
