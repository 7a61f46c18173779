"""The NumPy backend: the readable reference implementation and the test oracle.

It follows the algorithm every backend follows (see docs and ../shared/DESIGN.md):

Forward
    1. one GEMM for the input projection of all steps: ``G = x @ w_ih.T + b``;
    2. per step, ``G[t] += h @ w_hh.T`` and one elementwise pass for the gates and state;
    3. the cache keeps post-activation gates, ``c``, ``tanh(c)``, ``y``, ``h0``, ``c0``.

Backward
    1. the time loop does elementwise work and one GEMM, ``dh_prev = dG[t] @ w_hh``, filling
       ``dG``, the gradients of the gate pre-activations;
    2. after the loop, the weight gradients are single big GEMMs over all steps.

With ``lengths``, a sequence whose length has passed keeps its state unchanged, writes
zeros to ``y`` and receives no gradient from ``dy`` (PyTorch's packed-sequence semantics).
"""

import numpy as np
from scipy.special import expit

from lstmcpu.backend import Backend

__all__ = ["NumpyBackend", "make_backend"]


class NumpyBackend(Backend):
    """Pure-NumPy LSTM kernels (float32 and float64).

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

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        # Step 1: input projection of every step at once; G becomes the gate buffer.
        G = np.matmul(x.reshape(T * B, -1), w_ih.T).reshape(T, B, 4 * H)
        G += b
        y = np.zeros((T, B, H), dtype=x.dtype) if lengths is not None else np.empty((T, B, H), x.dtype)
        c_all = np.empty((T, B, H), dtype=x.dtype) if need_cache else None
        tanh_c_all = np.empty((T, B, H), dtype=x.dtype) if need_cache else None
        h, c = h0.copy(), c0.copy()
        for t in range(T):
            gates = G[t]
            gates += h @ w_hh.T
            # Activations in place: sigmoid for i, f and o, tanh for g.
            expit(gates[:, : 2 * H], out=gates[:, : 2 * H])
            np.tanh(gates[:, 2 * H : 3 * H], out=gates[:, 2 * H : 3 * H])
            expit(gates[:, 3 * H :], out=gates[:, 3 * H :])
            i, f, g, o = _split4(gates, H)
            c_new = f * c + i * g
            tanh_c = np.tanh(c_new)
            h_new = o * tanh_c
            if lengths is None:
                h, c = h_new, c_new
                y[t] = h_new
            else:
                active = (t < lengths)[:, None]
                h = np.where(active, h_new, h)
                c = np.where(active, c_new, c)
                y[t] = np.where(active, h_new, 0)
            if need_cache:
                c_all[t] = c
                tanh_c_all[t] = tanh_c
        if not need_cache:
            return y, h, c, None
        cache = {
            "x": x, "w_ih": w_ih, "w_hh": w_hh, "h0": h0, "c0": c0, "lengths": lengths,
            "gates": G, "c": c_all, "tanh_c": tanh_c_all, "y": y,
        }  # fmt: skip
        return y, h, c, cache

    def backward(self, dy, dh_n, dc_n, cache):
        x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]
        h0, c0, lengths = cache["h0"], cache["c0"], cache["lengths"]
        gates, c_all, tanh_c_all, y = cache["gates"], cache["c"], cache["tanh_c"], cache["y"]
        T, B, I = x.shape
        H = w_hh.shape[1]
        dG = np.empty((T, B, 4 * H), dtype=x.dtype)
        dh, dc = dh_n.copy(), dc_n.copy()
        for t in range(T - 1, -1, -1):
            i, f, g, o = _split4(gates[t], H)
            c_prev = c_all[t - 1] if t > 0 else c0
            tanh_c = tanh_c_all[t]
            # (1) h = o * tanh(c): the hidden gradient reaches o and, through tanh, c.
            dh_t = dh + dy[t]
            dc_t = dc + dh_t * o * (1 - tanh_c * tanh_c)
            # (2) c = f * c_prev + i * g, then through each gate's activation.
            dgates = dG[t]
            di, df, dg, do = _split4(dgates, H)
            np.multiply(dc_t * g, i * (1 - i), out=di)
            np.multiply(dc_t * c_prev, f * (1 - f), out=df)
            np.multiply(dc_t * i, 1 - g * g, out=dg)
            np.multiply(dh_t * tanh_c, o * (1 - o), out=do)
            # (3) the state gradients carried to step t - 1.
            dc_prev = dc_t * f
            dh_prev = dgates @ w_hh
            if lengths is not None:
                active = (t < lengths)[:, None]
                dgates *= active
                dh_prev = np.where(active, dh_prev, dh)
                dc_prev = np.where(active, dc_prev, dc)
            dh, dc = dh_prev, dc_prev
        # (4) weight gradients as single GEMMs over all steps.
        dG2 = dG.reshape(T * B, 4 * H)
        dw_ih = dG2.T @ x.reshape(T * B, I)
        dw_hh = dG[0].T @ h0
        if T > 1:
            dw_hh += dG[1:].reshape((T - 1) * B, 4 * H).T @ y[:-1].reshape((T - 1) * B, H)
        db = dG2.sum(axis=0)
        dx = (dG2 @ w_ih).reshape(T, B, I)
        return dx, dw_ih, dw_hh, db, dh, dc


def _split4(a, H):
    return a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]


def make_backend():
    """Factory the registry calls."""
    return NumpyBackend()
