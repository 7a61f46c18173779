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

Both loops run on one or two threads (``_entry.step_threads``: two when the user's thread
limit allows two and the steps are long enough). The forward products run in
``lstm_step.h`` with no BLAS call: the input projection and, for batches of more than one,
the per-step product are register-blocked kernels over ``w_ih`` and ``w_hh`` packed once
per call (``lstm_panel.h``); a single sequence takes the fused step of ``lstm_fused.h`` on
``w_hh`` (packed for it once per call when the sequence is long enough). The backward steps
of a batch run there too (the panel kernel on ``w_hh.T``); a single sequence's take the
hand-written kernels of ``recurrent.h``; the
gradients after the loop are BLAS GEMMs (``_loops.pxd``), split in halves over the two
threads, each on one BLAS thread. The states do not depend on the number of threads; the
gradients only by the rounding of those GEMMs.

``forward`` and ``backward`` are the Python entry: they check every shape, dtype and
contiguity before any compiled loop runs, so no call can read or write out of bounds.
"""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from _loops cimport gradient_args, gradients_run

cdef extern from "lstm_step.h" nogil:
    ctypedef struct lstmcpu_team:
        void (*run)(void*, int, int) noexcept nogil
        void* arg
    ctypedef struct lstm_forward_args:
        int f64, B, H, n_in
        const void* w_hh
        const void* w_hh_fused
        int wide
        const void* w_ih_panels
        const void* bias
        const int64_t* lengths
        const void* x
        int rows
        int t
        const void* h_prev
        const void* c_prev
        void* gates
        void* c_out
        void* tanh_c
        void* h_out
    size_t lstm_panel_size_f32(int rows, int K)
    size_t lstm_panel_size_f64(int rows, int K)
    void lstm_pack_panels_f32(int rows, int K, const float* w, float* P)
    void lstm_pack_panels_f64(int rows, int K, const double* w, double* P)
    size_t lstm_fused_size_f32(int H)
    size_t lstm_fused_size_f64(int H)
    void lstm_fused_pack_f32(int H, const float* w, int wide, float* P)
    void lstm_fused_pack_f64(int H, const double* w, int wide, double* P)
    int LSTMCPU_HAS_AVX512()
    int LSTMCPU_FUSED_PACK_MIN_STEPS
    int lstmcpu_narrow_blocking
    void lstmcpu_team_start(lstmcpu_team* team, void (*run)(void*, int, int) noexcept nogil,
                            void* arg, int threads)
    void lstmcpu_team_stop(lstmcpu_team* team)
    void lstmcpu_team_step(lstmcpu_team* team)
    ctypedef struct lstm_backward_args:
        int f64, B, H, t
        const void* w_hh_t_panels
        const int64_t* lengths
        const void* c_prev
        const void* tanh_c
        const void* dy
        int cell
        const void* w_hh
        const void* dgates_next
        void* dh
        void* dc
        void* dgates
    void lstm_pack_panels_t_f32(int rows, int K, const float* wt, float* P)
    void lstm_pack_panels_t_f64(int rows, int K, const double* wt, double* P)
    void lstm_step_run(void* arg, int part, int parts) noexcept nogil
    void lstm_backward_step_run(void* arg, int part, int parts) noexcept nogil
    void lstm_forward_team_run(lstmcpu_team* team, int project)

from lstmcpu._buffers import BUFFERS

from ._entry import (check, check_input, check_lengths, check_sizes, hidden_size, input_chunk,
                     one_blas_thread, step_threads)


cdef class LSTMCache:
    """What :func:`backward` needs, kept by :func:`forward` (opaque: read-only from Python).

    ``gates`` holds the post-activation gates ``(T, B, 4H)``; ``c`` and ``tanh_c`` the cell
    state and its tanh at every step ``(T, B, H)``; the inputs are referenced, not copied.
    :func:`backward` spends the cache: it overwrites ``gates`` with their gradients (no
    second buffer of that size) and then lets go of ``gates``, ``c`` and ``tanh_c``.
    """

    cdef readonly object x, w_ih, w_hh, h0, c0, lengths, gates, c, tanh_c, y


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
    dtype = check_input(x)
    T, B, I = x.shape
    H = hidden_size(w_hh, 4)
    check_sizes(T, B, I, H, 4)
    check(x, "x", (T, B, I), dtype)
    check(w_ih, "w_ih", (4 * H, I), dtype)
    check(w_hh, "w_hh", (4 * H, H), dtype)
    check(b, "b", (4 * H,), dtype)
    check(h0, "h0", (B, H), dtype)
    check(c0, "c0", (B, H), dtype)
    lengths = check_lengths(lengths, T, B)

    gates = BUFFERS.empty((input_chunk(T, B, need_cache), B, 4 * H), dtype)
    y = BUFFERS.zeros((T, B, H), dtype) if lengths is not None else BUFFERS.empty((T, B, H), dtype)
    # Without a cache, c lives in two alternating (B, H) slots and tanh(c) in one.
    c_all = BUFFERS.empty((T if need_cache else 2, B, H), dtype)
    tanh_c = BUFFERS.empty((T if need_cache else 1, B, H), dtype)
    h_state = h0.copy() if lengths is not None else None
    if B > 1:
        w_hh_packed = _panels(w_hh)
    else:
        w_hh_packed = _fused_buffer(w_hh) if T >= LSTMCPU_FUSED_PACK_MIN_STEPS else None
    last = _forward_loop(x, w_ih, w_hh, b, h0, c0, lengths, gates, y, c_all, tanh_c, h_state,
                         _panels(w_ih), w_hh_packed, need_cache, step_threads(B, H, need_cache))
    h_n = h_state if lengths is not None else y[T - 1].copy()
    c_n = c_all[last].copy()
    if not need_cache:
        return y, h_n, c_n, None
    cache = LSTMCache()
    cache.x, cache.w_ih, cache.w_hh, cache.h0, cache.c0 = x, w_ih, w_hh, h0, c0
    cache.lengths, cache.gates, cache.c, cache.tanh_c, cache.y = lengths, gates, c_all, tanh_c, y
    return y, h_n, c_n, cache


cdef inline void _pack(int rows, int K, const floating* w, floating* panels) noexcept nogil:
    if floating is float:
        lstm_pack_panels_f32(rows, K, w, panels)
    else:
        lstm_pack_panels_f64(rows, K, w, panels)


def _set_narrow_blocking(bint narrow):
    """Whether the kernels of this module block as on a CPU without AVX-512 (the panel
    kernel's rows in blocks of 4, the single-sequence step's 256-bit reads) whatever the
    CPU: lets the tests run those paths on an AVX-512 machine. Not thread-safe: set it
    while no call runs."""
    global lstmcpu_narrow_blocking
    lstmcpu_narrow_blocking = narrow


def _panels(w):
    """An uninitialised buffer for ``w`` (rows, K) packed in panels (``lstm_panel.h``)."""
    rows, K = w.shape
    if w.dtype == np.float32:
        return BUFFERS.empty(lstm_panel_size_f32(rows, K), w.dtype)
    return BUFFERS.empty(lstm_panel_size_f64(rows, K), w.dtype)


cdef inline void _pack_fused(int H, const floating* w, int wide, floating* packed) noexcept nogil:
    if floating is float:
        lstm_fused_pack_f32(H, w, wide, packed)
    else:
        lstm_fused_pack_f64(H, w, wide, packed)


def _fused_buffer(w_hh):
    """An uninitialised buffer for ``w_hh`` (4H, H) packed for the single-sequence step
    (``lstm_fused.h``); one element when H is below a vector's width (nothing to pack)."""
    H = w_hh.shape[1]
    size = lstm_fused_size_f32(H) if w_hh.dtype == np.float32 else lstm_fused_size_f64(H)
    return BUFFERS.empty(max(1, size), w_hh.dtype)


def _forward_loop(const floating[:, :, ::1] x, const floating[:, ::1] w_ih,
                  const floating[:, ::1] w_hh, const floating[::1] b,
                  const floating[:, ::1] h0, const floating[:, ::1] c0,
                  const int64_t[::1] lengths, floating[:, :, ::1] gates,
                  floating[:, :, ::1] y, floating[:, :, ::1] c_all,
                  floating[:, :, ::1] tanh_c, floating[:, ::1] h_state,
                  floating[::1] w_ih_panels, floating[::1] w_hh_packed, bint need_cache,
                  int threads):
    """The time loop, without the GIL; returns the slot of ``c_all`` holding ``c_n``.

    ``gates`` holds ``gates.shape[0]`` steps: all of them, or a chunk that the input
    projection refills every that many steps. ``w_ih_panels`` and ``w_hh_packed`` receive
    the packed weights (``w_hh`` in panels, or for a batch of one packed for the fused
    step; None: a short single sequence reads ``w_hh`` in place). The projections and
    steps run on ``threads`` (1 or 2) threads.
    """
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int t, r, g, s = 0, s_prev = 0, u = 0
    cdef int chunk = gates.shape[0]
    cdef bint masked = lengths is not None
    cdef const floating* c_prev
    cdef lstmcpu_team team
    cdef lstm_forward_args a
    with nogil:
        a.wide = LSTMCPU_HAS_AVX512()  # read once: the packing and the steps must agree
        _pack(4 * H, I, &w_ih[0, 0], &w_ih_panels[0])
        if B > 1:
            _pack(4 * H, H, &w_hh[0, 0], &w_hh_packed[0])
        elif w_hh_packed is not None:
            _pack_fused(H, &w_hh[0, 0], a.wide, &w_hh_packed[0])
        a.f64, a.B, a.H, a.n_in = sizeof(floating) == sizeof(double), B, H, I
        a.w_hh = &w_hh[0, 0] if B == 1 else &w_hh_packed[0]
        a.w_hh_fused = &w_hh_packed[0] if B == 1 and w_hh_packed is not None else NULL
        a.w_ih_panels, a.bias = &w_ih_panels[0], &b[0]
        a.lengths = &lengths[0] if masked else NULL
        lstmcpu_team_start(&team, lstm_step_run, &a, threads)
        for t in range(T):
            g = t % chunk
            if g == 0:
                # NumPy: gates[:m] = x[t:t + m] @ w_ih.T, m = min(chunk, T - t)
                a.x, a.rows, a.gates = &x[t, 0, 0], min(chunk, T - t) * B, &gates[0, 0, 0]
                lstm_forward_team_run(&team, 1)
            if masked:
                a.h_prev = &h_state[0, 0]
            else:
                a.h_prev = &h0[0, 0] if t == 0 else &y[t - 1, 0, 0]
            c_prev = &c0[0, 0] if t == 0 else &c_all[s_prev, 0, 0]
            s = t if need_cache else t & 1
            u = t if need_cache else 0
            # NumPy: gates[g] += h_prev @ w_hh.T, then the gate pass of every sequence
            # still running
            if not (masked and B == 1 and t >= lengths[0]):
                a.t, a.c_prev, a.gates = t, c_prev, &gates[g, 0, 0]
                a.c_out, a.tanh_c, a.h_out = &c_all[s, 0, 0], &tanh_c[u, 0, 0], &y[t, 0, 0]
                lstm_forward_team_run(&team, 0)
            if masked:
                for r in range(B):
                    if t >= lengths[r]:
                        # Past this sequence's end: state unchanged, output stays zero.
                        memcpy(&c_all[s, r, 0], c_prev + r * H, H * sizeof(floating))
                    else:
                        memcpy(&h_state[r, 0], &y[t, r, 0], H * sizeof(floating))
            s_prev = s
        lstmcpu_team_stop(&team)
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
    if cache.gates is None:
        raise ValueError(
            "this cache was spent by an earlier backward (its memory now holds gradients); "
            "run forward again: each forward allows one backward"
        )
    x = cache.x
    T, B, I = x.shape
    H = cache.w_hh.shape[1]
    dtype = x.dtype
    check(dy, "dy", (T, B, H), dtype)
    check(dh_n, "dh_n", (B, H), dtype)
    check(dc_n, "dc_n", (B, H), dtype)
    dx = BUFFERS.empty((T, B, I), dtype)
    dw_ih = BUFFERS.empty((4 * H, I), dtype)
    dw_hh = BUFFERS.empty((4 * H, H), dtype)
    db = BUFFERS.empty(4 * H, dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    # A batch takes the panel kernel on w_hh.T (H, 4H): the transposed panels' size.
    # A single sequence reads w_hh.T in panels too when it is long enough to pay for them.
    packed = B > 1 or T >= LSTMCPU_FUSED_PACK_MIN_STEPS
    w_hh_t_panels = _panels(cache.w_hh.T) if packed else None
    threads = step_threads(B, H, need_cache=True)
    with one_blas_thread(threads):
        _backward_loop(dy, x, cache.w_ih, cache.w_hh, cache.h0, cache.c0, cache.lengths,
                       cache.gates, cache.c, cache.tanh_c, cache.y,
                       dh, dc, dx, dw_ih, dw_hh, db, w_hh_t_panels, threads)
    cache.gates = cache.c = cache.tanh_c = None
    return dx, dw_ih, dw_hh, db, dh, dc


def _backward_loop(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
                   const floating[:, ::1] w_ih, const floating[:, ::1] w_hh,
                   const floating[:, ::1] h0, const floating[:, ::1] c0,
                   const int64_t[::1] lengths, floating[:, :, ::1] gates,
                   const floating[:, :, ::1] c_all, const floating[:, :, ::1] tanh_c,
                   const floating[:, :, ::1] y, floating[:, ::1] dh, floating[:, ::1] dc,
                   floating[:, :, ::1] dx, floating[:, ::1] dw_ih, floating[:, ::1] dw_hh,
                   floating[::1] db, floating[::1] w_hh_t_panels, int threads):
    """The reverse time loop and the gradient GEMMs, without the GIL.

    The steps (``lstm_step.h``) overwrite ``gates[t]`` with the gradients of the gates'
    pre-activations. A batch of more than one sequence takes the panel kernel on ``w_hh.T``
    packed into ``w_hh_t_panels``, a single sequence the kernels of ``recurrent.h`` (which
    read the same panels as column strips of ``w_hh``, or with ``w_hh_t_panels`` None for a
    short sequence ``w_hh`` itself); both
    run on ``threads`` (1 or 2) threads, which split the batch or the units, and then share
    the gradient GEMMs in halves.
    """
    cdef int T = x.shape[0], B = x.shape[1], I = x.shape[2], H = w_hh.shape[1]
    cdef int G = 4 * H, t
    cdef bint masked = lengths is not None
    cdef const floating* c_prev
    cdef lstm_backward_args a
    cdef gradient_args grads
    cdef lstmcpu_team team
    with nogil:
        lstmcpu_team_start(&team, lstm_backward_step_run, &a, threads)
        a.f64, a.B, a.H = sizeof(floating) == sizeof(double), B, H
        a.lengths = &lengths[0] if masked else NULL
        a.dh, a.dc, a.cell = &dh[0, 0], &dc[0, 0], 1
        a.w_hh, a.dgates_next, a.w_hh_t_panels = &w_hh[0, 0], NULL, NULL
        if w_hh_t_panels is not None:
            if floating is float:
                lstm_pack_panels_t_f32(H, G, &w_hh[0, 0], &w_hh_t_panels[0])
            else:
                lstm_pack_panels_t_f64(H, G, &w_hh[0, 0], &w_hh_t_panels[0])
            a.w_hh_t_panels = &w_hh_t_panels[0]
        for t in range(T - 1, -1, -1):
            c_prev = &c0[0, 0] if t == 0 else &c_all[t - 1, 0, 0]
            # Batch: the gate pass of every row, then dh += dgates[t] @ w_hh. Single
            # sequence: dh += dgates[t + 1] @ w_hh, then the gate pass (NumPy, both: the
            # gate pass zeroes dh on the rows it uses; padded rows keep theirs)
            a.t, a.c_prev, a.tanh_c, a.dy = t, c_prev, &tanh_c[t, 0, 0], &dy[t, 0, 0]
            a.dgates = &gates[t, 0, 0]
            lstmcpu_team_step(&team)
            a.dgates_next = &gates[t, 0, 0]
        if B == 1:
            # NumPy: dh += dgates[0] @ w_hh
            a.t, a.cell = -1, 0
            lstmcpu_team_step(&team)
        grads.f64, grads.T, grads.B, grads.n_in = sizeof(floating) == sizeof(double), T, B, I
        grads.K, grads.n_gates = H, G
        grads.d_input, grads.d_hidden, grads.x = &gates[0, 0, 0], &gates[0, 0, 0], &x[0, 0, 0]
        grads.w_ih, grads.h0, grads.h_all = &w_ih[0, 0], &h0[0, 0], &y[0, 0, 0]
        grads.dx, grads.dw_ih, grads.dw_hh, grads.db = &dx[0, 0, 0], &dw_ih[0, 0], &dw_hh[0, 0], &db[0]
        team.run, team.arg = gradients_run, &grads
        lstmcpu_team_step(&team)
        lstmcpu_team_stop(&team)
