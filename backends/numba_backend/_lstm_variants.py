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

from ._activations import JIT, sigmoid, tanh
from ._lstm import padding_row
from ._products import matmul_add


@njit(**JIT)
def _gate_offsets(H, coupled):
    """Offsets of the f, g and o blocks in a row of gates."""
    return (0, H, 2 * H) if coupled else (H, 2 * H, 3 * H)


@njit(**JIT)
def _gate_row(gates, bias, p, coupled, c, m, c_out, tanh_c_out, store, k):
    """Fused pass over one active batch row at one step: activates ``gates`` (pre-activations
    without the bias) in place, updates ``c`` and writes ``m = o * tanh(c)``."""
    H = c.shape[0]
    f_at, g_at, o_at = _gate_offsets(H, coupled)
    # i and f see c_{t-1} through their peepholes.
    if not coupled:
        for j in range(H):
            gates[j] = sigmoid(gates[j] + bias[j] + p[0, j] * c[j], k)
    for j in range(H):
        gates[f_at + j] = sigmoid(gates[f_at + j] + bias[f_at + j] + p[1, j] * c[j], k)
    for j in range(H):
        gates[g_at + j] = tanh(gates[g_at + j] + bias[g_at + j], k)
    if coupled:
        for j in range(H):
            f = gates[j]
            c[j] = f * c[j] + (k[0] - f) * gates[g_at + j]  # c = f c + (1 - f) g
    else:
        for j in range(H):
            c[j] = gates[f_at + j] * c[j] + gates[j] * gates[g_at + j]  # c = f c + i g
    # o sees c_t.
    for j in range(H):
        gates[o_at + j] = sigmoid(gates[o_at + j] + bias[o_at + j] + p[2, j] * c[j], k)
    for j in range(H):
        tanh_c_out[j] = tanh(c[j], k)
    for j in range(H):
        m[j] = gates[o_at + j] * tanh_c_out[j]
    if store:
        c_out[:] = c


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
    projected = np.empty((hi - lo if blas and project else 0, h.shape[1]), dtype=G.dtype)
    for t in range(T):
        # G[t, lo:hi] += h[lo:hi] @ w_hh.T
        matmul_add(blas, h, w_hh.T, w_hh_t, G[t], lo, hi, product)
        for b in range(lo, hi):
            c_out, tanh_c_out = (c_all[t, b], tanh_c_all[t, b]) if store else (scratch, scratch)
            if t < lens[b]:
                _gate_row(G[t, b], bias, p, coupled, c[b], m[b], c_out, tanh_c_out, store, k)
            else:
                padding_row(c[b], y[t, b], c_out, tanh_c_out, store)
        if project:
            # h_new[lo:hi] = m[lo:hi] @ w_hr.T
            h_new[lo:hi] = 0
            matmul_add(blas, m, w_hr.T, w_hr_t, h_new, lo, hi, projected)
        source = h_new if project else m
        for b in range(lo, hi):
            if t < lens[b]:
                h[b] = source[b]
                y[t, b] = source[b]


@njit(**JIT)
def _backward_row(dm, gates, c_prev, tanh_c, p, coupled, dc, dgates):
    """Elementwise backward of one active row at one step, from ``dm``, the gradient of
    ``m = o * tanh(c)``: fills ``dgates`` and turns ``dc`` into the cell gradient carried to
    the step before."""
    H = dc.shape[0]
    f_at, g_at, o_at = _gate_offsets(H, coupled)
    one = dc.dtype.type(1)
    for j in range(H):
        # (1) m = o * tanh(c): dm reaches o and, through tanh, c; o saw c_t by its peephole.
        o, tc = gates[o_at + j], tanh_c[j]
        do = dm[j] * tc * (o * (one - o))
        dgates[o_at + j] = do
        dc[j] += dm[j] * o * (one - tc * tc) + do * p[2, j]
    # (2) c = f * c_prev + i * g, then through each gate's activation; coupled gates have
    # i = 1 - f, so f also receives -dc * g.
    if coupled:
        for j in range(H):
            f, g = gates[j], gates[g_at + j]
            df = dc[j] * (c_prev[j] - g) * (f * (one - f))
            dgates[j] = df
            dgates[g_at + j] = dc[j] * (one - f) * (one - g * g)
            # (3) the cell gradient carried to step t - 1, also through the f peephole.
            dc[j] = dc[j] * f + df * p[1, j]
    else:
        for j in range(H):
            i, f, g = gates[j], gates[f_at + j], gates[g_at + j]
            di = dc[j] * g * (i * (one - i))
            df = dc[j] * c_prev[j] * (f * (one - f))
            dgates[j] = di
            dgates[f_at + j] = df
            dgates[g_at + j] = dc[j] * i * (one - g * g)
            # (3) the cell gradient carried to step t - 1, also through the i and f peepholes.
            dc[j] = dc[j] * f + df * p[1, j] + di * p[0, j]


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
    projected = np.empty((hi - lo if blas and project else 0, dm.shape[1]), dtype=dh.dtype)
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
            dm[lo:hi] = 0
            matmul_add(blas, dh, w_hr, w_hr, dm, lo, hi, projected)
        source = dm if project else dh
        for b in range(lo, hi):
            if t < lens[b]:
                c_prev = c_all[t - 1, b] if t > 0 else c0[b]
                _backward_row(source[b], gates[t, b], c_prev, tanh_c_all[t, b], p, coupled, dc[b], dG[t, b])
                dh[b] = 0
            else:
                dG[t, b] = 0
        # dh[lo:hi] += dG[t, lo:hi] @ w_hh (a finished row's dG is zero: it keeps its dh)
        matmul_add(blas, dG[t], w_hh, w_hh, dh, lo, hi, product)
