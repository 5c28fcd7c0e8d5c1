import torch
from tokenizers import Tokenizer

from edgeslim.distill.text import TextDistillConfig, distill_text
from edgeslim.prune.text import shrink_encoder

TEXTS = ["the quick brown fox jumps over the lazy dog.", "edge devices run small models close to the data.",
         "quantization stores weights as eight bit integers.", "pruning removes attention heads and neurons.",
         "a student model learns from its teacher.", "the dog sleeps in the sun all day.",
         "small models answer quickly on a phone.", "integers are faster than floats on many chips."]


def _cosine(student, teacher, tok):
    tok.enable_padding()
    enc = tok.encode_batch(TEXTS)
    ids, mask = torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])
    with torch.no_grad():
        return float((student(ids, mask) * teacher(ids, mask)).sum(1).mean())


def test_distillation_moves_the_student_towards_the_teacher(tiny_bert, tiny_tokenizer):
    tok = Tokenizer.from_file(str(tiny_tokenizer[0]))
    torch.manual_seed(1)
    with torch.no_grad():  # BERT's tiny init makes all sentences look alike: give words a voice
        tiny_bert.encoder.embeddings.word_embeddings.weight.normal_(0, 1)
    student = shrink_encoder(tiny_bert, layers=[0], keep_heads=0.5, keep_neurons=0.5)
    with torch.no_grad():  # a student that starts off clearly worse than the teacher
        for p in student.encoder.encoder.parameters():
            p.add_(0.2 * torch.randn_like(p))
    before = _cosine(student, tiny_bert, tok)
    r = distill_text(student, tiny_bert, tok, TEXTS * 4, TextDistillConfig(epochs=8, batch_size=8, lr=1e-3))
    assert r["steps"] == 32 and r["history"][-1]["loss"] < r["history"][0]["loss"]
    assert _cosine(student, tiny_bert, tok) > before
