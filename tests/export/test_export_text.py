import numpy as np
import onnx

from edgeslim.export.text import export_text_onnx
from edgeslim.runtime.text import TOKENIZER_KEY, load_text_model


def test_export_dynamic_axes_parity_and_tokenizer_travels(tiny_bert, tiny_tokenizer, tmp_path):
    out = tmp_path / "m" / "model.onnx"
    out.parent.mkdir()
    r = export_text_onnx(tiny_bert, out, tiny_tokenizer[0], max_length=32)
    assert r["max_abs_diff"] < 1e-4 and r["embedding_dim"] == 32
    assert (out.parent / "tokenizer.json").read_text() == tiny_tokenizer[0].read_text()
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask"]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in proto.graph.input)
    assert [o.name for o in proto.graph.output] == ["sentence_embedding"]
    dims = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert dims == [["batch", "sequence"]] * 2
    assert any(p.key == TOKENIZER_KEY for p in proto.metadata_props)
    emb = load_text_model(out).embed(["a fox.", "the dog sleeps in the sun all day.", "data"])
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
