"""The Cython backend: compiled LSTM kernels calling the BLAS that SciPy ships.

The time loops run in C without the GIL, so several Python threads can run models at once.
Importing this package fails with ImportError when its extension was not built; the
registry then reports the backend as unavailable and says how to build it.

Sources: ``_blas.pxd`` (the BLAS wrapper, written once for float and double), ``_lstm.pyx``
(the kernels and their argument checks), ``lstm_cell.h`` (the fused elementwise passes) and
``lstm_recurrent.h`` (the recurrent products for batches of at most 4 sequences).

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

from lstmcpu.backend import Backend

from . import _lstm

__all__ = ["CythonBackend", "make_backend"]


class CythonBackend(Backend):
    """LSTM kernels in Cython and C over SciPy's BLAS (float32 and float64).

    The arguments are checked (shapes, dtypes, C-contiguity) before any compiled code runs;
    see :meth:`lstmcpu.Backend.forward` for the contract.
    """

    name = "cython"

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True):
        return _lstm.forward(x, w_ih, w_hh, b, h0, c0, lengths, need_cache)

    def backward(self, dy, dh_n, dc_n, cache):
        if not isinstance(cache, _lstm.LSTMCache):
            raise TypeError(
                "cache must be the one returned by the cython backend's forward(need_cache=True), "
                f"got {type(cache).__name__}"
            )
        return _lstm.backward(dy, dh_n, dc_n, cache)


def make_backend():
    """Factory the registry calls."""
    return CythonBackend()
