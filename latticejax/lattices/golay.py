"""The extended binary Golay code C24, a [24, 12, 8] code (Conway & Sloane, SPLAG ch. 3 and 10).

Built from the cyclic [23, 12, 7] quadratic-residue code with generator polynomial
g(x) = x^11 + x^10 + x^6 + x^5 + x^4 + x^2 + 1, extended by an overall parity bit, then brought to
systematic form ``[I_12 | A]``. Codeword ``k`` (0 <= k < 4096) is the encoding of the 12 message
bits of ``k`` (bit j of k is message bit j), so the index <-> codeword bijection is computed, not
stored:
``codeword_index(c) = sum_j c[j] << j`` over the first 12 coordinates.
"""

from __future__ import annotations

import functools

import numpy as np

_G_POLY = (1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1)  # coefficients of x^0..x^11


@functools.lru_cache(maxsize=1)
def generator_matrix() -> np.ndarray:
    """(12, 24) uint8 systematic generator matrix ``[I_12 | A]`` of C24."""
    rows = np.zeros((12, 23), dtype=np.uint8)
    for i in range(12):
        rows[i, i : i + 12] = _G_POLY
    ext = np.concatenate([rows, rows.sum(axis=1, keepdims=True) % 2], axis=1).astype(np.uint8)
    # Gauss-Jordan over GF(2) to systematic form on the first 12 columns.
    g = ext.copy()
    for col in range(12):
        pivot = col + int(np.nonzero(g[col:, col])[0][0])
        g[[col, pivot]] = g[[pivot, col]]
        for r in range(12):
            if r != col and g[r, col]:
                g[r] ^= g[col]
    assert np.array_equal(g[:, :12], np.eye(12, dtype=np.uint8))
    return g


@functools.lru_cache(maxsize=1)
def codewords() -> np.ndarray:
    """(4096, 24) uint8 array of all codewords; row k encodes the message bits of k."""
    k = np.arange(4096)
    msg = ((k[:, None] >> np.arange(12)[None, :]) & 1).astype(np.int64)
    return ((msg @ generator_matrix().astype(np.int64)) % 2).astype(np.uint8)


def codeword_index(c: np.ndarray) -> np.ndarray:
    """Index k of codeword(s) ``c`` of shape (..., 24) (the inverse of ``codewords()[k]``)."""
    c = np.asarray(c).astype(np.int64)
    if c.shape[-1] != 24:
        raise ValueError(f"c must have shape (..., 24), got {c.shape}.")
    return (c[..., :12] << np.arange(12)).sum(axis=-1)


@functools.lru_cache(maxsize=1)
def octads() -> np.ndarray:
    """(759, 24) uint8 array of the weight-8 codewords, in increasing codeword index."""
    c = codewords()
    return c[c.sum(axis=1) == 8]


def weight_distribution() -> dict[int, int]:
    """Number of codewords of each Hamming weight: {0: 1, 8: 759, 12: 2576, 16: 759, 24: 1}."""
    w, n = np.unique(codewords().sum(axis=1), return_counts=True)
    return {int(a): int(b) for a, b in zip(w, n)}
