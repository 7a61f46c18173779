"""Compiled matrix products of the time loops: the hand loop for small batch chunks, and the
one entry every cell calls, which picks BLAS or the hand loop."""

import numpy as np
from numba import njit

from ._activations import JIT


@njit(**JIT)
def _vecmat_add(a, m, out):
    """``out += a @ m`` for one row ``a`` (K,) and a C-contiguous ``m`` (K, N), as axpys over
    the rows of ``m``, four at a time so that each pass over ``out`` does four
    multiply-adds per element."""
    K, N = m.shape
    k = 0
    while k + 4 <= K:
        a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
        for n in range(N):
            out[n] += a0 * m[k, n] + a1 * m[k + 1, n] + a2 * m[k + 2, n] + a3 * m[k + 3, n]
        k += 4
    while k < K:
        for n in range(N):
            out[n] += a[k] * m[k, n]
        k += 1


@njit(**JIT)
def _rows_matmul_add(A, m, out, lo, hi):
    """``out[lo:hi] += A[lo:hi] @ m`` by hand: rows in pairs, so that each load of ``m``
    (from L2 once it outgrows L1) serves two rows; an odd last row on its own."""
    K, N = m.shape
    b = lo
    while b + 2 <= hi:
        k = 0
        while k + 4 <= K:
            a0, a1, a2, a3 = A[b, k], A[b, k + 1], A[b, k + 2], A[b, k + 3]
            e0, e1, e2, e3 = A[b + 1, k], A[b + 1, k + 1], A[b + 1, k + 2], A[b + 1, k + 3]
            for n in range(N):
                w0, w1, w2, w3 = m[k, n], m[k + 1, n], m[k + 2, n], m[k + 3, n]
                out[b, n] += a0 * w0 + a1 * w1 + a2 * w2 + a3 * w3
                out[b + 1, n] += e0 * w0 + e1 * w1 + e2 * w2 + e3 * w3
            k += 4
        while k < K:
            for n in range(N):
                out[b, n] += A[b, k] * m[k, n]
                out[b + 1, n] += A[b + 1, k] * m[k, n]
            k += 1
        b += 2
    if b < hi:
        _vecmat_add(A[b], m, out[b])


@njit(**JIT)
def matmul_add(blas, A, m_blas, m_hand, out, lo, hi, scratch):
    """``out[lo:hi] += A[lo:hi] @ m``, the recurrent product of every cell.

    With ``blas``, BLAS computes the product into ``scratch``, this thread's own
    ``(hi - lo, N)`` buffer, from ``m_blas`` (any layout, e.g. a transposed view); else the
    hand loop reads ``m_hand``, the same matrix C-contiguous, and needs no scratch.
    """
    if blas:
        # scratch = A[lo:hi] @ m
        np.dot(A[lo:hi], m_blas, scratch)
        for r in range(hi - lo):
            for n in range(out.shape[1]):
                out[lo + r, n] += scratch[r, n]
    else:
        _rows_matmul_add(A, m_hand, out, lo, hi)
