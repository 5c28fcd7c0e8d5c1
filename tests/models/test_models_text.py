import pytest
import torch

from edgeslim.errors import ConfigError
from edgeslim.models import create, list_models, load_checkpoint, save_checkpoint
from edgeslim.models.text import MINILM, load_hf_encoder


def _feeds():
    ids = torch.tensor([[2, 7, 8, 3, 0, 0], [2, 9, 10, 11, 12, 3]])
    return ids, (ids != 0).long()


def test_registered_and_embeddings_are_unit_mean_pooled(tiny_bert):
    assert MINILM in list_models()
    ids, mask = _feeds()
    with torch.no_grad():
        emb = tiny_bert(ids, mask)
        padded = tiny_bert(torch.cat([ids[:1, :4], torch.zeros(1, 3, dtype=torch.long)], 1),
                           torch.tensor([[1, 1, 1, 1, 0, 0, 0]]))
    assert emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(emb[0], padded[0], atol=1e-5)  # padding does not change a sentence's embedding


def test_checkpoint_round_trip(tiny_bert, tmp_path):
    save_checkpoint(tiny_bert, tmp_path / "ck", {"task": "text-embedding"})
    again = load_checkpoint(tmp_path / "ck").model
    ids, mask = _feeds()
    with torch.no_grad():
        assert torch.allclose(tiny_bert(ids, mask), again(ids, mask), atol=1e-6)


def test_hf_folder_loads_and_bad_folder_is_one_line(tiny_bert, tmp_path):
    tiny_bert.encoder.save_pretrained(tmp_path / "hf")
    model = load_hf_encoder(tmp_path / "hf")
    ids, mask = _feeds()
    with torch.no_grad():
        assert torch.allclose(model(ids, mask), tiny_bert(ids, mask), atol=1e-6)
    with pytest.raises(ConfigError, match="no config.json"):
        load_hf_encoder(tmp_path)


def test_bad_config_names_the_problem():
    with pytest.raises(ConfigError, match="BERT config"):
        create(MINILM, config={"hidden_size": 30, "num_attention_heads": 4})


@pytest.mark.slow
def test_packaged_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from edgeslim.models.text import minilm_path

    texts = ["Edge devices run small models.", "A completely different sentence about dogs and the sun."]
    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    model = create(MINILM)
    with torch.no_grad():
        ours = model(torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc]))
    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (2, 384)
    assert abs(ours.numpy() - ref).max() < 1e-5


def test_missing_extra_is_one_line_naming_the_install():
    from edgeslim.models.text import require_text_extra

    with pytest.raises(ConfigError) as e:
        require_text_extra("edgeslim_no_such_text_package")
    assert "pip install edgeslim[text]" in str(e.value) and "\n" not in str(e.value)


def test_resolve_text_model_specs(tiny_bert, tiny_tokenizer, tmp_path):
    from edgeslim.models.text import resolve_text_model, save_text_checkpoint

    assert resolve_text_model("seed-cnn") is None and resolve_text_model(tmp_path) is None
    tiny_bert.encoder.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").write_bytes(tiny_tokenizer[0].read_bytes())
    model, tok = resolve_text_model(f"hf:{tmp_path / 'hf'}")
    assert tok == tmp_path / "hf" / "tokenizer.json" and model.config.hidden_size == 32
    ck = save_text_checkpoint(tiny_bert, tmp_path / "ck", tiny_tokenizer[0])
    model, tok = resolve_text_model(ck)
    assert tok.read_bytes() == tiny_tokenizer[0].read_bytes()
