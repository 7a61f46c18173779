"""Compiled time loops of the GRU (PyTorch's formulation, gates r, z, n), one batch chunk
``lo:hi`` per call::

    r = sigmoid(G_r + b_r + h W_hr^T),  z = sigmoid(G_z + b_z + h W_hz^T)
    n = tanh(G_n + b_n + r * (h W_hn^T + b_hn)),  h' = n + z * (h - n)
"""

import numpy as np
from numba import njit

from ._activations import JIT
from ._gru_gates import gate_gradient_row, gate_row
from ._products import matmul, matmul_add


@njit(**JIT)
def forward_rows(lo, hi, blas, G, w_hh, w_hh_t, bias, b_hn, h, lens, y, hn_all, store, hidden, k):
    """The whole forward time loop for the batch rows ``lo:hi``.

    ``hidden`` (B, 3H) is a work buffer whose rows ``lo:hi`` belong to this call; ``hn_all``
    (T, B, H) receives ``h W_hn^T + b_hn`` when ``store``. Products go through BLAS when
    ``blas``, else by the panel kernel over ``w_hh_t``, the packed panels of ``w_hh.T``.
    """
    T = G.shape[0]
    scratch = np.empty(h.shape[1], dtype=G.dtype)
    for t in range(T):
        # hidden[lo:hi] = h[lo:hi] @ w_hh.T
        matmul(blas, h, w_hh.T, w_hh_t, hidden, lo, hi)
        for b in range(lo, hi):
            if t < lens[b]:
                gate_row(G[t, b], hidden[b], bias, b_hn, h[b], y[t, b], hn_all[t, b] if store else scratch, k)
            else:
                y[t, b] = 0


@njit(**JIT)
def backward_rows(lo, hi, blas, dG, dy, gates, hn_all, y, h0, w_hh, lens, dh, dn_input):
    """The whole backward time loop for the batch rows ``lo:hi``: per step the elementwise
    pass and ``dh += dG[t] @ w_hh`` (BLAS when ``blas``, else the panel kernel)."""
    T = dG.shape[0]
    product = np.empty((hi - lo if blas else 0, dh.shape[1]), dtype=dh.dtype)  # this thread's own
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            if t < lens[b]:
                h_prev = y[t - 1, b] if t > 0 else h0[b]  # h_{t-1}: b was active at t - 1
                gate_gradient_row(dy[t, b], gates[t, b], hn_all[t, b], h_prev, dh[b], dG[t, b], dn_input[t, b])
            else:
                dG[t, b] = 0
                dn_input[t, b] = 0
        # dh[lo:hi] += dG[t, lo:hi] @ w_hh (a finished row's dG is zero: it keeps its dh)
        matmul_add(blas, dG[t], w_hh, w_hh, dh, lo, hi, product)
