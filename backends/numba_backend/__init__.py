"""The Numba backend: the oracle's algorithm with the whole time loop in compiled code.

Every cell of the NumPy oracle (:mod:`lstmcpu.backends.numpy_backend`): LSTM with any of
peepholes, coupled input-forget gate and projection, GRU, RNN with tanh or relu, in float32
and float64, with the same contract and algorithm:

Forward
    1. one GEMM for the input projection of all steps, ``G = x @ w_ih.T`` (NumPy);
    2. a compiled time loop: per step the recurrent product ``h @ w_hh.T``, then one fused
       pass that adds the bias, applies the gates and updates the state;
    3. the cache keeps the post-activation gates (in ``G``) and the states backward reads.
    The plain LSTM departs from the oracle's order where it pays: on the panel route, chunks
    of :data:`FUSED_MIN_ROWS` rows or more compute step 1 within step 2, one product
    ``[x_t, h] @ [w_ih, w_hh].T`` per step; a single sequence split between two threads
    has each thread project its own gate rows.

Backward
    1. a compiled time loop of elementwise work and one product ``dG[t] @ w_hh`` per step;
    2. after the loop, the weight gradients as single big GEMMs over all steps (NumPy).

The compiled loops live in one module per cell family (``_lstm``, ``_lstm_variants``,
``_gru``, ``_rnn``) and share the activations (``_activations``) and the recurrent product
(``_products``); this module checks arguments, allocates, and picks routes and threads.

Threads. Rows of the batch are independent, so a batch can be cut into chunks that each
run the whole time loop on their own rows: no synchronisation per step, never parallel over
time. A call uses up to one chunk per thread (``numba.set_num_threads``, or ``n_threads``),
but only as many as bring at least :data:`MIN_CHUNK_WORK` each (see :func:`chunk_count`):
below that, starting threads costs more than it saves. The kernels release the GIL, and
chunks beyond the first run on a pool of Python threads: one launcher for every cell, and no
``parallel=True`` compilation (which would double the compile time). A plain LSTM batch too
small to cut (a single sequence) splits each step's units between two threads instead,
synchronised per step (:mod:`._sync`), when a step brings at least :data:`MIN_STEP_WORK`
and such calls ran faster split than on one thread lately (:mod:`._split_timing`: on a
shared machine the second core is not always there). After the backward loop, ``dw_hh``
goes to the pool while the calling thread computes the other weight gradients.

The recurrent product of a chunk takes one of two routes, chosen per call by
:func:`use_blas`:

* **BLAS** (``np.dot`` into a preallocated buffer, which Numba hands to SciPy's BLAS) for
  chunks of more than :data:`SMALL_BATCH` rows. With one thread allowed, BLAS obeys
  ``threadpoolctl``; with several, BLAS runs on one thread during the call (the chunks are
  the parallelism), so the backend uses ``n_threads`` threads in all.
* **panel kernel** (:mod:`._products`) for smaller chunks, where a BLAS call costs more
  than its work: a register-blocked product over ``w_hh`` (or, for ``w_hh.T``, a copy
  packed once per call). Every output is the same chain of fused multiply-adds whatever
  the chunking, so the results do not depend on the thread count (on the BLAS route they
  may differ by rounding).

Memory. The large arrays of a call (gate buffers, caches, gradients, packed weights) come
from :data:`lstmcpu._buffers.BUFFERS`, so that a training loop reuses the same pages from
one step to the next instead of faulting in fresh ones.

The kernels are plain Python functions compiled with ``njit(cache=True)``: they also run,
slowly, under ``NUMBA_DISABLE_JIT=1`` for debugging and coverage. One compiled kernel per
dtype serves both routes and, for the LSTM variants, every combination of options.

Compile time. The first call in a fresh environment compiles what it uses, per dtype and
cell family. Numba keeps the cache next to the modules (``__pycache__``) when the package
folder is writable, else in the user's cache folder (``$XDG_CACHE_HOME/numba``, by default
``~/.cache/numba``); ``NUMBA_CACHE_DIR`` overrides both. Figures are in docs/limits.md.
"""

import concurrent.futures
import contextlib
import functools
import os
import time

import numba
import numpy as np
# Numba's np.dot calls the BLAS that scipy.linalg.cython_blas loads. Numba would load it at
# the first product; loading it with the backend lets threadpoolctl limits entered later
# see it (a library loaded inside ``threadpool_limits`` escapes the limit).
import scipy.linalg.cython_blas  # noqa: F401

from lstmcpu._blas_threads import ONE_BLAS_THREAD
from lstmcpu._buffers import BUFFERS
from lstmcpu.backend import CELLS, Backend
from lstmcpu.backends.numpy_backend import _peephole_gradient
from lstmcpu.backends.numpy_backend import _recurrent_weight_gradient as _oracle_recurrent_weight_gradient

from . import _gru, _lstm, _lstm_variants, _rnn
from ._activations import constants
from ._checks import (FLOAT_DTYPES, all_finite, check_arrays, check_grad, check_input, check_lengths, hidden_size,
                      length_totals, projection_size)
from ._lstm_step import pack_gate_groups
from ._products import column_sums, pack_panels, panel_matmul, panel_width
from ._split_timing import SplitTimes
from ._sync import DONE, START, STOP, new_progress

__all__ = ["NumbaBackend", "chunk_count", "make_backend", "use_blas"]


class NumbaBackend(Backend):
    """Kernels of every cell compiled with Numba (float32 and float64).

    Parameters
    ----------
    n_threads : int or None, default=None
        Most threads a call uses, one batch chunk each (never more chunks than rows, nor
        chunks of less than :data:`MIN_CHUNK_WORK`). ``None`` follows
        ``numba.get_num_threads()`` at each call, so ``numba.set_num_threads`` applies. With
        more than one thread BLAS runs on one thread during the call; with one, BLAS uses
        the threads ``threadpoolctl`` allows.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.numba_backend import NumbaBackend
    >>> rng = np.random.default_rng(0)
    >>> T, B, I, H = 5, 2, 3, 4
    >>> x = rng.standard_normal((T, B, I))
    >>> w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    >>> b, h0, c0 = np.zeros(4 * H), np.zeros((B, H)), np.zeros((B, H))
    >>> y, h_n, c_n, cache = NumbaBackend().forward(x, w_ih, w_hh, b, h0, c0)
    >>> y.shape, bool(np.allclose(y[-1], h_n))
    ((5, 2, 4), True)
    >>> y, h_n, cache = NumbaBackend().gru_forward(x, w_ih[:3 * H], w_hh[:3 * H], b[:3 * H], b[:H], h0)
    >>> y.shape
    (5, 2, 4)
    """

    name = "numba"
    cells = CELLS

    def __init__(self, n_threads=None):
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
        self.n_threads = n_threads
        self._split_times = SplitTimes()  # how fast splitting a single sequence ran lately

    def _threads(self):
        return numba.get_num_threads() if self.n_threads is None else self.n_threads

    def all_finite(self, a):
        """Whether every value of ``a`` is finite, in one compiled pass (:func:`._checks.all_finite`)
        for float32 and float64 arrays."""
        a = np.asarray(a)
        if a.dtype not in FLOAT_DTYPES:
            return super().all_finite(a)
        return bool(all_finite(np.ascontiguousarray(a).reshape(-1)))

    def _plan(self, B, w_hh, lens, threads):
        """``(n_chunks, blas)`` of one call over a batch of ``B`` rows with ``threads``
        allowed (each entry reads :meth:`_threads` once: ``numba.get_num_threads`` takes two
        locks); the work is the recurrent products of the steps the sequences really take."""
        total, longest = length_totals(lens)
        n_chunks = chunk_count(threads, B, total * w_hh.size)
        return n_chunks, use_blas(B, n_chunks, w_hh.nbytes, longest)

    def _may_split_units(self, plan, B, w_hh, threads):
        """Whether each step's units may be split between two threads: the batch is not cut
        into chunks and has at most :data:`MAX_SPLIT_ROWS` rows (a single sequence), the
        panel kernel takes the products, ``threads`` is two or more, and each step brings
        at least :data:`MIN_STEP_WORK` multiply-adds."""
        return plan == (1, False) and B <= MAX_SPLIT_ROWS and threads >= 2 and B * w_hh.size >= MIN_STEP_WORK

    @contextlib.contextmanager
    def _timed_split(self, key, n_steps):
        """Whether a call of kind ``key`` that may split should (the faster way lately, see
        :class:`~._split_timing.SplitTimes`), and, when the body is done, its time per step
        recorded for that way."""
        split = self._split_times.choose(key)
        started = time.perf_counter()
        yield split
        self._split_times.record(key, split, (time.perf_counter() - started) / max(n_steps, 1))

    @staticmethod
    def _run(plan, kernel, *args):
        """``kernel(lo, hi, blas, *args)`` over the batch chunks ``plan`` asks for."""
        n_chunks, blas = plan
        _run_chunks(kernel, n_chunks, args[0].shape[1], blas, args)

    def _weight_gradients(self, dG, x, w_ih, h0, y, threads):
        """``dx, dw_ih, dw_hh, db`` from the gate gradients after the backward loop, one GEMM
        each. With several ``threads`` allowed, BLAS runs on one (see :func:`_blas_limit`),
        so ``dw_hh`` goes to the pool while this thread computes the others (each GEMM whole:
        the results do not depend on the thread count), when they bring at least
        :data:`MIN_CHUNK_WORK` multiply-adds each.

        Tried and dropped: ``dw_ih`` and ``dw_hh`` from one GEMM of ``dG`` with the
        ``[x_t, h_{t-1}]`` rows the fused forward builds, kept for the backward. On one thread
        it took 0.92 of the time at the small preset (OpenBLAS is faster on one product 96
        columns wide than on two of 32 and 64), but on two the pool's share grew from
        ``dw_hh`` to both (1.5 times the work at the small preset; the training step at 2
        threads, in ratio to the Cython backend's, 0.94-0.96 -> 0.98-1.03 at the small preset,
        1.01-1.09 -> 1.03-1.25 at the medium), and splitting that GEMM between the threads keeps
        OpenBLAS's sums only while both parts have several rows (a part of one row goes to
        GEMV, which rounds differently): the results would depend on the thread count."""
        T, B, n_gates = dG.shape
        work = T * B * n_gates * (2 * x.shape[2] + y.shape[2])
        split = chunk_count(threads, 2, work) == 2
        dw_hh = _pool().submit(_recurrent_weight_gradient, dG, h0, y) if split else None
        dG2 = dG.reshape(T * B, n_gates)
        # dw_ih = dG2.T @ x2
        dw_ih = np.matmul(dG2.T, x.reshape(T * B, -1), out=BUFFERS.empty((n_gates, x.shape[2]), x.dtype))
        # dx = dG2 @ w_ih
        dx = np.matmul(dG2, w_ih, out=BUFFERS.empty((T * B, x.shape[2]), x.dtype)).reshape(x.shape)
        dw_hh = dw_hh.result() if split else _recurrent_weight_gradient(dG, h0, y)
        return dx, dw_ih, dw_hh, column_sums(dG2)

    # ------------------------------------------------------------------ LSTM

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True, *,
                peephole=None, coupled=False, w_hr=None):  # fmt: skip
        x = check_input(x)
        T, B, I = x.shape
        n_gates = 3 if coupled else 4
        P = None if w_hr is None else projection_size(w_hr)
        H = hidden_size(w_hh, n_gates, P)
        R = H if P is None else P  # width of h
        expected = {"w_ih": (w_ih, (n_gates * H, I)), "w_hh": (w_hh, (n_gates * H, R)), "b": (b, (n_gates * H,)),
                    "h0": (h0, (B, R)), "c0": (c0, (B, H))}  # fmt: skip
        if peephole is not None:
            expected["peephole"] = (peephole, (3, H))
        if w_hr is not None:
            expected["w_hr"] = (w_hr, (P, H))
        checked = dict(zip(expected, check_arrays(x.dtype, expected)))
        w_ih, w_hh, b = checked["w_ih"], checked["w_hh"], checked["b"]
        lens = check_lengths(lengths, T, B)
        y = BUFFERS.empty((T, B, R), x.dtype)
        h, c = checked["h0"].copy(), checked["c0"].copy()
        cached = (T, B, H) if need_cache else (0, 0, 0)
        c_all, tanh_c_all = BUFFERS.empty(cached, x.dtype), BUFFERS.empty(cached, x.dtype)
        k, store = constants(x.dtype), bool(need_cache)
        threads = self._threads()
        plan = self._plan(B, w_hh, lens, threads)
        if peephole is None and not coupled and w_hr is None:
            G = self._plain_forward(plan, threads, x, w_ih, w_hh, b, h, c, lens, y, c_all, tanh_c_all, store, k)
            options = None
        else:
            with _blas_limit(threads):
                G = _input_projection(x, w_ih)
                p = checked.get("peephole", np.zeros((3, H), dtype=x.dtype))
                w_hr = checked.get("w_hr", np.zeros((0, H), dtype=x.dtype))
                m, h_new = np.zeros((B, H), dtype=x.dtype), np.zeros((B, R), dtype=x.dtype)  # work buffers
                self._run(plan, _lstm_variants.forward_rows, G, w_hh, _hand_weights(w_hh, plan), b, p, bool(coupled),
                          w_hr, _hand_weights(w_hr, plan), h, c, lens, y, c_all, tanh_c_all, store, m, h_new,
                          k)  # fmt: skip
            options = dict(peephole=p, has_peephole=peephole is not None, coupled=bool(coupled), w_hr=w_hr,
                           has_projection=P is not None)  # fmt: skip
        if not need_cache:
            return y, h, c, None
        cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=checked["h0"], c0=checked["c0"], lengths=lens, gates=G,
                     c=c_all, tanh_c=tanh_c_all, y=y, options=options)  # fmt: skip
        return y, h, c, cache

    def _plain_forward(self, plan, threads, x, w_ih, w_hh, b, h, c, lens, y, c_all, tanh_c_all, store, k):
        """The time loop of the plain LSTM (no peephole, coupled gates or projection) on the
        route ``plan`` gives, or split between two threads (of ``threads`` allowed); returns
        ``G``, the gates."""
        T, B, I = x.shape
        # Only the BLAS route calls BLAS: the panel route leaves BLAS's thread setting alone
        # (setting a limit and restoring it took ~25 us with BLAS at 2 threads, 2-5% of the
        # 2-thread online or small forward).
        with _blas_limit(threads if plan[1] else 1):
            may_split = self._may_split_units(plan, B, w_hh, threads)
            with self._timed_split(("forward", w_hh.shape, x.dtype, store), T) if may_split else _NOT_SPLIT as split:
                if split:
                    return _run_units_forward(x, w_ih, w_hh, b, h, c, lens, y, c_all, tanh_c_all, store, k)
                # On the panel route, chunks of FUSED_MIN_ROWS rows or more compute the input
                # projection with each step and the gate pass in the epilogue of its product
                # (see _lstm.forward_rows); else G starts as the input projection.
                fused = not plan[1] and B // plan[0] >= FUSED_MIN_ROWS
                if fused:
                    G = BUFFERS.empty((T if store else 0, B, w_hh.shape[0]), x.dtype)
                    panels = pack_gate_groups(w_ih, w_hh)
                else:
                    G = _input_projection(x, w_ih, blas=plan[1])
                    panels = _hand_weights(w_hh, plan)
                # [x_t, h_{t-1}] of each step, see _lstm.forward_rows (unread unless fused)
                xh_shape = (2, B, I + w_hh.shape[1]) if fused else (1, 0, I + w_hh.shape[1])
                xh_steps = BUFFERS.empty(xh_shape, x.dtype)
                self._run(plan, _lstm.forward_rows, x, fused, G, xh_steps, w_hh, panels, b, h, c, lens, y, c_all,
                          tanh_c_all, store, k)  # fmt: skip
                return G

    def backward(self, dy, dh_n, dc_n, cache):
        threads = self._threads()
        with _blas_limit(threads):
            return self._backward(threads, dy, dh_n, dc_n, cache)

    def _backward(self, threads, dy, dh_n, dc_n, cache):
        """:meth:`backward` with ``threads`` allowed, inside its BLAS limit."""
        x, w_ih, w_hh, h0, c0, y = (cache[k] for k in ("x", "w_ih", "w_hh", "h0", "c0", "y"))
        T, B, _ = x.shape
        H, R = c0.shape[1], h0.shape[1]
        dy, dh = _upstream(cache, dy, dh_n)
        dc = check_grad(dc_n, (B, H), x.dtype, "dc_n").copy()
        gates, c_all, tanh_c_all, lens, options = (cache[k] for k in ("gates", "c", "tanh_c", "lengths", "options"))
        dG = BUFFERS.empty(gates.shape, x.dtype)
        plan = self._plan(B, w_hh, lens, threads)
        if options is None:
            may_split = self._may_split_units(plan, B, w_hh, threads)
            with self._timed_split(("backward", w_hh.shape, x.dtype), T) if may_split else _NOT_SPLIT as split:
                if split:
                    _run_units_backward(dG, dy, gates, c_all, tanh_c_all, c0, w_hh, lens, dh, dc)
                else:
                    w_read = _read_weights(w_hh, plan)
                    self._run(plan, _lstm.backward_rows, dG, dy, gates, c_all, tanh_c_all, c0, w_read, lens, dh, dc)
            return (*self._weight_gradients(dG, x, w_ih, h0, y, threads), dh, dc)
        p, coupled, w_hr = options["peephole"], options["coupled"], options["w_hr"]
        project = options["has_projection"]
        dh_all = BUFFERS.empty((T, B, R) if project else (0, 0, 0), x.dtype)
        dm = np.zeros((B, H), dtype=x.dtype)  # work buffer
        self._run(plan, _lstm_variants.backward_rows, dG, dy, gates, c_all, tanh_c_all, c0, _read_weights(w_hh, plan),
                  p, coupled, _read_weights(w_hr, plan), lens, dh, dc, dh_all, dm)  # fmt: skip
        grads = (*self._weight_gradients(dG, x, w_ih, h0, y, threads), dh, dc)
        if not (options["has_peephole"] or project):
            return grads
        dpeephole = _peephole_gradient(dG, c_all, c0, H, coupled) if options["has_peephole"] else None
        dw_hr = None
        if project:
            # dw_hr = sum_t dh_t.T @ m_t with m = o * tanh(c), one GEMM over all steps.
            o = gates[:, :, (2 if coupled else 3) * H :]
            dw_hr = np.matmul(dh_all.reshape(T * B, R).T, (o * tanh_c_all).reshape(T * B, H))
        return grads + (dpeephole, dw_hr)

    # ------------------------------------------------------------------ GRU

    def gru_forward(self, x, w_ih, w_hh, b, b_hn, h0, lengths=None, need_cache=True):
        x = check_input(x)
        T, B, I = x.shape
        H = hidden_size(w_hh, 3)
        expected = {"w_ih": (w_ih, (3 * H, I)), "w_hh": (w_hh, (3 * H, H)), "b": (b, (3 * H,)),
                    "b_hn": (b_hn, (H,)), "h0": (h0, (B, H))}  # fmt: skip
        w_ih, w_hh, b, b_hn, h0 = check_arrays(x.dtype, expected)
        lens = check_lengths(lengths, T, B)
        threads = self._threads()
        with _blas_limit(threads):
            G = _input_projection(x, w_ih)
            y = BUFFERS.empty((T, B, H), x.dtype)
            h = h0.copy()
            hn_all = BUFFERS.empty((T, B, H) if need_cache else (0, 0, 0), x.dtype)
            hidden = np.empty((B, 3 * H), dtype=x.dtype)  # work buffer: h @ w_hh.T, written before read
            k = constants(x.dtype)
            plan = self._plan(B, w_hh, lens, threads)
            self._run(plan, _gru.forward_rows, G, w_hh, _hand_weights(w_hh, plan), b, b_hn, h, lens, y, hn_all,
                      bool(need_cache), hidden, k)  # fmt: skip
        if not need_cache:
            return y, h, None
        return y, h, dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, lengths=lens, gates=G, hn=hn_all, y=y)

    def gru_backward(self, dy, dh_n, cache):
        x, w_ih, w_hh, h0, y, lens = (cache[k] for k in ("x", "w_ih", "w_hh", "h0", "y", "lengths"))
        T, B, I = x.shape
        H = h0.shape[1]
        dy, dh = _upstream(cache, dy, dh_n)
        gates = cache["gates"]
        dG = BUFFERS.empty(gates.shape, x.dtype)  # gradients of the recurrent pre-activations
        dn_input = BUFFERS.empty((T, B, H), x.dtype)  # of the input-side n pre-activation
        threads = self._threads()
        with _blas_limit(threads):
            plan = self._plan(B, w_hh, lens, threads)
            self._run(plan, _gru.backward_rows, dG, dy, gates, cache["hn"], y, h0, _read_weights(w_hh, plan), lens,
                      dh, dn_input)  # fmt: skip
            # Weight gradients after the loop: the recurrent ones first, then dG becomes the
            # gradient of the input-side pre-activations (n differs: it skips the reset product).
            dw_hh = _recurrent_weight_gradient(dG, h0, y)
            db_hn = dG[:, :, 2 * H :].sum(axis=(0, 1))
            dG[:, :, 2 * H :] = dn_input
            dG2 = dG.reshape(T * B, 3 * H)
            # dw_ih = dG2.T @ x2
            dw_ih = np.matmul(dG2.T, x.reshape(T * B, I))
            # dx = dG2 @ w_ih
            dx = np.matmul(dG2, w_ih).reshape(T, B, I)
        return dx, dw_ih, dw_hh, column_sums(dG2), db_hn, dh

    # ------------------------------------------------------------------ vanilla RNN

    def rnn_forward(self, x, w_ih, w_hh, b, h0, lengths=None, need_cache=True, *, nonlinearity="tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        x = check_input(x)
        T, B, I = x.shape
        H = hidden_size(w_hh, 1)
        expected = {"w_ih": (w_ih, (H, I)), "w_hh": (w_hh, (H, H)), "b": (b, (H,)), "h0": (h0, (B, H))}
        w_ih, w_hh, b, h0 = check_arrays(x.dtype, expected)
        lens = check_lengths(lengths, T, B)
        relu = nonlinearity == "relu"
        threads = self._threads()
        with _blas_limit(threads):
            G = _input_projection(x, w_ih)
            y = BUFFERS.empty((T, B, H), x.dtype)
            h = h0.copy()
            k = constants(x.dtype)
            plan = self._plan(B, w_hh, lens, threads)
            self._run(plan, _rnn.forward_rows, G, w_hh, _hand_weights(w_hh, plan), b, relu, h, lens, y, k)
        if not need_cache:
            return y, h, None
        return y, h, dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, lengths=lens, act=G, y=y, relu=relu)

    def rnn_backward(self, dy, dh_n, cache):
        x, w_ih, w_hh, h0, y, lens = (cache[k] for k in ("x", "w_ih", "w_hh", "h0", "y", "lengths"))
        dy, dh = _upstream(cache, dy, dh_n)
        dG = BUFFERS.empty(cache["act"].shape, x.dtype)
        threads = self._threads()
        with _blas_limit(threads):
            plan = self._plan(x.shape[1], w_hh, lens, threads)
            self._run(plan, _rnn.backward_rows, dG, dy, cache["act"], _read_weights(w_hh, plan), cache["relu"], lens,
                      dh)  # fmt: skip
            return (*self._weight_gradients(dG, x, w_ih, h0, y, threads), dh)


def make_backend():
    """Factory the registry calls."""
    return NumbaBackend()


def _upstream(cache, dy, dh_n):
    """The checked upstream gradients ``dy`` (T, B, R) and ``dh_n`` (B, R), the latter as a
    copy the backward loop updates in place."""
    x, R = cache["x"], cache["h0"].shape[1]
    T, B, _ = x.shape
    dy = check_grad(dy, (T, B, R), x.dtype, "dy")
    return dy, check_grad(dh_n, (B, R), x.dtype, "dh_n").copy()


def _input_projection(x, w_ih, blas=True):
    """``x @ w_ih.T`` for every step at once, as a (T, B, gates) buffer (the bias is added
    in the compiled gate pass): by BLAS, or by the panel kernel when not ``blas``.

    The LSTM's panel route without fusion (chunks of a few rows) takes the panel kernel:
    the same sums, in the same order, as the split's threads compute for their own gate rows
    (:func:`~._lstm.prepare_unit_part`), so that splitting does not change the results;
    and faster at these shapes (measured, float32, 1 thread, T=100, B=1, I=64, H=256:
    99 us, plus 21 to pack ``w_ih``, against 176 for OpenBLAS).
    """
    T, B, I = x.shape
    G = BUFFERS.empty((T * B, w_ih.shape[0]), x.dtype)
    if blas:
        # G = x2 @ w_ih.T
        np.matmul(x.reshape(T * B, I), w_ih.T, out=G)
    else:
        # G = x2 @ w_ih.T, w_ih.T read as packed panels
        panel_matmul(x.reshape(T * B, I), pack_panels(w_ih), True, G, 0, T * B)
    return G.reshape(T, B, w_ih.shape[0])


def _recurrent_weight_gradient(dG, h0, y):
    """``sum_t dG[t].T @ h_{t-1}``. For a batch of at most 8 rows, one GEMM over the states
    before each step, ``h0`` then ``y[:-1]`` (``y[t - 1]`` is ``h_{t-1}`` wherever ``dG[t]``
    is non-zero: a sequence active at ``t`` was active at ``t - 1``); for larger ones the
    NumPy oracle's two GEMMs, which need no copy of the states. OpenBLAS is slow at the
    oracle's ``dG[0].T @ h0`` over a few rows: measured at T=100, H=256, float32, best of 5,
    two GEMMs against one: B=1 1454 against 377 us, B=2 879/771, B=4 1723/1627, B=8
    3119/3088, B=16 6220/6294; T=50, B=32, H=64: 434/481."""
    T, B, n_gates = dG.shape
    if B > 8:
        return _oracle_recurrent_weight_gradient(dG, h0, y)
    h_prev = BUFFERS.empty((T * B, h0.shape[1]), h0.dtype)
    h_prev[:B] = h0
    h_prev[B:] = y[:-1].reshape((T - 1) * B, h0.shape[1])
    # dw_hh = dG2.T @ h_prev
    return np.matmul(dG.reshape(T * B, n_gates).T, h_prev)


def _read_weights(w, plan):
    """The matrix a backward loop's products read in place at every step (``w_hh``, or
    ``w_hr``): on the panel route (``plan[1]`` false) a copy in :data:`BUFFERS`'s memory,
    whose fresh pages avoid the cache-set conflicts of a matrix on recycled ones (see
    :mod:`lstmcpu._buffers`); BLAS packs what it reads itself. Measured on the online
    preset's training step (float32, 1 thread, two processes, in each the layer's ``w_hh``
    on fresh pages or on one of six copies in a fragmented heap): without the copy
    4.66-4.69 ms with ``w_hh`` on fresh pages, 5.15-5.46 on 11 of the 12 heap copies; with
    it, 4.59-4.75 on every one. A matrix below :data:`BUFFERS`'s ``min_bytes`` would be
    copied to malloc's heap all the same, and fits in L2 with room to spare: read in place."""
    if plan[1] or w.nbytes < BUFFERS.min_bytes:
        return w
    copy = BUFFERS.empty(w.shape, w.dtype)
    np.copyto(copy, w)
    return copy


def _hand_weights(w, plan):
    """What the panel kernel reads for products with ``w.T``: its packed panels
    (:func:`~._products.pack_panels`); on the BLAS route (``plan[1]``) BLAS reads ``w``
    itself, and the kernel gets an empty array of the same type (one compiled kernel serves
    both routes)."""
    if plan[1]:
        return np.empty((0, w.shape[1], panel_width(w.dtype)), dtype=w.dtype)
    return pack_panels(w)


# ---------------------------------------------------------------- threads

# Splitting, measured with `python benchmarks/numba_chunks.py` (LSTM training step, float32,
# 2 chunks vs 1, BLAS on 1 thread, medians of 15, interleaved) on the shared 2-core Zen 4,
# load average 2-2.4 from other work; work = multiply-adds of the recurrent products:
#   work (M)        0.7   5.2 (the demo's B=32 H=32 T=40)  26   52   105   419   1678
#   CPU ratio       1.32  1.14                             1.11 1.02 1.04  1.11  1.10
#   wall ratio      1.32  1.18                             1.04 1.12 1.05  1.11  1.11
# The CPU ratio is the cost of splitting: a thread handoff per call (~40 us) and smaller,
# less efficient products; it falls to about 1.1 from ~25 M up. The wall ratio could only
# fall below it with a core to spare, which this loaded machine never had (it did at load
# 0.6: numba's small forward went from 2.13 ms at 1 thread to 1.45 at 2 in the last
# session's bench). So a call is split only where each chunk carries at least 8 M
# multiply-adds (1-2 ms of work, against ~40 us of handoff): the demo's minibatches
# (5.2 M) stay on one thread, the bench's small (26 M) and medium shapes are split.
#: Least work, in multiply-adds of the recurrent products over the whole call, that a batch
#: chunk must bring before the batch is cut into one more chunk. See :func:`chunk_count`.
MIN_CHUNK_WORK = 2**23


def chunk_count(n_threads, B, work):
    """Chunks to cut a batch of ``B`` rows into, given ``work`` multiply-adds of recurrent
    products in the call: one per thread, at most one per row, and none with less than
    :data:`MIN_CHUNK_WORK` (so small calls run on one thread, without any thread switch)."""
    return max(1, min(n_threads, B, work // MIN_CHUNK_WORK))


def _run_chunks(kernel, n_chunks, B, blas, args):
    """``kernel(lo, hi, blas, *args)`` over ``n_chunks`` chunks of the batch: the first in the
    calling thread, the others on the pool (the kernels release the GIL)."""
    if n_chunks == 1:
        kernel(0, B, blas, *args)
        return
    bounds = [(i * B // n_chunks, (i + 1) * B // n_chunks) for i in range(n_chunks)]
    others = [_pool().submit(kernel, lo, hi, blas, *args) for lo, hi in bounds[1:]]
    try:
        kernel(*bounds[0], blas, *args)
    finally:
        for chunk in others:
            chunk.result()


# Splitting a step's units between two threads costs two atomic handoffs per step (110-210
# ns a round trip with both cores free), a thread handoff per call and, per step, the half
# of h the other thread wrote coming from the other core's cache. Measured on the online
# preset's forward (T=100, B=1, I=64, H=256: 262k multiply-adds per step), float32, backend
# call, interleaved, 300 rounds in one process, load average 1.1-1.6 (uptime): split median
# 1.95 ms (min 1.79) against 2.13 (min 2.08) on one thread. A half alone takes 0.97 ms: most
# of the rest is waiting for the other thread on this shared VM, whose two vCPUs are not
# always running at once (with pure spinning, a descheduled partner cost whole time slices:
# 401 ms instead of 3; hence the yield and the fallback to one thread in ._sync).
# Re-measured after the one-thread route got faster (vectorised gate passes, fused input
# projection; 2 threads, float32, split / not split, medians of 5 interleaved, forward |
# training step, ms): B=1, H=182 (132k a step) 1.01/0.78 | 2.45/1.66; B=32, H=32 (the demo's
# LSTM, 131k) 1.40/0.74 | 3.80/1.69; B=4, H=128 (262k) 0.90/0.73 | 2.48/1.93; B=8, H=128
# (524k) 1.10/1.11 | 2.87/2.98; B=2, H=256 (524k) 1.76/1.85 | 4.61/4.52; B=1, H=256 (the
# online preset, 262k) 1.87/2.43 | 4.40/5.80 and 1.94/2.36 | 4.97/5.80. So only a single
# sequence of 2**18 multiply-adds a step or more is split.
#: Least work, in multiply-adds of one step's recurrent product, for which the units of a
#: batch that is not cut into chunks may be split between two threads (``_may_split_units``).
MIN_STEP_WORK = 2**18
#: Most rows of a batch whose units are split between two threads.
MAX_SPLIT_ROWS = 1
# Fusing the input projection into each step's product reads [w_ih, w_hh] once per step
# instead of w_hh, against one input GEMM over all steps: a chunk of a few rows does not
# repay the extra reads. Measured on the 2-core Xeon, float32, 1 thread, fused / unfused,
# interleaved medians of 7 in one process (forward without cache, training step), T=100,
# I=64, H=256: B=1 1.04 / 1.03, B=4 1.06 / 1.04, B=16 0.96 / 0.99; the small preset (B=32,
# H=64) 0.88 / 0.98, the medium (B=64, I=128, H=256) 0.96 / 0.89.
#: Fewest rows of a chunk whose steps compute the input projection with the recurrent
#: product (``_lstm.forward_rows``'s ``fused``) on the panel route.
FUSED_MIN_ROWS = 8
#: The context of a call that may not split (see ``NumbaBackend._timed_split``).
_NOT_SPLIT = contextlib.nullcontext(False)


def _run_units_forward(x, w_ih, w_hh, b, h, c, lens, y, c_all, tanh_c_all, store, k):
    """The forward time loop with each step's units split in two parts
    (:func:`~._lstm.forward_unit_step`, see :func:`_run_team`), each thread computing the
    input projection of its own gate rows first; ``h`` receives the last states. Returns
    ``G`` (the activated gates, when ``store``)."""
    T, B, I = x.shape
    H, n = c.shape[1], c.shape[1] - c.shape[1] // 2  # n: units of the larger part
    units = _unit_parts(H)
    # Arrays both threads write start on cache lines (BUFFERS; c is copied to one): a line
    # holding the end of one part and the start of the other would go back and forth
    # between the cores (a split step 13.3-15.6 -> 10.7-12.9 us, online preset).
    h_steps = BUFFERS.empty((2, B, H), h.dtype)
    h_steps[0] = h
    c_team = BUFFERS.empty(c.shape, c.dtype)
    c_team[:] = c
    W = panel_width(h.dtype)
    panels = BUFFERS.empty((2, -(-4 * n // W), H, W), h.dtype)  # pack_rows writes all of each part's
    biases = np.zeros((2, 4 * n), dtype=h.dtype)
    input_panels = BUFFERS.empty((2, -(-4 * n // W), I, W), h.dtype)
    own_gates = tuple(BUFFERS.empty((T, B, 4 * (u1 - u0)), h.dtype) for u0, u1 in units)

    def prepare(part):
        _lstm.prepare_unit_part(part, units, x, w_ih, w_hh, b, panels, input_panels, biases, own_gates[part])

    scratch = np.empty(n, dtype=h.dtype)  # stands in for the cache rows without store
    G = BUFFERS.empty((T, B, 4 * H) if store else (0, B, 4 * H), h.dtype)
    args = (units, panels, biases, own_gates, scratch, G, h_steps, c_team, lens, y, c_all, tanh_c_all, store, k)
    _run_team(T, _lstm.forward_team, args, prepare)
    h[:] = h_steps[T % 2]
    c[:] = c_team
    return G


def _run_units_backward(dG, dy, gates, c_all, tanh_c_all, c0, w_hh, lens, dh, dc):
    """The backward time loop with each step's units split in two parts
    (:func:`~._lstm.backward_unit_step`, see :func:`_run_team`)."""
    (B, H), n = dh.shape, dh.shape[1] - dh.shape[1] // 2
    units = _unit_parts(H)
    w_parts = BUFFERS.empty((2, 4 * H * n), dh.dtype)
    # each part's dh, gates and their gradients, and dc, on cache lines of their own (see
    # _run_units_forward)
    own = BUFFERS.empty((2, -(-(B * n + 8 * n) // 16) * 16), dh.dtype)
    dc_team = BUFFERS.empty(dc.shape, dc.dtype)
    dc_team[:] = dc

    def prepare(part):
        u0, u1 = units[part]
        w_parts[part, : 4 * H * (u1 - u0)] = w_hh[:, u0:u1].reshape(-1)
        own[part, : B * (u1 - u0)] = dh[:, u0:u1].reshape(-1)

    args = (units, w_parts, own, dG, dy, gates, c_all, tanh_c_all, c0, lens, dh, dc_team)
    _run_team(dG.shape[0] + 1, _lstm.backward_team, args, prepare)
    dc[:] = dc_team


def _unit_parts(H):
    """Bounds of the two parts of ``H`` units, as a (2, 2) int64 array."""
    return np.array([[0, H // 2], [H // 2, H]], dtype=np.int64)


def _run_team(n_steps, team, args, prepare):
    """``team(me, n_steps, args, progress)`` (a team's loop, such as
    :func:`~._lstm.forward_team`) on the calling thread (``me = 0``) and a
    pool thread (``me = 1``), each running ``prepare(me)`` for its own part first. A thread
    that fails lets the other go on alone (its part of the results is then wrong, but the
    error is raised)."""
    progress = new_progress()

    def member(me):
        try:
            prepare(me)
            team(me, n_steps, args, progress)
        except BaseException:
            progress[START if me == 0 else DONE] = STOP if me == 0 else n_steps
            raise

    partner = _pool().submit(member, 1)
    try:
        member(0)
    finally:
        partner.result()


@functools.lru_cache(maxsize=None)
def _pool():
    """The threads that run batch chunks beyond the first, started on first use."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="lstmcpu-numba")


# A forked child has none of its parent's threads: it starts its own pool when it needs one
# (the parent's would queue the chunks forever).
os.register_at_fork(after_in_child=_pool.cache_clear)


def _blas_limit(n_threads):
    """The context of a call of the backend: when it may use several threads, BLAS runs on
    one thread for the whole call (:data:`~lstmcpu._blas_threads.ONE_BLAS_THREAD`); the batch
    chunks are the parallelism (a small batch has none: its per-step products are too small
    for BLAS threads to pay), and BLAS threads left spinning after a threaded product would
    take the cores from the chunks (measured: 1.3 ms became 16-28 ms on 2 cores). The limit
    is process-wide state, shared with the estimators: concurrent calls from several Python
    threads run at once, and the last to leave restores what the first found."""
    return _NO_BLAS_LIMIT if n_threads == 1 else ONE_BLAS_THREAD


#: The context of a call on one thread: BLAS keeps the thread count ``threadpoolctl`` set.
_NO_BLAS_LIMIT = contextlib.nullcontext()


# ---------------------------------------------------------------- choosing the product route

# Crossover, measured with `python -m benchmarks.numba_crossover` (interleaved medians of 9) on
# the shared 2-core Xeon (Sapphire Rapids, AVX-512, OpenBLAS 0.3 SkylakeX kernels via SciPy),
# uptime's load average 1.7-1.9, float32, 1 thread, T=20, whole kernel including the packing
# of w_hh.T (4 x 2 panel blocks, reused buffers); panel time / BLAS time, forward
# (need_cache=False) | forward+backward:
#   H=64:  B=1 1.14|1.09  B=8 0.65|0.83  B=32 0.85|0.96  B=64 0.94|0.96  B=128 0.97|0.97
#   H=256: B=1 1.09|0.98  B=8 0.52|0.58  B=32 0.79|0.84  B=64 0.89|0.96  B=128 0.95|1.01
#   H=512: B=1 1.53|1.34  B=8 0.83|0.84  B=32 1.27|1.38  B=64 1.27|1.35  B=128 1.45|1.65
# The crossover sits near 64-128 rows while the weights fit in L2 (w_hh of H=256 in float32
# is 1 MiB of this core's 2), and near 8-16 beyond (H=512: each panel comes from L3 for
# every block of rows). At B=1 the packing of w_hh.T (0.15-0.2 ms at H=256) decides over
# 20 steps; over 100 steps (`--hidden 256 --batch 1 --steps 100`, same load) the forward
# ties (1.04) and training is ahead (0.89), and only the panel kernel can split a step
# between threads. (Measured on the LSTM; the other cells use the same rule.)
# Small weights (H below 64 in float32) are another case. With the first panel kernel the
# demo's LSTM (H=32) fell 2x behind BLAS from 28 rows; since each step's product reads the
# weights panel pair by panel pair and fuses the input projection, the panel kernel leads
# at every batch measured (1 thread, float32, interleaved medians of 7, load 0.6-0.9;
# forward without cache | training step, ms, BLAS beyond 16 rows -> panel kernel):
#   H=32, I=1, T=52:  B=32 1.62 -> 0.65 | 2.46 -> 1.55    B=128 5.41 -> 2.25 | 8.56 -> 5.39
#                     B=256 11.0 -> 4.50 | 18.8 -> 10.6
#   H=16, I=8, T=52, B=512: 7.46 -> 5.82 | 14.3 -> 13.4;  H=48, I=16, T=50, B=32: 1.52 -> 0.99 | 3.23 -> 2.76
# while with H=64 (64 KiB) at 128-256 rows the forward still gains 1.3x and training ties,
# and with weights of 1 MiB and more training is 10-30% slower on the panel kernel (its
# backward reads w_hh in place) though the forward gains up to 1.25x.
#: Largest batch chunk whose recurrent products go through the panel kernel rather than
#: BLAS, for weights of :data:`SMALL_WEIGHTS` to :data:`L2_WEIGHTS` bytes; an eighth of it
#: beyond, 8 times as many below.
SMALL_BATCH = 64
#: Bytes of a recurrent weight matrix up to which it stays in this CPU's L2 during a step.
L2_WEIGHTS = 2**20
#: Bytes of a recurrent weight matrix below which the panel kernel takes 8 times as many rows.
SMALL_WEIGHTS = 2**16
# A call on the panel route first packs w_hh.T (and w_ih.T), which a single sequence of a
# few steps does not repay: BLAS's matrix-vector products read w_hh in place. Measured on
# the 2-core Xeon (float32, 1 thread, I=64, forward without cache | training step, panel
# time / BLAS time, medians of 5 interleaved rounds): H=256 T=1 2.48|1.23, T=5 1.61|1.26,
# T=10 1.22|1.10, T=15 1.22|1.20, T=20 0.95|0.88, T=30 0.80|0.89; H=128 T=10 1.10|1.07,
# T=15 1.09|0.99, T=20 0.93|0.93; H=64 T=10 1.08|0.99, T=20 0.98|0.99, T=40 0.83|0.98;
# H=512 T=1 3.15|1.32, T=10 1.29|1.29. Two rows or more gain from the panel kernel at any
# length (BLAS's products of a few rows are slow: H=256 T=10 B=2 0.39|0.92, B=4 0.38|0.40).
#: Fewest steps for which a single sequence takes the panel kernel.
MIN_PANEL_STEPS = 16


def use_blas(B, n_chunks=1, weight_bytes=SMALL_WEIGHTS, n_steps=MIN_PANEL_STEPS):
    """True when the recurrent products of a batch of ``B`` rows, cut into ``n_chunks``
    chunks, with a weight matrix of ``weight_bytes``, over ``n_steps`` steps, should go to
    BLAS rather than the panel kernel: chunks of more than :data:`SMALL_BATCH` rows (an
    eighth of it for weights larger than :data:`L2_WEIGHTS`, 8 times as many for weights
    smaller than :data:`SMALL_WEIGHTS`), and a single sequence of fewer than
    :data:`MIN_PANEL_STEPS` steps (a batch cut into chunks of one row keeps its route, so
    that the results do not depend on the thread count)."""
    if B == 1 and n_steps < MIN_PANEL_STEPS:
        return True
    if weight_bytes > L2_WEIGHTS:
        limit = SMALL_BATCH // 8
    elif weight_bytes < SMALL_WEIGHTS:
        limit = SMALL_BATCH * 8
    else:
        limit = SMALL_BATCH
    return -(-B // n_chunks) > limit
