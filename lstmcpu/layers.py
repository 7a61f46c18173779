"""Recurrent layers with PyTorch's conventions, computed by a pluggable backend.

A layer owns its parameters (plain ndarrays under PyTorch's ``state_dict`` names), stacks
layers, runs the reverse direction, applies inter-layer dropout and handles
``batch_first``; the backend only ever sees one layer in one direction, time-major.

:class:`LSTM` (with the peephole, coupled-gate and projection variants), :class:`GRU` and
:class:`RNN` share everything but their parameters and their kernel calls.
"""

import warnings

import numpy as np

from ._validation import as_float_array, check_finite, check_float_dtype, check_lengths, check_positive_int
from .registry import get_backend

__all__ = ["GRU", "LSTM", "RNN"]


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


class _RecurrentLayer:
    """What every recurrent layer shares: parameters, stacking, directions, dropout, layout.

    Subclasses define the gate count, any extra parameters, the shape of the state, and the
    calls into the backend (:meth:`_kernel_forward`, :meth:`_kernel_backward`).
    """

    _n_gates = 1

    def __init__(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                 bidirectional, dtype, backend, random_state):  # fmt: skip
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        if isinstance(dropout, bool) or not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout only acts between stacked layers; with num_layers=1 it does nothing",
                UserWarning,
                stacklevel=3,
            )
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = check_float_dtype(dtype)
        self.backend = backend
        self._rng = np.random.default_rng(random_state)
        self.training = True
        self.grads = {}
        self._tape = None

    def _finish_init(self):
        """Check the backend (fail early on a bad name) and draw the initial parameters."""
        get_backend(self.backend, cell=self._capabilities(), dtype=self.dtype)
        self._names = {}  # (layer, direction) -> {stem: full parameter name}
        for name, (layer, direction, stem) in self._param_keys().items():
            self._names.setdefault((layer, direction), {})[stem] = name
        self.params = self._init_params()

    # ------------------------------------------------------------------ cell hooks

    def _capabilities(self):
        """Backend cell capabilities this layer needs (see :data:`lstmcpu.backend.CELLS`)."""
        raise NotImplementedError

    @property
    def _output_size(self):
        """Width of ``h`` (and of each direction's output)."""
        return self.hidden_size

    def _state_shapes(self, B):
        n = self.num_layers * self.num_directions
        return [(n, B, self._output_size)]

    def _extra_param_shapes(self):
        return {}

    def _kernel_forward(self, backend, weights, x, states0, lengths, need_cache):
        """Returns ``(y, states_n, cache)`` of one layer and direction."""
        raise NotImplementedError

    def _kernel_backward(self, backend, dy, dstates_n, cache):
        """Returns ``(dx, grads, dstates0)``; ``grads`` maps the parameter stems
        (``weight_ih``, ``bias_hh``, ...) to their gradients."""
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _stem_shapes(self, layer):
        """Shapes of one layer-direction's parameters, by stem, in PyTorch's order."""
        G = self._n_gates * self.hidden_size
        layer_in = self.input_size if layer == 0 else self._output_size * self.num_directions
        shapes = {"weight_ih": (G, layer_in), "weight_hh": (G, self._output_size)}
        if self.bias:
            shapes.update(bias_ih=(G,), bias_hh=(G,))
        shapes.update(self._extra_param_shapes())
        return shapes

    def _param_keys(self):
        """Full parameter name -> (layer, direction, stem), in PyTorch's order."""
        keys = {}
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                suffix = "_reverse" if direction else ""
                for stem in self._stem_shapes(layer):
                    keys[f"{stem}_l{layer}{suffix}"] = (layer, direction, stem)
        return keys

    def _param_shapes(self):
        """Parameter names and shapes in PyTorch's order."""
        return {name: self._stem_shapes(layer)[stem] for name, (layer, _, stem) in self._param_keys().items()}

    def _init_params(self):
        """PyTorch's initialisation: every parameter from U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        return {
            name: self._rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            for name, shape in self._param_shapes().items()
        }

    def _layer_params(self, layer, direction):
        """The parameters of one layer and direction, keyed by stem (``weight_ih``, ...)."""
        return {stem: self.params[name] for stem, name in self._names[(layer, direction)].items()}

    def _zero_bias(self):
        return np.zeros(self._n_gates * self.hidden_size, dtype=self.dtype)

    def state_dict(self):
        """A copy of the parameters under PyTorch's names.

        ``torch_layer.load_state_dict({k: torch.from_numpy(v) for k, v in ...items()})``
        accepts it for the configurations PyTorch has.
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

    def save(self, path):
        """Write the layer (arguments, mode and weights) to ``path`` as a safe model file;
        read it back with :func:`lstmcpu.load` (see :mod:`lstmcpu.persistence`)."""
        from .persistence import save

        save(self, path)

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
        hx : array-like of shape (D * num_layers, B, H), optional
            Initial hidden state; zeros when omitted. Unbatched input takes
            (D * num_layers, H).
        lengths : array-like of int of shape (B,), optional
            Valid steps of each sequence; later steps are padding: they do not change the
            state, and their outputs are zero (PyTorch's packed sequences).

        Returns
        -------
        out : ndarray of shape (T, B, D * H) (or batch-first, or unbatched like ``x``)
        h_n : ndarray, shaped like ``hx``
            State at each sequence's own last step.
        """
        x, unbatched = self._check_input(x)
        T, B, _ = x.shape
        lengths = check_lengths(lengths, T, B)
        states0 = self._check_states(hx, B, unbatched, "hx", self._state_names_in)
        backend = get_backend(self.backend, cell=self._capabilities(), dtype=self.dtype)
        check_finite(x, "x", backend)
        out, states_n = self._forward(x, states0, lengths, backend)
        if self._tape is not None:
            self._tape["unbatched"] = unbatched
        return self._to_user_layout(out, unbatched), self._states_out(states_n, unbatched)

    def _forward(self, x, states0, lengths, backend):
        """:meth:`forward` on checked arrays, for callers that validated their data once.

        ``x`` is time-major ``(T, B, input_size)``, C-contiguous, of :attr:`dtype`;
        ``states0`` is the list of full initial states (``[h0, c0]`` for LSTM, ``[h0]``
        otherwise), each ``(D * num_layers, B, ...)``; ``lengths`` is ``None`` or int64
        ``(B,)`` in ``[1, T]``; ``backend`` is resolved. Returns time-major ``out`` and the
        list of final states.
        """
        T, B, _ = x.shape
        D = self.num_directions
        states_n = [np.empty(shape, self.dtype) for shape in self._state_shapes(B)]
        tape = dict(caches=[], masks=[], lengths=lengths, backend=backend, T=T, B=B, unbatched=False)
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                seq = reverse_padded(layer_input, lengths) if direction else layer_input
                y, last, cache = self._kernel_forward(
                    backend, self._layer_params(layer, direction), seq, [s[k] for s in states0], lengths,
                    self.training,
                )  # fmt: skip
                for full, value in zip(states_n, last):
                    full[k] = value
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
        return layer_input, states_n

    _state_names_in = ("h0",)
    _state_names_grad = ("grad_h_n",)

    def _check_input(self, x):
        """``x`` as a time-major C-contiguous array of :attr:`dtype`, and whether it was
        unbatched; its values are checked once the backend is known (``check_finite``)."""
        x = as_float_array(x, self.dtype, "x", finite=False)
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

    def _check_states(self, given, B, unbatched, what, names):
        """Validate user states (a tuple for LSTM, one array otherwise) -> list of full arrays."""
        shapes = self._state_shapes(B)
        if given is None:
            return [np.zeros(shape, self.dtype) for shape in shapes]
        if len(names) > 1:
            if not (isinstance(given, (tuple, list)) and len(given) == len(names)):
                raise TypeError(f"{what} must be a tuple ({', '.join(names)}) of arrays, or None")
        else:
            given = (given,)
        states = []
        for name, shape, value in zip(names, shapes, given):
            if value is None:
                states.append(np.zeros(shape, self.dtype))
                continue
            value = as_float_array(value, self.dtype, name)
            expected = (shape[0], shape[2]) if unbatched else shape
            if value.shape != expected:
                raise ValueError(f"{name} must have shape {expected}, got {value.shape}")
            states.append(np.ascontiguousarray(value.reshape(shape)))
        return states

    def _to_user_layout(self, seq, unbatched):
        if unbatched:
            return seq[:, 0, :]
        if self.batch_first:
            return np.ascontiguousarray(seq.transpose(1, 0, 2))
        return seq

    def _states_out(self, states, unbatched):
        if unbatched:
            states = [s[:, 0, :] for s in states]
        return tuple(states) if len(states) > 1 else states[0]

    # ------------------------------------------------------------------ backward

    def backward(self, grad_out, grad_state=None):
        """Backpropagate through the last training-mode :meth:`forward`.

        Parameters
        ----------
        grad_out : array-like, same shape as ``out``
            Gradient of the loss w.r.t. ``out``; entries at padded steps are ignored.
        grad_state : array-like or None
            Gradient w.r.t. ``h_n``; zeros when omitted.

        Returns
        -------
        grad_x : ndarray, same shape as ``x``
        grad_h0 : ndarray, same shape as ``h_n``

        The parameter gradients are stored in :attr:`grads`. The forward cache is released,
        so a second ``backward`` needs a new ``forward``.
        """
        tape = self._tape
        if tape is None:
            raise RuntimeError(
                "backward() needs a forward() in training mode first (call .train() before "
                "forward; each forward allows one backward)"
            )
        T, B, unbatched = tape["T"], tape["B"], tape["unbatched"]
        grad_out = self._check_grad_out(grad_out, T, B, unbatched)
        dstates_n = self._check_states(grad_state, B, unbatched, "grad_state", self._state_names_grad)
        grad_x, dstates0 = self._backward(grad_out, dstates_n)
        return self._to_user_layout(grad_x, unbatched), self._states_out(dstates0, unbatched)

    def _backward(self, grad_out, dstates_n):
        """:meth:`backward` on checked arrays, after :meth:`_forward`: time-major ``grad_out``
        ``(T, B, D * H_out)`` and the list of full state gradients. Returns time-major
        ``grad_x`` and the list of initial-state gradients; fills :attr:`grads`."""
        tape = self._tape
        D, R = self.num_directions, self._output_size
        caches, lengths, backend = tape["caches"], tape["lengths"], tape["backend"]
        dstates0 = [np.empty_like(s) for s in dstates_n]
        grads = {}
        d_layer_out = grad_out
        for layer in range(self.num_layers - 1, -1, -1):
            mask = tape["masks"][layer]
            if mask is not None:
                d_layer_out = d_layer_out * mask
            d_input = None
            for direction in range(D):
                k = layer * D + direction
                dy = np.ascontiguousarray(d_layer_out[:, :, direction * R : (direction + 1) * R])
                if direction:
                    dy = reverse_padded(dy, lengths)
                dx, layer_grads, first = self._kernel_backward(backend, dy, [s[k] for s in dstates_n], caches[k])
                for full, value in zip(dstates0, first):
                    full[k] = value
                if direction:
                    dx = reverse_padded(dx, lengths)
                d_input = dx if d_input is None else d_input + dx
                suffix = "_reverse" if direction else ""
                grads.update({f"{stem}_l{layer}{suffix}": g for stem, g in layer_grads.items()})
            d_layer_out = d_input
        self.grads = {name: grads[name] for name in self.params}
        self._tape = None
        return d_layer_out, dstates0

    def _check_grad_out(self, grad_out, T, B, unbatched):
        features = self.num_directions * self._output_size
        if unbatched:
            expected = (T, features)
        else:
            expected = (B, T, features) if self.batch_first else (T, B, features)
        grad_out = as_float_array(grad_out, self.dtype, "grad_out", finite=False)
        check_finite(grad_out, "grad_out", self._tape["backend"])
        if grad_out.shape != expected:
            raise ValueError(f"grad_out must have the shape of out, {expected}; got {grad_out.shape}")
        if unbatched:
            return grad_out[:, None, :]
        if self.batch_first:
            return np.ascontiguousarray(grad_out.transpose(1, 0, 2))
        return grad_out

    # ------------------------------------------------------------------ display

    _repr_defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}

    def __repr__(self):
        args = [str(self.input_size), str(self.hidden_size)]
        for name, default in self._repr_defaults.items():
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype}")
        return f"{type(self).__name__}({', '.join(args)})"


_COMMON_PARAMETERS_DOC = """
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
        can run this cell).
    random_state : int, numpy Generator or None, default=None
        Seeds the initialisation U(-1/sqrt(H), 1/sqrt(H)) and the dropout masks."""

_COMMON_ATTRIBUTES_DOC = """
    Attributes
    ----------
    params : dict of str to ndarray
        Parameters under PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...).
    grads : dict of str to ndarray
        Gradients of the parameters after :meth:`backward`, same keys as ``params``.
    training : bool
        Training mode (the default, as in PyTorch) keeps what ``backward`` needs and applies
        dropout; :meth:`eval` turns both off."""


class LSTM(_RecurrentLayer):
    __doc__ = f"""Multi-layer long short-term memory (LSTM) layer, PyTorch-compatible.

    For each step, with gates in PyTorch's order i, f, g, o::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi [+ p_i * c])
        f = sigmoid(W_if x + b_if + W_hf h + b_hf [+ p_f * c])      (coupled: i = 1 - f)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f * c + i * g
        o = sigmoid(W_io x + b_io + W_ho h + b_ho [+ p_o * c'])
        h' = o * tanh(c')                                          (projection: W_hr (o * tanh(c')))

    Parameters
    ----------{_COMMON_PARAMETERS_DOC}
    proj_size : int, default=0
        If positive, ``h`` is projected to ``proj_size`` features by ``weight_hr_l{{k}}``
        (PyTorch's LSTMP); ``out`` and ``h_n`` then have ``proj_size`` features.
    peephole : bool, default=False
        Gers & Schmidhuber's peephole connections: per-unit weights ``weight_ci_l{{k}}``,
        ``weight_cf_l{{k}}`` and ``weight_co_l{{k}}`` let the gates see the cell state.
        (PyTorch has no peepholes; ONNX's LSTM operator does.)
    coupled : bool, default=False
        Coupled input-forget gate (CIFG): ``i = 1 - f``. The layer has no input-gate weights:
        ``weight_ih`` and ``weight_hh`` have ``3 * hidden_size`` rows, gates f, g, o.
{_COMMON_ATTRIBUTES_DOC}

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

    _state_names_in = ("h0", "c0")
    _state_names_grad = ("grad_h_n", "grad_c_n")
    _repr_defaults = {**_RecurrentLayer._repr_defaults, "proj_size": 0, "peephole": False, "coupled": False}

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, coupled=False, dtype=np.float32,
                 backend="auto", random_state=None):  # fmt: skip
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, backend, random_state)  # fmt: skip
        self.proj_size = check_positive_int(proj_size, "proj_size", minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), got {proj_size}")
        self.peephole = bool(peephole)
        self.coupled = bool(coupled)
        self._n_gates = 3 if self.coupled else 4
        self._finish_init()

    def _capabilities(self):
        needed = ["lstm"]
        needed += ["lstm_peephole"] if self.peephole else []
        needed += ["lstm_coupled"] if self.coupled else []
        needed += ["lstm_proj"] if self.proj_size else []
        return tuple(needed)

    @property
    def _output_size(self):
        return self.proj_size or self.hidden_size

    def _state_shapes(self, B):
        n = self.num_layers * self.num_directions
        return [(n, B, self._output_size), (n, B, self.hidden_size)]

    def _extra_param_shapes(self):
        shapes = {}
        if self.peephole:
            gates = ("f", "o") if self.coupled else ("i", "f", "o")
            shapes.update({f"weight_c{gate}": (self.hidden_size,) for gate in gates})
        if self.proj_size:
            shapes["weight_hr"] = (self.proj_size, self.hidden_size)
        return shapes

    def _kernel_forward(self, backend, p, x, states0, lengths, need_cache):
        b = p["bias_ih"] + p["bias_hh"] if self.bias else self._zero_bias()
        options = {}
        if self.peephole:
            zero = np.zeros(self.hidden_size, self.dtype)
            options["peephole"] = np.stack([p.get("weight_ci", zero), p["weight_cf"], p["weight_co"]])
        if self.coupled:
            options["coupled"] = True
        if self.proj_size:
            options["w_hr"] = p["weight_hr"]
        h0, c0 = states0
        y, h_n, c_n, cache = backend.forward(
            x, p["weight_ih"], p["weight_hh"], b, h0, c0, lengths, need_cache, **options
        )
        return y, (h_n, c_n), cache

    def _kernel_backward(self, backend, dy, dstates_n, cache):
        result = backend.backward(dy, dstates_n[0], dstates_n[1], cache)
        dx, dw_ih, dw_hh, db, dh0, dc0 = result[:6]
        grads = {"weight_ih": dw_ih, "weight_hh": dw_hh}
        if self.bias:
            grads.update(bias_ih=db, bias_hh=db.copy())
        if self.peephole:
            dpeephole = result[6]
            if not self.coupled:
                grads["weight_ci"] = dpeephole[0]
            grads.update(weight_cf=dpeephole[1], weight_co=dpeephole[2])
        if self.proj_size:
            grads["weight_hr"] = result[7]
        return dx, grads, (dh0, dc0)

    def forward(self, x, hx=None, lengths=None):
        """Run the layer.

        Parameters
        ----------
        x : array-like of shape (T, B, input_size), (B, T, input_size) with batch_first,
            or (T, input_size) for one unbatched sequence.
        hx : tuple (h0, c0), optional
            Initial states of shape (D * num_layers, B, H_out) and (D * num_layers, B, H),
            where H_out is ``proj_size or hidden_size``; zeros when omitted. Unbatched input
            takes (D * num_layers, ...) without the B axis.
        lengths : array-like of int of shape (B,), optional
            Valid steps of each sequence; later steps are padding: they do not change the
            state, and their outputs are zero (PyTorch's packed sequences).

        Returns
        -------
        out : ndarray of shape (T, B, D * H_out) (or batch-first, or unbatched like ``x``)
        (h_n, c_n) : ndarrays, shaped like ``hx``
            States at each sequence's own last step.
        """
        return super().forward(x, hx, lengths)

    def backward(self, grad_out, grad_state=None):
        """Backpropagate through the last training-mode :meth:`forward`.

        Parameters
        ----------
        grad_out : array-like, same shape as ``out``
            Gradient of the loss w.r.t. ``out``; entries at padded steps are ignored.
        grad_state : tuple (grad_h_n, grad_c_n) or None
            Gradient w.r.t. the final states; zeros when omitted (either may be None).

        Returns
        -------
        grad_x : ndarray, same shape as ``x``
        (grad_h0, grad_c0) : ndarrays, same shapes as the states

        The parameter gradients are stored in :attr:`grads`. The forward cache is released,
        so a second ``backward`` needs a new ``forward``.
        """
        return super().backward(grad_out, grad_state)


class GRU(_RecurrentLayer):
    __doc__ = f"""Multi-layer gated recurrent unit (GRU) layer, PyTorch-compatible.

    For each step, with gates in PyTorch's order r, z, n::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Parameters
    ----------{_COMMON_PARAMETERS_DOC}
{_COMMON_ATTRIBUTES_DOC}

    Examples
    --------
    >>> import numpy as np
    >>> import lstmcpu
    >>> gru = lstmcpu.GRU(input_size=10, hidden_size=20, num_layers=2, random_state=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 10))
    >>> out, h_n = gru(x, np.zeros((2, 3, 20)))
    >>> out.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
    >>> grad_x, grad_h0 = gru.backward(np.ones_like(out))
    >>> grad_x.shape, grad_h0.shape
    ((5, 3, 10), (2, 3, 20))
    """

    _n_gates = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float32, backend="auto", random_state=None):  # fmt: skip
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, backend, random_state)  # fmt: skip
        self._finish_init()

    def _capabilities(self):
        return ("gru",)

    def _kernel_forward(self, backend, p, x, states0, lengths, need_cache):
        H = self.hidden_size
        if self.bias:
            # r and z add their two biases; n keeps b_hn apart, inside the reset product.
            b = p["bias_ih"].copy()
            b[: 2 * H] += p["bias_hh"][: 2 * H]
            b_hn = p["bias_hh"][2 * H :]
        else:
            b, b_hn = self._zero_bias(), np.zeros(H, self.dtype)
        y, h_n, cache = backend.gru_forward(x, p["weight_ih"], p["weight_hh"], b, b_hn, states0[0], lengths, need_cache)
        return y, (h_n,), cache

    def _kernel_backward(self, backend, dy, dstates_n, cache):
        dx, dw_ih, dw_hh, db, db_hn, dh0 = backend.gru_backward(dy, dstates_n[0], cache)
        grads = {"weight_ih": dw_ih, "weight_hh": dw_hh}
        if self.bias:
            grads.update(bias_ih=db, bias_hh=np.concatenate([db[: 2 * self.hidden_size], db_hn]))
        return dx, grads, (dh0,)


class RNN(_RecurrentLayer):
    __doc__ = f"""Multi-layer Elman RNN layer with tanh or ReLU, PyTorch-compatible.

    For each step: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Parameters
    ----------{_COMMON_PARAMETERS_DOC}
    nonlinearity : {{"tanh", "relu"}}, default="tanh"
{_COMMON_ATTRIBUTES_DOC}

    Examples
    --------
    >>> import numpy as np
    >>> import lstmcpu
    >>> rnn = lstmcpu.RNN(input_size=10, hidden_size=20, num_layers=2, random_state=0)
    >>> x = np.random.default_rng(0).standard_normal((5, 3, 10))
    >>> out, h_n = rnn(x, np.zeros((2, 3, 20)))
    >>> out.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
    """

    _repr_defaults = {**_RecurrentLayer._repr_defaults, "nonlinearity": "tanh"}

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, backend="auto", random_state=None):  # fmt: skip
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, backend, random_state)  # fmt: skip
        self._finish_init()

    def _capabilities(self):
        return (f"rnn_{self.nonlinearity}",)

    def _kernel_forward(self, backend, p, x, states0, lengths, need_cache):
        b = p["bias_ih"] + p["bias_hh"] if self.bias else self._zero_bias()
        y, h_n, cache = backend.rnn_forward(
            x, p["weight_ih"], p["weight_hh"], b, states0[0], lengths, need_cache, nonlinearity=self.nonlinearity
        )
        return y, (h_n,), cache

    def _kernel_backward(self, backend, dy, dstates_n, cache):
        dx, dw_ih, dw_hh, db, dh0 = backend.rnn_backward(dy, dstates_n[0], cache)
        grads = {"weight_ih": dw_ih, "weight_hh": dw_hh}
        if self.bias:
            grads.update(bias_ih=db, bias_hh=db.copy())
        return dx, grads, (dh0,)


def _to_numpy(value):
    """An array from an array-like, including a torch tensor (detached, on the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
