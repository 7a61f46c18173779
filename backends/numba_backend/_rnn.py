"""Compiled time loops of the Elman RNN, ``h' = act(x W_ih^T + b + h W_hh^T)`` with act
tanh or relu, one batch chunk ``lo:hi`` per call."""

import numpy as np
from numba import njit

from ._activations import JIT, tanh
from ._products import matmul_add


@njit(**JIT)
def forward_rows(lo, hi, blas, G, w_hh, w_hh_t, bias, relu, h, lens, y, k):
    """The whole forward time loop for the batch rows ``lo:hi``: ``G`` holds ``x W_ih^T`` and
    receives the activations. Products go through BLAS when ``blas``, else the panel kernel
    over ``w_hh_t``, the packed panels of ``w_hh.T``."""
    T, _, H = G.shape
    zero = G.dtype.type(0)
    product = np.empty((hi - lo if blas else 0, H), dtype=G.dtype)  # this thread's own
    for t in range(T):
        # G[t, lo:hi] += h[lo:hi] @ w_hh.T
        matmul_add(blas, h, w_hh.T, w_hh_t, G[t], lo, hi, product)
        for b in range(lo, hi):
            a = G[t, b]
            if t >= lens[b]:
                y[t, b] = 0
            elif relu:
                for j in range(H):
                    a[j] = max(a[j] + bias[j], zero)
                    h[b, j] = a[j]
                    y[t, b, j] = a[j]
            else:
                for j in range(H):
                    a[j] = tanh(a[j] + bias[j], k)
                    h[b, j] = a[j]
                    y[t, b, j] = a[j]


@njit(**JIT)
def backward_rows(lo, hi, blas, dG, dy, act, w_hh, relu, lens, dh):
    """The whole backward time loop for the batch rows ``lo:hi``: per step the activation's
    derivative and ``dh = dG[t] @ w_hh`` (BLAS when ``blas``, else the panel kernel)."""
    T, _, H = dG.shape
    one, zero = dh.dtype.type(1), dh.dtype.type(0)
    product = np.empty((hi - lo if blas else 0, H), dtype=dh.dtype)  # this thread's own
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            a, d = act[t, b], dG[t, b]
            if t >= lens[b]:
                d[:] = 0  # a finished row keeps its dh
                continue
            if relu:
                for j in range(H):
                    d[j] = (dh[b, j] + dy[t, b, j]) if a[j] > zero else zero
            else:
                for j in range(H):
                    d[j] = (dh[b, j] + dy[t, b, j]) * (one - a[j] * a[j])
            dh[b] = 0
        # dh[lo:hi] += dG[t, lo:hi] @ w_hh
        matmul_add(blas, dG[t], w_hh, w_hh, dh, lo, hi, product)
