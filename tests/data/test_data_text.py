import gzip

import pytest

from edgeslim.data.text import build_corpus, read_text_samples, sentences_of, write_corpus
from edgeslim.errors import DataError

README = """# Project

Install it with `pip install thing`. See https://example.org for the docs.

```python
import thing  # code is not prose
```

This library compresses neural networks for small devices. It runs on a phone without any server.
This library compresses neural networks for small devices.

Author: Someone
Short line.
"""


def _tree(tmp_path):
    pkg = tmp_path / "site" / "thing-1.0.dist-info"
    pkg.mkdir(parents=True)
    (pkg / "METADATA").write_text(README)
    doc = tmp_path / "site" / "other"
    doc.mkdir()
    with gzip.open(doc / "README.md.gz", "wt") as f:
        f.write("Compressed documentation is read as well, within a bounded size.\n")
    (doc / "LICENSE.txt").write_text("Permission is hereby granted to anyone who reads this sentence here.")
    return tmp_path / "site"


def test_corpus_is_prose_deduplicated_and_deterministic(tmp_path):
    root = _tree(tmp_path)
    corpus = build_corpus([root])
    assert sorted(corpus) == sorted([
        "This library compresses neural networks for small devices.",
        "It runs on a phone without any server.",
        "Compressed documentation is read as well, within a bounded size."])
    assert build_corpus([root]) == corpus  # same order every time
    assert build_corpus([root], limit=2) == corpus[:2]


def test_sentences_drop_code_and_urls():
    text = " ".join(sentences_of(README))
    assert "import thing" not in text and "https://" not in text


def test_read_text_file_folder_and_errors(tmp_path):
    write_corpus(tmp_path / "a.txt", ["first sample", "second sample"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("\nthird sample\n\n")
    assert read_text_samples(tmp_path / "a.txt") == ["first sample", "second sample"]
    assert read_text_samples(tmp_path) == ["first sample", "second sample", "third sample"]
    assert read_text_samples(tmp_path, limit=1) == ["first sample"]
    with pytest.raises(DataError, match="not found"):
        read_text_samples(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="no .txt"):
        read_text_samples(_empty(tmp_path))


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"
