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

Cell variants. A backend lists what it implements in :attr:`Backend.cells`; every backend
implements ``"lstm"`` (:meth:`Backend.forward` / :meth:`Backend.backward`), the rest are
optional:

================= ===================================================================
cell              kernel
================= ===================================================================
``lstm_peephole`` ``forward(..., peephole=p)``, ``p`` of shape (3, H): the i, f, o
                  gates also see the cell state (i, f: ``c_{t-1}``; o: ``c_t``)
``lstm_coupled``  ``forward(..., coupled=True)``: ``i = 1 - f``; the weights have 3H
                  rows, gates f, g, o
``lstm_proj``     ``forward(..., w_hr=w)``, ``w`` of shape (P, H):
                  ``h = (o * tanh(c)) @ w.T``; ``w_hh`` is (G, P), ``h0`` and ``y`` have P
``gru``           :meth:`Backend.gru_forward` / :meth:`Backend.gru_backward`
``rnn_tanh``,     :meth:`Backend.rnn_forward` / :meth:`Backend.rnn_backward`
``rnn_relu``
================= ===================================================================
"""

import numpy as np

__all__ = ["CELLS", "Backend", "BackendUnavailableError"]

#: Every cell capability a backend can declare.
CELLS = ("lstm", "lstm_peephole", "lstm_coupled", "lstm_proj", "gru", "rnn_tanh", "rnn_relu")


class BackendUnavailableError(ImportError):
    """A known backend cannot be used here: a dependency or the compiled extension is missing."""


class Backend:
    """Base class of a compute backend: one layer, one direction, forward and backward.

    Subclasses set :attr:`name`, :attr:`dtypes` and :attr:`cells` and implement
    :meth:`forward` and :meth:`backward` (and the kernels of any other cell they declare).
    Register an instance (or a factory returning one) with :func:`lstmcpu.register_backend`
    or the ``lstmcpu.backends`` entry-point group.

    Examples
    --------
    >>> import lstmcpu
    >>> backend = lstmcpu.get_backend("numpy")
    >>> backend.can_run("lstm", np.float64)
    True
    >>> backend.can_run(("lstm_peephole", "lstm_coupled"), np.float32)
    True
    """

    #: Name the registry lists the backend under.
    name = "base"
    #: Floating dtypes the kernels accept.
    dtypes = (np.dtype(np.float32), np.dtype(np.float64))
    #: Cell capabilities the kernels implement (a subset of :data:`CELLS`).
    cells = ("lstm",)

    def can_run(self, cell="lstm", dtype=np.float32):
        """Cheap check: can this backend run ``cell`` (a name or a tuple of names) in ``dtype``?"""
        required = (cell,) if isinstance(cell, str) else tuple(cell)
        return all(c in self.cells for c in required) and np.dtype(dtype) in self.dtypes

    def all_finite(self, a):
        """Whether every value of the float array ``a`` is finite (no NaN, no infinity).

        The layers check their input and upstream gradients with the backend that will
        run them, so that a compiled backend can replace NumPy's two passes (a boolean
        array, then its reduction) with one; this default is NumPy's.

        Examples
        --------
        >>> import numpy as np, lstmcpu
        >>> backend = lstmcpu.get_backend("numpy")
        >>> backend.all_finite(np.ones(3)), backend.all_finite(np.array([1.0, np.inf]))
        (True, False)
        """
        return bool(np.isfinite(a).all())

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True, *,
                peephole=None, coupled=False, w_hr=None):  # fmt: skip
        """Run one LSTM layer in one direction over the whole sequence.

        ``peephole``, ``coupled`` and ``w_hr`` select the variants listed in the module
        docstring; a backend that does not declare them never receives them.

        Returns
        -------
        y : ndarray of shape (T, B, H) (P with a projection)
        h_n : ndarray of shape (B, H) (P with a projection)
        c_n : ndarray of shape (B, H)
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
            The cache returned by :meth:`forward` of this backend. A backend may spend it
            (reuse its memory for the gradients), so each forward allows one backward, as
            in PyTorch's autograd without ``retain_graph``; the Cython backend does, and
            raises a ``ValueError`` for a cache used twice.

        Returns
        -------
        dx : (T, B, I), dw_ih : (G, I), dw_hh : (G, H), db : (G,), dh0, dc0 : (B, H)
            When the forward pass had ``peephole`` or ``w_hr``, two more follow:
            ``dpeephole`` (3, H) and ``dw_hr`` (P, H), ``None`` for the one not used.
        """
        raise NotImplementedError

    def gru_forward(self, x, w_ih, w_hh, b, b_hn, h0, lengths=None, need_cache=True):
        """One GRU layer, PyTorch's formulation (gates r, z, n)::

            r = sigmoid(G_r + h W_hr^T),  z = sigmoid(G_z + h W_hz^T)
            n = tanh(G_n + r * (h W_hn^T + b_hn)),  h' = (1 - z) * n + z * h

        where ``G = x W_ih^T + b`` and ``b`` is ``(b_ir + b_hr, b_iz + b_hz, b_in)``.

        Returns ``(y, h_n, cache)``.
        """
        raise NotImplementedError

    def gru_backward(self, dy, dh_n, cache):
        """Returns ``(dx, dw_ih, dw_hh, db, db_hn, dh0)``; ``db`` is the input-side bias
        gradient (so ``grad b_hh = (db_r, db_z, db_hn)``)."""
        raise NotImplementedError

    def rnn_forward(self, x, w_ih, w_hh, b, h0, lengths=None, need_cache=True, *, nonlinearity="tanh"):
        """One Elman RNN layer: ``h' = act(x W_ih^T + b + h W_hh^T)``, act tanh or relu.

        Returns ``(y, h_n, cache)``.
        """
        raise NotImplementedError

    def rnn_backward(self, dy, dh_n, cache):
        """Returns ``(dx, dw_ih, dw_hh, db, dh0)``."""
        raise NotImplementedError

    def __repr__(self):
        return f"<lstmcpu backend {self.name!r}>"
