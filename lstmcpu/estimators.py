"""scikit-learn estimators: :class:`LSTMClassifier` and :class:`LSTMRegressor`.

Both share :class:`_BaseLSTM`, which owns input validation, the training loop (shuffled
minibatches, optimizer, clipping, early stopping) and prediction; the subclasses only say how
targets are encoded, which loss is used and how outputs become predictions. The structure
follows scikit-learn's ``MLPClassifier`` / ``MLPRegressor``.

The data is validated once per ``fit`` and stored time-major; each minibatch then takes a
lean path through the network without re-checking it.
"""

import numbers
import warnings
from abc import ABCMeta, abstractmethod

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array, check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data
from tqdm.auto import tqdm

from ._blas_threads import ONE_BLAS_THREAD
from ._network import CELLS, RecurrentState, SequenceNetwork
from ._sequences import as_sequences, is_sequence_list, pad_targets
from ._validation import check_float_dtype
from .backend import Backend
from .heads import softmax, softmax_cross_entropy, squared_error
from .optim import clip_by_global_norm, make_optimizer
from .registry import get_backend

__all__ = ["LSTMClassifier", "LSTMRegressor"]

# Architecture parameters: warm_start and partial_fit need them unchanged.
_ARCHITECTURE = ("cell", "hidden_size", "num_layers", "bidirectional", "output", "dtype", "peephole", "coupled",
                 "proj_size")  # fmt: skip
# Sequences predicted per network call, to bound the memory of predict on large X.
_PREDICT_CHUNK = 4096


class _BaseLSTM(BaseEstimator, metaclass=ABCMeta):
    """Base class of the LSTM estimators. Use :class:`LSTMClassifier` or :class:`LSTMRegressor`."""

    _parameter_constraints: dict = {
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "bidirectional": ["boolean"],
        "cell": [StrOptions(set(CELLS))],
        "peephole": ["boolean"],
        "coupled": ["boolean"],
        "proj_size": [Interval(numbers.Integral, 0, None, closed="left")],
        "forget_bias": [Interval(numbers.Real, None, None, closed="neither")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "backend": [str, Backend],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64}), np.dtype],
        "solver": [StrOptions({"adam", "sgd"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "clip_norm": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "output": [StrOptions({"last", "sequence"})],
    }

    def __init__(self, hidden_size=32, num_layers=1, bidirectional=False, cell="lstm",
                 dropout=0.0, backend="auto", dtype="float32", solver="adam", learning_rate=0.01,
                 momentum=0.9, batch_size=32, max_iter=200, clip_norm=5.0, alpha=0.0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 random_state=None, warm_start=False, verbose=False, output="last", peephole=False,
                 coupled=False, proj_size=0, forget_bias=1.0):  # fmt: skip
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.cell = cell
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.clip_norm = clip_norm
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.output = output
        self.peephole = peephole
        self.coupled = coupled
        self.proj_size = proj_size
        self.forget_bias = forget_bias

    # ------------------------------------------------------------------ what subclasses define

    @abstractmethod
    def _encode_targets(self, y, seqs, reset, incremental):
        """Targets in the training layout: ``(n,)``/``(n, K)`` or ``(n, T)``/``(n, T, K)``.

        Classifiers define ``classes_`` when ``reset`` in ``fit`` (``partial_fit`` takes them
        from its ``classes`` argument); later calls check that ``y`` has no other labels.
        """

    @abstractmethod
    def _loss(self, out, targets, weights):
        """``(loss, grad)`` of the head outputs ``out`` (overwritten with the gradient)."""

    @abstractmethod
    def _score_outputs(self, out, targets, mask):
        """Validation score of raw head outputs against encoded targets."""

    @abstractmethod
    def _decode_outputs(self, out):
        """Predictions from raw head outputs with the class (or target) axis last."""

    # ------------------------------------------------------------------ input checks

    def _check_X(self, X, reset):
        """:class:`~lstmcpu._sequences.Sequences` from ``X``; on ``reset``, record its shape."""
        dtype = check_float_dtype(self.dtype)
        name = type(self).__name__
        table = not is_sequence_list(X) and _ndim(X) == 2
        if table and (reset or getattr(self, "_fitted_on_table", False)):
            # 2-D tables follow scikit-learn's conventions: n_features_in_ is the number of
            # columns (here, time steps), feature names are recorded and checked.
            X = validate_data(self, X, reset=reset, dtype=dtype)
        seqs = as_sequences(X, dtype, name)
        n_step_features = seqs.X.shape[2]
        if reset:
            self._fitted_on_table = table
            self._n_step_features = n_step_features
            if not table:
                self.n_features_in_ = n_step_features
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
        elif n_step_features != self._n_step_features:
            hint = " (a 2-D X is read as univariate sequences)" if table else ""
            raise ValueError(
                f"X has {n_step_features} features per time step{hint}, but {name} was fitted "
                f"on sequences with {self._n_step_features} features per time step"
            )
        return seqs

    def _check_fitted_X(self, X):
        check_is_fitted(self)
        return self._check_X(X, reset=False)

    # ------------------------------------------------------------------ fitting

    def _fit(self, X, y, incremental):
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True; use fit")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        seqs = self._check_X(X, reset=first_pass)
        targets = self._encode_targets(y, seqs, first_pass, incremental)
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(seqs, targets, rng)
        else:
            self._check_architecture(targets)
        backend = self._resolve_backend()
        self.backend_ = backend.name
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = make_optimizer(
                self.solver, self.network_.flat, self.learning_rate, self.momentum
            )
        X_tm, lengths = _time_major(seqs)
        targets = self._time_major_targets(targets)
        val = None
        if self.early_stopping:
            train, val = self._validation_split(seqs.n_samples, targets, rng)
            val = (_take_steps(X_tm, val), _take(lengths, val), _take_targets(targets, val, self.output))
            X_tm, lengths = _take_steps(X_tm, train), _take(lengths, train)
            targets = _take_targets(targets, train, self.output)
        with ONE_BLAS_THREAD:
            self._run_epochs(X_tm, lengths, targets, val, backend, rng, incremental)
        return self

    def _resolve_backend(self):
        """The backend named by ``backend`` that runs the fitted network's cell and dtype."""
        net = self.network_
        return get_backend(self.backend, cell=net.rnn._capabilities(), dtype=net.dtype)

    def _cell_options(self):
        """The LSTM-only options, checked against ``cell`` and ``hidden_size``."""
        options = {"peephole": self.peephole, "coupled": self.coupled, "proj_size": self.proj_size}
        used = [name for name, value in options.items() if value]
        if self.cell != "lstm":
            if used:
                raise ValueError(f"{used} only apply to cell='lstm', got cell={self.cell!r}")
            return {}
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), got {self.proj_size}")
        return options

    def _initialize(self, seqs, targets, rng):
        self.network_ = SequenceNetwork(
            self.cell, seqs.X.shape[2], self.hidden_size, self.num_layers, self.bidirectional,
            self.dropout, check_float_dtype(self.dtype), self.backend,
            self._n_outputs(targets), self.output, rng, self._cell_options(), self.forget_bias,
        )  # fmt: skip
        self._architecture = self._architecture_params()
        self.n_iter_ = 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._no_improvement_count = 0

    def _architecture_params(self):
        params = {name: getattr(self, name) for name in _ARCHITECTURE}
        params["dtype"] = check_float_dtype(self.dtype)
        return params

    def _check_architecture(self, targets):
        now = self._architecture_params()
        changed = {name: (old, now[name]) for name, old in self._architecture.items() if old != now[name]}
        if changed:
            raise ValueError(
                "warm_start and partial_fit continue training the fitted network, so its "
                f"architecture cannot change; changed parameters (fitted, now): {changed}"
            )
        n_outputs = self._n_outputs(targets)
        if n_outputs != self.network_.n_outputs:
            raise ValueError(
                f"y has {n_outputs} outputs, but the fitted network has {self.network_.n_outputs}"
            )
        if self.early_stopping and self.validation_scores_ is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf

    def _n_outputs(self, targets):
        return targets.shape[-1] if targets.dtype.kind == "f" else len(self.classes_)

    def _time_major_targets(self, targets):
        if self.output == "last":
            return targets
        return np.ascontiguousarray(np.swapaxes(targets, 0, 1))

    def _validation_split(self, n_samples, targets, rng):
        classify = targets.dtype.kind != "f" and self.output == "last"
        try:
            train, val = train_test_split(
                np.arange(n_samples), test_size=self.validation_fraction, random_state=rng,
                stratify=targets if classify else None,
            )  # fmt: skip
        except ValueError:
            # Too few members in some class to stratify: split without stratification.
            train, val = train_test_split(
                np.arange(n_samples), test_size=self.validation_fraction, random_state=rng
            )
        if len(val) < 2 or len(train) < 1:
            raise ValueError(
                f"early_stopping: the validation set has {len(val)} sequence(s) of "
                f"{n_samples}; increase validation_fraction or the number of samples"
            )
        return train, val

    def _run_epochs(self, X_tm, lengths, targets, val, backend, rng, incremental):
        net, opt = self.network_, self._optimizer
        n = X_tm.shape[1]
        batch_size = min(self.batch_size, n)
        n_epochs = 1 if incremental else self.max_iter
        last_finite = net.flat.copy()
        progress = tqdm(
            range(n_epochs), desc=type(self).__name__, unit="epoch", disable=not self.verbose,
            leave=bool(self.verbose),
        )  # fmt: skip
        converged = interrupted = False
        # Overflow is detected and reported by _train_step, not by NumPy warnings.
        with progress, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                for _ in progress:
                    order = rng.permutation(n)
                    total = 0.0
                    for start in range(0, n, batch_size):
                        idx = order[start : start + batch_size]
                        loss = self._train_step(net, opt, X_tm, lengths, targets, idx, backend, last_finite)
                        total += loss * len(idx)
                    self.n_iter_ += 1
                    self.loss_curve_.append(total / n)
                    converged = self._end_epoch(val, backend, progress)
                    if converged:
                        break
            except KeyboardInterrupt:
                # Ctrl-C: the minibatch it cut short left the weights as they were before it
                # (_train_step sees to that), so return a usable estimator, as Keras and skorch do.
                interrupted = True
        if self.early_stopping and np.isfinite(self.best_validation_score_):
            net.flat[...] = self._best_flat
        if interrupted:
            kept = "the best weights so far" if self.early_stopping else "the weights before that minibatch"
            warnings.warn(
                f"{type(self).__name__}: fit interrupted (KeyboardInterrupt) after {self.n_iter_} "
                f"complete epoch(s); the estimator keeps {kept}",
                UserWarning,
                stacklevel=5,
            )
        elif not incremental and not converged:
            warnings.warn(
                f"{type(self).__name__}: maximum number of epochs (max_iter={self.max_iter}) "
                "reached and the optimization hasn't converged yet; increase max_iter or "
                "learning_rate",
                ConvergenceWarning,
                stacklevel=5,
            )

    def _train_step(self, net, opt, X_tm, lengths, targets, idx, backend, last_finite):
        """One minibatch: forward, loss, backward, L2, clipping, update. Returns the loss."""
        x, batch_lengths, T = _batch_inputs(X_tm, lengths, idx)
        out, _ = net.forward(x, batch_lengths, backend, training=True)
        y, weights = self._batch_targets(targets, idx, T, batch_lengths)
        loss, grad_out = self._loss(out, y, weights)
        grad = net.backward(grad_out)
        if self.alpha:
            # 0.5 * alpha * ||W||^2 over the weights (not the biases), and its gradient
            weights_part = net.flat[: net.n_weights]
            loss += 0.5 * self.alpha * float(weights_part @ weights_part)
            grad[: net.n_weights] += self.alpha * weights_part
        sq_norm = float(grad @ grad)
        if not (np.isfinite(loss) and np.isfinite(sq_norm)):
            self._stop_on_non_finite(loss, net, last_finite)
        np.copyto(last_finite, net.flat)
        clip_by_global_norm(grad, self.clip_norm, sq_norm)
        try:
            opt.step(grad)
        except KeyboardInterrupt:
            net.flat[...] = last_finite  # no half-updated weights
            raise
        return loss

    def _stop_on_non_finite(self, loss, net, last_finite):
        net.flat[...] = last_finite
        raise FloatingPointError(
            f"{type(self).__name__}: the training loss became {loss} (non-finite loss or "
            f"gradient) in epoch {self.n_iter_ + 1}; training stopped and the estimator keeps "
            "the last weights whose loss was finite. Lower learning_rate, set clip_norm, or "
            "scale X (and y)."
        )

    def _batch_targets(self, targets, idx, T, batch_lengths):
        """Targets of a minibatch as rows matching the head outputs, and the row weights."""
        if self.output == "last":
            return targets[idx], None
        y = targets[:T, idx]
        y = y.reshape((-1,) + y.shape[2:])
        if batch_lengths is None:
            return y, None
        # Weight 1 / (number of valid steps) on valid steps, 0 on padding.
        mask = (np.arange(T)[:, None] < batch_lengths).ravel()
        weights = mask.astype(self.network_.dtype)
        weights /= weights.sum()
        return y, weights

    def _end_epoch(self, val, backend, progress):
        """Record the epoch, update the stopping criterion; True when training should stop."""
        loss = self.loss_curve_[-1]
        postfix = {"loss": f"{loss:.4g}"}
        if val is None:
            improved = loss < self.best_loss_ - self.tol
        else:
            score = self._validation_score(*val, backend)
            self.validation_scores_.append(score)
            postfix["val_score"] = f"{score:.4g}"
            improved = score > self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_flat = self.network_.flat.copy()
        self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self.verbose:
            progress.set_postfix(postfix, refresh=False)
        return self._no_improvement_count > self.n_iter_no_change

    def _validation_score(self, X_tm, lengths, targets, backend):
        out = self._network_outputs(X_tm, lengths, backend)
        if self.output == "last":
            return self._score_outputs(out, targets, None)
        T, n = X_tm.shape[:2]
        out = out.reshape((T, n, -1))
        mask = None if lengths is None else np.arange(T)[:, None] < lengths
        return self._score_outputs(out, targets, mask)

    # ------------------------------------------------------------------ prediction

    def _network_outputs(self, X_tm, lengths, backend):
        """Head outputs in inference mode, in chunks of sequences: ``(n, K)`` or ``(T*n, K)``."""
        net = self.network_
        n = X_tm.shape[1]
        if n <= _PREDICT_CHUNK:
            return net.forward(X_tm, lengths, backend)[0]
        chunks = []
        for start in range(0, n, _PREDICT_CHUNK):
            part = np.arange(start, min(start + _PREDICT_CHUNK, n))
            x, part_lengths, T = _batch_inputs(X_tm, lengths, part, trim=False)
            out = net.forward(x, part_lengths, backend)[0]
            chunks.append(out if self.output == "last" else out.reshape((T, len(part), -1)))
        if self.output == "last":
            return np.concatenate(chunks)
        return np.concatenate(chunks, axis=1).reshape((-1, chunks[0].shape[-1]))

    def _raw_predict(self, X):
        """Head outputs for ``X``: ``(n, K)``, or ``(n, T, K)`` (or a list) for sequences."""
        seqs = self._check_fitted_X(X)
        backend = self._resolve_backend()
        X_tm, lengths = _time_major(seqs)
        with ONE_BLAS_THREAD:
            out = self._network_outputs(X_tm, lengths, backend)
        return self._outputs_per_sequence(out, seqs.X.shape[:2], seqs.lengths, seqs.kind)

    def _outputs_per_sequence(self, out, shape, lengths, kind):
        if self.output == "last":
            return out
        n, T = shape
        out = out.reshape((T, n, -1)).swapaxes(0, 1)
        if kind == "list" and lengths is not None:
            return [out[i, :length] for i, length in enumerate(lengths)]
        return out

    def predict_stream(self, X_chunk, state=None):
        """Predict chunk by chunk along time, carrying the recurrent state between calls.

        Parameters
        ----------
        X_chunk : array-like of shape (n_samples, n_steps, n_features) or (n_samples, n_steps)
            The next time steps of the same ``n_samples`` sequences.
        state : object or None
            What the previous call returned; ``None`` starts new sequences.

        Returns
        -------
        y_chunk : ndarray
            With ``output="last"``, what :meth:`predict` returns for the sequences seen so far
            (the prediction after the chunk's last step); with ``output="sequence"``, the
            predictions of the chunk's steps.
        state : object
            Opaque, picklable state to pass with the next chunk.

        Examples
        --------
        >>> import numpy as np
        >>> from lstmcpu import LSTMRegressor
        >>> X = np.random.default_rng(0).standard_normal((20, 6, 1))
        >>> est = LSTMRegressor(hidden_size=4, output="sequence", random_state=0)
        >>> est = est.fit(X, X[:, :, 0])
        >>> first, state = est.predict_stream(X[:, :4])
        >>> rest, state = est.predict_stream(X[:, 4:], state)
        >>> bool(np.allclose(np.concatenate([first, rest], axis=1), est.predict(X), atol=1e-6))
        True
        """
        out, state = self._stream_outputs(X_chunk, state)
        return self._decode_outputs(out), state

    def _stream_outputs(self, X_chunk, state):
        """Head outputs of one chunk of :meth:`predict_stream` and the carried state."""
        check_is_fitted(self)
        if self.bidirectional:
            raise ValueError(
                "predict_stream needs a unidirectional network: a bidirectional one reads "
                "each sequence backwards from its end, which a stream does not have yet"
            )
        if is_sequence_list(X_chunk):
            raise ValueError(
                "predict_stream takes one chunk of time steps of equal-length sequences as an "
                "array (n_samples, n_steps, n_features), not a list of sequences"
            )
        net = self.network_
        seqs = as_sequences(X_chunk, net.dtype, type(self).__name__)
        if seqs.X.shape[2] != self._n_step_features:
            raise ValueError(
                f"X_chunk has {seqs.X.shape[2]} features per time step, but {type(self).__name__} "
                f"was fitted on sequences with {self._n_step_features}"
            )
        n = seqs.n_samples
        if state is not None:
            if not isinstance(state, RecurrentState):
                raise TypeError(
                    f"state must be None or the state returned by predict_stream, got {type(state).__name__}"
                )
            expected = net.rnn._state_shapes(n)
            if [s.shape for s in state.states] != expected or state.states[0].dtype != net.dtype:
                raise ValueError(
                    f"state holds {state.states[0].shape[1]} sequences of this or another model, "
                    f"but X_chunk has {n}; pass the state returned for the same sequences"
                )
        backend = self._resolve_backend()
        X_tm, _ = _time_major(seqs)
        with ONE_BLAS_THREAD:
            out, states_n = net.forward(X_tm, None, backend, states=None if state is None else state.states)
        n_steps = X_tm.shape[0] + (0 if state is None else state.n_steps)
        out = self._outputs_per_sequence(out, seqs.X.shape[:2], None, seqs.kind)
        return out, RecurrentState(states_n, n_steps)

    def predict(self, X):
        """Predict for each sequence (``output="last"``) or each time step (``"sequence"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features), (n_samples, n_timesteps)
            or a list of arrays of shape (n_timesteps_i, n_features)

        Returns
        -------
        y : ndarray, or a list of per-sequence arrays for a list ``X`` of different
            lengths with ``output="sequence"``.
        """
        out = self._raw_predict(X)
        if isinstance(out, list):
            return [self._decode_outputs(item) for item in out]
        return self._decode_outputs(out)

    def _score_per_step(self, X, y, metric):
        """``metric(y_true, y_pred)`` over every valid time step of every sequence."""
        seqs = self._check_fitted_X(X)
        y = pad_targets(y, seqs, "score")
        pred = self.predict(X)
        if isinstance(pred, list):
            pred = pad_targets(pred, seqs, "score")
        valid = np.arange(seqs.X.shape[1]) < seqs.step_lengths()[:, None]
        return metric(y[valid], pred[valid])

    def save(self, path):
        """Write the fitted estimator to ``path`` as a safe model file; read it back with
        :func:`lstmcpu.load`.

        The file is an ``.npz`` archive of plain arrays and a JSON header, which loads
        without running any code from it (see :mod:`lstmcpu.persistence`). Pickling the
        estimator also works, but unpickling runs whatever code the file asks for: never
        unpickle a file you do not trust.

        Parameters
        ----------
        path : str or path-like
        """
        from .persistence import save

        save(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


class LSTMClassifier(ClassifierMixin, _BaseLSTM):
    """Sequence classifier: an LSTM network with a softmax head, trained by minibatch Adam/SGD.

    Parameters
    ----------
    hidden_size : int, default=32
        Features of the hidden state of each layer and direction.
    num_layers : int, default=1
        Stacked recurrent layers.
    bidirectional : bool, default=False
        Also read each sequence backwards (within its own length). With ``output="last"``
        the head reads the forward direction's state at each sequence's last step and the
        reverse direction's state at step 0 (PyTorch's ``h_n``).
    cell : {"lstm", "gru", "rnn"}, default="lstm"
        Recurrent cell: LSTM, GRU, or an Elman RNN with tanh.
    dropout : float, default=0.0
        Dropout between stacked layers during training.
    backend : str or Backend, default="auto"
        Compute backend (see :func:`lstmcpu.available_backends`); ``backend_`` records the
        one used. A model trained with one backend predicts with any other.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the weights and of every computation.
    solver : {"adam", "sgd"}, default="adam"
        Optimizer; "sgd" uses heavy-ball ``momentum``.
    learning_rate : float, default=0.01
    momentum : float, default=0.9
        Momentum of "sgd".
    batch_size : int, default=32
        Sequences per minibatch (capped at the number of training sequences).
    max_iter : int, default=200
        Maximum number of epochs of ``fit``.
    clip_norm : float or None, default=5.0
        Rescale the gradient when its global L2 norm exceeds this; ``None`` disables.
    alpha : float, default=0.0
        L2 penalty ``0.5 * alpha * ||W||^2`` on the weights (not the biases).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its score has not improved
        by ``tol`` for ``n_iter_no_change`` epochs, and restore the best weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` (training loss, or validation score with
        early stopping) before training stops.
    tol : float, default=1e-4
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order, dropout and the validation split.
    warm_start : bool, default=False
        Continue from the fitted network in ``fit``.
    verbose : bool or int, default=False
        Show a progress bar per epoch with the loss (and validation score).
    output : {"last", "sequence"}, default="last"
        One label per sequence, or one label per time step (then ``y`` is
        ``(n_samples, n_timesteps)``, or a list of per-sequence label arrays).
    peephole : bool, default=False
        LSTM only: peephole connections from the cell state to the gates.
    coupled : bool, default=False
        LSTM only: coupled input-forget gate, ``i = 1 - f``.
    proj_size : int, default=0
        LSTM only: project ``h`` to this many features (``0``: no projection).
    forget_bias : float, default=1.0
        LSTM only (other cells ignore it): the initial bias of the forget gate, so that a new
        network starts by remembering (``sigmoid(1) = 0.73``; Keras's ``unit_forget_bias``,
        after Gers et al. 2000 and Jozefowicz et al. 2015). For a dependency over a lag of ``T``
        steps, about ``log(T)`` lets the memory survive the lag from the start (Tallec and
        Ollivier 2018): ``python -m lstmcpu demo`` needs 4 to 5 to bridge 40 to 50 steps.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
        Columns of a 2-D ``X`` (scikit-learn's convention; each column is a time step),
        else features per time step.
    feature_names_in_ : ndarray of str
        Column names of a 2-D ``X`` with string column names (a DataFrame).
    backend_ : str
        Name of the backend used by the last ``fit``.
    network_ : object
        The trained network (recurrent layer ``network_.rnn`` and dense head).
    n_iter_ : int
        Epochs trained in total.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    best_loss_ : float
        Lowest training loss seen.
    validation_scores_ : list of float or None
        Validation accuracy per epoch with ``early_stopping``.
    best_validation_score_ : float or None

    Notes
    -----
    ``fit``, ``predict`` and ``predict_stream`` run BLAS on one thread: each recurrent step
    multiplies small matrices, where BLAS threads only add synchronisation (on a busy machine
    they slow training down many times). The user's setting is restored afterwards.

    Save a fitted estimator with :meth:`save` and read it with :func:`lstmcpu.load`: the file
    holds only arrays and JSON and loads without running code. Pickle works too, but loading
    a pickle runs whatever code it contains: only unpickle files you trust. Export to ONNX
    with :func:`lstmcpu.onnx.export`.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu import LSTMClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 5, 2))
    >>> y = np.where(X[:, :, 0].sum(axis=1) > 0, "up", "down")
    >>> clf = LSTMClassifier(hidden_size=8, random_state=0).fit(X, y)
    >>> clf.classes_.tolist(), clf.predict(X[:2]).shape, clf.score(X, y) > 0.9
    (['down', 'up'], (2,), True)
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train on sequences ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features), (n_samples, n_timesteps)
            or a list of arrays of shape (n_timesteps_i, n_features)
        y : array-like of shape (n_samples,), or (n_samples, n_timesteps) (or a list of
            per-sequence arrays) with ``output="sequence"``

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y``; ``classes`` (all labels) is needed on the first call.

        Returns
        -------
        self
        """
        _check_partial_fit_first_call(self, classes)
        return self._fit(X, y, incremental=True)

    def _encode_targets(self, y, seqs, reset, incremental):
        n, T = seqs.X.shape[:2]
        if self.output == "last":
            y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
            y = column_or_1d(y, warn=True)
            check_consistent_length(seqs.X, y)
            valid = np.ones(n, dtype=bool)
        else:
            y = pad_targets(y, seqs, "LSTMClassifier")
            if y.ndim != 2:
                raise ValueError(
                    f"with output='sequence', y must hold one label per time step, shape "
                    f"(n_samples, n_timesteps); got shape {y.shape}"
                )
            check_array(y, dtype=None, input_name="y")
            valid = np.arange(T) < seqs.step_lengths()[:, None]
        check_classification_targets(y[valid])
        if reset and not incremental:
            self.classes_ = np.unique(y[valid])
        encoded = np.searchsorted(self.classes_, y)
        encoded[~valid] = 0
        encoded = np.minimum(encoded, len(self.classes_) - 1)
        unknown = valid & (self.classes_[encoded] != y)
        if unknown.any():
            raise ValueError(
                f"y has labels {np.unique(y[unknown]).tolist()} that are not in classes_ "
                f"{self.classes_.tolist()} (pass every label in classes= on the first partial_fit)"
            )
        return encoded.astype(np.intp)

    def _loss(self, out, targets, weights):
        return softmax_cross_entropy(out, targets, weights)

    def _score_outputs(self, out, targets, mask):
        correct = out.argmax(axis=-1) == targets
        return float(correct.mean() if mask is None else correct[mask].mean())

    def _decode_outputs(self, out):
        return self.classes_[out.argmax(axis=-1)]

    def predict_proba(self, X):
        """Class probabilities, ``(n_samples, n_classes)`` or ``(n_samples, n_timesteps,
        n_classes)`` with ``output="sequence"`` (a list for a list ``X`` of different lengths),
        classes ordered as :attr:`classes_`."""
        out = self._raw_predict(X)
        if isinstance(out, list):
            return [self._probabilities(item) for item in out]
        return self._probabilities(out)

    @staticmethod
    def _probabilities(out):
        shape = out.shape
        proba = softmax(np.array(out, dtype=np.float64).reshape(-1, shape[-1]))
        return proba.reshape(shape)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            return [np.log(p) for p in proba]
        return np.log(proba)

    def predict_proba_stream(self, X_chunk, state=None):
        """Class probabilities chunk by chunk along time, carrying the recurrent state.

        :meth:`predict_stream` with :meth:`predict_proba`'s output: what a sampler needs,
        e.g. a character-level language model that feeds back each character it draws.

        Parameters
        ----------
        X_chunk : array-like of shape (n_samples, n_steps, n_features) or (n_samples, n_steps)
            The next time steps of the same ``n_samples`` sequences.
        state : object or None
            What the previous call (of this method or :meth:`predict_stream`) returned;
            ``None`` starts new sequences.

        Returns
        -------
        proba_chunk : ndarray
            ``(n_samples, n_classes)`` after the chunk's last step with ``output="last"``;
            ``(n_samples, n_steps, n_classes)`` for the chunk's steps with ``output="sequence"``.
        state : object
            Opaque, picklable state to pass with the next chunk.

        Examples
        --------
        >>> import numpy as np
        >>> from lstmcpu import LSTMClassifier
        >>> X = np.random.default_rng(0).standard_normal((20, 6, 1))
        >>> clf = LSTMClassifier(hidden_size=4, output="sequence", random_state=0)
        >>> clf = clf.fit(X, X[:, :, 0] > 0)
        >>> first, state = clf.predict_proba_stream(X[:, :4])
        >>> rest, state = clf.predict_proba_stream(X[:, 4:], state)
        >>> proba = np.concatenate([first, rest], axis=1)
        >>> proba.shape, bool(np.allclose(proba, clf.predict_proba(X), atol=1e-6))
        ((20, 6, 2), True)
        """
        out, state = self._stream_outputs(X_chunk, state)
        return self._probabilities(out), state

    def score(self, X, y):
        """Mean accuracy (per time step, over valid steps, with ``output="sequence"``)."""
        if self.output == "last":
            return super().score(X, y)
        return self._score_per_step(X, y, lambda t, p: float(np.mean(t == p)))


class LSTMRegressor(RegressorMixin, _BaseLSTM):
    """Sequence regressor: an LSTM network with a linear head and squared loss.

    Parameters are those of :class:`LSTMClassifier`. With ``output="last"`` ``y`` is
    ``(n_samples,)`` or ``(n_samples, n_targets)``; with ``output="sequence"`` it is
    ``(n_samples, n_timesteps)`` or ``(n_samples, n_timesteps, n_targets)`` (or a list of
    per-sequence arrays for a list ``X``). The network learns the targets standardized with
    the mean and standard deviation of each target in the ``y`` of the first ``fit`` (or
    ``partial_fit``), so any target scale trains with the same learning rate; the loss, in
    ``loss_curve_``, is ``0.5 * mean((pred - y)**2)`` in those standardized units.
    Predictions are float64 in the units of ``y``, computed in ``dtype``.

    Attributes
    ----------
    n_features_in_, feature_names_in_, backend_, network_, n_iter_, loss_curve_, best_loss_
        As in :class:`LSTMClassifier`.
    validation_scores_ : list of float or None
        Validation R² per epoch with ``early_stopping``.
    best_validation_score_ : float or None

    Examples
    --------
    >>> import numpy as np
    >>> from lstmcpu import LSTMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 6, 1))
    >>> y = X[:, :, 0].mean(axis=1)
    >>> reg = LSTMRegressor(hidden_size=8, random_state=0).fit(X, y)
    >>> reg.predict(X).shape, reg.score(X, y) > 0.8
    ((200,), True)
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train on sequences ``X`` and real targets ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features), (n_samples, n_timesteps)
            or a list of arrays of shape (n_timesteps_i, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets); with
            ``output="sequence"``, (n_samples, n_timesteps[, n_targets]) or a list

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """One epoch over ``X``, ``y``, continuing from the current weights.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True)

    def _encode_targets(self, y, seqs, reset, incremental):
        dtype = check_float_dtype(self.dtype)
        if self.output == "last":
            if _ndim(y) not in (1, 2):
                raise ValueError(
                    f"y must be (n_samples,) or (n_samples, n_targets); got shape {np.shape(y)}"
                )
            y = check_array(y, ensure_2d=False, dtype=dtype, input_name="y")
            check_consistent_length(seqs.X, y)
            one_d = y.ndim == 1
        else:
            y = pad_targets(y, seqs, "LSTMRegressor")
            if y.ndim > 3:
                raise ValueError(
                    "with output='sequence', y must be (n_samples, n_timesteps) or "
                    f"(n_samples, n_timesteps, n_targets); got shape {y.shape}"
                )
            y = check_array(y, ensure_2d=False, allow_nd=True, dtype=dtype, input_name="y")
            one_d = y.ndim == 2
        y = y[..., None] if one_d else y
        if reset:
            self._y_one_d = one_d
            T = seqs.X.shape[1]
            valid = np.arange(T) < seqs.step_lengths()[:, None]
            values = y if self.output == "last" else y[valid]
            self._y_mean = values.mean(axis=0)
            scale = values.std(axis=0)
            self._y_scale = np.where(scale > 0, scale, 1.0).astype(dtype)
        # The network learns standardized targets; predictions are mapped back.
        return np.ascontiguousarray((y - self._y_mean) / self._y_scale, dtype=dtype)

    def _loss(self, out, targets, weights):
        return squared_error(out, targets, weights)

    def _score_outputs(self, out, targets, mask):
        if mask is not None:
            out, targets = out[mask], targets[mask]
        elif out.ndim == 3:
            out, targets = out.reshape(-1, out.shape[-1]), targets.reshape(-1, targets.shape[-1])
        return float(r2_score(targets, out))

    def _decode_outputs(self, out):
        out = out * self._y_scale.astype(np.float64) + self._y_mean
        return out[..., 0] if self._y_one_d else out

    def score(self, X, y):
        """R² (over every valid time step with ``output="sequence"``)."""
        if self.output == "last":
            return super().score(X, y)
        return self._score_per_step(X, y, r2_score)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# ---------------------------------------------------------------------- helpers


def _ndim(X):
    """Number of dimensions of an array-like, or None for ragged nested lists."""
    if hasattr(X, "ndim"):
        return X.ndim
    try:
        return np.asarray(X).ndim
    except ValueError:
        return None


def _time_major(seqs):
    """``(T, n, F)`` C-contiguous copy of the padded ``X`` and its lengths."""
    return np.ascontiguousarray(seqs.X.transpose(1, 0, 2)), seqs.lengths


def _take_steps(X_tm, idx):
    """The sequences ``idx`` of time-major ``X_tm``, C-contiguous as the kernels require.

    (``X_tm[:, idx]`` is not: NumPy lays the indexed axis out first.)
    """
    return np.take(X_tm, idx, axis=1)


def _take(lengths, idx):
    return None if lengths is None else lengths[idx]


def _take_targets(targets, idx, output):
    return targets[idx] if output == "last" else targets[:, idx]


def _batch_inputs(X_tm, lengths, idx, trim=True):
    """Minibatch ``x`` (T_b, B, F), its lengths (None when all full) and ``T_b``.

    With lengths, time is cut to the longest sequence of the batch.
    """
    if lengths is None:
        return _take_steps(X_tm, idx), None, X_tm.shape[0]
    batch_lengths = lengths[idx]
    T = int(batch_lengths.max()) if trim else X_tm.shape[0]
    x = _take_steps(X_tm[:T], idx)
    if np.all(batch_lengths == T):
        batch_lengths = None
    return x, batch_lengths, T
