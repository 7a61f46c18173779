"""Input forms of the estimators, turned into one padded array plus per-sequence lengths.

Three forms of ``X`` are accepted:

- a 3-D array ``(n_samples, n_timesteps, n_features)``;
- a 2-D array ``(n_samples, n_timesteps)``: univariate sequences (one feature per step), which
  is how scikit-learn's generic tables reach a sequence model;
- a list of 2-D arrays ``(n_timesteps_i, n_features)`` of possibly different lengths, padded
  with zeros to the longest; the lengths go to the kernels, so padding never enters a result.
"""

import numpy as np
from sklearn.utils import check_array

__all__ = ["Sequences", "as_sequences", "is_sequence_list", "pad_targets"]


class Sequences:
    """Checked sequences: ``X`` padded ``(n, T, F)`` and ``lengths`` (None when all are T).

    ``kind`` is ``"table"`` for a 2-D input, ``"array"`` for a 3-D input, ``"list"`` for a
    list of 2-D arrays.
    """

    def __init__(self, X, lengths, kind):
        self.X, self.lengths, self.kind = X, lengths, kind

    @property
    def n_samples(self):
        return self.X.shape[0]

    def step_lengths(self):
        """Length of every sequence as an int64 array (``T`` for all when unpadded)."""
        n, T = self.X.shape[:2]
        return np.full(n, T, dtype=np.int64) if self.lengths is None else self.lengths


def is_sequence_list(X):
    """True when ``X`` is a list or tuple whose items are 2-D arrays (one sequence each)."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(np.ndim(item) == 2 for item in X)


def as_sequences(X, dtype, estimator_name):
    """Check ``X`` in any accepted form and return :class:`Sequences` of ``dtype``.

    Raises ``ValueError`` or ``TypeError`` naming what was wrong: 1-D or 4-D input, NaN or
    infinity, complex values, empty input, sequences without steps, a list mixing numbers of
    features, sparse matrices.

    Examples
    --------
    >>> seqs = as_sequences([np.ones((3, 2)), np.ones((1, 2))], np.float32, "est")
    >>> seqs.X.shape, seqs.lengths.tolist(), seqs.kind
    ((2, 3, 2), [3, 1], 'list')
    >>> as_sequences(np.zeros((4, 5)), np.float64, "est").X.shape
    (4, 5, 1)
    """
    if is_sequence_list(X):
        return _pad_list(X, dtype, estimator_name)
    if isinstance(X, (list, tuple)) and len(X) > 0 and all(np.ndim(item) == 1 for item in X):
        if len({len(item) for item in X}) > 1:
            raise ValueError(
                "X is a list of 1-D arrays of different lengths; pass each sequence as a 2-D "
                "array (n_timesteps, n_features), e.g. seq[:, None] for a univariate sequence"
            )
    X = check_array(X, dtype=dtype, allow_nd=True, estimator=estimator_name)
    if X.ndim == 2:
        return Sequences(np.ascontiguousarray(X[:, :, None]), None, "table")
    if X.ndim != 3:
        raise ValueError(
            f"X must be 3-D (n_samples, n_timesteps, n_features), 2-D (n_samples, n_timesteps) "
            f"or a list of 2-D arrays; got an array of shape {X.shape}"
        )
    if X.shape[1] == 0 or X.shape[2] == 0:
        raise ValueError(
            f"X of shape {X.shape} has no time steps or no features; at least one of each is needed"
        )
    return Sequences(np.ascontiguousarray(X), None, "array")


def _pad_list(X, dtype, estimator_name):
    items = [np.asarray(item) for item in X]
    n_features = {item.shape[1] for item in items}
    if len(n_features) > 1:
        raise ValueError(
            f"every sequence of X must have the same number of features; got {sorted(n_features)}"
        )
    lengths = np.array([item.shape[0] for item in items], dtype=np.int64)
    if lengths.min() == 0:
        empty = int(np.argmin(lengths))
        raise ValueError(f"sequence {empty} of X has no time steps; every sequence needs at least one")
    # One check of the concatenated steps: dtype, finiteness, complex values.
    steps = check_array(
        np.concatenate(items, axis=0), dtype=dtype, estimator=estimator_name, input_name="X"
    )
    T = int(lengths.max())
    padded = np.zeros((len(items), T, steps.shape[1]), dtype=steps.dtype)
    # padded[i, :len_i] = items[i], for all i at once.
    valid = np.arange(T) < lengths[:, None]
    padded[valid] = steps
    return Sequences(padded, None if np.all(lengths == T) else lengths, "list")


def pad_targets(y, seqs, what):
    """Per-time-step targets as an array ``(n, T, ...)`` aligned with ``seqs``.

    ``y`` is an array whose first two axes are ``(n_samples, n_timesteps)`` or, when ``X``
    was a list, a list of arrays with one entry per step of each sequence. Padded steps get
    zeros (they carry no weight in the loss).
    """
    n, T = seqs.X.shape[:2]
    if isinstance(y, (list, tuple)) and seqs.kind == "list":
        items = [np.asarray(item) for item in y]
        if len(items) != n:
            raise ValueError(f"y has {len(items)} sequences but X has {n}")
        lengths = seqs.step_lengths()
        for i, (item, length) in enumerate(zip(items, lengths)):
            if item.ndim == 0 or item.shape[0] != length:
                raise ValueError(
                    f"{what}: y[{i}] must have one entry per time step of X[{i}] "
                    f"({length}); got shape {item.shape}"
                )
        tails = {item.shape[1:] for item in items}
        if len(tails) > 1:
            raise ValueError(f"{what}: the items of y have different shapes {sorted(tails)}")
        flat = np.concatenate(items, axis=0)
        padded = np.zeros((n, T) + flat.shape[1:], dtype=flat.dtype)
        padded[np.arange(T) < lengths[:, None]] = flat
        return padded
    y = np.asarray(y)
    if y.ndim < 2 or y.shape[:2] != (n, T):
        raise ValueError(
            f"{what}: with output='sequence', y must have shape (n_samples, n_timesteps, ...) = "
            f"({n}, {T}, ...) like X; got shape {y.shape}"
        )
    return y
