"""The NumPy backend: the readable reference implementation and the test oracle.

Every cell follows the algorithm every backend follows (../shared/DESIGN.md):

Forward
    1. one GEMM for the input projection of all steps: ``G = x @ w_ih.T + b``;
    2. per step, one recurrent GEMM ``h @ w_hh.T`` and one elementwise pass for the gates
       and the state;
    3. the cache keeps the post-activation gates and the states the backward pass reads.

Backward
    1. the time loop does elementwise work and one GEMM, ``dh_prev = dG[t] @ w_hh``, filling
       ``dG``, the gradients of the gate pre-activations;
    2. after the loop, the weight gradients are single big GEMMs over all steps.

With ``lengths``, a sequence whose length has passed keeps its state unchanged, writes
zeros to ``y`` and receives no gradient from ``dy`` (PyTorch's packed-sequence semantics).
"""

import numpy as np
from scipy.special import expit

from lstmcpu.backend import CELLS, Backend

__all__ = ["NumpyBackend", "make_backend"]


class NumpyBackend(Backend):
    """Pure-NumPy kernels for every cell (float32 and float64).

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu.backends.numpy_backend import NumpyBackend
    >>> rng = np.random.default_rng(0)
    >>> T, B, I, H = 5, 2, 3, 4
    >>> x = rng.standard_normal((T, B, I))
    >>> w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    >>> b, h0, c0 = np.zeros(4 * H), np.zeros((B, H)), np.zeros((B, H))
    >>> y, h_n, c_n, cache = NumpyBackend().forward(x, w_ih, w_hh, b, h0, c0)
    >>> y.shape, h_n.shape
    ((5, 2, 4), (2, 4))
    >>> bool(np.allclose(y[-1], h_n))
    True
    """

    name = "numpy"
    cells = CELLS

    # ------------------------------------------------------------------ LSTM

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True, *,
                peephole=None, coupled=False, w_hr=None):  # fmt: skip
        T, B, _ = x.shape
        H = c0.shape[1]
        R = h0.shape[1]  # width of h: H, or P with a projection
        n_gates = 3 if coupled else 4
        G = _input_projection(x, w_ih, b)  # becomes the post-activation gates in place
        y = _empty_outputs(T, B, R, x.dtype, lengths)
        c_all = np.empty((T, B, H), x.dtype) if need_cache else None
        tanh_c_all = np.empty((T, B, H), x.dtype) if need_cache else None
        h, c = h0.copy(), c0.copy()
        for t in range(T):
            gates = G[t]
            gates += h @ w_hh.T
            i, f, g, o = _split_gates(gates, H, coupled)
            if peephole is not None:
                if not coupled:
                    i += peephole[0] * c
                f += peephole[1] * c
            expit(gates[:, : (n_gates - 2) * H], out=gates[:, : (n_gates - 2) * H])  # i, f
            np.tanh(g, out=g)
            c_new = f * c + (1 - f if coupled else i) * g
            if peephole is not None:
                o += peephole[2] * c_new
            expit(o, out=o)
            tanh_c = np.tanh(c_new)
            h_new = o * tanh_c
            if w_hr is not None:
                h_new = h_new @ w_hr.T
            h, c = _advance(t, lengths, (h_new, c_new), (h, c), y)
            if need_cache:
                c_all[t] = c
                tanh_c_all[t] = tanh_c
        if not need_cache:
            return y, h, c, None
        cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, c0=c0, lengths=lengths, gates=G,
                     c=c_all, tanh_c=tanh_c_all, y=y, peephole=peephole, coupled=coupled, w_hr=w_hr)  # fmt: skip
        return y, h, c, cache

    def backward(self, dy, dh_n, dc_n, cache):
        x, w_ih, w_hh, h0, c0 = (cache[k] for k in ("x", "w_ih", "w_hh", "h0", "c0"))
        lengths, peephole, coupled, w_hr = (cache[k] for k in ("lengths", "peephole", "coupled", "w_hr"))
        gates_all, c_all, tanh_c_all = cache["gates"], cache["c"], cache["tanh_c"]
        T, B, _ = x.shape
        H = c0.shape[1]
        dG = np.empty_like(gates_all)
        # With a projection, the total gradient of h at every step feeds dw_hr after the loop.
        dh_all = np.empty_like(cache["y"]) if w_hr is not None else None
        dh, dc = dh_n.copy(), dc_n.copy()
        for t in range(T - 1, -1, -1):
            i, f, g, o = _split_gates(gates_all[t], H, coupled)
            if coupled:
                i = 1 - f
            c_prev = c_all[t - 1] if t > 0 else c0
            tanh_c = tanh_c_all[t]
            dgates = dG[t]
            di, df, dg, do = _split_gates(dgates, H, coupled)
            # (1) h = o * tanh(c), first through the projection h = m @ w_hr.T if there is one.
            dh_t = dh + dy[t]
            dm = dh_t
            if w_hr is not None:
                dh_all[t] = dh_t
                dm = dh_t @ w_hr
            np.multiply(dm * tanh_c, o * (1 - o), out=do)
            dc_t = dc + dm * o * (1 - tanh_c * tanh_c)
            if peephole is not None:
                dc_t += do * peephole[2]  # o saw c_t through its peephole
            # (2) c = f * c_prev + i * g, and through each gate's activation; with coupled
            # gates i = 1 - f, so f also receives -dc * g.
            df_total = dc_t * (c_prev - g) if coupled else dc_t * c_prev
            np.multiply(df_total, f * (1 - f), out=df)
            np.multiply(dc_t * i, 1 - g * g, out=dg)
            if not coupled:
                np.multiply(dc_t * g, i * (1 - i), out=di)
            # (3) the state gradients carried to step t - 1.
            dc_prev = dc_t * f
            if peephole is not None:
                dc_prev += df * peephole[1]
                if not coupled:
                    dc_prev += di * peephole[0]
            dh_prev = dgates @ w_hh
            dh, dc = _carry_back(t, lengths, dgates, (dh_prev, dc_prev), (dh, dc), dh_all)
        # (4) weight gradients as single GEMMs (or sums) over all steps.
        dx, dw_ih, dw_hh, db = _weight_gradients(dG, x, w_ih, h0, cache["y"])
        grads = (dx, dw_ih, dw_hh, db, dh, dc)
        if peephole is None and w_hr is None:
            return grads
        dpeephole = dw_hr = None
        if peephole is not None:
            dpeephole = _peephole_gradient(dG, c_all, c0, H, coupled)
        if w_hr is not None:
            # h = m @ w_hr.T with m = o * tanh(c): dw_hr = sum_t dh_t.T @ m_t, one GEMM.
            m = _split_gates(gates_all, H, coupled, axis=2)[3] * tanh_c_all
            dw_hr = dh_all.reshape(T * B, -1).T @ m.reshape(T * B, H)
        return grads + (dpeephole, dw_hr)

    # ------------------------------------------------------------------ GRU

    def gru_forward(self, x, w_ih, w_hh, b, b_hn, h0, lengths=None, need_cache=True):
        T, B, _ = x.shape
        H = h0.shape[1]
        G = _input_projection(x, w_ih, b)  # becomes r, z, n in place
        hn_all = np.empty((T, B, H), x.dtype) if need_cache else None
        y = _empty_outputs(T, B, H, x.dtype, lengths)
        h = h0.copy()
        for t in range(T):
            hidden = h @ w_hh.T
            gates = G[t]
            gates[:, : 2 * H] += hidden[:, : 2 * H]
            expit(gates[:, : 2 * H], out=gates[:, : 2 * H])
            r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
            hn = hidden[:, 2 * H :] + b_hn
            n += r * hn
            np.tanh(n, out=n)
            h_new = n + z * (h - n)
            (h,) = _advance(t, lengths, (h_new,), (h,), y)
            if need_cache:
                hn_all[t] = hn
        if not need_cache:
            return y, h, None
        return y, h, dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, lengths=lengths, gates=G, hn=hn_all, y=y)

    def gru_backward(self, dy, dh_n, cache):
        x, w_ih, w_hh, h0, lengths = (cache[k] for k in ("x", "w_ih", "w_hh", "h0", "lengths"))
        gates_all, hn_all, y = cache["gates"], cache["hn"], cache["y"]
        T, B, _ = x.shape
        H = h0.shape[1]
        dG_hidden = np.empty_like(gates_all)  # gradients of the recurrent pre-activations
        dn_input = np.empty((T, B, H), x.dtype)  # of the input-side n pre-activation
        dh = dh_n.copy()
        for t in range(T - 1, -1, -1):
            r, z, n = gates_all[t, :, :H], gates_all[t, :, H : 2 * H], gates_all[t, :, 2 * H :]
            h_prev = y[t - 1] if t > 0 else h0  # exact wherever sequence b is active at t
            dh_t = dh + dy[t]
            # (1) h' = n + z * (h - n)
            dn_pre = dh_t * (1 - z) * (1 - n * n)
            dgates = dG_hidden[t]
            np.multiply(dh_t * (h_prev - n), z * (1 - z), out=dgates[:, H : 2 * H])
            # (2) n = tanh(G_n + r * hn): r and the recurrent n part see hn and r.
            np.multiply(dn_pre * hn_all[t], r * (1 - r), out=dgates[:, :H])
            np.multiply(dn_pre, r, out=dgates[:, 2 * H :])
            dn_input[t] = dn_pre
            # (3) the hidden gradient to step t - 1: directly through z, and through w_hh.
            dh_prev = dh_t * z + dgates @ w_hh
            (dh,) = _carry_back(t, lengths, dgates, (dh_prev,), (dh,), dn_input)
        dG_input = dG_hidden.copy()
        dG_input[:, :, 2 * H :] = dn_input
        T_B = T * B
        dw_ih = dG_input.reshape(T_B, 3 * H).T @ x.reshape(T_B, -1)
        dw_hh = _recurrent_weight_gradient(dG_hidden, h0, y)
        db = dG_input.reshape(T_B, 3 * H).sum(axis=0)
        db_hn = dG_hidden[:, :, 2 * H :].reshape(T_B, H).sum(axis=0)
        dx = (dG_input.reshape(T_B, 3 * H) @ w_ih).reshape(x.shape)
        return dx, dw_ih, dw_hh, db, db_hn, dh

    # ------------------------------------------------------------------ vanilla RNN

    def rnn_forward(self, x, w_ih, w_hh, b, h0, lengths=None, need_cache=True, *, nonlinearity="tanh"):
        T, B, _ = x.shape
        H = h0.shape[1]
        G = _input_projection(x, w_ih, b)
        y = _empty_outputs(T, B, H, x.dtype, lengths)
        h = h0.copy()
        for t in range(T):
            a = G[t]
            a += h @ w_hh.T
            if nonlinearity == "tanh":
                np.tanh(a, out=a)
            else:
                np.maximum(a, 0, out=a)
            (h,) = _advance(t, lengths, (a,), (h,), y)
        if not need_cache:
            return y, h, None
        cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, lengths=lengths, act=G, y=y, nonlinearity=nonlinearity)
        return y, h, cache

    def rnn_backward(self, dy, dh_n, cache):
        x, w_ih, w_hh, h0, lengths = (cache[k] for k in ("x", "w_ih", "w_hh", "h0", "lengths"))
        act = cache["act"]
        T = x.shape[0]
        dG = np.empty_like(act)
        dh = dh_n.copy()
        for t in range(T - 1, -1, -1):
            dh_t = dh + dy[t]
            if cache["nonlinearity"] == "tanh":
                np.multiply(dh_t, 1 - act[t] * act[t], out=dG[t])
            else:
                np.multiply(dh_t, act[t] > 0, out=dG[t])
            (dh,) = _carry_back(t, lengths, dG[t], (dG[t] @ w_hh,), (dh,))
        dx, dw_ih, dw_hh, db = _weight_gradients(dG, x, w_ih, h0, cache["y"])
        return dx, dw_ih, dw_hh, db, dh


# ---------------------------------------------------------------------- shared steps


def _input_projection(x, w_ih, b):
    """``x @ w_ih.T + b`` for every step at once, as a (T, B, G) buffer."""
    T, B, _ = x.shape
    G = np.matmul(x.reshape(T * B, -1), w_ih.T).reshape(T, B, -1)
    G += b
    return G


def _empty_outputs(T, B, R, dtype, lengths):
    """The output buffer; zeros when padded steps will not be written."""
    return np.zeros((T, B, R), dtype) if lengths is not None else np.empty((T, B, R), dtype)


def _split_gates(a, H, coupled, axis=1):
    """Views of the gate blocks i, f, g, o (``i`` is None for coupled gates f, g, o)."""
    index = [slice(None)] * a.ndim

    def block(k):
        index[axis] = slice(k * H, (k + 1) * H)
        return a[tuple(index)]

    if coupled:
        return None, block(0), block(1), block(2)
    return block(0), block(1), block(2), block(3)


def _advance(t, lengths, new_states, old_states, y):
    """Write step ``t``'s output and return the states carried to ``t + 1``.

    A sequence whose length has passed keeps its old states and outputs zero.
    """
    if lengths is None:
        y[t] = new_states[0]
        return new_states
    active = (t < lengths)[:, None]
    y[t] = np.where(active, new_states[0], 0)
    return tuple(np.where(active, new, old) for new, old in zip(new_states, old_states))


def _carry_back(t, lengths, dgates, new_grads, old_grads, *per_step):
    """Return the state gradients carried to step ``t - 1``; zero the gate gradients (and any
    other per-step gradient buffers) of sequences whose length has passed."""
    if lengths is None:
        return new_grads
    active = (t < lengths)[:, None]
    dgates *= active
    for buffer in per_step:
        if buffer is not None:
            buffer[t] *= active
    return tuple(np.where(active, new, old) for new, old in zip(new_grads, old_grads))


def _recurrent_weight_gradient(dG, h0, y):
    """``sum_t dG[t].T @ h_{t-1}`` as two GEMMs; ``y[t-1]`` is ``h_{t-1}`` wherever ``dG[t]``
    is non-zero (a sequence active at ``t`` was active at ``t - 1``)."""
    T, B, n_gates = dG.shape
    dw_hh = dG[0].T @ h0
    if T > 1:
        dw_hh += dG[1:].reshape((T - 1) * B, n_gates).T @ y[:-1].reshape((T - 1) * B, -1)
    return dw_hh


def _weight_gradients(dG, x, w_ih, h0, y):
    """``dx, dw_ih, dw_hh, db`` from the gate gradients, one GEMM each."""
    T, B, n_gates = dG.shape
    dG2 = dG.reshape(T * B, n_gates)
    dw_ih = dG2.T @ x.reshape(T * B, -1)
    dw_hh = _recurrent_weight_gradient(dG, h0, y)
    db = dG2.sum(axis=0)
    dx = (dG2 @ w_ih).reshape(x.shape)
    return dx, dw_ih, dw_hh, db


def _peephole_gradient(dG, c_all, c0, H, coupled):
    """``(dp_i, dp_f, dp_o)``: i and f saw ``c_{t-1}``, o saw ``c_t``."""
    c_prev = np.concatenate([c0[None], c_all[:-1]])
    di, df, _, do = _split_gates(dG, H, coupled, axis=2)
    dp_i = np.zeros(H, dG.dtype) if coupled else np.einsum("tbh,tbh->h", di, c_prev)
    return np.stack([dp_i, np.einsum("tbh,tbh->h", df, c_prev), np.einsum("tbh,tbh->h", do, c_all)])


def make_backend():
    """Factory the registry calls."""
    return NumpyBackend()
