"""Compiled time loops of the plain LSTM (gates i, f, g, o), one batch chunk ``lo:hi`` per
call; :mod:`._lstm_variants` has peephole, coupled gates and projection."""

import numpy as np
from numba import njit

from ._activations import JIT
from ._lstm_gates import gate_gradient_row, gate_row
from ._lstm_step import fused_step
from ._products import copy_matrix, matmul_add, pack_rows, panel_matmul, panel_matmul_add, panel_width
from ._sync import team_parts, team_step_done


@njit(**JIT)
def padding_row(c, y, c_out, tanh_c_out, store):
    """A step past the sequence's length: state kept, output zero."""
    y[:] = 0
    if store:
        c_out[:] = c
        tanh_c_out[:] = 0


@njit(**JIT)
def forward_rows(lo, hi, blas, x, fused, G, xh_steps, w_hh, panels, bias, h, c, lens, y, c_all, tanh_c_all, store, k):
    """The whole forward time loop for the batch rows ``lo:hi``; ``G`` receives the activated
    gates.

    Unless ``fused``, ``G`` holds the input projection ``x W_ih^T`` of every step, and each
    step adds ``h W_hh^T`` to it, by BLAS when ``blas``, else by the panel kernel reading
    ``panels``, the packed ``W_hh^T``, then runs the gate pass row by row. When ``fused``
    (panel route), each step is :func:`~._lstm_step.fused_step`: both products at once,
    ``[x_t, h] [W_ih, W_hh]^T`` (``panels`` from :func:`~._lstm_step.pack_gate_groups`), the
    gate pass in the epilogue of each block of the product. Its input, ``[x_t, h_{t-1}]``
    of every row side by side, is one of the two steps of ``xh_steps``, and ``h_t`` goes to
    the other; the chunk's input projection thus runs on the chunk's thread, and an
    inference call keeps no gates (``G`` may have no step). Measured against PyTorch in one
    process (small preset, float32, 1 thread, medians of 9 interleaved rounds), computing
    the input projection with each step took the forward from 1.33 to 1.12 times PyTorch's
    time, keeping one step of gates in an inference call to 1.05 (the Cython backend at
    1.24-1.30 as the control). Unless ``fused``, ``xh_steps`` is not read. Without
    ``store``, ``c`` and ``tanh(c)`` are not kept.
    """
    T, I, H = x.shape[0], x.shape[2], h.shape[1]
    if fused:
        n_xh = xh_steps.shape[0]
        scratch = np.empty(8 * panel_width(G.dtype), dtype=G.dtype)  # i and f of a block's rows
        copy_matrix(h[lo:hi], xh_steps[0, lo:hi, I:])
        for t in range(T):
            xh, xh_next = xh_steps[t % n_xh], xh_steps[(t + 1) % n_xh]
            copy_matrix(x[t, lo:hi], xh[lo:hi, :I])
            fused_step(lo, hi, xh, panels, bias, c, xh_next, y, t, lens, store, G, c_all, tanh_c_all, scratch)
        copy_matrix(xh_steps[T % n_xh, lo:hi, I:], h[lo:hi])
        return
    scratch = np.empty(H, dtype=G.dtype)
    product = np.empty((hi - lo if blas else 0, G.shape[2]), dtype=G.dtype)  # this thread's own
    for t in range(T):
        g = G[t]  # this step's gates
        # g[lo:hi] += h[lo:hi] @ w_hh.T (rows past their length too: unused)
        matmul_add(blas, h, w_hh.T, panels, g, lo, hi, product)
        for b in range(lo, hi):
            c_out, tanh_c_out = (c_all[t, b], tanh_c_all[t, b]) if store else (scratch, scratch)
            if t < lens[b]:
                gate_row(g[b], bias, h[b], c[b], y[t, b], c_out, tanh_c_out, store, k)
            else:
                padding_row(c[b], y[t, b], c_out, tanh_c_out, store)


@njit(**JIT)
def prepare_unit_part(part, units, x, w_ih, w_hh, b, panels, input_panels, biases, own_gates):
    """What :func:`forward_unit_step` reads for the units ``units[part, 0]:units[part, 1]``,
    built by the thread that runs them before its first step: the part's gate rows (i, f,
    g, o of its ``n`` units) of ``w_hh`` packed into ``panels[part]``, of the bias into
    ``biases[part]``, and their input projection ``x @ w_ih[rows].T`` into ``own_gates``
    (T, B, 4n) by the panel kernel (``input_panels[part]`` receives the packed rows of
    ``w_ih``).

    One compiled call per thread, which holds no GIL. Measured on the online preset, 2
    threads, float32, a part's preparation: 280-300 us in Python (NumPy copies of the
    strided rows, 43-51 us for ``w_hh``'s; OpenBLAS for the projection, 123-129 us),
    130-140 compiled. The rows are packed straight from ``w_hh`` and ``w_ih``: copying
    them in the part's order first, then packing, took 287 us against 236 (timeit, best of
    7, in one of the machine's slow spells).
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    u0, u1 = units[part, 0], units[part, 1]
    n = u1 - u0
    rows = np.full(panels.shape[1] * panels.shape[3], -1, dtype=np.int64)  # packed row -> row of w_hh and w_ih
    for q in range(4):
        rows[q * n : (q + 1) * n] = np.arange(q * H + u0, q * H + u1)
        biases[part, q * n : (q + 1) * n] = b[q * H + u0 : q * H + u1]
    pack_rows(w_hh, rows, panels[part], 0)
    pack_rows(w_ih, rows, input_panels[part], 0)
    # own_gates = x2 @ w_ih[rows].T
    panel_matmul(x.reshape(T * B, I), input_panels[part], True, own_gates.reshape(T * B, 4 * n), 0, T * B)


@njit(**JIT)
def forward_unit_step(t, part, units, panels, biases, own_gates, scratch, G, h_steps, c, lens, y, c_all, tanh_c_all,
                      store, k):  # fmt: skip
    """Step ``t`` of the forward loop for the units ``units[part, 0]:units[part, 1]`` of every
    row, one part of :func:`forward_team` (a batch too small to cut into chunks has its
    units split between two threads instead): this part's gate rows, then the state update
    of its units.

    ``own_gates[part]`` (T, B, 4n) holds the input projection of the part's gate rows (the
    i, f, g, o rows of its ``n`` units, in that order) and receives their activations;
    ``panels[part]`` packs the transpose of the same rows of ``w_hh``, ``biases[part]``
    holds those of the bias (padded to the larger part); ``scratch`` stands in for the
    cache rows without ``store`` (nothing is written to it then). With ``store``, the
    activated gates go to their columns of ``G`` (T, B, 4H), the cache.
    ``h_steps`` (2, B, H) holds ``h0`` in its first half and receives ``h_t`` in
    ``h_steps[t % 2]``, so that a part writes ``h_{t+1}`` while the other may still read
    ``h_t``. Each output is computed by the same instructions as in :func:`forward_rows`
    on its unfused route: the results do not depend on the split.
    """
    B, H = c.shape
    u0, u1 = units[part, 0], units[part, 1]
    n = u1 - u0
    own = own_gates[part][t]
    bias = biases[part, : 4 * n]
    h, h_next = h_steps[t % 2], h_steps[(t + 1) % 2]
    # own += h @ w_part.T
    panel_matmul_add(h, panels[part], True, own, 0, B)
    for b in range(B):
        c_out, tanh_c_out = (c_all[t, b, u0:u1], tanh_c_all[t, b, u0:u1]) if store else (scratch[:n], scratch[:n])
        if t >= lens[b]:
            h_next[b, u0:u1] = h[b, u0:u1]
            padding_row(c[b, u0:u1], y[t, b, u0:u1], c_out, tanh_c_out, store)
            continue
        gate_row(own[b], bias, h_next[b, u0:u1], c[b, u0:u1], y[t, b, u0:u1], c_out, tanh_c_out, store, k)
        if store:
            for q in range(4):  # the activated gates, for the cache
                G[t, b, q * H + u0 : q * H + u1] = own[b, q * n : (q + 1) * n]


@njit(**JIT)
def backward_rows(lo, hi, blas, dG, dy, gates, c_all, tanh_c_all, c0, w_hh, lens, dh, dc):
    """The whole backward time loop for the batch rows ``lo:hi``; the products ``dG[t] @ w_hh``
    through BLAS when ``blas``, else through the panel kernel."""
    T = dG.shape[0]
    product = np.empty((hi - lo if blas else 0, dh.shape[1]), dtype=dh.dtype)  # this thread's own
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            if t < lens[b]:
                c_prev = c_all[t - 1, b] if t > 0 else c0[b]
                gate_gradient_row(dy[t, b], gates[t, b], c_prev, tanh_c_all[t, b], dh[b], dc[b], dG[t, b])
            else:
                dG[t, b, :] = 0
        # dh[lo:hi] += dG[t, lo:hi] @ w_hh: the whole gradient for active rows (zeroed by
        # gate_gradient_row); a finished row's dG is zero, so it keeps its dh.
        matmul_add(blas, dG[t], w_hh, w_hh, dh, lo, hi, product)


@njit(**JIT)
def backward_unit_step(i, part, units, w_parts, own, dG, dy, gates, c_all, tanh_c_all, c0, lens, dh, dc):
    """Step ``t = T - 1 - i`` of the backward loop for the units of ``part`` (see
    :func:`forward_unit_step`): the elementwise pass of its units, which fills their four
    columns of ``dG[t]``; then, once the other part has filled its own (the product reads
    the whole of ``dG[t]``, so this comes first in the next call), its units of ``dh``. A
    call with ``i = T`` does only the last product.

    ``w_parts[part]`` holds ``w_hh[:, units]`` (flat, C-contiguous) and ``own[part]`` the
    part's work buffers: its units of ``dh`` (B, n), then its gates and their gradients.
    """
    T, B, _ = dG.shape
    H = dh.shape[1]
    u0, u1 = units[part, 0], units[part, 1]
    n = u1 - u0
    dh_own = own[part, : B * n].reshape(B, n)
    g_own, d_own = own[part, B * n : B * n + 4 * n], own[part, B * n + 4 * n : B * n + 8 * n]
    if i > 0:
        # dh_own += dG[t + 1] @ w_hh[:, u0:u1]
        panel_matmul_add(dG[T - i], w_parts[part, : 4 * H * n].reshape(4 * H, n), False, dh_own, 0, B)
    if i == T:
        dh[:, u0:u1] = dh_own
        return
    t = T - 1 - i
    for b in range(B):
        if t >= lens[b]:
            for q in range(4):
                dG[t, b, q * H + u0 : q * H + u1] = 0
            continue
        c_prev = c_all[t - 1, b, u0:u1] if t > 0 else c0[b, u0:u1]
        for q in range(4):
            g_own[q * n : (q + 1) * n] = gates[t, b, q * H + u0 : q * H + u1]
        gate_gradient_row(dy[t, b, u0:u1], g_own, c_prev, tanh_c_all[t, b, u0:u1], dh_own[b], dc[b, u0:u1], d_own)
        for q in range(4):
            dG[t, b, q * H + u0 : q * H + u1] = d_own[q * n : (q + 1) * n]


@njit(**JIT)
def forward_team(me, n_steps, args, progress):
    """Thread ``me``'s share of the forward loop split by units: its parts of every step of
    :func:`forward_unit_step` (see :mod:`._sync`)."""
    for i in range(n_steps):
        first, end = team_parts(me, i, progress)
        if first == end:
            return
        for part in range(first, end):
            forward_unit_step(i, part, *args)
        team_step_done(me, i, progress)


@njit(**JIT)
def backward_team(me, n_steps, args, progress):
    """Thread ``me``'s share of the backward loop split by units (see :func:`forward_team`)."""
    for i in range(n_steps):
        first, end = team_parts(me, i, progress)
        if first == end:
            return
        for part in range(first, end):
            backward_unit_step(i, part, *args)
        team_step_done(me, i, progress)
