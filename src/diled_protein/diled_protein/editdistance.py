"""Levenshtein (edit) distances between many protein sequences at once, in NumPy.

Myers' bit-parallel algorithm (Myers 1999, in Hyyrö's 2003 formulation for global edit distance):
each column of the dynamic-programming table is held as bit-vectors of vertical +1/−1 deltas of the
pattern's length, so one text character costs a few word operations. Patterns longer than 64
residues use several 64-bit words treated as one big integer (carries propagated across words).
All pairs of a chunk are processed together as arrays ``[P, Q, words]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["levenshtein"]

_ONE = np.uint64(1)


def _codes(seqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(s) for s in seqs), default=0)
    out = np.zeros((len(seqs), max(width, 1)), dtype=np.uint8)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = np.frombuffer(s.encode("latin-1"), dtype=np.uint8)
    return out, np.array([len(s) for s in seqs], dtype=np.int64)


def _peq(codes: np.ndarray, lengths: np.ndarray, words: int) -> np.ndarray:
    """Bit masks ``[P, 256, words]``: bit k of character c is set where pattern[k] == c."""
    peq = np.zeros((len(codes), 256, words), dtype=np.uint64)
    for p, (row, n) in enumerate(zip(codes, lengths)):
        for k in range(int(n)):
            peq[p, row[k], k // 64] |= _ONE << np.uint64(k % 64)
    return peq


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Big-integer addition over the last axis (little-endian 64-bit words), overflow dropped."""
    out = np.empty_like(a)
    carry = np.zeros(a.shape[:-1], dtype=np.uint64)
    for w in range(a.shape[-1]):
        t = a[..., w] + b[..., w]
        c1 = t < a[..., w]
        t2 = t + carry
        carry = (c1 | (t2 < t)).astype(np.uint64)
        out[..., w] = t2
    return out


def _shl1(x: np.ndarray, fill: int) -> np.ndarray:
    """Big-integer ``(x << 1) | fill`` over the last axis."""
    out = x << _ONE
    out[..., 0] |= np.uint64(fill)
    if x.shape[-1] > 1:
        out[..., 1:] |= x[..., :-1] >> np.uint64(63)
    return out


def _chunk(pa: np.ndarray, la: np.ndarray, B: np.ndarray, lb: np.ndarray, words: int) -> np.ndarray:
    P, Q = len(la), len(lb)
    peq = _peq(pa, la, words)
    vp = np.full((P, Q, words), np.iinfo(np.uint64).max, dtype=np.uint64)
    vn = np.zeros((P, Q, words), dtype=np.uint64)
    score = np.broadcast_to(la[:, None], (P, Q)).copy()
    last = np.maximum(la - 1, 0)
    word_i, bit_i = (last // 64)[:, None], (last % 64).astype(np.uint64)[:, None]
    rows = np.arange(P)[:, None]
    for j in range(B.shape[1]):
        active = (j < lb)[None, :, None]
        x = peq[:, B[:, j], :]  # [P, Q, W]
        d0 = (_add(x & vp, vp) ^ vp) | x | vn
        hp = vn | ~(d0 | vp)
        hn = d0 & vp
        cols = np.arange(Q)[None, :]
        up = ((hp[rows, cols, word_i] >> bit_i) & _ONE).astype(np.int64)
        down = ((hn[rows, cols, word_i] >> bit_i) & _ONE).astype(np.int64)
        score += (up - down) * active[..., 0]
        hp, hn = _shl1(hp, 1), _shl1(hn, 0)
        vp = np.where(active, hn | ~(d0 | hp), vp)
        vn = np.where(active, hp & d0, vn)
    score[la == 0, :] = lb[None, :]
    return score


def levenshtein(a: Sequence[str], b: Sequence[str], max_pairs: int = 1 << 19) -> np.ndarray:
    """Edit distances ``[len(a), len(b)]`` (int64) between every string of ``a`` and every string of ``b``.

    Strings must be ASCII/latin-1 (protein letters). Work is chunked over ``a`` so that at most
    ``max_pairs`` pairs are held at once.
    """
    out = np.zeros((len(a), len(b)), dtype=np.int64)
    if not a or not b:
        return out
    A, la = _codes(a)
    B, lb = _codes(b)
    words = max(1, -(-int(la.max()) // 64))
    step = max(1, max_pairs // len(b))
    for s in range(0, len(a), step):
        out[s : s + step] = _chunk(A[s : s + step], la[s : s + step], B, lb, words)
    return out
