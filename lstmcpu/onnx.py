"""Export lstmcpu layers to ONNX (needs only the ``onnx`` package: ``pip install "lstmcpu[onnx]"``).

Each stacked layer becomes one ONNX ``LSTM`` / ``GRU`` / ``RNN`` operator (opset 17), with
both directions in one operator when the layer is bidirectional. The model is float32,
the dtype ONNX Runtime's recurrent kernels run.

Graph interface (time-major, as the layer's default; ``batch_first`` layers take and give
``(B, T, ...)``):

=============== ===================== =====================================================
name            shape                 meaning
=============== ===================== =====================================================
input           (T, B, input_size)    the sequences
sequence_lens   (B,) int32            valid steps per sequence (only with ``lengths=True``)
output          (T, B, D * H_out)     ``out`` of the layer
h_n             (D * num_layers, B, H)
c_n             (D * num_layers, B, H) LSTM only
=============== ===================== =====================================================
"""

import numpy as np

from .interop import onnx_gru_weights, onnx_lstm_weights, onnx_rnn_weights
from .layers import GRU, LSTM, RNN

__all__ = ["OPSET", "export", "layer_to_onnx"]

#: The ONNX opset of exported models.
OPSET = 17


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
    from onnx import TensorProto, checker, helper, numpy_helper

    op, weights_of = _operator(layer)
    D = layer.num_directions
    nodes, initializers = [], []
    graph_inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, _seq_shape(layer, layer.input_size))]
    seq = "input"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", ["input"], ["input_time_major"], perm=[1, 0, 2]))
        seq = "input_time_major"
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    initializers.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "merge_directions"))
    final_states = {"h": [], "c": []}
    for k in range(layer.num_layers):
        weights = weights_of(layer, k)
        names = {key: f"{key}_l{k}" for key in ("W", "R", "B", "P") if key in weights}
        initializers += [numpy_helper.from_array(weights[key].astype(np.float32), name) for key, name in names.items()]
        inputs = [seq, names["W"], names["R"], names.get("B", ""), "sequence_lens" if lengths else ""]
        if "P" in names:
            inputs += ["", "", names["P"]]
        outputs = [f"Y_l{k}", f"Y_h_l{k}"] + ([f"Y_c_l{k}"] if op == "LSTM" else [])
        attributes = dict(hidden_size=layer.hidden_size, direction="bidirectional" if D == 2 else "forward")
        attributes.update(weights.get("attributes", {}))
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op.lower()}_l{k}", **attributes))
        # Y is (T, D, B, H): to (T, B, D, H), then merge the directions into (T, B, D * H).
        nodes.append(helper.make_node("Transpose", [f"Y_l{k}"], [f"Y_tbdh_l{k}"], perm=[0, 2, 1, 3]))
        seq = f"seq_l{k}"
        nodes.append(helper.make_node("Reshape", [f"Y_tbdh_l{k}", "merge_directions"], [seq]))
        final_states["h"].append(f"Y_h_l{k}")
        if op == "LSTM":
            final_states["c"].append(f"Y_c_l{k}")
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [seq], ["output"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [seq], ["output"]))
    state_shape = [D * layer.num_layers, "B", layer.hidden_size]
    graph_outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, _seq_shape(layer, D * layer.hidden_size))]
    for state, names in final_states.items():
        if names:
            nodes.append(helper.make_node("Concat", names, [f"{state}_n"], axis=0))
            graph_outputs.append(helper.make_tensor_value_info(f"{state}_n", TensorProto.FLOAT, state_shape))
    graph = helper.make_graph(nodes, f"lstmcpu_{op.lower()}", graph_inputs, graph_outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lstmcpu")
    checker.check_model(model)
    return model


def export(model, path, lengths=False):
    """Write ``model`` (an lstmcpu layer) to ``path`` as an ONNX file.

    Parameters
    ----------
    model : lstmcpu.LSTM, GRU or RNN
    path : str or path-like
    lengths : bool, default=False
        Add a ``sequence_lens`` input for variable-length batches.
    """
    import onnx

    onnx.save_model(layer_to_onnx(model, lengths=lengths), str(path))


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
