"""The Cython backend: compiled LSTM, GRU and RNN kernels calling the BLAS that SciPy ships.

The time loops run in C without the GIL, so several Python threads can run models at once.
Importing this package fails with ImportError when its extension was not built; the
registry then reports the backend as unavailable and says how to build it.

Sources: ``_lstm.pyx`` (the plain LSTM), ``_lstm_variants.pyx`` (peepholes, coupled gates,
projection), ``_gru.pyx`` and ``_rnn.pyx`` (each cell's kernels and Python entry),
``_entry.py`` (the argument checks they share), ``_loops.pxd`` (the products their loops
share), ``_blas.pxd`` (the BLAS wrapper, written once for float and double),
``lstm_cell.h``, ``lstm_variant_cell.h``, ``gru_cell.h`` and ``rnn_cell.h`` (each cell's
fused elementwise passes),
``activations.h`` (sigmoid and tanh), ``recurrent.h`` (the recurrent products for
batches of at most 4 sequences), and for the plain LSTM ``lstm_step.h`` (its time loops'
steps, on one or two threads with ``team.h``) over ``lstm_fused.h`` (the fused step of a
single sequence) and ``lstm_panel.h`` (the register-blocked product on packed weights).

Examples
--------
>>> import numpy as np
>>> import lstmcpu
>>> backend = lstmcpu.get_backend("cython")
>>> T, B, I, H = 4, 2, 3, 5
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((T, B, I)).astype(np.float32)
>>> w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
>>> w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
>>> b, h0, c0 = np.zeros(4 * H, np.float32), np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
>>> y, h_n, c_n, cache = backend.forward(x, w_ih, w_hh, b, h0, c0)
>>> y.dtype, y.shape
(dtype('float32'), (4, 2, 5))
"""

from lstmcpu.backend import CELLS, Backend

from . import _gru, _lstm, _lstm_variants, _rnn

__all__ = ["CythonBackend", "make_backend"]


class CythonBackend(Backend):
    """Kernels for every cell (:data:`lstmcpu.backend.CELLS`) in Cython and C over SciPy's
    BLAS (float32 and float64).

    The arguments are checked (shapes, dtypes, C-contiguity) before any compiled code runs;
    see :meth:`lstmcpu.Backend.forward` for the contract.
    """

    name = "cython"
    cells = CELLS

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True, *,
                peephole=None, coupled=False, w_hr=None):  # fmt: skip
        if peephole is None and not coupled and w_hr is None:
            return _lstm.forward(x, w_ih, w_hh, b, h0, c0, lengths, need_cache)
        return _lstm_variants.forward(x, w_ih, w_hh, b, h0, c0, lengths, need_cache,
                                      peephole, coupled, w_hr)  # fmt: skip

    def backward(self, dy, dh_n, dc_n, cache):
        if isinstance(cache, _lstm_variants.LSTMVariantCache):
            return _lstm_variants.backward(dy, dh_n, dc_n, cache)
        _check_cache(cache, _lstm.LSTMCache, "forward")
        return _lstm.backward(dy, dh_n, dc_n, cache)

    def gru_forward(self, x, w_ih, w_hh, b, b_hn, h0, lengths=None, need_cache=True):
        return _gru.forward(x, w_ih, w_hh, b, b_hn, h0, lengths, need_cache)

    def gru_backward(self, dy, dh_n, cache):
        _check_cache(cache, _gru.GRUCache, "gru_forward")
        return _gru.backward(dy, dh_n, cache)

    def rnn_forward(self, x, w_ih, w_hh, b, h0, lengths=None, need_cache=True, *, nonlinearity="tanh"):
        return _rnn.forward(x, w_ih, w_hh, b, h0, lengths, need_cache, nonlinearity)

    def rnn_backward(self, dy, dh_n, cache):
        _check_cache(cache, _rnn.RNNCache, "rnn_forward")
        return _rnn.backward(dy, dh_n, cache)


def _check_cache(cache, cache_type, forward_name):
    if not isinstance(cache, cache_type):
        raise TypeError(
            f"cache must be the one returned by the cython backend's {forward_name}(need_cache=True), "
            f"got {type(cache).__name__}"
        )


def make_backend():
    """Factory the registry calls."""
    return CythonBackend()
