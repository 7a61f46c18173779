"""Compiled time loops of the Elman RNN, ``h' = act(x W_ih^T + b + h W_hh^T)`` with act
tanh or relu, one batch chunk ``lo:hi`` per call."""

import numpy as np
from numba import njit

from ._activations import JIT
from ._products import matmul_add
from ._rnn_gates import gate_gradient_row, gate_row


@njit(**JIT)
def forward_rows(lo, hi, blas, G, w_hh, w_hh_t, bias, relu, h, lens, y, k):
    """The whole forward time loop for the batch rows ``lo:hi``: ``G`` holds ``x W_ih^T`` and
    receives the activations. Products go through BLAS when ``blas``, else the panel kernel
    over ``w_hh_t``, the packed panels of ``w_hh.T``."""
    T, _, H = G.shape
    product = np.empty((hi - lo if blas else 0, H), dtype=G.dtype)  # this thread's own
    for t in range(T):
        # G[t, lo:hi] += h[lo:hi] @ w_hh.T
        matmul_add(blas, h, w_hh.T, w_hh_t, G[t], lo, hi, product)
        for b in range(lo, hi):
            if t < lens[b]:
                gate_row(G[t, b], bias, relu, h[b], y[t, b], k)
            else:
                y[t, b] = 0


@njit(**JIT)
def backward_rows(lo, hi, blas, dG, dy, act, w_hh, relu, lens, dh):
    """The whole backward time loop for the batch rows ``lo:hi``: per step the activation's
    derivative and ``dh = dG[t] @ w_hh`` (BLAS when ``blas``, else the panel kernel)."""
    T, _, H = dG.shape
    product = np.empty((hi - lo if blas else 0, H), dtype=dh.dtype)  # this thread's own
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            if t < lens[b]:
                gate_gradient_row(dy[t, b], act[t, b], relu, dh[b], dG[t, b])
            else:
                dG[t, b] = 0  # a finished row keeps its dh
        # dh[lo:hi] += dG[t, lo:hi] @ w_hh
        matmul_add(blas, dG[t], w_hh, w_hh, dh, lo, hi, product)
