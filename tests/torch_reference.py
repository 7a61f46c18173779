"""Run ``torch.nn.LSTM`` on the same weights and inputs as an lstmcpu layer.

Used live by test_torch_parity.py and, through make_golden.py, to write the golden
fixtures that keep the parity tests running where torch is not installed.
"""

import numpy as np


def torch_lstm_reference(config, state_dict, x, h0, c0, lengths, grad_out, grad_h_n, grad_c_n):
    """Forward and backward of ``torch.nn.LSTM(**config)`` in float64.

    The loss is ``sum(out * grad_out) + sum(h_n * grad_h_n) + sum(c_n * grad_c_n)``, so the
    gradients returned are the vector-Jacobian products lstmcpu's ``backward`` computes.
    Returns a dict of float64 arrays: out, h_n, c_n, grad_x, grad_h0, grad_c0, and
    ``grad.<param name>`` for every parameter.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.use_deterministic_algorithms(True)
    lstm = torch.nn.LSTM(**config, dtype=torch.float64)
    lstm.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in state_dict.items()})
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    h0t = torch.tensor(h0, dtype=torch.float64, requires_grad=True)
    c0t = torch.tensor(c0, dtype=torch.float64, requires_grad=True)
    if lengths is None:
        out, (h_n, c_n) = lstm(xt, (h0t, c0t))
    else:
        packed = pack_padded_sequence(
            xt, torch.as_tensor(lengths), batch_first=config.get("batch_first", False), enforce_sorted=False
        )
        out_packed, (h_n, c_n) = lstm(packed, (h0t, c0t))
        total = x.shape[1] if config.get("batch_first", False) else x.shape[0]
        out, _ = pad_packed_sequence(out_packed, batch_first=config.get("batch_first", False), total_length=total)
    loss = (out * torch.from_numpy(grad_out)).sum()
    loss = loss + (h_n * torch.from_numpy(grad_h_n)).sum() + (c_n * torch.from_numpy(grad_c_n)).sum()
    loss.backward()
    result = {
        "out": out.detach().numpy(),
        "h_n": h_n.detach().numpy(),
        "c_n": c_n.detach().numpy(),
        "grad_x": xt.grad.numpy(),
        "grad_h0": h0t.grad.numpy(),
        "grad_c0": c0t.grad.numpy(),
    }
    for name, param in lstm.named_parameters():
        result[f"grad.{name}"] = param.grad.numpy()
    return result
