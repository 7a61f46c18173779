"""The kernel contract that every backend implements.

A backend computes ONE recurrent layer in ONE direction over a whole sequence. Everything
above it (stacking, bidirection, dropout, ``batch_first``, heads, training) lives in the
layers and estimators, so a backend stays small and is tested against the NumPy oracle.

Arrays are time-major and C-contiguous:

========== =============== ==============================================================
name       shape           meaning
========== =============== ==============================================================
x          (T, B, I)       input sequence
w_ih       (4H, I)         input weights, gate blocks in PyTorch's order i, f, g, o
w_hh       (4H, H)         recurrent weights, same gate order
b          (4H,)           ONE fused bias, ``b_ih + b_hh``
h0, c0     (B, H)          initial hidden and cell state
lengths    (B,) or None    valid steps per sequence, ``1 <= lengths[b] <= T``
y          (T, B, H)       hidden state at every step; zeros past a sequence's length
h_n, c_n   (B, H)          state at each sequence's own last step
========== =============== ==============================================================

The result dtype is the input dtype (float32 or float64). ``forward`` returns an opaque
``cache`` (``None`` when ``need_cache=False``) that only the same backend's ``backward``
reads.
"""

import numpy as np

__all__ = ["Backend", "BackendUnavailableError"]


class BackendUnavailableError(ImportError):
    """A known backend cannot be used here: a dependency or the compiled extension is missing."""


class Backend:
    """Base class of a compute backend: one layer, one direction, forward and backward.

    Subclasses set :attr:`name`, :attr:`dtypes` and :attr:`cells` and implement
    :meth:`forward` and :meth:`backward`. Register an instance (or a factory returning one)
    with :func:`lstmcpu.register_backend` or the ``lstmcpu.backends`` entry-point group.

    Examples
    --------
    >>> import lstmcpu
    >>> backend = lstmcpu.get_backend("numpy")
    >>> backend.can_run("lstm", np.float64)
    True
    """

    #: Name the registry lists the backend under.
    name = "base"
    #: Floating dtypes the kernels accept.
    dtypes = (np.dtype(np.float32), np.dtype(np.float64))
    #: Cell types the kernels implement.
    cells = ("lstm",)

    def can_run(self, cell="lstm", dtype=np.float32):
        """Cheap check: can this backend run ``cell`` in ``dtype``?"""
        return cell in self.cells and np.dtype(dtype) in self.dtypes

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True):
        """Run one LSTM layer in one direction over the whole sequence.

        Returns
        -------
        y : ndarray of shape (T, B, H)
        h_n, c_n : ndarray of shape (B, H)
        cache : object or None
            What :meth:`backward` needs; ``None`` when ``need_cache`` is false.
        """
        raise NotImplementedError

    def backward(self, dy, dh_n, dc_n, cache):
        """Backpropagate through time.

        Parameters
        ----------
        dy : ndarray of shape (T, B, H)
            Gradient of the loss w.r.t. ``y``; entries past a sequence's length are ignored.
        dh_n, dc_n : ndarray of shape (B, H)
            Gradient w.r.t. the final states.
        cache : object
            The cache returned by :meth:`forward` of this backend.

        Returns
        -------
        dx : (T, B, I), dw_ih : (4H, I), dw_hh : (4H, H), db : (4H,), dh0, dc0 : (B, H)
        """
        raise NotImplementedError

    def __repr__(self):
        return f"<lstmcpu backend {self.name!r}>"
