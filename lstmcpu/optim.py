"""First-order optimizers over one flat parameter vector, written once for every backend.

The estimators keep all trainable parameters in a single contiguous array (the layer's and
the head's arrays are views into it), so an update is a handful of in-place ufunc calls on
one vector, whatever the number of layers: no per-parameter Python loop, no allocation.
"""

import numpy as np

__all__ = ["SGD", "Adam", "clip_by_global_norm", "make_optimizer"]


def clip_by_global_norm(grad, max_norm, sq_norm):
    """Scale ``grad`` in place so that its L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grad : ndarray
        Flat gradient, modified in place.
    max_norm : float or None
        Largest allowed norm; ``None`` disables clipping.
    sq_norm : float
        ``grad @ grad``, computed by the caller (which also uses it to detect NaN/inf).

    Returns
    -------
    norm : float
        The norm before clipping.

    Examples
    --------
    >>> g = np.array([3.0, 4.0])
    >>> clip_by_global_norm(g, 1.0, float(g @ g))
    5.0
    >>> g
    array([0.6, 0.8])
    """
    norm = float(np.sqrt(sq_norm))
    if max_norm is not None and norm > max_norm:
        grad *= max_norm / norm
    return norm


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum.

    ``v = momentum * v - lr * g``; ``w += v``, as in scikit-learn's MLP.

    Parameters
    ----------
    params : ndarray
        The flat parameter vector, updated in place by :meth:`step`.
    learning_rate : float
    momentum : float, default=0.9

    Examples
    --------
    >>> w = np.array([1.0, -2.0])
    >>> opt = SGD(w, learning_rate=0.1, momentum=0.0)
    >>> opt.step(np.array([1.0, 1.0]))
    >>> w
    array([ 0.9, -2.1])
    """

    def __init__(self, params, learning_rate, momentum=0.9):
        self.params = params
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity = np.zeros_like(params)

    def step(self, grad):
        """Update the parameters in place from the flat gradient ``grad``."""
        v = self.velocity
        v *= self.momentum
        # v -= lr * grad, without a temporary: grad is scratch space after the step.
        grad *= self.learning_rate
        v -= grad
        self.params += v


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction folded into the step size.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.

    Parameters
    ----------
    params : ndarray
        The flat parameter vector, updated in place by :meth:`step`.
    learning_rate : float
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8

    Examples
    --------
    The first step moves every parameter by about ``learning_rate`` against the gradient sign:

    >>> w = np.zeros(3)
    >>> opt = Adam(w, learning_rate=0.01)
    >>> opt.step(np.array([2.0, -0.5, 0.0]))
    >>> np.round(w, 6)
    array([-0.01,  0.01,  0.  ])
    """

    def __init__(self, params, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.params = params
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.t = 0
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self._scratch = np.empty_like(params)

    def step(self, grad):
        """Update the parameters in place from the flat gradient ``grad`` (used as scratch)."""
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        m, v, tmp = self.m, self.v, self._scratch
        # m = b1 * m + (1 - b1) * grad
        m *= b1
        np.multiply(grad, 1.0 - b1, out=tmp)
        m += tmp
        # v = b2 * v + (1 - b2) * grad**2
        v *= b2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        # w -= step * m / (sqrt(v) + eps)
        step = self.learning_rate * np.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        np.sqrt(v, out=tmp)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= step
        self.params -= tmp


def make_optimizer(solver, params, learning_rate, momentum):
    """The optimizer named ``solver`` ("adam" or "sgd") over the flat vector ``params``."""
    if solver == "adam":
        return Adam(params, learning_rate)
    if solver == "sgd":
        return SGD(params, learning_rate, momentum)
    raise ValueError(f"solver must be 'adam' or 'sgd', got {solver!r}")
