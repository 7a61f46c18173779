"""Compiled time loops of the LSTM variants, one batch chunk ``lo:hi`` per call: peephole
connections, the coupled input-forget gate (``i = 1 - f``) and the projection
``h = (o * tanh(c)) @ w_hr.T``, in any combination.

One kernel serves every combination, chosen by its arguments rather than by compiling a
specialisation each: ``peephole`` is a (3, H) array (zeros without peepholes: adding
``0 * c`` changes nothing), ``coupled`` a flag, ``w_hr`` a (P, H) array or a (0, H) one
without projection. The gate blocks are i, f, g, o, or f, g, o when coupled.
"""

import numpy as np
from numba import njit

from ._activations import JIT
from ._lstm import padding_row
from ._products import matmul, matmul_add
from ._variant_gates import gate_gradient_row, gate_row


@njit(**JIT)
def forward_rows(lo, hi, blas, G, w_hh, w_hh_t, bias, p, coupled, w_hr, w_hr_t, h, c, lens, y,
                 c_all, tanh_c_all, store, m, h_new, k):  # fmt: skip
    """The whole forward time loop for the batch rows ``lo:hi``.

    ``G`` holds ``x W_ih^T`` and receives the activated gates; ``m`` (B, H) and ``h_new``
    (B, P) are work buffers whose rows ``lo:hi`` belong to this call. Products go through
    BLAS when ``blas``, else the panel kernel over ``w_hh_t`` and ``w_hr_t`` (packed panels of
    the transposes).
    """
    T = G.shape[0]
    project = w_hr.shape[0] > 0
    scratch = np.empty(c.shape[1], dtype=G.dtype)
    product = np.empty((hi - lo if blas else 0, G.shape[2]), dtype=G.dtype)  # this thread's own
    for t in range(T):
        # G[t, lo:hi] += h[lo:hi] @ w_hh.T
        matmul_add(blas, h, w_hh.T, w_hh_t, G[t], lo, hi, product)
        for b in range(lo, hi):
            c_out, tanh_c_out = (c_all[t, b], tanh_c_all[t, b]) if store else (scratch, scratch)
            if t < lens[b]:
                gate_row(G[t, b], bias, p[0], p[1], p[2], coupled, c[b], m[b], c_out, tanh_c_out, store, k)
            else:
                padding_row(c[b], y[t, b], c_out, tanh_c_out, store)
        if project:
            # h_new[lo:hi] = m[lo:hi] @ w_hr.T
            matmul(blas, m, w_hr.T, w_hr_t, h_new, lo, hi)
        source = h_new if project else m
        for b in range(lo, hi):
            if t < lens[b]:
                h[b] = source[b]
                y[t, b] = source[b]


@njit(**JIT)
def backward_rows(lo, hi, blas, dG, dy, gates, c_all, tanh_c_all, c0, w_hh, p, coupled, w_hr, lens,
                  dh, dc, dh_all, dm):  # fmt: skip
    """The whole backward time loop for the batch rows ``lo:hi``.

    With a projection, ``dh_all`` (T, B, P) receives the total gradient of ``h`` at every step
    (for ``dw_hr`` after the loop) and ``dm`` (B, H) is a work buffer; products go through
    BLAS when ``blas``, else the panel kernel.
    """
    T = dG.shape[0]
    project = w_hr.shape[0] > 0
    product = np.empty((hi - lo if blas else 0, dh.shape[1]), dtype=dh.dtype)  # this thread's own
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            if t < lens[b]:
                dh[b] += dy[t, b]
                if project:
                    dh_all[t, b] = dh[b]
            elif project:
                dh_all[t, b] = 0
        if project:
            # dm[lo:hi] = dh[lo:hi] @ w_hr  (h = m @ w_hr.T)
            matmul(blas, dh, w_hr, w_hr, dm, lo, hi)
        source = dm if project else dh
        for b in range(lo, hi):
            if t < lens[b]:
                c_prev = c_all[t - 1, b] if t > 0 else c0[b]
                gate_gradient_row(source[b], gates[t, b], c_prev, tanh_c_all[t, b], p[0], p[1], p[2], coupled, dc[b],
                                  dG[t, b])  # fmt: skip
                dh[b] = 0
            else:
                dG[t, b] = 0
        # dh[lo:hi] += dG[t, lo:hi] @ w_hh (a finished row's dG is zero: it keeps its dh)
        matmul_add(blas, dG[t], w_hh, w_hh, dh, lo, hi, product)
