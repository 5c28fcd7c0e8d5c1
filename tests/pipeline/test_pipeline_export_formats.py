"""compress recipes ending in an export stage to another runtime's format."""
import json

import pytest
from pydantic import ValidationError

from edgeslim.pipeline import compress
from edgeslim.pipeline.recipe import ExportStage
from edgeslim.runtime import load_model


def test_quantize_then_openvino_publishes_the_ir_with_its_weights(tmp_path, digits_checkpoint, format_missing):
    if format_missing("openvino"):
        pytest.skip(format_missing("openvino"))
    recipe = {"name": "ov", "max_accuracy_drop": 100, "seed": 0, "bench": {"rounds": 2, "warmup": 1},
              "stages": [{"type": "quantize", "samples": 32, "sensitivity": False},
                         {"type": "export", "format": "openvino"}]}
    out = tmp_path / "c"
    compress(digits_checkpoint[0], recipe, out=out, progress=False)
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert rows[-1]["evaluated_with"] == "openvino" and rows[-1]["file"].endswith("model.xml")
    assert abs(rows[-1]["val_accuracy"] - rows[-2]["val_accuracy"]) <= 0.01, "the IR runs the QDQ model as ORT does"
    assert json.loads((out / "best.json").read_text())["file"] == "model.xml"
    assert (out / "model.bin").is_file() and not (out / "model.onnx").exists()
    assert load_model(out / "model.xml").class_names == digits_checkpoint[1].class_names


def test_export_int8_is_for_the_formats_with_their_own_quantizer():
    assert ExportStage(type="export", format="executorch", int8=True).summary() == "executorch int8 file"
    with pytest.raises(ValidationError, match="put a quantize stage before the export"):
        ExportStage(type="export", format="openvino", int8=True)
