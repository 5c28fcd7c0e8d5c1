"""How faithful a compressed text model's embeddings are to the float model's (torch-free)."""
from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(embeddings: np.ndarray) -> np.ndarray:
    """Index of each row's most similar other row (cosine; itself excluded)."""
    e = _unit(embeddings)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    return sims.argmax(1)


def embedding_fidelity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Mean/min cosine between matching rows, and retrieval agreement: the fraction of sentences
    whose nearest neighbour among the others (top-1) is the same under both models."""
    if reference.shape != candidate.shape or len(reference) < 2:
        raise ValueError(f"need two embeddings of the same >= 2 sentences, got {reference.shape} and {candidate.shape}")
    cos = (_unit(reference) * _unit(candidate)).sum(1)
    agree = nearest_neighbours(reference) == nearest_neighbours(candidate)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "retrieval_agreement": float(agree.mean()), "sentences": int(len(reference))}
