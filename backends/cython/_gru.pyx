"""GRU forward and backward kernels: one layer, one direction, the whole sequence.

The algorithm of the NumPy oracle's ``gru_forward`` / ``gru_backward``, gates r, z, n in
PyTorch's formulation, with the time loops run without the GIL:

Forward
    1. one GEMM for the input projection of all steps, ``G = x @ w_ih.T``;
    2. per step, one recurrent product ``A = h @ w_hh.T`` into its own (B, 3H) buffer
       (``b_hn`` sits inside the reset product ``r * (A_n + b_hn)``, so ``A`` cannot be
       added to ``G``), and one fused pass per sequence (``gru_cell.h``) that adds the
       biases, applies the activations and writes ``h`` straight into ``y[t]``.

Backward
    1. per step, one fused pass per sequence that fills the gradients of the recurrent
       (``dA[t]``) and input-side (``dG[t]``) pre-activations, and one product
       ``dh += dA[t] @ w_hh``;
    2. after the loop, the weight and input gradients as single GEMMs over all steps.

The per-step products are those every cell shares (``_loops.pxd``). ``forward`` and
``backward`` check every shape, dtype and contiguity before any compiled loop runs.
"""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from _loops cimport add_recurrent, backprop_recurrent, project_input, weight_gradients

from lstmcpu._buffers import BUFFERS

from ._entry import check, check_input, check_lengths, check_sizes, hidden_size, input_chunk

cdef extern from "gru_cell.h" nogil:
    void gru_cell_forward_f32(int H, float* gates, const float* bias, const float* hidden,
                              const float* b_hn, const float* h_prev, float* hn_out,
                              float* h_out)
    void gru_cell_forward_f64(int H, double* gates, const double* bias, const double* hidden,
                              const double* b_hn, const double* h_prev, double* hn_out,
                              double* h_out)
    void gru_cell_backward_f32(int H, const float* gates, const float* hn, const float* h_prev,
                               const float* dy, float* dh, float* d_hidden, float* d_input)
    void gru_cell_backward_f64(int H, const double* gates, const double* hn,
                               const double* h_prev, const double* dy, double* dh,
                               double* d_hidden, double* d_input)


cdef class GRUCache:
    """What :func:`backward` needs, kept by :func:`forward` (opaque: read-only from Python).

    ``gates`` holds the activations r, z, n ``(T, B, 3H)``; ``hn`` the recurrent n part
    ``A_n + b_hn`` at every step ``(T, B, H)``; the inputs are referenced, not copied.
    """

    cdef readonly object x, w_ih, w_hh, h0, lengths, gates, hn, y


# ---------------------------------------------------------------------------- forward


def forward(x, w_ih, w_hh, b, b_hn, h0, lengths=None, need_cache=True):
    """GRU forward over a whole sequence (the :meth:`lstmcpu.Backend.gru_forward` contract).

    Parameters
    ----------
    x : ndarray (T, B, I), float32 or float64, C-contiguous
    w_ih : ndarray (3H, I), gate blocks r, z, n
    w_hh : ndarray (3H, H)
    b : ndarray (3H,), ``(b_ir + b_hr, b_iz + b_hz, b_in)``
    b_hn : ndarray (H,)
    h0 : ndarray (B, H)
    lengths : int array (B,) with values in [1, T], optional
    need_cache : bool, default=True

    Returns
    -------
    y : ndarray (T, B, H)
    h_n : ndarray (B, H)
    cache : GRUCache or None

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _gru
    >>> T, B, I, H = 3, 2, 4, 5
    >>> x = np.ones((T, B, I), np.float32)
    >>> w_ih, w_hh = np.full((3 * H, I), 0.1, np.float32), np.zeros((3 * H, H), np.float32)
    >>> b, b_hn, h0 = np.zeros(3 * H, np.float32), np.zeros(H, np.float32), np.zeros((B, H), np.float32)
    >>> y, h_n, cache = _gru.forward(x, w_ih, w_hh, b, b_hn, h0, need_cache=False)
    >>> y.shape, cache is None, bool(np.array_equal(y[-1], h_n))
    ((3, 2, 5), True, True)
    """
    dtype = check_input(x)
    T, B, I = x.shape
    H = hidden_size(w_hh, 3)
    check_sizes(T, B, I, H, 3)
    check(x, "x", (T, B, I), dtype)
    check(w_ih, "w_ih", (3 * H, I), dtype)
    check(w_hh, "w_hh", (3 * H, H), dtype)
    check(b, "b", (3 * H,), dtype)
    check(b_hn, "b_hn", (H,), dtype)
    check(h0, "h0", (B, H), dtype)
    lengths = check_lengths(lengths, T, B)

    gates = BUFFERS.empty((input_chunk(T, B, need_cache), B, 3 * H), dtype)
    hidden = BUFFERS.empty((B, 3 * H), dtype)
    hn = BUFFERS.empty((T if need_cache else 1, B, H), dtype)
    y = BUFFERS.zeros((T, B, H), dtype) if lengths is not None else BUFFERS.empty((T, B, H), dtype)
    h_state = h0.copy() if lengths is not None else None
    _forward_loop(x, w_ih, w_hh, b, b_hn, h0, lengths, gates, hidden, hn, y, h_state)
    h_n = h_state if lengths is not None else y[T - 1].copy()
    if not need_cache:
        return y, h_n, None
    cache = GRUCache()
    cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.lengths = x, w_ih, w_hh, h0, lengths
    cache.gates, cache.hn, cache.y = gates, hn, y
    return y, h_n, cache


cdef inline void _cell_forward(int H, floating* gates, const floating* bias,
                               const floating* hidden, const floating* b_hn,
                               const floating* h_prev, floating* hn_out,
                               floating* h_out) noexcept nogil:
    if floating is float:
        gru_cell_forward_f32(H, gates, bias, hidden, b_hn, h_prev, hn_out, h_out)
    else:
        gru_cell_forward_f64(H, gates, bias, hidden, b_hn, h_prev, hn_out, h_out)


def _forward_loop(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[::1] b,
                  const floating[::1] b_hn, const floating[:, ::1] h0,
                  const int64_t[::1] lengths, floating[:, :, ::1] gates,
                  floating[:, ::1] hidden, floating[:, :, ::1] hn, floating[:, :, ::1] y,
                  floating[:, ::1] h_state):
    """The time loop, without the GIL.

    ``gates`` holds ``gates.shape[0]`` steps: all of them, or a chunk that the input
    projection refills every that many steps. ``hn`` holds every step, or one reused slot.
    """
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int G = 3 * H, t, r, g, u
    cdef int chunk = gates.shape[0]
    cdef bint masked = lengths is not None, every_step = hn.shape[0] == T
    cdef const floating* h_prev
    with nogil:
        for t in range(T):
            g = t % chunk
            if g == 0:
                project_input(t, T, B, I, G, chunk, &x[0, 0, 0], &w_ih[0, 0], &gates[0, 0, 0])
            if masked:
                h_prev = &h_state[0, 0]
            else:
                h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            u = t if every_step else 0
            # NumPy: hidden = h_prev @ w_hh.T
            memset(&hidden[0, 0], 0, <size_t> B * G * sizeof(floating))
            add_recurrent(t, B, H, G, &w_hh[0, 0], h_prev, &hidden[0, 0], G)
            for r in range(B):
                if masked and t >= lengths[r]:
                    continue  # past this sequence's end: state unchanged, output stays zero
                _cell_forward(H, &gates[g, r, 0], &b[0], &hidden[r, 0], &b_hn[0],
                              h_prev + <size_t> r * H, &hn[u, r, 0], &y[t, r, 0])
                if masked:
                    memcpy(&h_state[r, 0], &y[t, r, 0], H * sizeof(floating))


# ---------------------------------------------------------------------------- backward


def backward(dy, dh_n, GRUCache cache not None):
    """Backpropagation through time (the :meth:`lstmcpu.Backend.gru_backward` contract).

    Parameters
    ----------
    dy : ndarray (T, B, H); entries past a sequence's length are ignored
    dh_n : ndarray (B, H)
    cache : GRUCache, from :func:`forward` with ``need_cache=True``

    Returns
    -------
    dx : (T, B, I), dw_ih : (3H, I), dw_hh : (3H, H), db : (3H,), db_hn : (H,), dh0 : (B, H)

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _gru
    >>> T, B, I, H = 3, 2, 4, 5
    >>> rng = np.random.default_rng(0)
    >>> x, w_ih = rng.standard_normal((T, B, I)), rng.standard_normal((3 * H, I))
    >>> w_hh, b, b_hn = rng.standard_normal((3 * H, H)), np.zeros(3 * H), np.zeros(H)
    >>> h0 = np.zeros((B, H))
    >>> y, h_n, cache = _gru.forward(x, w_ih, w_hh, b, b_hn, h0)
    >>> dx, dw_ih, dw_hh, db, db_hn, dh0 = _gru.backward(np.ones_like(y), h0, cache)
    >>> dx.shape, dw_hh.shape, db_hn.shape
    ((3, 2, 4), (15, 5), (5,))
    """
    x = cache.x
    T, B, I = x.shape
    H = cache.w_hh.shape[1]
    dtype = x.dtype
    check(dy, "dy", (T, B, H), dtype)
    check(dh_n, "dh_n", (B, H), dtype)
    d_hidden = BUFFERS.empty((T, B, 3 * H), dtype)
    d_input = BUFFERS.empty((T, B, 3 * H), dtype)
    dx = BUFFERS.empty((T, B, I), dtype)
    dw_ih = BUFFERS.empty((3 * H, I), dtype)
    dw_hh = BUFFERS.empty((3 * H, H), dtype)
    db = BUFFERS.empty(3 * H, dtype)
    dh = dh_n.copy()
    _backward_loop(dy, x, cache.w_ih, cache.w_hh, cache.h0, cache.lengths, cache.gates,
                   cache.hn, cache.y, d_hidden, d_input, dh, dx, dw_ih, dw_hh, db)
    db_hn = d_hidden[:, :, 2 * H :].sum(axis=(0, 1))
    return dx, dw_ih, dw_hh, db, db_hn, dh


cdef inline void _cell_backward(int H, const floating* gates, const floating* hn,
                                const floating* h_prev, const floating* dy, floating* dh,
                                floating* d_hidden, floating* d_input) noexcept nogil:
    if floating is float:
        gru_cell_backward_f32(H, gates, hn, h_prev, dy, dh, d_hidden, d_input)
    else:
        gru_cell_backward_f64(H, gates, hn, h_prev, dy, dh, d_hidden, d_input)


def _backward_loop(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                   const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                   const floating[:, ::1] h0, const int64_t[::1] lengths,
                   const floating[:, :, ::1] gates, const floating[:, :, ::1] hn,
                   const floating[:, :, ::1] y, floating[:, :, ::1] d_hidden,
                   floating[:, :, ::1] d_input, floating[:, ::1] dh,
                   floating[:, :, ::1] dx, floating[:, ::1] dw_ih, floating[:, ::1] dw_hh,
                   floating[::1] db):
    """The reverse time loop and the gradient GEMMs, without the GIL."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int G = 3 * H, t, r
    cdef bint masked = lengths is not None
    cdef const floating* h_prev
    with nogil:
        for t in range(T - 1, -1, -1):
            # y[t - 1] is h_{t-1} for every sequence still active at t.
            h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            for r in range(B):
                if masked and t >= lengths[r]:
                    # Padding: no gradient reaches the gates; dh passes through.
                    memset(&d_hidden[t, r, 0], 0, G * sizeof(floating))
                    memset(&d_input[t, r, 0], 0, G * sizeof(floating))
                    continue
                _cell_backward(H, &gates[t, r, 0], &hn[t, r, 0], h_prev + <size_t> r * H,
                               &dy[t, r, 0], &dh[r, 0], &d_hidden[t, r, 0], &d_input[t, r, 0])
            # The cell pass set dh to its direct path dh_t * z on the rows it used.
            # NumPy: dh += d_hidden[t] @ w_hh
            backprop_recurrent(t, B, H, G, &w_hh[0, 0], &d_hidden[t, 0, 0], G, &dh[0, 0])
        weight_gradients(T, B, I, H, G, &d_input[0, 0, 0], &d_hidden[0, 0, 0], &x[0, 0, 0],
                         &w_ih[0, 0], &h0[0, 0], &y[0, 0, 0], &dx[0, 0, 0], &dw_ih[0, 0],
                         &dw_hh[0, 0], &db[0])
