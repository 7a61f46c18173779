"""LSTM forward and backward kernels: one layer, one direction, the whole sequence.

The algorithm of the NumPy oracle (``lstmcpu.backends.numpy_backend``), with the time loops
run without the GIL:

Forward
    1. one GEMM for the input projection of all steps, ``G = x @ w_ih.T``;
    2. per step, one product ``G[t] += h @ w_hh.T`` and one fused pass per sequence
       (:c:func:`lstm_cell_forward_*` in ``lstm_cell.h``) that adds the bias, applies the
       activations and updates ``c`` and ``h``, writing ``h`` straight into ``y[t]``.

Backward
    1. per step, one fused pass per sequence that fills ``dG[t]`` and one product
       ``dh = dG[t] @ w_hh``;
    2. after the loop, the weight and input gradients as single GEMMs over all steps.

The per-step products go to BLAS GEMM, except for batches of at most ``SMALL_BATCH`` (4)
sequences: there a BLAS call costs more than its arithmetic, and the hand-written kernels of
``lstm_recurrent.h`` stream ``w_hh`` once per step for the whole batch instead.

``forward`` and ``backward`` are the Python entry: they check every shape, dtype and
contiguity before any compiled loop runs, so no call can read or write out of bounds.
"""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from _blas cimport gemm

cdef extern from "lstm_recurrent.h" nogil:
    int SMALL_BATCH "LSTMCPU_SMALL_BATCH"
    void lstm_recurrent_forward_f32(int nb, int H, const float* w_hh, const float* h,
                                    float* G, int ldg, int reverse)
    void lstm_recurrent_forward_f64(int nb, int H, const double* w_hh, const double* h,
                                    double* G, int ldg, int reverse)
    void lstm_recurrent_backward_f32(int nb, int H, const float* w_hh, const float* dG,
                                     int ldg, float* dh, int reverse)
    void lstm_recurrent_backward_f64(int nb, int H, const double* w_hh, const double* dG,
                                     int ldg, double* dh, int reverse)

cdef extern from "lstm_cell.h" nogil:
    void lstm_cell_forward_f32(int H, float* gates, const float* bias, const float* c_prev,
                               float* c_out, float* tanh_c, float* h_out)
    void lstm_cell_forward_f64(int H, double* gates, const double* bias,
                               const double* c_prev, double* c_out, double* tanh_c,
                               double* h_out)
    void lstm_cell_backward_f32(int H, const float* gates, const float* c_prev,
                                const float* tanh_c, const float* dy, float* dh, float* dc,
                                float* dgates)
    void lstm_cell_backward_f64(int H, const double* gates, const double* c_prev,
                                const double* tanh_c, const double* dy, double* dh,
                                double* dc, double* dgates)

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Rows (steps x sequences) of the input projection per GEMM in inference: enough for BLAS
# to run at full speed, few enough that the gate buffer stays small.
INPUT_CHUNK_ROWS = 1024
# BLAS takes 32-bit sizes: every matrix dimension handed to it must fit.
_INT_MAX = 2 ** 31 - 1


cdef class LSTMCache:
    """What :func:`backward` needs, kept by :func:`forward` (opaque: read-only from Python).

    ``gates`` holds the post-activation gates ``(T, B, 4H)``; ``c`` and ``tanh_c`` the cell
    state and its tanh at every step ``(T, B, H)``; the inputs are referenced, not copied.
    """

    cdef readonly object x, w_ih, w_hh, h0, c0, lengths, gates, c, tanh_c, y


# ---------------------------------------------------------------------------- checks


def _check(a, name, shape, dtype):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the dtype of x), got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")


def _check_sizes(T, B, I, H):
    if min(T, B, I, H) < 1:
        raise ValueError(
            f"every size must be at least 1, got T={T}, B={B}, input size I={I}, hidden size H={H}"
        )
    if max(T * B, 4 * H, I) > _INT_MAX:
        raise ValueError(
            f"sizes too large for 32-bit BLAS: T*B={T * B}, 4H={4 * H}, I={I} (limit {_INT_MAX})"
        )


def _check_lengths(lengths, T, B):
    """Return ``lengths`` as a contiguous int64 array, or None when every sequence is full."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be an integer array, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {arr.shape}")
    if arr.min() < 1 or arr.max() > T:
        raise ValueError(f"lengths must lie in [1, {T}], got min {arr.min()} and max {arr.max()}")
    if np.all(arr == T):
        return None
    return np.ascontiguousarray(arr, dtype=np.int64)


# ---------------------------------------------------------------------------- forward


def forward(x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True):
    """LSTM forward over a whole sequence (the :meth:`lstmcpu.Backend.forward` contract).

    Parameters
    ----------
    x : ndarray (T, B, I), float32 or float64, C-contiguous
    w_ih : ndarray (4H, I)
    w_hh : ndarray (4H, H)
    b : ndarray (4H,), the fused bias ``b_ih + b_hh``
    h0, c0 : ndarray (B, H)
    lengths : int array (B,) with values in [1, T], optional
    need_cache : bool, default=True

    Returns
    -------
    y : ndarray (T, B, H)
    h_n, c_n : ndarray (B, H)
    cache : LSTMCache or None

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _lstm
    >>> T, B, I, H = 3, 2, 4, 5
    >>> x = np.ones((T, B, I), np.float32)
    >>> w_ih, w_hh = np.full((4 * H, I), 0.1, np.float32), np.zeros((4 * H, H), np.float32)
    >>> b, h0, c0 = np.zeros(4 * H, np.float32), np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    >>> y, h_n, c_n, cache = _lstm.forward(x, w_ih, w_hh, b, h0, c0, need_cache=False)
    >>> y.shape, cache is None, bool(np.array_equal(y[-1], h_n))
    ((3, 2, 5), True, True)
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError(f"x must be a 3-D ndarray (T, B, I), got {getattr(x, 'shape', type(x))}")
    dtype = x.dtype
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got {dtype}")
    if not isinstance(w_hh, np.ndarray) or w_hh.ndim != 2 or w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"w_hh must be a 2-D ndarray of shape (4H, H), got {getattr(w_hh, 'shape', type(w_hh))}")
    T, B, I = x.shape
    H = w_hh.shape[1]
    _check_sizes(T, B, I, H)
    _check(x, "x", (T, B, I), dtype)
    _check(w_ih, "w_ih", (4 * H, I), dtype)
    _check(w_hh, "w_hh", (4 * H, H), dtype)
    _check(b, "b", (4 * H,), dtype)
    _check(h0, "h0", (B, H), dtype)
    _check(c0, "c0", (B, H), dtype)
    lengths = _check_lengths(lengths, T, B)

    # Training keeps every step's gates; inference projects the input a chunk of steps at a
    # time into a buffer it reuses, so its memory does not grow with T.
    chunk = T if need_cache else min(T, max(1, INPUT_CHUNK_ROWS // B))
    gates = np.empty((chunk, B, 4 * H), dtype)
    y = np.zeros((T, B, H), dtype) if lengths is not None else np.empty((T, B, H), dtype)
    # Without a cache, c lives in two alternating (B, H) slots and tanh(c) in one.
    c_all = np.empty((T if need_cache else 2, B, H), dtype)
    tanh_c = np.empty((T if need_cache else 1, B, H), dtype)
    h_state = h0.copy() if lengths is not None else None
    last = _forward_loop(x, w_ih, w_hh, b, h0, c0, lengths, gates, y, c_all, tanh_c, h_state,
                         need_cache)
    h_n = h_state if lengths is not None else y[T - 1].copy()
    c_n = c_all[last].copy()
    if not need_cache:
        return y, h_n, c_n, None
    cache = LSTMCache()
    cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.c0 = x, w_ih, w_hh, h0, c0
    cache.lengths, cache.gates, cache.c, cache.tanh_c, cache.y = lengths, gates, c_all, tanh_c, y
    return y, h_n, c_n, cache


cdef inline void _cell_forward(int H, floating* gates, const floating* bias,
                               const floating* c_prev, floating* c_out, floating* tanh_c,
                               floating* h_out) noexcept nogil:
    if floating is float:
        lstm_cell_forward_f32(H, gates, bias, c_prev, c_out, tanh_c, h_out)
    else:
        lstm_cell_forward_f64(H, gates, bias, c_prev, c_out, tanh_c, h_out)


cdef inline void _recurrent_forward(int nb, int H, const floating* w_hh, const floating* h,
                                    floating* G, int ldg, int reverse) noexcept nogil:
    if floating is float:
        lstm_recurrent_forward_f32(nb, H, w_hh, h, G, ldg, reverse)
    else:
        lstm_recurrent_forward_f64(nb, H, w_hh, h, G, ldg, reverse)


def _forward_loop(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[::1] b,
                  const floating[:, ::1] h0, const floating[:, ::1] c0,
                  const int64_t[::1] lengths, floating[:, :, ::1] gates,
                  floating[:, :, ::1] y, floating[:, :, ::1] c_all,
                  floating[:, :, ::1] tanh_c, floating[:, ::1] h_state, bint need_cache):
    """The time loop, without the GIL; returns the slot of ``c_all`` holding ``c_n``.

    ``gates`` holds ``gates.shape[0]`` steps: all of them, or a chunk that the input
    projection refills every that many steps.
    """
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int G = 4 * H, t, r, g, s = 0, s_prev = 0, u = 0
    cdef int chunk = gates.shape[0]
    cdef bint masked = lengths is not None
    cdef const floating* h_prev
    cdef const floating* c_prev
    with nogil:
        for t in range(T):
            g = t % chunk
            if g == 0:
                # NumPy: gates[:m] = (x[t:t + m].reshape(m * B, I) @ w_ih.T).reshape(m, B, 4H)
                #        with m = min(chunk, T - t)
                gemm(False, True, min(chunk, T - t) * B, G, I, 1, &x[t, 0, 0], I, &w_ih[0, 0], I,
                     0, &gates[0, 0, 0], G)
            if masked:
                h_prev = &h_state[0, 0]
            else:
                h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            c_prev = &c0[0, 0] if t == 0 else &c_all[s_prev, 0, 0]
            s = t if need_cache else t & 1
            u = t if need_cache else 0
            # NumPy: gates[g] += h_prev @ w_hh.T
            if B <= SMALL_BATCH:
                _recurrent_forward(B, H, &w_hh[0, 0], h_prev, &gates[g, 0, 0], G, t & 1)
            else:
                gemm(False, True, B, G, H, 1, h_prev, H, &w_hh[0, 0], H, 1, &gates[g, 0, 0], G)
            for r in range(B):
                if masked and t >= lengths[r]:
                    # Past this sequence's end: state unchanged, output stays zero.
                    memcpy(&c_all[s, r, 0], c_prev + r * H, H * sizeof(floating))
                    continue
                _cell_forward(H, &gates[g, r, 0], &b[0], c_prev + r * H, &c_all[s, r, 0],
                              &tanh_c[u, r, 0], &y[t, r, 0])
                if masked:
                    memcpy(&h_state[r, 0], &y[t, r, 0], H * sizeof(floating))
            s_prev = s
    return s


# ---------------------------------------------------------------------------- backward


def backward(dy, dh_n, dc_n, LSTMCache cache not None):
    """Backpropagation through time (the :meth:`lstmcpu.Backend.backward` contract).

    Parameters
    ----------
    dy : ndarray (T, B, H); entries past a sequence's length are ignored
    dh_n, dc_n : ndarray (B, H)
    cache : LSTMCache, from :func:`forward` with ``need_cache=True``

    Returns
    -------
    dx : (T, B, I), dw_ih : (4H, I), dw_hh : (4H, H), db : (4H,), dh0, dc0 : (B, H)

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.cython import _lstm
    >>> T, B, I, H = 3, 2, 4, 5
    >>> rng = np.random.default_rng(0)
    >>> x, w_ih = rng.standard_normal((T, B, I)), rng.standard_normal((4 * H, I))
    >>> w_hh, b = rng.standard_normal((4 * H, H)), np.zeros(4 * H)
    >>> h0 = c0 = np.zeros((B, H))
    >>> y, h_n, c_n, cache = _lstm.forward(x, w_ih, w_hh, b, h0, c0)
    >>> dx, dw_ih, dw_hh, db, dh0, dc0 = _lstm.backward(np.ones_like(y), h0, c0, cache)
    >>> dx.shape, dw_hh.shape
    ((3, 2, 4), (20, 5))
    """
    x = cache.x
    T, B, I = x.shape
    H = cache.w_hh.shape[1]
    dtype = x.dtype
    _check(dy, "dy", (T, B, H), dtype)
    _check(dh_n, "dh_n", (B, H), dtype)
    _check(dc_n, "dc_n", (B, H), dtype)
    dgates = np.empty((T, B, 4 * H), dtype)
    dx = np.empty((T, B, I), dtype)
    dw_ih = np.empty((4 * H, I), dtype)
    dw_hh = np.empty((4 * H, H), dtype)
    db = np.empty(4 * H, dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    _backward_loop(dy, x, cache.w_ih, cache.w_hh, cache.h0, cache.c0, cache.lengths,
                   cache.gates, cache.c, cache.tanh_c, cache.y,
                   dgates, dh, dc, dx, dw_ih, dw_hh, db)
    return dx, dw_ih, dw_hh, db, dh, dc


cdef inline void _cell_backward(int H, const floating* gates, const floating* c_prev,
                                const floating* tanh_c, const floating* dy, floating* dh,
                                floating* dc, floating* dgates) noexcept nogil:
    if floating is float:
        lstm_cell_backward_f32(H, gates, c_prev, tanh_c, dy, dh, dc, dgates)
    else:
        lstm_cell_backward_f64(H, gates, c_prev, tanh_c, dy, dh, dc, dgates)


cdef inline void _recurrent_backward(int nb, int H, const floating* w_hh, const floating* dG,
                                     int ldg, floating* dh, int reverse) noexcept nogil:
    if floating is float:
        lstm_recurrent_backward_f32(nb, H, w_hh, dG, ldg, dh, reverse)
    else:
        lstm_recurrent_backward_f64(nb, H, w_hh, dG, ldg, dh, reverse)


def _backward_loop(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                   const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                   const floating[:, ::1] h0, const floating[:, ::1] c0,
                   const int64_t[::1] lengths, const floating[:, :, ::1] gates,
                   const floating[:, :, ::1] c_all, const floating[:, :, ::1] tanh_c,
                   const floating[:, :, ::1] y, floating[:, :, ::1] dgates,
                   floating[:, ::1] dh, floating[:, ::1] dc, floating[:, :, ::1] dx,
                   floating[:, ::1] dw_ih, floating[:, ::1] dw_hh, floating[::1] db):
    """The reverse time loop and the gradient GEMMs, without the GIL."""
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int G = 4 * H, t, r, j
    cdef bint masked = lengths is not None
    cdef const floating* c_prev
    cdef const floating* row
    with nogil:
        for t in range(T - 1, -1, -1):
            c_prev = &c0[0, 0] if t == 0 else &c_all[t - 1, 0, 0]
            for r in range(B):
                if masked and t >= lengths[r]:
                    # Padding: no gradient reaches the gates; dh and dc pass through.
                    memset(&dgates[t, r, 0], 0, G * sizeof(floating))
                    continue
                _cell_backward(H, &gates[t, r, 0], c_prev + r * H, &tanh_c[t, r, 0],
                               &dy[t, r, 0], &dh[r, 0], &dc[r, 0], &dgates[t, r, 0])
            # The cell pass zeroed dh on the rows it used; padded rows keep theirs.
            # NumPy: dh += dgates[t] @ w_hh
            if B <= SMALL_BATCH:
                _recurrent_backward(B, H, &w_hh[0, 0], &dgates[t, 0, 0], G, &dh[0, 0], t & 1)
            else:
                gemm(False, False, B, H, G, 1, &dgates[t, 0, 0], G, &w_hh[0, 0], H, 1, &dh[0, 0], H)
        # NumPy: dw_ih = dgates.reshape(T * B, 4H).T @ x.reshape(T * B, I)
        gemm(True, False, G, I, T * B, 1, &dgates[0, 0, 0], G, &x[0, 0, 0], I, 0, &dw_ih[0, 0], I)
        # NumPy: dw_hh = dgates[0].T @ h0
        gemm(True, False, G, H, B, 1, &dgates[0, 0, 0], G, &h0[0, 0], H, 0, &dw_hh[0, 0], H)
        if T > 1:
            # NumPy: dw_hh += dgates[1:].reshape(-1, 4H).T @ y[:-1].reshape(-1, H)
            gemm(True, False, G, H, (T - 1) * B, 1, &dgates[1, 0, 0], G, &y[0, 0, 0], H, 1,
                 &dw_hh[0, 0], H)
        # NumPy: dx = (dgates.reshape(T * B, 4H) @ w_ih).reshape(T, B, I)
        gemm(False, False, T * B, I, G, 1, &dgates[0, 0, 0], G, &w_ih[0, 0], I, 0, &dx[0, 0, 0], I)
        # db = dgates.sum(axis=(0, 1))
        memset(&db[0], 0, G * sizeof(floating))
        for t in range(T):
            for r in range(B):
                row = &dgates[t, r, 0]
                for j in range(G):
                    db[j] += row[j]
