"""Input checks shared by the layers and estimators: clear errors instead of garbage."""

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype):
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise a clear error."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def as_float_array(a, dtype, name, finite=True):
    """Convert ``a`` to a C-contiguous array of ``dtype`` with only finite values.

    Integer, boolean and other real floating inputs are cast; complex, object and string
    inputs raise ``TypeError``; NaN or infinity raises ``ValueError``, unless ``finite``
    is false: the caller then checks the values itself (see :func:`check_finite`).
    """
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real-valued; got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(
            f"{name} must be a numeric array (float32 or float64 preferred); got dtype {arr.dtype}"
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if finite:
        check_finite(arr, name)
    return arr


def check_finite(arr, name, backend=None):
    """Raise ``ValueError`` if the float array ``arr`` holds NaN or infinity; ``backend``'s
    :meth:`~lstmcpu.backend.Backend.all_finite` tells (a compiled backend's takes one pass
    where NumPy's takes two), NumPy when None."""
    if not (np.isfinite(arr).all() if backend is None else backend.all_finite(arr)):
        raise ValueError(f"{name} contains NaN or infinity; lstmcpu needs finite values")


def check_lengths(lengths, T, B):
    """Validate per-sequence lengths: an integer array of shape (B,) with values in [1, T].

    Returns ``None`` when every sequence has the full length ``T`` (the fast path).
    """
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per sequence), got {arr.shape}")
    if B and (arr.min() < 1 or arr.max() > T):
        raise ValueError(
            f"lengths must lie in [1, {T}] (the number of time steps); "
            f"got min {arr.min()} and max {arr.max()}"
        )
    if np.all(arr == T):
        return None
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_positive_int(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
