"""lstmcpu: fast LSTM training and inference on the CPU, behind a scikit-learn estimator.

The layers (:class:`LSTM`) follow PyTorch's conventions; the compute runs in a pluggable
backend chosen by name (``backend="numpy"``, ``"numba"``, ``"cython"``) or ``"auto"``.
"""

from ._buffers import release_buffers
from ._version import __version__
from .backend import Backend, BackendUnavailableError
from .estimators import LSTMClassifier, LSTMRegressor
from .layers import GRU, LSTM, RNN
from .persistence import load
from .registry import available_backends, get_backend, register_backend, unavailable_backends

__all__ = [
    "GRU",
    "LSTM",
    "LSTMClassifier",
    "LSTMRegressor",
    "RNN",
    "Backend",
    "BackendUnavailableError",
    "__version__",
    "available_backends",
    "get_backend",
    "load",
    "register_backend",
    "release_buffers",
    "unavailable_backends",
]
