"""Weight-layout converters between lstmcpu (PyTorch's layout) and other frameworks.

lstmcpu keeps PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z, n). ONNX's LSTM operator
orders the gates i, o, f, c and its GRU operator z, r, h; PyTorch's GRU is ONNX's with
``linear_before_reset=1``.

ONNX couples the gates the other way round from lstmcpu: with ``input_forget=1`` it
computes the input gate and sets ``f = 1 - i``, while lstmcpu's coupled LSTM computes the
forget gate and sets ``i = 1 - f``. Since ``1 - sigmoid(a) = sigmoid(-a)``, ONNX's input
gate with the negated forget-gate weights (and peephole) is exactly lstmcpu's ``1 - f``.
"""

import numpy as np

__all__ = ["onnx_gru_weights", "onnx_lstm_weights", "onnx_rnn_weights", "torch_state_dict"]


def torch_state_dict(layer):
    """The layer's parameters as a dict of CPU ``torch.Tensor`` s under PyTorch's names.

    ``torch.nn.LSTM(...).load_state_dict(torch_state_dict(layer))`` loads them (for the
    configurations PyTorch has: no peepholes, no coupled gates). Needs torch installed;
    the other direction needs nothing: ``layer.load_state_dict(torch_module.state_dict())``.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError("torch_state_dict needs PyTorch: pip install torch") from exc
    if getattr(layer, "peephole", False) or getattr(layer, "coupled", False):
        raise ValueError("PyTorch has no peephole or coupled-gate LSTM; these weights have no torch equivalent")
    return {name: torch.from_numpy(value.copy()) for name, value in layer.params.items()}


def onnx_lstm_weights(layer, layer_index=0):
    """The ``W``, ``R``, ``B`` and ``P`` inputs of ONNX's ``LSTM`` operator for one layer.

    Parameters
    ----------
    layer : lstmcpu.LSTM
        Without projection (ONNX's operator has none).
    layer_index : int, default=0
        Which stacked layer; its directions become ONNX's ``num_directions`` axis.

    Returns
    -------
    dict
        ``W`` (D, 4H, I), ``R`` (D, 4H, H), ``B`` (D, 8H), ``P`` (D, 3H) when the layer has
        peepholes, and ``attributes`` for the operator (``input_forget=1`` when coupled).

    Examples
    --------
    >>> import lstmcpu
    >>> weights = onnx_lstm_weights(lstmcpu.LSTM(3, 5, bidirectional=True))
    >>> weights["W"].shape, weights["R"].shape, weights["B"].shape
    ((2, 20, 3), (2, 20, 5), (2, 40))
    """
    if layer.proj_size:
        raise ValueError("ONNX's LSTM operator has no projection; proj_size must be 0")
    H = layer.hidden_size

    def reorder(a):
        return _lstm_gate_order(a, H, layer.coupled)

    def peephole(p):
        if not layer.peephole:
            return None
        p_i = -p["weight_cf"] if layer.coupled else p["weight_ci"]
        p_f = np.zeros(H, layer.dtype) if layer.coupled else p["weight_cf"]
        return np.concatenate([p_i, p["weight_co"], p_f])

    weights = _stack_directions(layer, layer_index, reorder, peephole)
    weights["attributes"] = {"input_forget": int(layer.coupled)}
    return weights


def onnx_gru_weights(layer, layer_index=0):
    """The ``W``, ``R`` and ``B`` inputs of ONNX's ``GRU`` operator for one layer of an
    :class:`lstmcpu.GRU`, and its ``attributes`` (``linear_before_reset=1``)."""
    H = layer.hidden_size

    def reorder(a):
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        return np.concatenate([z, r, n])

    weights = _stack_directions(layer, layer_index, reorder)
    weights["attributes"] = {"linear_before_reset": 1}
    return weights


def onnx_rnn_weights(layer, layer_index=0):
    """The ``W``, ``R`` and ``B`` inputs of ONNX's ``RNN`` operator for one layer of an
    :class:`lstmcpu.RNN`, and its ``attributes`` (the activation of each direction)."""
    weights = _stack_directions(layer, layer_index, lambda a: a)
    activation = "Tanh" if layer.nonlinearity == "tanh" else "Relu"
    weights["attributes"] = {"activations": [activation] * layer.num_directions}
    return weights


def _stack_directions(layer, layer_index, reorder, peephole=lambda p: None):
    """ONNX's (num_directions, ...) arrays of one stacked layer, gates reordered."""
    if not 0 <= layer_index < layer.num_layers:
        raise ValueError(f"layer_index must be in [0, {layer.num_layers}), got {layer_index}")
    per_direction = {"W": [], "R": [], "B": [], "P": []}
    for direction in range(layer.num_directions):
        p = layer._layer_params(layer_index, direction)
        zeros = np.zeros(p["weight_ih"].shape[0], layer.dtype)
        per_direction["W"].append(reorder(p["weight_ih"]))
        per_direction["R"].append(reorder(p["weight_hh"]))
        per_direction["B"].append(np.concatenate([reorder(p.get("bias_ih", zeros)), reorder(p.get("bias_hh", zeros))]))
        peep = peephole(p)
        if peep is not None:
            per_direction["P"].append(peep)
    return {name: np.stack(arrays) for name, arrays in per_direction.items() if arrays}


def _lstm_gate_order(a, H, coupled):
    """Rows in lstmcpu's order (i, f, g, o, or f, g, o when coupled) -> ONNX's i, o, f, c."""
    if coupled:
        f, g, o = a[:H], a[H : 2 * H], a[2 * H :]
        return np.concatenate([-f, o, np.zeros_like(f), g])
    i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    return np.concatenate([i, o, f, g])
