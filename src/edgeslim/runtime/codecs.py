"""Deep Compression codecs (Han et al. 2016), numpy only, so the on-device loader stays torch-free.

- ``pack_bits`` / ``unpack_bits``: small integers at ``b`` bits each.
- ``sparse_encode`` / ``sparse_decode``: relative-index sparse form. Each stored entry
  carries the number of zeros skipped since the previous entry in ``gap_bits`` bits; a
  gap too long for that many bits is bridged with filler entries whose value is zero.
- ``huffman_encode`` / ``huffman_decode``: canonical Huffman coding of a symbol stream
  (code lengths limited to ``MAX_CODE_LEN`` bits, table-driven decoding).
"""
from __future__ import annotations

import heapq
import struct

import numpy as np

MAX_CODE_LEN = 16
HUFFMAN_CHUNK_BITS = 1 << 20  # bit positions decoded per step (bounds the lookup arrays)


def bits_for(n_symbols: int) -> int:
    """Bits needed to index ``n_symbols`` different values (at least 1)."""
    return max(1, int(np.ceil(np.log2(max(n_symbols, 2)))))


def pack_bits(symbols: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits, MSB first, into bytes (last byte zero-padded)."""
    s = np.asarray(symbols, dtype=np.uint32).reshape(-1)
    if s.size and int(s.max()) >= 1 << bits:
        raise ValueError(f"symbol {int(s.max())} does not fit in {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((s[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_bits``: ``count`` integers of ``bits`` bits each (uint32)."""
    if len(data) * 8 < bits * count:
        raise ValueError(f"bit stream too short: {len(data) * 8} bits for {count} symbols of {bits} bits")
    needed = np.frombuffer(data, dtype=np.uint8, count=(bits * count + 7) // 8)  # ignore trailing bytes
    m = np.unpackbits(needed)[:bits * count].reshape(count, bits).astype(np.uint32)
    return (m << np.arange(bits - 1, -1, -1, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)


# ---- relative-index sparse form -----------------------------------------------------------

def sparse_encode(flat: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, positions) for the non-zeros of a 1-D array. ``positions[i]`` is the index in
    ``flat`` whose value entry ``i`` stores, or -1 for a filler entry (value zero)."""
    nz = np.flatnonzero(flat)
    span = 1 << gap_bits  # an entry with gap g covers g zeros + itself; the largest g is span-1
    skipped = np.diff(nz, prepend=-1) - 1
    fillers = skipped // span
    per_entry = fillers + 1
    owner = np.repeat(np.arange(nz.size), per_entry)
    rank = np.arange(owner.size) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    is_last = rank == fillers[owner]
    gaps = np.where(is_last, skipped[owner] % span, span - 1).astype(np.uint32)
    positions = np.where(is_last, nz[owner], -1)
    return gaps, positions


def sparse_decode(gaps: np.ndarray, values: np.ndarray, size: int, dtype=np.float32) -> np.ndarray:
    """Rebuild the dense 1-D array of ``size`` entries from gaps and entry values."""
    out = np.zeros(size, dtype=dtype)
    if len(gaps):
        pos = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
        if pos[-1] >= size:
            raise ValueError(f"sparse gaps run past the tensor end ({pos[-1]} >= {size})")
        out[pos] = values
    return out


# ---- canonical Huffman --------------------------------------------------------------------

def huffman_code_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Huffman code length of every symbol (0 for unused ones), at most ``max_len`` bits:
    if the optimal tree is deeper, counts are flattened (halved, floor 1) until it fits."""
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if used.size == 1:
        lengths[used] = 1
        return lengths
    c = counts[used].copy()
    while True:
        heap = [(int(w), i, (i,)) for i, w in enumerate(c)]
        heapq.heapify(heap)
        depth = np.zeros(len(c), dtype=np.int64)
        tie = len(c)
        while len(heap) > 1:
            w1, _, a = heapq.heappop(heap)
            w2, _, b = heapq.heappop(heap)
            depth[list(a + b)] += 1
            heapq.heappush(heap, (w1 + w2, tie, a + b))
            tie += 1
        if depth.max() <= max_len:
            lengths[used] = depth
            return lengths
        c = np.maximum(c // 2, 1)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values for given lengths (shorter codes first, then symbol order)."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev_len = 0, 0
    for sym in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[sym]) - prev_len
        codes[sym] = code
        code += 1
        prev_len = int(lengths[sym])
    return codes


def huffman_encode(symbols: np.ndarray, alphabet: int) -> bytes:
    """Self-describing Huffman stream: u32 count, u16 alphabet, one code-length byte per
    symbol of the alphabet, then the MSB-first bit stream."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    lengths = huffman_code_lengths(np.bincount(s, minlength=alphabet)) if s.size else np.zeros(alphabet, np.int64)
    codes = canonical_codes(lengths)
    header = struct.pack("<IH", s.size, alphabet) + lengths.astype(np.uint8).tobytes()
    if not s.size:
        return header
    sym_len, sym_code = lengths[s], codes[s]
    starts = np.cumsum(sym_len) - sym_len
    owner = np.repeat(np.arange(s.size), sym_len)
    k = np.arange(owner.size) - starts[owner]
    bits = (sym_code[owner] >> (sym_len[owner] - 1 - k)) & 1
    return header + np.packbits(bits.astype(np.uint8)).tobytes()


def huffman_decode(data: bytes, expected_count: int | None = None) -> np.ndarray:
    """Inverse of ``huffman_encode`` (uint32 symbols). Builds a 2**maxlen lookup table of
    (symbol, length) and reads one window per symbol, ``HUFFMAN_CHUNK_BITS`` bit positions at
    a time so memory stays proportional to the output. ``expected_count``: the number of
    symbols the caller expects; a stream claiming another count is refused before decoding."""
    if len(data) < 6:
        raise ValueError("corrupt Huffman stream (shorter than its header)")
    count, alphabet = struct.unpack_from("<IH", data)
    if expected_count is not None and count != expected_count:
        raise ValueError(f"Huffman stream holds {count} symbols, expected {expected_count}")
    if len(data) < 6 + alphabet:
        raise ValueError("corrupt Huffman header (truncated code lengths)")
    lengths = np.frombuffer(data, dtype=np.uint8, count=alphabet, offset=6).astype(np.int64)
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    if not lengths.any() or int(lengths.max()) > MAX_CODE_LEN:
        raise ValueError("corrupt Huffman header (code lengths)")
    payload = np.frombuffer(data, dtype=np.uint8, offset=6 + alphabet)
    end = payload.size * 8
    if count > end:  # every symbol takes at least one bit
        raise ValueError(f"corrupt Huffman stream ({count} symbols in {end} bits)")
    codes = canonical_codes(lengths)
    max_len = int(lengths.max())
    table_sym = np.zeros(1 << max_len, dtype=np.int64)
    table_len = np.zeros(1 << max_len, dtype=np.int64)
    for sym in np.flatnonzero(lengths):
        lo = int(codes[sym]) << (max_len - int(lengths[sym]))
        hi = lo + (1 << (max_len - int(lengths[sym])))
        table_sym[lo:hi], table_len[lo:hi] = sym, lengths[sym]
    out: list[int] = []
    pos = 0
    for start in range(0, end, HUFFMAN_CHUNK_BITS):
        stop = min(start + HUFFMAN_CHUNK_BITS, end)
        span = stop - start + max_len
        bits = np.unpackbits(payload[start // 8:(stop + max_len + 7) // 8])[:span].astype(np.int64)
        padded = np.concatenate([bits, np.zeros(span - bits.size, dtype=np.int64)])
        window = np.zeros(stop - start, dtype=np.int64)  # the max_len bits starting at each position
        for k in range(max_len):
            window = (window << 1) | padded[k:k + stop - start]
        sym_at, len_at = table_sym[window].tolist(), table_len[window].tolist()
        while len(out) < count and pos < stop:
            if len_at[pos - start] == 0:
                raise ValueError("corrupt Huffman bit stream")
            out.append(sym_at[pos - start])
            pos += len_at[pos - start]
        if len(out) == count:
            break
    if len(out) < count or pos > end:
        raise ValueError("corrupt Huffman bit stream (runs past the end)")
    return np.asarray(out, dtype=np.uint32)
