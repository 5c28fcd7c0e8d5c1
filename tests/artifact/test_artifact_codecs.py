"""Deep Compression codecs: bit packing, relative-index sparse form, canonical Huffman."""
from __future__ import annotations

import numpy as np
import pytest

from edgeslim.runtime.codecs import (canonical_codes, huffman_code_lengths, huffman_decode, huffman_encode,
                                     pack_bits, sparse_decode, sparse_encode, unpack_bits)


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 7, 8])
def test_pack_bits_round_trip(bits):
    x = np.random.default_rng(bits).integers(0, 2 ** bits, 1003)
    packed = pack_bits(x, bits)
    assert len(packed) == (1003 * bits + 7) // 8
    assert np.array_equal(unpack_bits(packed, bits, 1003), x)
    with pytest.raises(ValueError):
        pack_bits(np.array([2 ** bits]), bits)


def test_sparse_gap_overflow_inserts_filler_zeros():
    w = np.zeros(11, dtype=np.float32)
    w[10] = 5.0
    gaps, positions = sparse_encode(w, gap_bits=2)  # max gap 3: 10 zeros need two fillers
    assert gaps.tolist() == [3, 3, 2]
    assert positions.tolist() == [-1, -1, 10]
    values = np.where(positions >= 0, w[np.maximum(positions, 0)], 0)
    assert np.array_equal(sparse_decode(gaps, values, 11), w)


@pytest.mark.parametrize("gap_bits", [1, 2, 3, 4, 5, 8])
def test_sparse_round_trip(gap_bits):
    rng = np.random.default_rng(gap_bits)
    w = rng.standard_normal(5000).astype(np.float32) * (rng.random(5000) < 0.04)
    w[0], w[-1] = 1.5, 0.0  # an entry at the start, trailing zeros at the end
    gaps, positions = sparse_encode(w, gap_bits)
    assert gaps.max() < 2 ** gap_bits
    values = np.where(positions >= 0, w[np.maximum(positions, 0)], 0)
    assert np.array_equal(sparse_decode(gaps, values, w.size), w)
    assert (positions >= 0).sum() == np.count_nonzero(w)


def test_sparse_of_all_zeros_and_bad_gaps():
    gaps, positions = sparse_encode(np.zeros(7, np.float32), 3)
    assert gaps.size == 0 and np.array_equal(sparse_decode(gaps, np.zeros(0), 7), np.zeros(7))
    with pytest.raises(ValueError, match="past the tensor end"):
        sparse_decode(np.array([9]), np.array([1.0]), 5)


def test_huffman_lengths_are_optimal_on_a_textbook_example():
    # CLRS 16.3: frequencies a..f = 45,13,12,16,9,5 -> code lengths 1,3,3,3,4,4
    assert huffman_code_lengths(np.array([45, 13, 12, 16, 9, 5])).tolist() == [1, 3, 3, 3, 4, 4]
    codes = canonical_codes(np.array([1, 3, 3, 3, 4, 4]))
    assert codes.tolist() == [0b0, 0b100, 0b101, 0b110, 0b1110, 0b1111]


@pytest.mark.parametrize("case", ["skewed", "uniform", "single", "empty", "wide"])
def test_huffman_round_trip(case):
    rng = np.random.default_rng(0)
    symbols, alphabet = {
        "skewed": (np.minimum(rng.geometric(0.35, 20000) - 1, 31), 32),
        "uniform": (rng.integers(0, 16, 5000), 16),
        "single": (np.full(100, 3), 8),
        "empty": (np.zeros(0, dtype=np.int64), 4),
        "wide": (rng.integers(0, 256, 3000), 256),
    }[case]
    data = huffman_encode(symbols, alphabet)
    assert np.array_equal(huffman_decode(data), symbols)
    if case == "skewed":
        assert len(data) < len(pack_bits(symbols, 5))  # entropy coding beats fixed 5-bit codes


def test_huffman_length_limit_holds_for_fibonacci_counts():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman_code_lengths(np.array(fib), max_len=16)
    assert lengths.max() <= 16 and (2.0 ** -lengths).sum() <= 1.0 + 1e-12  # Kraft inequality
    symbols = np.repeat(np.arange(30), np.minimum(fib, 50))
    assert np.array_equal(huffman_decode(huffman_encode(symbols, 30)), symbols)
