"""Run ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` on the same weights and inputs as an lstmcpu layer.

Used live by test_torch_parity.py and, through make_golden.py, to write the golden
fixtures that keep the parity tests running where torch is not installed.
"""

import numpy as np


def torch_reference(module, config, state_dict, x, states0, lengths, grad_out, grad_states):
    """Forward and backward of ``torch.nn.<module>(**config)`` in float64.

    ``states0`` and ``grad_states`` are lists: ``[h0, c0]`` for LSTM, ``[h0]`` otherwise. The
    loss is ``sum(out * grad_out) + sum_k sum(state_n[k] * grad_states[k])``, so the
    gradients returned are the vector-Jacobian products lstmcpu's ``backward`` computes.
    Returns a dict of float64 arrays: out, h_n (and c_n), grad_x, grad_h0 (and grad_c0), and
    ``grad.<param name>`` for every parameter.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.use_deterministic_algorithms(True)
    layer = getattr(torch.nn, module)(**config, dtype=torch.float64)
    layer.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in state_dict.items()})
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    s0 = [torch.tensor(s, dtype=torch.float64, requires_grad=True) for s in states0]
    hx = tuple(s0) if module == "LSTM" else s0[0]
    if lengths is None:
        out, states_n = layer(xt, hx)
    else:
        packed = pack_padded_sequence(
            xt, torch.as_tensor(lengths), batch_first=config.get("batch_first", False), enforce_sorted=False
        )
        out_packed, states_n = layer(packed, hx)
        total = x.shape[1] if config.get("batch_first", False) else x.shape[0]
        out, _ = pad_packed_sequence(out_packed, batch_first=config.get("batch_first", False), total_length=total)
    states_n = list(states_n) if module == "LSTM" else [states_n]
    loss = (out * torch.from_numpy(grad_out)).sum()
    for state, grad in zip(states_n, grad_states):
        loss = loss + (state * torch.from_numpy(grad)).sum()
    loss.backward()
    result = {"out": out.detach().numpy(), "grad_x": xt.grad.numpy()}
    for name, state, start in zip("hc", states_n, s0):
        result[f"{name}_n"] = state.detach().numpy()
        result[f"grad_{name}0"] = start.grad.numpy()
    for name, param in layer.named_parameters():
        result[f"grad.{name}"] = param.grad.numpy()
    return result
