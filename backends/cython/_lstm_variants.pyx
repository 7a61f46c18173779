"""LSTM variant kernels: peepholes, coupled input-forget gate, projection (LSTMP).

The plain LSTM keeps its own kernels (``_lstm.pyx``); this module runs any combination of
the variants, with the same algorithm and the time loops run without the GIL:

Forward
    1. one GEMM for the input projection of all steps, ``G = x @ w_ih.T``;
    2. per step, one product ``G[t] += h @ w_hh.T``, one fused pass per sequence
       (``lstm_variant_cell.h``) giving ``m = o * tanh(c)``, and with
       a projection one more product ``h = m @ w_hr.T``.

Backward
    1. per step, with a projection ``dm = dh_t @ w_hr``, one fused pass per sequence that
       fills ``dG[t]``, and one product ``dh = dG[t] @ w_hh``;
    2. after the loop, the weight and input gradients as single GEMMs over all steps (and
       ``dw_hr`` as one more), the peephole gradients as sums over all steps.

Every product is one of ``_loops.pxd`` (BLAS, or the small-batch kernels of recurrent.h).
"""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from _blas cimport gemm
from _loops cimport add_recurrent, backprop_recurrent, project_input, weight_gradients

from lstmcpu._buffers import BUFFERS

from ._entry import check, check_input, check_lengths, check_sizes, hidden_size, input_chunk

# One pass per gate layout: four gates (peepholes and/or projection) or coupled (f, g, o).
cdef extern from "lstm_variant_cell.h" nogil:
    void lstm_peephole_forward_f32(int H, float* gates, const float* bias,
                                   const float* peephole, const float* c_prev, float* c_out,
                                   float* tanh_c, float* m_out)
    void lstm_peephole_forward_f64(int H, double* gates, const double* bias,
                                   const double* peephole, const double* c_prev,
                                   double* c_out, double* tanh_c, double* m_out)
    void lstm_coupled_forward_f32(int H, float* gates, const float* bias,
                                  const float* peephole, const float* c_prev, float* c_out,
                                  float* tanh_c, float* m_out)
    void lstm_coupled_forward_f64(int H, double* gates, const double* bias,
                                  const double* peephole, const double* c_prev,
                                  double* c_out, double* tanh_c, double* m_out)
    void lstm_peephole_backward_f32(int H, const float* gates, const float* peephole,
                                    const float* c_prev, const float* tanh_c, const float* dm,
                                    float* dc, float* dgates)
    void lstm_peephole_backward_f64(int H, const double* gates, const double* peephole,
                                    const double* c_prev, const double* tanh_c,
                                    const double* dm, double* dc, double* dgates)
    void lstm_coupled_backward_f32(int H, const float* gates, const float* peephole,
                                   const float* c_prev, const float* tanh_c, const float* dm,
                                   float* dc, float* dgates)
    void lstm_coupled_backward_f64(int H, const double* gates, const double* peephole,
                                   const double* c_prev, const double* tanh_c,
                                   const double* dm, double* dc, double* dgates)


cdef class LSTMVariantCache:
    """What :func:`backward` needs, kept by :func:`forward` (opaque: read-only from Python).

    As :class:`lstmcpu.backends.cython._lstm.LSTMCache`, plus the variant's parameters and,
    with a projection, ``m = o * tanh(c)`` at every step ``(T, B, H)``.
    """

    cdef readonly object x, w_ih, w_hh, h0, c0, lengths, gates, c, tanh_c, y
    cdef readonly object peephole, w_hr, m
    cdef readonly bint coupled, has_peephole


# ---------------------------------------------------------------------------- forward


def forward(x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True, peephole=None,
            coupled=False, w_hr=None):
    """LSTM variant forward (the :meth:`lstmcpu.Backend.forward` contract with ``peephole``,
    ``coupled`` or ``w_hr``).

    Parameters
    ----------
    x : ndarray (T, B, I), float32 or float64, C-contiguous
    w_ih : ndarray (G, I), G = 4H (gates i, f, g, o) or 3H when coupled (f, g, o)
    w_hh : ndarray (G, R), R = P with a projection, else H
    b : ndarray (G,)
    h0 : ndarray (B, R)
    c0 : ndarray (B, H)
    lengths : int array (B,) with values in [1, T], optional
    need_cache : bool, default=True
    peephole : ndarray (3, H) or None; rows i, f, o (row i unused when coupled)
    coupled : bool, default=False
    w_hr : ndarray (P, H) or None

    Returns
    -------
    y : ndarray (T, B, R)
    h_n : ndarray (B, R)
    c_n : ndarray (B, H)
    cache : LSTMVariantCache or None

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _lstm_variants
    >>> T, B, I, H, P = 3, 2, 4, 5, 2
    >>> x = np.ones((T, B, I))
    >>> w_ih, w_hh = np.full((3 * H, I), 0.1), np.zeros((3 * H, P))
    >>> b, h0, c0 = np.zeros(3 * H), np.zeros((B, P)), np.zeros((B, H))
    >>> y, h_n, c_n, cache = _lstm_variants.forward(x, w_ih, w_hh, b, h0, c0, coupled=True,
    ...                                             w_hr=np.ones((P, H)))
    >>> y.shape, c_n.shape
    ((3, 2, 2), (2, 5))
    """
    dtype = check_input(x)
    T, B, I = x.shape
    n_gates = 3 if coupled else 4
    if w_hr is None:
        H = R = hidden_size(w_hh, n_gates)
    else:
        if not isinstance(w_hr, np.ndarray) or w_hr.ndim != 2 or min(w_hr.shape) < 1:
            raise ValueError(f"w_hr must be a 2-D ndarray of shape (P, H), P and H at least 1, "
                             f"got {getattr(w_hr, 'shape', type(w_hr))}")
        R, H = w_hr.shape
        check(w_hr, "w_hr", (R, H), dtype)
    check_sizes(T, B, I, H, n_gates)
    check_sizes(T, B, I, R, n_gates)
    G = n_gates * H
    check(x, "x", (T, B, I), dtype)
    check(w_ih, "w_ih", (G, I), dtype)
    check(w_hh, "w_hh", (G, R), dtype)
    check(b, "b", (G,), dtype)
    check(h0, "h0", (B, R), dtype)
    check(c0, "c0", (B, H), dtype)
    if peephole is not None:
        check(peephole, "peephole", (3, H), dtype)
    peep = peephole if peephole is not None else BUFFERS.zeros((3, H), dtype)
    lengths = check_lengths(lengths, T, B)

    gates = BUFFERS.empty((input_chunk(T, B, need_cache), B, G), dtype)
    y = BUFFERS.zeros((T, B, R), dtype) if lengths is not None else BUFFERS.empty((T, B, R), dtype)
    # Without a cache, c lives in two alternating (B, H) slots, tanh(c) and m in one.
    steps = T if need_cache else 1
    c_all = BUFFERS.empty((T if need_cache else 2, B, H), dtype)
    tanh_c = BUFFERS.empty((steps, B, H), dtype)
    m = BUFFERS.empty((steps, B, H), dtype) if w_hr is not None else None
    h_state = h0.copy() if lengths is not None else None
    last = _forward_loop(x, w_ih, w_hh, b, peep, w_hr, h0, c0, lengths, gates, y, c_all, tanh_c,
                         m, h_state, coupled, need_cache)
    h_n = h_state if lengths is not None else y[T - 1].copy()
    c_n = c_all[last].copy()
    if not need_cache:
        return y, h_n, c_n, None
    cache = LSTMVariantCache()
    cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.c0 = x, w_ih, w_hh, h0, c0
    cache.lengths, cache.gates, cache.c, cache.tanh_c, cache.y = lengths, gates, c_all, tanh_c, y
    cache.peephole, cache.w_hr, cache.m = peep, w_hr, m
    cache.coupled, cache.has_peephole = coupled, peephole is not None
    return y, h_n, c_n, cache


cdef inline void _cell_forward(int H, bint coupled, floating* gates, const floating* bias,
                               const floating* peephole, const floating* c_prev,
                               floating* c_out, floating* tanh_c,
                               floating* m_out) noexcept nogil:
    if floating is float:
        if coupled:
            lstm_coupled_forward_f32(H, gates, bias, peephole, c_prev, c_out, tanh_c, m_out)
        else:
            lstm_peephole_forward_f32(H, gates, bias, peephole, c_prev, c_out, tanh_c, m_out)
    else:
        if coupled:
            lstm_coupled_forward_f64(H, gates, bias, peephole, c_prev, c_out, tanh_c, m_out)
        else:
            lstm_peephole_forward_f64(H, gates, bias, peephole, c_prev, c_out, tanh_c, m_out)


def _forward_loop(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[::1] b,
                  const floating[:, ::1] peephole, const floating[:, ::1] w_hr,
                  const floating[:, ::1] h0, const floating[:, ::1] c0,
                  const int64_t[::1] lengths, floating[:, :, ::1] gates,
                  floating[:, :, ::1] y, floating[:, :, ::1] c_all,
                  floating[:, :, ::1] tanh_c, floating[:, :, ::1] m,
                  floating[:, ::1] h_state, bint coupled, bint need_cache):
    """The time loop, without the GIL; returns the slot of ``c_all`` holding ``c_n``."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef int H = c0.shape[1], R = h0.shape[1], G = w_hh.shape[0]
    cdef int t, r, g, s = 0, s_prev = 0, u = 0
    cdef int chunk = gates.shape[0]
    cdef bint masked = lengths is not None, projected = w_hr is not None
    cdef const floating* h_prev
    cdef const floating* c_prev
    cdef floating* m_row
    with nogil:
        for t in range(T):
            g = t % chunk
            if g == 0:
                project_input(t, T, B, I, G, chunk, &x[0, 0, 0], &w_ih[0, 0], &gates[0, 0, 0])
            if masked:
                h_prev = &h_state[0, 0]
            else:
                h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            c_prev = &c0[0, 0] if t == 0 else &c_all[s_prev, 0, 0]
            s = t if need_cache else t & 1
            u = t if need_cache else 0
            # NumPy: gates[g] += h_prev @ w_hh.T
            add_recurrent(t, B, R, G, &w_hh[0, 0], h_prev, &gates[g, 0, 0], G)
            for r in range(B):
                m_row = &m[u, r, 0] if projected else &y[t, r, 0]
                if masked and t >= lengths[r]:
                    # Past this sequence's end: state unchanged, output zero.
                    memcpy(&c_all[s, r, 0], c_prev + <size_t> r * H, H * sizeof(floating))
                    if projected:
                        memset(m_row, 0, H * sizeof(floating))
                    continue
                _cell_forward(H, coupled, &gates[g, r, 0], &b[0], &peephole[0, 0],
                              c_prev + <size_t> r * H, &c_all[s, r, 0], &tanh_c[u, r, 0], m_row)
            if projected:
                # NumPy: y[t] = m[u] @ w_hr.T
                memset(&y[t, 0, 0], 0, <size_t> B * R * sizeof(floating))
                add_recurrent(t, B, H, R, &w_hr[0, 0], &m[u, 0, 0], &y[t, 0, 0], R)
            if masked:
                for r in range(B):
                    if t < lengths[r]:
                        memcpy(&h_state[r, 0], &y[t, r, 0], R * sizeof(floating))
            s_prev = s
    return s


# ---------------------------------------------------------------------------- backward


def backward(dy, dh_n, dc_n, LSTMVariantCache cache not None):
    """Backpropagation through time (the :meth:`lstmcpu.Backend.backward` contract).

    Returns
    -------
    dx : (T, B, I), dw_ih : (G, I), dw_hh : (G, R), db : (G,), dh0 : (B, R), dc0 : (B, H),
    and when the forward pass had peepholes or a projection, dpeephole : (3, H) and
    dw_hr : (P, H), None for the one not used.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _lstm_variants
    >>> T, B, I, H = 3, 2, 4, 5
    >>> rng = np.random.default_rng(0)
    >>> x, w_ih = rng.standard_normal((T, B, I)), rng.standard_normal((4 * H, I))
    >>> w_hh, b, p = rng.standard_normal((4 * H, H)), np.zeros(4 * H), np.zeros((3, H))
    >>> h0 = c0 = np.zeros((B, H))
    >>> y, h_n, c_n, cache = _lstm_variants.forward(x, w_ih, w_hh, b, h0, c0, peephole=p)
    >>> grads = _lstm_variants.backward(np.ones_like(y), h0, c0, cache)
    >>> len(grads), grads[6].shape, grads[7] is None
    (8, (3, 5), True)
    """
    x = cache.x
    T, B, I = x.shape
    G, R = cache.w_hh.shape
    H = cache.c0.shape[1]
    dtype = x.dtype
    projected = cache.w_hr is not None
    check(dy, "dy", (T, B, R), dtype)
    check(dh_n, "dh_n", (B, R), dtype)
    check(dc_n, "dc_n", (B, H), dtype)
    dgates = BUFFERS.empty((T, B, G), dtype)
    dx = BUFFERS.empty((T, B, I), dtype)
    dw_ih = BUFFERS.empty((G, I), dtype)
    dw_hh = BUFFERS.empty((G, R), dtype)
    db = BUFFERS.empty(G, dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    dm = BUFFERS.empty((B, H), dtype) if projected else None
    dh_all = BUFFERS.empty((T, B, R), dtype) if projected else None
    dw_hr = BUFFERS.empty((R, H), dtype) if projected else None
    _backward_loop(dy, x, cache.w_ih, cache.w_hh, cache.peephole, cache.w_hr, cache.h0,
                   cache.c0, cache.lengths, cache.gates, cache.c, cache.tanh_c, cache.y,
                   cache.m, cache.coupled, dgates, dh, dc, dm, dh_all, dx, dw_ih, dw_hh, db,
                   dw_hr)
    grads = (dx, dw_ih, dw_hh, db, dh, dc)
    if not (cache.has_peephole or projected):
        return grads
    dpeephole = None
    if cache.has_peephole:
        # i and f saw c_{t-1}, o saw c_t.
        c_prev = np.concatenate([cache.c0[None], cache.c[: T - 1]])
        k = 0 if cache.coupled else H
        dpeephole = BUFFERS.zeros((3, H), dtype)
        if not cache.coupled:
            dpeephole[0] = np.einsum("tbh,tbh->h", dgates[:, :, :H], c_prev)
        dpeephole[1] = np.einsum("tbh,tbh->h", dgates[:, :, k : k + H], c_prev)
        dpeephole[2] = np.einsum("tbh,tbh->h", dgates[:, :, k + 2 * H :], cache.c)
    return grads + (dpeephole, dw_hr)


cdef inline void _cell_backward(int H, bint coupled, const floating* gates,
                                const floating* peephole, const floating* c_prev,
                                const floating* tanh_c, const floating* dm, floating* dc,
                                floating* dgates) noexcept nogil:
    if floating is float:
        if coupled:
            lstm_coupled_backward_f32(H, gates, peephole, c_prev, tanh_c, dm, dc, dgates)
        else:
            lstm_peephole_backward_f32(H, gates, peephole, c_prev, tanh_c, dm, dc, dgates)
    else:
        if coupled:
            lstm_coupled_backward_f64(H, gates, peephole, c_prev, tanh_c, dm, dc, dgates)
        else:
            lstm_peephole_backward_f64(H, gates, peephole, c_prev, tanh_c, dm, dc, dgates)


def _backward_loop(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                   const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                   const floating[:, ::1] peephole, const floating[:, ::1] w_hr,
                   const floating[:, ::1] h0, const floating[:, ::1] c0,
                   const int64_t[::1] lengths, const floating[:, :, ::1] gates,
                   const floating[:, :, ::1] c_all, const floating[:, :, ::1] tanh_c,
                   const floating[:, :, ::1] y, const floating[:, :, ::1] m, bint coupled,
                   floating[:, :, ::1] dgates, floating[:, ::1] dh, floating[:, ::1] dc,
                   floating[:, ::1] dm, floating[:, :, ::1] dh_all, floating[:, :, ::1] dx,
                   floating[:, ::1] dw_ih, floating[:, ::1] dw_hh, floating[::1] db,
                   floating[:, ::1] dw_hr):
    """The reverse time loop and the gradient GEMMs, without the GIL."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef int H = c0.shape[1], R = h0.shape[1], G = w_hh.shape[0], t, r, j
    cdef bint masked = lengths is not None, projected = w_hr is not None
    cdef const floating* c_prev
    cdef floating* dm_rows
    with nogil:
        dm_rows = &dm[0, 0] if projected else &dh[0, 0]
        for t in range(T - 1, -1, -1):
            c_prev = &c0[0, 0] if t == 0 else &c_all[t - 1, 0, 0]
            # dh becomes dh_t = dh + dy[t] on the active rows; padding passes dh through.
            for r in range(B):
                if masked and t >= lengths[r]:
                    if projected:
                        memset(&dh_all[t, r, 0], 0, R * sizeof(floating))
                    continue
                for j in range(R):
                    dh[r, j] += dy[t, r, j]
                if projected:
                    memcpy(&dh_all[t, r, 0], &dh[r, 0], R * sizeof(floating))
            if projected:
                # NumPy: dm = dh @ w_hr
                memset(&dm[0, 0], 0, <size_t> B * H * sizeof(floating))
                backprop_recurrent(t, B, H, R, &w_hr[0, 0], &dh[0, 0], R, &dm[0, 0])
            for r in range(B):
                if masked and t >= lengths[r]:
                    memset(&dgates[t, r, 0], 0, G * sizeof(floating))
                    continue
                _cell_backward(H, coupled, &gates[t, r, 0], &peephole[0, 0],
                               c_prev + <size_t> r * H, &tanh_c[t, r, 0],
                               dm_rows + <size_t> r * H, &dc[r, 0], &dgates[t, r, 0])
                memset(&dh[r, 0], 0, R * sizeof(floating))
            # NumPy: dh += dgates[t] @ w_hh
            backprop_recurrent(t, B, R, G, &w_hh[0, 0], &dgates[t, 0, 0], G, &dh[0, 0])
        weight_gradients(T, B, I, R, G, &dgates[0, 0, 0], &dgates[0, 0, 0], &x[0, 0, 0],
                         &w_ih[0, 0], &h0[0, 0], &y[0, 0, 0], &dx[0, 0, 0], &dw_ih[0, 0],
                         &dw_hh[0, 0], &db[0])
        if projected:
            # NumPy: dw_hr = dh_all.reshape(T * B, P).T @ m.reshape(T * B, H)
            gemm(True, False, R, H, T * B, 1, &dh_all[0, 0, 0], R, &m[0, 0, 0], H, 0,
                 &dw_hr[0, 0], H)
