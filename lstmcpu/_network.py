"""The network behind the estimators: a recurrent stack and a dense head, in one flat vector.

Every trainable array (the recurrent layer's ``params`` and the head's weight and bias) is a
view into one contiguous vector, weights first and biases last, so the optimizer, gradient
clipping and L2 penalty each act on a single array, and early stopping saves the best model
with one copy.
"""

import copy

import numpy as np

from .layers import GRU, LSTM, RNN

__all__ = ["CELLS", "RecurrentState", "SequenceNetwork"]

#: Recurrent layer class for each value of the estimators' ``cell`` parameter.
CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


class RecurrentState:
    """Opaque carried state of :meth:`predict_stream`: the recurrent states of every layer.

    Attributes
    ----------
    states : list of ndarray
        The layer's states (``[h, c]`` for an LSTM), each ``(num_layers, n_samples, ...)``.
    n_steps : int
        Time steps consumed so far.
    """

    def __init__(self, states, n_steps):
        self.states, self.n_steps = states, n_steps

    def __repr__(self):
        return f"RecurrentState(n_samples={self.states[0].shape[1]}, n_steps={self.n_steps})"


class SequenceNetwork:
    """A recurrent stack with a dense head on its top layer, parameters in one flat vector.

    Parameters
    ----------
    cell : str
        A key of :data:`CELLS`.
    n_features, hidden_size, num_layers, bidirectional, dropout, dtype, backend
        Passed to the recurrent layer.
    n_outputs : int
        Width of the dense head (classes, or regression targets).
    output : {"last", "sequence"}
        ``"last"``: the head reads each sequence's final state (the top layer's ``h_n``; for
        a bidirectional layer, the forward direction at the sequence's last valid step and
        the reverse direction at step 0, as PyTorch's ``h_n``). ``"sequence"``: the head
        reads the top layer's output at every step.
    rng : numpy.random.RandomState
        Source of the initial weights.
    cell_options : dict, optional
        Extra arguments of the cell's layer (``peephole``, ``coupled``, ``proj_size`` of an LSTM).
    forget_bias : float or None
        For an LSTM: the forget gate's initial total bias (``bias_ih`` takes it, ``bias_hh``
        zero); None keeps PyTorch's uniform initialisation.
    """

    def __init__(self, cell, n_features, hidden_size, num_layers, bidirectional, dropout,
                 dtype, backend, n_outputs, output, rng, cell_options=None, forget_bias=None):  # fmt: skip
        self.rnn = CELLS[cell](
            n_features, hidden_size, num_layers, dropout=dropout, bidirectional=bidirectional,
            dtype=dtype, backend=backend, random_state=rng.randint(np.iinfo(np.int32).max),
            **(cell_options or {}),
        )  # fmt: skip
        if forget_bias is not None and cell == "lstm":
            _set_forget_bias(self.rnn, forget_bias)
        self.output = output
        self.dtype = self.rnn.dtype
        n_in = self.rnn.num_directions * self.rnn._output_size
        # PyTorch's nn.Linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / np.sqrt(n_in)
        arrays = dict(self.rnn.params)
        arrays["head.weight"] = rng.uniform(-bound, bound, (n_outputs, n_in))
        arrays["head.bias"] = rng.uniform(-bound, bound, n_outputs)
        names = [k for k in arrays if "bias" not in k] + [k for k in arrays if "bias" in k]
        self._layout, offset = [], 0
        for name in names:
            shape = np.shape(arrays[name])
            self._layout.append((name, offset, shape))
            offset += int(np.prod(shape))
        #: Number of leading entries of :attr:`flat` that are weights (the L2 penalty's part).
        self.n_weights = sum(int(np.prod(shape)) for name, _, shape in self._layout if "bias" not in name)
        self.flat = np.empty(offset, dtype=self.dtype)
        self._link()
        for name, value in arrays.items():
            self._views[name][...] = value

    def _link(self):
        """(Re)create the views of :attr:`flat` and :attr:`grad` that the layer and head use."""
        self.grad = np.zeros_like(self.flat)
        self._views, self._grad_views = {}, {}
        for name, offset, shape in self._layout:
            size = int(np.prod(shape))
            self._views[name] = self.flat[offset : offset + size].reshape(shape)
            self._grad_views[name] = self.grad[offset : offset + size].reshape(shape)
        self.rnn.params = {name: self._views[name] for name in self.rnn.params}
        self.head_weight, self.head_bias = self._views["head.weight"], self._views["head.bias"]

    def __getstate__(self):
        # Pickle the flat vector once: the views and gradient buffer are rebuilt on load.
        state = self.__dict__.copy()
        rnn = copy.copy(self.rnn)
        rnn.params, rnn.grads, rnn._tape = dict.fromkeys(self.rnn.params), {}, None
        state["rnn"] = rnn
        for key in ("grad", "_views", "_grad_views", "head_weight", "head_bias"):
            del state[key]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._link()

    @property
    def n_outputs(self):
        return self.head_bias.shape[0]

    # ------------------------------------------------------------------ forward / backward

    def forward(self, x, lengths, backend, states=None, training=False):
        """Head outputs for time-major ``x`` ``(T, B, F)``.

        ``states`` are the initial states (zeros when ``None``). Returns ``(out, states_n)``
        where ``out`` is ``(B, K)`` with ``output="last"`` and ``(T * B, K)`` (time-major
        rows) with ``output="sequence"``.
        """
        rnn = self.rnn
        rnn.training = training
        if states is None:
            states = [np.zeros(shape, self.dtype) for shape in rnn._state_shapes(x.shape[1])]
        seq, states_n = rnn._forward(x, states, lengths, backend)
        if self.output == "last":
            D = rnn.num_directions
            h_n = states_n[0]
            # The top layer's final hidden states, directions side by side: (B, D * H).
            features = h_n[-1] if D == 1 else np.concatenate(h_n[-D:], axis=1)
        else:
            features = seq.reshape(-1, seq.shape[2])
        self._features = features if training else None
        self._seq_shape = seq.shape
        # out = features @ W.T + b
        out = features @ self.head_weight.T
        out += self.head_bias
        return out, states_n

    def backward(self, grad_out):
        """Fill :attr:`grad` from the gradient of the loss w.r.t. the head outputs."""
        rnn, features = self.rnn, self._features
        g = self._grad_views
        # dW = grad_out.T @ features ; db = grad_out.sum(0)
        np.matmul(grad_out.T, features, out=g["head.weight"])
        np.sum(grad_out, axis=0, out=g["head.bias"])
        # d features = grad_out @ W
        d_features = grad_out @ self.head_weight
        T, B, DH = self._seq_shape
        D = rnn.num_directions
        d_states = [np.zeros(shape, self.dtype) for shape in rnn._state_shapes(B)]
        if self.output == "last":
            d_seq = np.zeros((T, B, DH), self.dtype)
            # Undo the concatenation of directions: (B, D * H) -> (D, B, H).
            d_states[0][-D:] = d_features.reshape(B, D, -1).transpose(1, 0, 2)
        else:
            d_seq = d_features.reshape(T, B, DH)
        rnn._backward(d_seq, d_states)
        for name, value in rnn.grads.items():
            g[name][...] = value
        self._features = None
        return self.grad


def _set_forget_bias(lstm, value):
    """Set every forget gate's total bias ``b_ih + b_hh`` to ``value`` (f is the second gate
    block, or the first of a coupled LSTM's f, g, o)."""
    H = lstm.hidden_size
    f = slice(0, H) if lstm.coupled else slice(H, 2 * H)
    for name, param in lstm.params.items():
        if name.startswith("bias_ih"):
            param[f] = value
        elif name.startswith("bias_hh"):
            param[f] = 0
