"""Elman RNN forward and backward kernels (tanh or relu): one layer, one direction.

The algorithm of the NumPy oracle's ``rnn_forward`` / ``rnn_backward``, with the time loops
run without the GIL:

Forward
    1. one GEMM for the input projection of all steps, ``A = x @ w_ih.T``;
    2. per step, one product ``A[t] += h @ w_hh.T`` and one fused pass per sequence
       (``rnn_cell.h``) that adds the bias, applies the activation and writes ``h``
       straight into ``y[t]``.

Backward
    1. per step, one fused pass per sequence that fills ``dA[t]`` and one product
       ``dh = dA[t] @ w_hh``;
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

cdef extern from "rnn_cell.h" nogil:
    void rnn_tanh_forward_f32(int H, float* act, const float* bias, float* h_out)
    void rnn_tanh_forward_f64(int H, double* act, const double* bias, double* h_out)
    void rnn_relu_forward_f32(int H, float* act, const float* bias, float* h_out)
    void rnn_relu_forward_f64(int H, double* act, const double* bias, double* h_out)
    void rnn_tanh_backward_f32(int H, const float* act, const float* dy, float* dh,
                               float* dact)
    void rnn_tanh_backward_f64(int H, const double* act, const double* dy, double* dh,
                               double* dact)
    void rnn_relu_backward_f32(int H, const float* act, const float* dy, float* dh,
                               float* dact)
    void rnn_relu_backward_f64(int H, const double* act, const double* dy, double* dh,
                               double* dact)

NONLINEARITIES = ("tanh", "relu")


cdef class RNNCache:
    """What :func:`backward` needs, kept by :func:`forward` (opaque: read-only from Python).

    ``act`` holds the activation ``h`` of every step before masking ``(T, B, H)``; the
    inputs are referenced, not copied.
    """

    cdef readonly object x, w_ih, w_hh, h0, lengths, act, y
    cdef readonly bint relu


# ---------------------------------------------------------------------------- forward


def forward(x, w_ih, w_hh, b, h0, lengths=None, need_cache=True, nonlinearity="tanh"):
    """RNN forward over a whole sequence (the :meth:`lstmcpu.Backend.rnn_forward` contract).

    Parameters
    ----------
    x : ndarray (T, B, I), float32 or float64, C-contiguous
    w_ih : ndarray (H, I)
    w_hh : ndarray (H, H)
    b : ndarray (H,), the fused bias ``b_ih + b_hh``
    h0 : ndarray (B, H)
    lengths : int array (B,) with values in [1, T], optional
    need_cache : bool, default=True
    nonlinearity : {"tanh", "relu"}, default="tanh"

    Returns
    -------
    y : ndarray (T, B, H)
    h_n : ndarray (B, H)
    cache : RNNCache or None

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _rnn
    >>> T, B, I, H = 3, 2, 4, 5
    >>> x = np.ones((T, B, I), np.float32)
    >>> w_ih, w_hh = np.full((H, I), 0.1, np.float32), np.zeros((H, H), np.float32)
    >>> b, h0 = np.zeros(H, np.float32), np.zeros((B, H), np.float32)
    >>> y, h_n, cache = _rnn.forward(x, w_ih, w_hh, b, h0, nonlinearity="relu")
    >>> y.shape, float(h_n[0, 0])
    ((3, 2, 5), 0.4000000059604645)
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    dtype = check_input(x)
    T, B, I = x.shape
    H = hidden_size(w_hh, 1)
    check_sizes(T, B, I, H, 1)
    check(x, "x", (T, B, I), dtype)
    check(w_ih, "w_ih", (H, I), dtype)
    check(w_hh, "w_hh", (H, H), dtype)
    check(b, "b", (H,), dtype)
    check(h0, "h0", (B, H), dtype)
    lengths = check_lengths(lengths, T, B)

    act = BUFFERS.empty((input_chunk(T, B, need_cache), B, H), dtype)
    y = BUFFERS.zeros((T, B, H), dtype) if lengths is not None else BUFFERS.empty((T, B, H), dtype)
    h_state = h0.copy() if lengths is not None else None
    relu = nonlinearity == "relu"
    _forward_loop(x, w_ih, w_hh, b, h0, lengths, act, y, h_state, relu)
    h_n = h_state if lengths is not None else y[T - 1].copy()
    if not need_cache:
        return y, h_n, None
    cache = RNNCache()
    cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.lengths = x, w_ih, w_hh, h0, lengths
    cache.act, cache.y, cache.relu = act, y, relu
    return y, h_n, cache


cdef inline void _cell_forward(bint relu, int H, floating* act, const floating* bias,
                               floating* h_out) noexcept nogil:
    if floating is float:
        if relu:
            rnn_relu_forward_f32(H, act, bias, h_out)
        else:
            rnn_tanh_forward_f32(H, act, bias, h_out)
    else:
        if relu:
            rnn_relu_forward_f64(H, act, bias, h_out)
        else:
            rnn_tanh_forward_f64(H, act, bias, h_out)


def _forward_loop(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[::1] b,
                  const floating[:, ::1] h0, const int64_t[::1] lengths,
                  floating[:, :, ::1] act, floating[:, :, ::1] y, floating[:, ::1] h_state,
                  bint relu):
    """The time loop, without the GIL.

    ``act`` holds ``act.shape[0]`` steps: all of them, or a chunk that the input
    projection refills every that many steps.
    """
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int t, r, g
    cdef int chunk = act.shape[0]
    cdef bint masked = lengths is not None
    cdef const floating* h_prev
    with nogil:
        for t in range(T):
            g = t % chunk
            if g == 0:
                project_input(t, T, B, I, H, chunk, &x[0, 0, 0], &w_ih[0, 0], &act[0, 0, 0])
            if masked:
                h_prev = &h_state[0, 0]
            else:
                h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            # NumPy: act[g] += h_prev @ w_hh.T
            add_recurrent(t, B, H, H, &w_hh[0, 0], h_prev, &act[g, 0, 0], H)
            for r in range(B):
                if masked and t >= lengths[r]:
                    continue  # past this sequence's end: state unchanged, output stays zero
                _cell_forward(relu, H, &act[g, r, 0], &b[0], &y[t, r, 0])
                if masked:
                    memcpy(&h_state[r, 0], &y[t, r, 0], H * sizeof(floating))


# ---------------------------------------------------------------------------- backward


def backward(dy, dh_n, RNNCache cache not None):
    """Backpropagation through time (the :meth:`lstmcpu.Backend.rnn_backward` contract).

    Parameters
    ----------
    dy : ndarray (T, B, H); entries past a sequence's length are ignored
    dh_n : ndarray (B, H)
    cache : RNNCache, from :func:`forward` with ``need_cache=True``

    Returns
    -------
    dx : (T, B, I), dw_ih : (H, I), dw_hh : (H, H), db : (H,), dh0 : (B, H)

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _rnn
    >>> T, B, I, H = 3, 2, 4, 5
    >>> rng = np.random.default_rng(0)
    >>> x, w_ih = rng.standard_normal((T, B, I)), rng.standard_normal((H, I))
    >>> w_hh, b, h0 = rng.standard_normal((H, H)), np.zeros(H), np.zeros((B, H))
    >>> y, h_n, cache = _rnn.forward(x, w_ih, w_hh, b, h0)
    >>> dx, dw_ih, dw_hh, db, dh0 = _rnn.backward(np.ones_like(y), h0, cache)
    >>> dx.shape, dw_hh.shape
    ((3, 2, 4), (5, 5))
    """
    x = cache.x
    T, B, I = x.shape
    H = cache.w_hh.shape[1]
    dtype = x.dtype
    check(dy, "dy", (T, B, H), dtype)
    check(dh_n, "dh_n", (B, H), dtype)
    dact = BUFFERS.empty((T, B, H), dtype)
    dx = BUFFERS.empty((T, B, I), dtype)
    dw_ih = BUFFERS.empty((H, I), dtype)
    dw_hh = BUFFERS.empty((H, H), dtype)
    db = BUFFERS.empty(H, dtype)
    dh = dh_n.copy()
    _backward_loop(dy, x, cache.w_ih, cache.w_hh, cache.h0, cache.lengths, cache.act, cache.y,
                   cache.relu, dact, dh, dx, dw_ih, dw_hh, db)
    return dx, dw_ih, dw_hh, db, dh


cdef inline void _cell_backward(bint relu, int H, const floating* act, const floating* dy,
                                floating* dh, floating* dact) noexcept nogil:
    if floating is float:
        if relu:
            rnn_relu_backward_f32(H, act, dy, dh, dact)
        else:
            rnn_tanh_backward_f32(H, act, dy, dh, dact)
    else:
        if relu:
            rnn_relu_backward_f64(H, act, dy, dh, dact)
        else:
            rnn_tanh_backward_f64(H, act, dy, dh, dact)


def _backward_loop(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                   const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                   const floating[:, ::1] h0, const int64_t[::1] lengths,
                   const floating[:, :, ::1] act, const floating[:, :, ::1] y, bint relu,
                   floating[:, :, ::1] dact, floating[:, ::1] dh, floating[:, :, ::1] dx,
                   floating[:, ::1] dw_ih, floating[:, ::1] dw_hh, floating[::1] db):
    """The reverse time loop and the gradient GEMMs, without the GIL."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int t, r
    cdef bint masked = lengths is not None
    with nogil:
        for t in range(T - 1, -1, -1):
            for r in range(B):
                if masked and t >= lengths[r]:
                    # Padding: no gradient reaches the pre-activation; dh passes through.
                    memset(&dact[t, r, 0], 0, H * sizeof(floating))
                    continue
                _cell_backward(relu, H, &act[t, r, 0], &dy[t, r, 0], &dh[r, 0], &dact[t, r, 0])
            # The cell pass zeroed dh on the rows it used; padded rows keep theirs.
            # NumPy: dh += dact[t] @ w_hh
            backprop_recurrent(t, B, H, H, &w_hh[0, 0], &dact[t, 0, 0], H, &dh[0, 0])
        weight_gradients(T, B, I, H, H, &dact[0, 0, 0], &dact[0, 0, 0], &x[0, 0, 0],
                         &w_ih[0, 0], &h0[0, 0], &y[0, 0, 0], &dx[0, 0, 0], &dw_ih[0, 0],
                         &dw_hh[0, 0], &db[0])
