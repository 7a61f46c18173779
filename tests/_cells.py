"""One calling convention over every cell kernel, so a test can be written once for all cells.

A *variant* is a dict: ``cell`` ("lstm", "gru", "rnn"), and for LSTM ``peephole``,
``coupled``, ``proj`` (projection size or 0); for RNN ``nonlinearity``.
"""

import numpy as np

VARIANTS = {
    "lstm": dict(cell="lstm"),
    "lstm-peephole": dict(cell="lstm", peephole=True),
    "lstm-coupled": dict(cell="lstm", coupled=True),
    "lstm-peephole-coupled": dict(cell="lstm", peephole=True, coupled=True),
    "lstm-proj": dict(cell="lstm", proj=2),
    "lstm-proj-peephole": dict(cell="lstm", proj=3, peephole=True),
    "gru": dict(cell="gru"),
    "rnn-tanh": dict(cell="rnn", nonlinearity="tanh"),
    "rnn-relu": dict(cell="rnn", nonlinearity="relu"),
}


def capabilities(variant):
    """The backend cell capabilities a variant needs."""
    if variant["cell"] == "gru":
        return ("gru",)
    if variant["cell"] == "rnn":
        return (f"rnn_{variant['nonlinearity']}",)
    needed = ["lstm"]
    needed += ["lstm_peephole"] if variant.get("peephole") else []
    needed += ["lstm_coupled"] if variant.get("coupled") else []
    needed += ["lstm_proj"] if variant.get("proj") else []
    return tuple(needed)


def make_inputs(variant, T, B, I, H, dtype, seed=0, lengths=False):
    """Random inputs of one kernel call (arrays named as in the kernel signatures)."""
    rng = np.random.default_rng(seed)

    def draw(*shape, scale=0.5):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    def weights(rows, fan_in):
        # 0.5 for the small edge shapes; like PyTorch's 1/sqrt(fan_in) init for larger ones, so
        # that gates do not all saturate and relu states do not blow up with the size.
        return draw(rows, fan_in, scale=min(0.5, 1.0 / np.sqrt(fan_in)))

    cell = variant["cell"]
    n_gates = {"lstm": 3 if variant.get("coupled") else 4, "gru": 3, "rnn": 1}[cell]
    R = variant.get("proj") or H  # width of h
    inputs = dict(x=draw(T, B, I, scale=1.0), w_ih=weights(n_gates * H, I), w_hh=weights(n_gates * H, R),
                  b=draw(n_gates * H), h0=draw(B, R))  # fmt: skip
    if cell == "lstm":
        inputs["c0"] = draw(B, H)
        if variant.get("peephole"):
            inputs["peephole"] = draw(3, H)
            if variant.get("coupled"):
                inputs["peephole"][0] = 0  # coupled gates have no input-gate peephole
        if variant.get("proj"):
            inputs["w_hr"] = weights(R, H)
    if cell == "gru":
        inputs["b_hn"] = draw(H)
    lengths_array = None
    if lengths:
        lengths_array = rng.integers(1, T + 1, size=B)
        lengths_array[0] = T
    return inputs, lengths_array


def output_shapes(variant, T, B, H):
    R = variant.get("proj") or H
    shapes = dict(y=(T, B, R), h_n=(B, R))
    if variant["cell"] == "lstm":
        shapes["c_n"] = (B, H)
    return shapes


def run_forward(backend, variant, inputs, lengths, need_cache=True):
    """Returns ``(outputs dict, cache)``."""
    p = inputs
    cell = variant["cell"]
    if cell == "lstm":
        y, h_n, c_n, cache = backend.forward(
            p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], p["c0"], lengths, need_cache,
            **_lstm_options(variant, p),
        )  # fmt: skip
        return dict(y=y, h_n=h_n, c_n=c_n), cache
    if cell == "gru":
        y, h_n, cache = backend.gru_forward(p["x"], p["w_ih"], p["w_hh"], p["b"], p["b_hn"], p["h0"], lengths, need_cache)
    else:
        y, h_n, cache = backend.rnn_forward(
            p["x"], p["w_ih"], p["w_hh"], p["b"], p["h0"], lengths, need_cache, nonlinearity=variant["nonlinearity"]
        )
    return dict(y=y, h_n=h_n), cache


def _lstm_options(variant, p):
    options = {}
    if variant.get("peephole"):
        options["peephole"] = p["peephole"]
    if variant.get("coupled"):
        options["coupled"] = True
    if variant.get("proj"):
        options["w_hr"] = p["w_hr"]
    return options


def run_backward(backend, variant, upstream, cache):
    """Returns the gradients as a dict keyed like the inputs."""
    cell = variant["cell"]
    if cell == "lstm":
        grads = backend.backward(upstream["y"], upstream["h_n"], upstream["c_n"], cache)
        named = dict(zip(["x", "w_ih", "w_hh", "b", "h0", "c0"], grads[:6]))
        if variant.get("peephole") or variant.get("proj"):
            assert len(grads) == 8, "variant backward returns dpeephole and dw_hr too"
            if variant.get("peephole"):
                named["peephole"] = grads[6]
            if variant.get("proj"):
                named["w_hr"] = grads[7]
        else:
            assert len(grads) == 6
        return named
    if cell == "gru":
        grads = backend.gru_backward(upstream["y"], upstream["h_n"], cache)
        return dict(zip(["x", "w_ih", "w_hh", "b", "b_hn", "h0"], grads))
    grads = backend.rnn_backward(upstream["y"], upstream["h_n"], cache)
    return dict(zip(["x", "w_ih", "w_hh", "b", "h0"], grads))


def random_upstream(variant, T, B, H, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in output_shapes(variant, T, B, H).items()}
