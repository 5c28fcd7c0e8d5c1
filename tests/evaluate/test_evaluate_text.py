import numpy as np
import pytest

from edgeslim.evaluate.text import embedding_fidelity, nearest_neighbours


def test_identical_embeddings_agree_fully_and_noise_lowers_both():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((50, 16))
    same = embedding_fidelity(e, e * 3.0)  # scale does not matter: cosine
    assert same["mean_cosine"] == pytest.approx(1.0) and same["retrieval_agreement"] == 1.0
    noisy = embedding_fidelity(e, e + rng.standard_normal(e.shape))
    assert noisy["mean_cosine"] < 0.9 and noisy["retrieval_agreement"] < 0.9


def test_nearest_neighbour_excludes_itself():
    e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert nearest_neighbours(e).tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        embedding_fidelity(e, e[:2])
