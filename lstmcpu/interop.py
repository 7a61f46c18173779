"""Weight-layout converters between lstmcpu (PyTorch's layout) and other frameworks.

lstmcpu keeps PyTorch's gate order (LSTM: i, f, g, o; GRU: r, z, n). ONNX's LSTM operator
orders the gates i, o, f, c and its GRU operator z, r, h.

ONNX couples the gates the other way round from lstmcpu: with ``input_forget=1`` it
computes the input gate and sets ``f = 1 - i``, while lstmcpu's coupled LSTM computes the
forget gate and sets ``i = 1 - f``. Since ``1 - sigmoid(a) = sigmoid(-a)``, ONNX's input
gate with the negated forget-gate weights (and peephole) is exactly lstmcpu's ``1 - f``.
"""

import numpy as np

__all__ = ["onnx_lstm_weights"]


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
    dict of str to ndarray
        ``W`` (D, 4H, I), ``R`` (D, 4H, H), ``B`` (D, 8H), and ``P`` (D, 3H) when the layer
        has peepholes; the attribute ``input_forget`` is 1 for a coupled layer.

    Examples
    --------
    >>> import lstmcpu
    >>> weights = onnx_lstm_weights(lstmcpu.LSTM(3, 5, bidirectional=True))
    >>> weights["W"].shape, weights["R"].shape, weights["B"].shape
    ((2, 20, 3), (2, 20, 5), (2, 40))
    """
    if layer.proj_size:
        raise ValueError("ONNX's LSTM operator has no projection; proj_size must be 0")
    if not 0 <= layer_index < layer.num_layers:
        raise ValueError(f"layer_index must be in [0, {layer.num_layers}), got {layer_index}")
    H = layer.hidden_size
    per_direction = {"W": [], "R": [], "B": [], "P": []}
    for direction in range(layer.num_directions):
        p = layer._layer_params(layer_index, direction)
        zeros = np.zeros(layer._n_gates * H, layer.dtype)
        b_ih = p.get("bias_ih", zeros)
        b_hh = p.get("bias_hh", zeros)
        per_direction["W"].append(_onnx_gate_order(p["weight_ih"], H, layer.coupled))
        per_direction["R"].append(_onnx_gate_order(p["weight_hh"], H, layer.coupled))
        per_direction["B"].append(
            np.concatenate([_onnx_gate_order(b_ih, H, layer.coupled), _onnx_gate_order(b_hh, H, layer.coupled)])
        )
        if layer.peephole:
            p_i = -p["weight_cf"] if layer.coupled else p["weight_ci"]
            p_f = np.zeros(H, layer.dtype) if layer.coupled else p["weight_cf"]
            per_direction["P"].append(np.concatenate([p_i, p["weight_co"], p_f]))
    weights = {name: np.stack(arrays) for name, arrays in per_direction.items() if arrays}
    weights["input_forget"] = int(layer.coupled)
    return weights


def _onnx_gate_order(a, H, coupled):
    """Rows in lstmcpu's order (i, f, g, o, or f, g, o when coupled) -> ONNX's i, o, f, c."""
    if coupled:
        f, g, o = a[:H], a[H : 2 * H], a[2 * H :]
        return np.concatenate([-f, o, np.zeros_like(f), g])
    i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
    return np.concatenate([i, o, f, g])
