"""Losses on top of the dense head: value and gradient w.r.t. the head's outputs in one pass.

Both functions take the head outputs of a minibatch as a 2-D array ``(N, K)`` (rows are
samples, or samples x time steps with ``output="sequence"``) and optional row ``weights``
that sum to one (zero on padded steps); without weights every row counts ``1 / N``.
They reuse the output buffer for the gradient, so a training step allocates nothing here.
"""

import numpy as np

__all__ = ["softmax", "softmax_cross_entropy", "squared_error"]


def softmax(logits):
    """Row-wise softmax, in place; returns ``logits`` holding the probabilities.

    Examples
    --------
    >>> softmax(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def softmax_cross_entropy(logits, targets, weights=None):
    """Mean cross-entropy of softmax(``logits``) against integer class ``targets``.

    Parameters
    ----------
    logits : ndarray of shape (N, K)
        Overwritten with the gradient of the loss w.r.t. the logits.
    targets : int ndarray of shape (N,)
        Class index of each row.
    weights : ndarray of shape (N,), optional
        Row weights summing to one.

    Returns
    -------
    loss : float
    grad : ndarray of shape (N, K)
        ``(softmax(logits) - onehot(targets)) * weights``, the same buffer as ``logits``.

    Examples
    --------
    >>> logits = np.array([[0.0, 0.0], [0.0, 0.0]])
    >>> loss, grad = softmax_cross_entropy(logits, np.array([0, 1]))
    >>> round(loss, 6), grad.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    """
    n = logits.shape[0]
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)
    target_logit = logits[rows, targets]
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1)
    # loss_n = log(sum_k exp(z_nk)) - z_n,target
    per_row = np.log(sums) - target_logit
    row_weights = np.full(n, 1.0 / n, dtype=logits.dtype) if weights is None else weights
    loss = float(per_row @ row_weights)
    # grad = (softmax - onehot) * w: scale each row by w_n / sum_n, then subtract w_n.
    logits *= (row_weights / sums)[:, None]
    logits[rows, targets] -= row_weights
    return loss, logits


def squared_error(pred, targets, weights=None):
    """Half mean squared error ``0.5 * mean((pred - targets)**2)`` over rows and outputs.

    Parameters
    ----------
    pred : ndarray of shape (N, K)
        Overwritten with the gradient of the loss w.r.t. the predictions.
    targets : ndarray of shape (N, K)
    weights : ndarray of shape (N,), optional
        Row weights summing to one.

    Returns
    -------
    loss : float
    grad : ndarray of shape (N, K), the same buffer as ``pred``.

    Examples
    --------
    >>> loss, grad = squared_error(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))
    >>> loss, grad.ravel().tolist()
    (1.25, [0.5, 1.0])
    """
    pred -= targets
    n, n_outputs = pred.shape
    if weights is None:
        # 0.5 * mean(d**2) over all entries; its gradient is d / (n * n_outputs).
        flat = pred.reshape(-1)
        loss = 0.5 * float(flat @ flat) / (n * n_outputs)
        pred *= 1.0 / (n * n_outputs)
    else:
        per_row = np.einsum("nk,nk->n", pred, pred)
        loss = 0.5 * float(per_row @ weights) / n_outputs
        pred *= weights[:, None] / n_outputs
    return loss, pred
