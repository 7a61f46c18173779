"""Recurrent layers with PyTorch's conventions, computed by a pluggable backend.

A layer owns its parameters (plain ndarrays under PyTorch's ``state_dict`` names), stacks
layers, runs the reverse direction, applies inter-layer dropout and handles
``batch_first``; the backend only ever sees one layer in one direction, time-major.
"""

import warnings

import numpy as np

from ._validation import as_float_array, check_float_dtype, check_lengths, check_positive_int
from .registry import get_backend

__all__ = ["LSTM"]


def reverse_padded(a, lengths):
    """Reverse each sequence of the time-major ``a`` (T, B, ...) within its own length.

    Steps past a sequence's length stay where they are. The operation is its own inverse.

    Examples
    --------
    >>> a = np.arange(6.0).reshape(3, 2, 1)  # a[t, b] = 2 t + b
    >>> reverse_padded(a, np.array([3, 2]))[:, :, 0]
    array([[4., 3.],
           [2., 1.],
           [0., 5.]])
    """
    if lengths is None:
        return np.ascontiguousarray(a[::-1])
    T, B = a.shape[:2]
    steps = np.arange(T)[:, None]
    source = np.where(steps < lengths, lengths - 1 - steps, steps)
    return a[source, np.arange(B)]


class LSTM:
    """Multi-layer long short-term memory (LSTM) layer, PyTorch-compatible.

    For each step ``t``, with gates in PyTorch's order i, f, g, o::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g
        h' = o * tanh(c')

    Parameters
    ----------
    input_size : int
        Number of features of each input step.
    hidden_size : int
        Number of features of the hidden state ``h``.
    num_layers : int, default=1
        Number of stacked layers; layer ``k > 0`` reads the output of layer ``k - 1``.
    bias : bool, default=True
        Whether to use the biases ``b_ih`` and ``b_hh``.
    batch_first : bool, default=False
        If true, ``x`` and ``out`` are ``(B, T, features)``; the states stay
        ``(layers, B, H)`` as in PyTorch.
    dropout : float, default=0.0
        Dropout probability on the outputs of every layer but the last, in training mode.
    bidirectional : bool, default=False
        Add a layer that reads each sequence backwards (within its own length).
    dtype : {np.float32, np.float64}, default=np.float32
        Dtype of the parameters and of every computation.
    backend : str or Backend, default="auto"
        Compute backend: a name from :func:`lstmcpu.available_backends`, a backend object,
        or ``"auto"`` (the ``LSTMCPU_BACKEND`` environment variable, else the fastest that
        can run).
    random_state : int, numpy Generator or None, default=None
        Seeds the initialisation U(-1/sqrt(H), 1/sqrt(H)) and the dropout masks.

    Attributes
    ----------
    params : dict of str to ndarray
        Parameters under PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...).
    grads : dict of str to ndarray
        Gradients of the parameters after :meth:`backward`, same keys as ``params``.
    training : bool
        Training mode (the default, as in PyTorch) keeps what :meth:`backward` needs and
        applies dropout; :meth:`eval` turns both off.

    Examples
    --------
    The example of PyTorch's documentation:

    >>> import numpy as np
    >>> import lstmcpu
    >>> rnn = lstmcpu.LSTM(input_size=6, hidden_size=3, num_layers=2, random_state=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 4, 6))
    >>> h0, c0 = np.zeros((2, 4, 3)), np.zeros((2, 4, 3))
    >>> out, (h_n, c_n) = rnn(x, (h0, c0))
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 4, 3), (2, 4, 3), (2, 4, 3))

    Gradients of a loss ``L`` flow back from ``dL/dout``:

    >>> grad_x, (grad_h0, grad_c0) = rnn.backward(np.ones_like(out))
    >>> grad_x.shape, rnn.grads["weight_hh_l1"].shape
    ((5, 4, 6), (12, 3))
    """

    cell = "lstm"
    _gates = 4

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        dtype=np.float32,
        backend="auto",
        random_state=None,
    ):
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout only acts between stacked layers; with num_layers=1 it does nothing",
                UserWarning,
                stacklevel=2,
            )
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = check_float_dtype(dtype)
        self.backend = backend
        get_backend(backend, cell=self.cell, dtype=self.dtype)  # fail early on a bad name
        self._rng = np.random.default_rng(random_state)
        self.training = True
        self.params = self._init_params()
        self.grads = {}
        self._tape = None

    # ------------------------------------------------------------------ parameters

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _param_shapes(self):
        """Parameter names and shapes in PyTorch's order."""
        G, H = self._gates * self.hidden_size, self.hidden_size
        shapes = {}
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else H * self.num_directions
            for suffix in ("", "_reverse")[: self.num_directions]:
                shapes[f"weight_ih_l{layer}{suffix}"] = (G, layer_in)
                shapes[f"weight_hh_l{layer}{suffix}"] = (G, H)
                if self.bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (G,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (G,)
        return shapes

    def _init_params(self):
        bound = 1.0 / np.sqrt(self.hidden_size)
        return {
            name: self._rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            for name, shape in self._param_shapes().items()
        }

    def state_dict(self):
        """A copy of the parameters under PyTorch's names.

        ``torch.nn.LSTM.load_state_dict({k: torch.from_numpy(v) for k, v in ...})`` accepts it.
        """
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load parameters from a mapping of array-likes (a CPU torch state_dict works).

        Every expected name must be present with the expected shape; extra names are an error.
        """
        shapes = self._param_shapes()
        missing = [k for k in shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in shapes]
        if missing or unexpected:
            raise KeyError(
                f"state_dict does not match {self!r}: missing keys {missing}, unexpected keys {unexpected}"
            )
        loaded = {}
        for name, shape in shapes.items():
            value = as_float_array(_to_numpy(state_dict[name]), self.dtype, f"state_dict[{name!r}]")
            if value.shape != shape:
                raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, expected {shape}")
            loaded[name] = value
        self.params = loaded
        self.grads = {}
        self._tape = None

    def _layer_weights(self, layer, direction):
        suffix = "_reverse" if direction else ""
        w_ih = self.params[f"weight_ih_l{layer}{suffix}"]
        w_hh = self.params[f"weight_hh_l{layer}{suffix}"]
        if self.bias:
            b = self.params[f"bias_ih_l{layer}{suffix}"] + self.params[f"bias_hh_l{layer}{suffix}"]
        else:
            b = np.zeros(w_hh.shape[0], dtype=self.dtype)
        return w_ih, w_hh, b

    # ------------------------------------------------------------------ modes

    def train(self, mode=True):
        """Set training mode (keeps the backward cache, applies dropout). Returns self."""
        self.training = bool(mode)
        if not self.training:
            self._tape = None
        return self

    def eval(self):
        """Set inference mode: no cache, no dropout. Returns self."""
        return self.train(False)

    # ------------------------------------------------------------------ forward

    def __call__(self, x, hx=None, lengths=None):
        return self.forward(x, hx, lengths)

    def forward(self, x, hx=None, lengths=None):
        """Run the layer.

        Parameters
        ----------
        x : array-like of shape (T, B, input_size), (B, T, input_size) with batch_first,
            or (T, input_size) for one unbatched sequence.
        hx : tuple (h0, c0) of arrays of shape (D * num_layers, B, H), optional
            Initial states; zeros when omitted. Unbatched input takes (D * num_layers, H).
        lengths : array-like of int of shape (B,), optional
            Valid steps of each sequence; later steps are padding: they do not change the
            state, and their outputs are zero (PyTorch's packed sequences).

        Returns
        -------
        out : ndarray of shape (T, B, D * H) (or batch-first, or unbatched like ``x``)
        (h_n, c_n) : ndarrays of shape (D * num_layers, B, H)
            States at each sequence's own last step.
        """
        x, unbatched = self._check_input(x)
        T, B, _ = x.shape
        lengths = check_lengths(lengths, T, B)
        h0, c0 = self._check_state(hx, B, unbatched)
        backend = get_backend(self.backend, cell=self.cell, dtype=self.dtype)
        D, H = self.num_directions, self.hidden_size
        h_n = np.empty((self.num_layers * D, B, H), dtype=self.dtype)
        c_n = np.empty_like(h_n)
        tape = {"caches": [], "masks": [], "lengths": lengths, "backend": backend}
        tape.update(T=T, B=B, unbatched=unbatched)
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                w_ih, w_hh, b = self._layer_weights(layer, direction)
                seq = reverse_padded(layer_input, lengths) if direction else layer_input
                y, h_n[k], c_n[k], cache = backend.forward(
                    seq, w_ih, w_hh, b, h0[k], c0[k], lengths, need_cache=self.training
                )
                outputs.append(reverse_padded(y, lengths) if direction else y)
                tape["caches"].append(cache)
            out = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                keep = 1.0 - self.dropout
                mask = (self._rng.random(out.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                out = out * mask
            tape["masks"].append(mask)
            layer_input = out
        self._tape = tape if self.training else None
        return self._to_user_layout(layer_input, unbatched), self._state_out((h_n, c_n), unbatched)

    def _check_input(self, x):
        x = as_float_array(x, self.dtype, "x")
        unbatched = x.ndim == 2
        if x.ndim not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"x must be 3-D {layout} or 2-D (T, input_size) for one sequence; got shape {x.shape}"
            )
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"x has {x.shape[2]} features per step, but this layer has input_size={self.input_size}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x must have at least one time step and one sequence; got shape {x.shape}")
        return x, unbatched

    def _state_shape(self, B, unbatched):
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        return (shape[0], shape[2]) if unbatched else shape

    def _check_state(self, hx, B, unbatched):
        full = (self.num_layers * self.num_directions, B, self.hidden_size)
        if hx is None:
            return np.zeros(full, self.dtype), np.zeros(full, self.dtype)
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("hx must be a tuple (h0, c0) of two arrays, or None")
        expected = self._state_shape(B, unbatched)
        states = []
        for name, s in zip(("h0", "c0"), hx):
            s = as_float_array(s, self.dtype, name)
            if s.shape != expected:
                raise ValueError(f"{name} must have shape {expected}, got {s.shape}")
            states.append(np.ascontiguousarray(s.reshape(full)))
        return states

    def _to_user_layout(self, seq, unbatched):
        if unbatched:
            return seq[:, 0, :]
        if self.batch_first:
            return np.ascontiguousarray(seq.transpose(1, 0, 2))
        return seq

    def _state_out(self, states, unbatched):
        if unbatched:
            return tuple(s[:, 0, :] for s in states)
        return states

    # ------------------------------------------------------------------ backward

    def backward(self, grad_out, grad_state=None):
        """Backpropagate through the last training-mode :meth:`forward`.

        Parameters
        ----------
        grad_out : array-like, same shape as ``out``
            Gradient of the loss w.r.t. ``out``; entries at padded steps are ignored.
        grad_state : tuple (grad_h_n, grad_c_n) or None
            Gradient w.r.t. the final states; zeros when omitted.

        Returns
        -------
        grad_x : ndarray, same shape as ``x``
        (grad_h0, grad_c0) : ndarrays, same shape as the states

        The parameter gradients are stored in :attr:`grads`. The forward cache is released,
        so a second ``backward`` needs a new ``forward``.
        """
        tape = self._tape
        if tape is None:
            raise RuntimeError(
                "backward() needs a forward() in training mode first (call .train() before "
                "forward; each forward allows one backward)"
            )
        D, H = self.num_directions, self.hidden_size
        T, B, unbatched = tape["T"], tape["B"], tape["unbatched"]
        caches, lengths, backend = tape["caches"], tape["lengths"], tape["backend"]
        grad_out = self._check_grad_out(grad_out, T, B, unbatched)
        dh_n, dc_n = self._check_grad_state(grad_state, B, unbatched)
        grads = {}
        dh0 = np.empty_like(dh_n)
        dc0 = np.empty_like(dc_n)
        d_layer_out = grad_out
        for layer in range(self.num_layers - 1, -1, -1):
            mask = tape["masks"][layer]
            if mask is not None:
                d_layer_out = d_layer_out * mask
            d_input = None
            for direction in range(D):
                k = layer * D + direction
                dy = np.ascontiguousarray(d_layer_out[:, :, direction * H : (direction + 1) * H])
                if direction:
                    dy = reverse_padded(dy, lengths)
                dx, dw_ih, dw_hh, db, dh0[k], dc0[k] = backend.backward(dy, dh_n[k], dc_n[k], caches[k])
                if direction:
                    dx = reverse_padded(dx, lengths)
                d_input = dx if d_input is None else d_input + dx
                suffix = "_reverse" if direction else ""
                grads[f"weight_ih_l{layer}{suffix}"] = dw_ih
                grads[f"weight_hh_l{layer}{suffix}"] = dw_hh
                if self.bias:
                    grads[f"bias_ih_l{layer}{suffix}"] = db
                    grads[f"bias_hh_l{layer}{suffix}"] = db.copy()
            d_layer_out = d_input
        self.grads = {name: grads[name] for name in self.params}
        self._tape = None
        return self._to_user_layout(d_layer_out, unbatched), self._state_out((dh0, dc0), unbatched)

    def _check_grad_out(self, grad_out, T, B, unbatched):
        features = self.num_directions * self.hidden_size
        if unbatched:
            expected = (T, features)
        else:
            expected = (B, T, features) if self.batch_first else (T, B, features)
        grad_out = as_float_array(grad_out, self.dtype, "grad_out")
        if grad_out.shape != expected:
            raise ValueError(f"grad_out must have the shape of out, {expected}; got {grad_out.shape}")
        if unbatched:
            return grad_out[:, None, :]
        if self.batch_first:
            return np.ascontiguousarray(grad_out.transpose(1, 0, 2))
        return grad_out

    def _check_grad_state(self, grad_state, B, unbatched):
        full = (self.num_layers * self.num_directions, B, self.hidden_size)
        if grad_state is None:
            return np.zeros(full, self.dtype), np.zeros(full, self.dtype)
        if not (isinstance(grad_state, (tuple, list)) and len(grad_state) == 2):
            raise TypeError("grad_state must be a tuple (grad_h_n, grad_c_n) of two arrays, or None")
        expected = self._state_shape(B, unbatched)
        grads = []
        for name, g in zip(("grad_h_n", "grad_c_n"), grad_state):
            g = np.zeros(full, self.dtype) if g is None else as_float_array(g, self.dtype, name)
            if g.shape not in (expected, full):
                raise ValueError(f"{name} must have shape {expected}, got {g.shape}")
            grads.append(np.ascontiguousarray(g.reshape(full)))
        return grads

    def __repr__(self):
        args = [str(self.input_size), str(self.hidden_size)]
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False}  # fmt: skip
        for name, default in defaults.items():
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype}")
        return f"{type(self).__name__}({', '.join(args)})"


def _to_numpy(value):
    """An array from an array-like, including a torch tensor (detached, on the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
