"""Export lstmcpu layers and fitted estimators to ONNX (needs only the ``onnx`` package:
``pip install "lstmcpu[onnx]"``).

Each stacked layer becomes one ONNX ``LSTM`` / ``GRU`` / ``RNN`` operator (opset 17), with
both directions in one operator when the layer is bidirectional. The model is float32,
the dtype ONNX Runtime's recurrent kernels run (a float64 model's weights are rounded).
ONNX's LSTM operator has no projection: an LSTM with ``proj_size`` cannot be exported.

Graph interface of a **layer** (time-major, as the layer's default; ``batch_first`` layers
take and give ``(B, T, ...)``):

=============== ===================== =====================================================
name            shape                 meaning
=============== ===================== =====================================================
input           (T, B, input_size)    the sequences
sequence_lens   (B,) int32            valid steps per sequence (only with ``lengths=True``)
output          (T, B, D * H_out)     ``out`` of the layer
h_n             (D * num_layers, B, H)
c_n             (D * num_layers, B, H) LSTM only
=============== ===================== =====================================================

Graph interface of a fitted **estimator** (batch-first, like the estimators' ``X``):

=============== ===================== =====================================================
name            shape                 meaning
=============== ===================== =====================================================
input           (B, T, F)             the sequences, padded to a common ``T``; ``F`` is the
                                      number of features per time step (1 for a model
                                      fitted on a 2-D ``X``)
sequence_lens   (B,) int32            valid steps per sequence (only with ``lengths=True``,
                                      the default for estimators)
probabilities   (B, K) or (B, T, K)   classifier: :meth:`predict_proba`; the labels are
                                      ``classes_[probabilities.argmax(-1)]``
predictions     (B, K) or (B, T, K)   regressor: :meth:`predict` in the units of ``y``
                                      (``(B,)`` or ``(B, T)`` for a one-dimensional ``y``)
=============== ===================== =====================================================

The shapes with ``T`` are those of ``output="sequence"``; steps past a sequence's length
hold values of no meaning (the recurrent output there is zero). After the recurrent
operators come the dense head (``Gemm``; ``MatMul`` + ``Add`` at every step with
``output="sequence"``) and ``Softmax`` (classifier) or ``Mul`` + ``Add`` undoing the
regressor's target standardization.
"""

import numpy as np

from .interop import onnx_gru_weights, onnx_lstm_weights, onnx_rnn_weights
from .layers import GRU, LSTM, RNN

__all__ = ["OPSET", "export", "layer_to_onnx", "to_onnx"]

#: The ONNX opset of exported models.
OPSET = 17


def to_onnx(model, lengths=None):
    """Build the ``onnx.ModelProto`` of a layer or of a fitted estimator.

    Parameters
    ----------
    model : lstmcpu.LSTM, GRU, RNN, or a fitted LSTMClassifier / LSTMRegressor
        An LSTM without projection (ONNX's LSTM operator has none).
    lengths : bool or None, default=None
        Add a ``sequence_lens`` input for variable-length batches. ``None``: no for a
        layer, yes for an estimator.

    Returns
    -------
    onnx.ModelProto
        With the inputs and outputs listed in the module docstring, opset :data:`OPSET`.

    Examples
    --------
    >>> import numpy as np
    >>> import lstmcpu
    >>> X = np.random.default_rng(0).standard_normal((20, 5, 2))
    >>> clf = lstmcpu.LSTMClassifier(hidden_size=4, max_iter=3, random_state=0)
    >>> clf = clf.fit(X, X[:, :, 0].sum(axis=1) > 0)
    >>> model = to_onnx(clf)
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    (['input', 'sequence_lens'], ['probabilities'])
    """
    if isinstance(model, (LSTM, GRU, RNN)):
        return layer_to_onnx(model, lengths=bool(lengths))
    from .estimators import LSTMClassifier, LSTMRegressor

    if isinstance(model, (LSTMClassifier, LSTMRegressor)):
        return _estimator_to_onnx(model, lengths=True if lengths is None else bool(lengths))
    raise TypeError(
        f"can export an lstmcpu LSTM, GRU or RNN layer or a fitted LSTMClassifier / "
        f"LSTMRegressor, got {type(model).__name__}"
    )


def export(model, path, lengths=None):
    """Write ``model`` (a layer or a fitted estimator) to ``path`` as an ONNX file.

    Parameters
    ----------
    model : lstmcpu.LSTM, GRU, RNN, or a fitted LSTMClassifier / LSTMRegressor
    path : str or path-like
    lengths : bool or None, default=None
        Add a ``sequence_lens`` input (see :func:`to_onnx`).
    """
    import onnx

    onnx.save_model(to_onnx(model, lengths=lengths), str(path))


def layer_to_onnx(layer, lengths=False):
    """Build the ``onnx.ModelProto`` of a layer (see the module docstring for its interface).

    Parameters
    ----------
    layer : lstmcpu.LSTM, GRU or RNN
        An LSTM without projection (ONNX's LSTM operator has none).
    lengths : bool, default=False
        Add a ``sequence_lens`` input for variable-length batches.

    Examples
    --------
    >>> import lstmcpu
    >>> model = layer_to_onnx(lstmcpu.LSTM(3, 4, num_layers=2, bidirectional=True))
    >>> [node.op_type for node in model.graph.node if node.op_type == "LSTM"]
    ['LSTM', 'LSTM']
    """
    graph = _Graph(layer, lengths)
    graph.add_inputs(_seq_shape(layer, layer.input_size))
    seq = graph.transpose("input", "input_time_major") if layer.batch_first else "input"
    seq, final_states = graph.recurrent_stack(seq)
    if layer.batch_first:
        graph.transpose(seq, "output")
    else:
        graph.add("Identity", [seq], ["output"])
    D = layer.num_directions
    graph.output("output", _seq_shape(layer, D * layer.hidden_size))
    state_shape = [D * layer.num_layers, "B", layer.hidden_size]
    for state, names in final_states.items():
        if names:
            graph.add("Concat", names, [f"{state}_n"], axis=0)
            graph.output(f"{state}_n", state_shape)
    return graph.model(f"lstmcpu_{graph.op.lower()}")


def _estimator_to_onnx(estimator, lengths):
    """The graph of a fitted estimator: recurrent stack, dense head, and its output map."""
    from sklearn.utils.validation import check_is_fitted

    from .estimators import LSTMClassifier

    check_is_fitted(estimator)
    net = estimator.network_
    layer = net.rnn
    graph = _Graph(layer, lengths)
    graph.add_inputs(["B", "T", layer.input_size])
    seq, final_states = graph.recurrent_stack(graph.transpose("input", "input_time_major"))
    K = net.n_outputs
    if net.output == "last":
        # The top layer's Y_h is (D, B, H): to (B, D, H), then (B, D * H), directions side
        # by side as the network's head reads them.
        top = graph.transpose(final_states["h"][-1], "h_top_bdh", perm=[1, 0, 2])
        graph.constant("merge_last", np.array([0, -1], np.int64))
        features = graph.add("Reshape", [top, "merge_last"], ["features"])
        out_shape = ["B", K]
        # logits = features @ head_weight.T + head_bias
        graph.constant("head_weight", net.head_weight)
        graph.constant("head_bias", net.head_bias)
        logits = graph.add("Gemm", [features, "head_weight", "head_bias"], ["logits"], transB=1)
    else:
        features = graph.transpose(seq, "features")
        out_shape = ["B", "T", K]
        # The same at every step of (B, T, D * H) features; Gemm takes only matrices.
        graph.constant("head_weight_t", net.head_weight.T)
        graph.constant("head_bias", net.head_bias)
        product = graph.add("MatMul", [features, "head_weight_t"], ["head_product"])
        logits = graph.add("Add", [product, "head_bias"], ["logits"])
    if isinstance(estimator, LSTMClassifier):
        graph.add("Softmax", [logits], ["probabilities"], axis=-1)
        graph.output("probabilities", out_shape)
    else:
        # predictions = logits * y_scale + y_mean (the network learns standardized targets)
        graph.constant("y_scale", estimator._y_scale)
        graph.constant("y_mean", estimator._y_mean)
        scaled = graph.add("Mul", [logits, "y_scale"], ["scaled"])
        if estimator._y_one_d:
            graph.add("Add", [scaled, "y_mean"], ["predictions_k"])
            graph.constant("target_axis", np.array([-1], np.int64))
            graph.add("Squeeze", ["predictions_k", "target_axis"], ["predictions"])
            out_shape = out_shape[:-1]
        else:
            graph.add("Add", [scaled, "y_mean"], ["predictions"])
        graph.output("predictions", out_shape)
    return graph.model(f"lstmcpu_{type(estimator).__name__}")


class _Graph:
    """Nodes, initializers, inputs and outputs of one exported model, built step by step."""

    def __init__(self, layer, lengths):
        self.layer, self.lengths = layer, lengths
        self.op, self.weights_of = _operator(layer)
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []

    def add_inputs(self, input_shape):
        """The graph inputs: ``input`` of ``input_shape``, and ``sequence_lens`` with lengths."""
        from onnx import TensorProto, helper

        self.inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape))
        if self.lengths:
            self.inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))

    def add(self, op, inputs, outputs, **attributes):
        """Append a node; returns its first output's name."""
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, **attributes))
        return outputs[0]

    def constant(self, name, value):
        """A float32 (or int64 for integer ``value``) initializer."""
        from onnx import numpy_helper

        value = np.asarray(value)
        value = value.astype(np.int64 if value.dtype.kind in "iu" else np.float32)
        self.initializers.append(numpy_helper.from_array(value, name))

    def transpose(self, name, out, perm=(1, 0, 2)):
        return self.add("Transpose", [name], [out], perm=list(perm))

    def output(self, name, shape):
        from onnx import TensorProto, helper

        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def recurrent_stack(self, seq):
        """One recurrent operator per stacked layer on time-major ``seq`` ``(T, B, F)``.

        Returns the top layer's output name, ``(T, B, D * H)``, and the per-layer final
        state names ``{"h": [...], "c": [...]}`` (each ``(D, B, H)``).
        """
        layer, op = self.layer, self.op
        D = layer.num_directions
        self.constant("merge_directions", np.array([0, 0, -1], np.int64))
        final_states = {"h": [], "c": []}
        for k in range(layer.num_layers):
            weights = self.weights_of(layer, k)
            names = {key: f"{key}_l{k}" for key in ("W", "R", "B", "P") if key in weights}
            for key, name in names.items():
                self.constant(name, weights[key])
            inputs = [seq, names["W"], names["R"], names.get("B", ""), "sequence_lens" if self.lengths else ""]
            if "P" in names:
                inputs += ["", "", names["P"]]
            outputs = [f"Y_l{k}", f"Y_h_l{k}"] + ([f"Y_c_l{k}"] if op == "LSTM" else [])
            attributes = dict(hidden_size=layer.hidden_size, direction="bidirectional" if D == 2 else "forward")
            attributes.update(weights.get("attributes", {}))
            self.add(op, inputs, outputs, name=f"{op.lower()}_l{k}", **attributes)
            # Y is (T, D, B, H): to (T, B, D, H), then merge the directions into (T, B, D * H).
            self.transpose(f"Y_l{k}", f"Y_tbdh_l{k}", perm=[0, 2, 1, 3])
            seq = self.add("Reshape", [f"Y_tbdh_l{k}", "merge_directions"], [f"seq_l{k}"])
            final_states["h"].append(f"Y_h_l{k}")
            if op == "LSTM":
                final_states["c"].append(f"Y_c_l{k}")
        return seq, final_states

    def model(self, name):
        from onnx import checker, helper

        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lstmcpu")
        checker.check_model(model)
        return model


def _operator(layer):
    if isinstance(layer, LSTM):
        if layer.proj_size:
            raise ValueError("ONNX's LSTM operator has no projection; a layer with proj_size cannot be exported")
        return "LSTM", onnx_lstm_weights
    if isinstance(layer, GRU):
        return "GRU", onnx_gru_weights
    if isinstance(layer, RNN):
        return "RNN", onnx_rnn_weights
    raise TypeError(f"can export an lstmcpu LSTM, GRU or RNN layer, got {type(layer).__name__}")


def _seq_shape(layer, features):
    return ["B", "T", features] if layer.batch_first else ["T", "B", features]
