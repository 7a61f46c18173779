"""Backend registry: turns a name (or ``"auto"``) into a :class:`~lstmcpu.backend.Backend`.

Built-in backends are imported lazily on first use and memoized; third-party backends come
from the ``lstmcpu.backends`` entry-point group or :func:`register_backend`.

Selection order: an explicit name or backend object; ``"auto"`` (the default everywhere)
means the ``LSTMCPU_BACKEND`` environment variable when it is set, otherwise the first of
``cython``, ``numba``, ``numpy`` that can run the requested cell and dtype.
"""

import importlib
import os
import threading
import warnings
from importlib.metadata import entry_points

import numpy as np

from .backend import Backend, BackendUnavailableError

__all__ = [
    "AUTO_ORDER",
    "ENV_VAR",
    "available_backends",
    "get_backend",
    "register_backend",
    "unavailable_backends",
]

ENV_VAR = "LSTMCPU_BACKEND"
ENTRY_POINT_GROUP = "lstmcpu.backends"
AUTO_ORDER = ("cython", "numba", "numpy")

# name -> (module that defines ``make_backend()``, how a user gets it working)
_BUILTINS = {
    "numpy": ("lstmcpu.backends.numpy_backend", "it ships with lstmcpu; reinstall lstmcpu"),
    "numba": ("lstmcpu.backends.numba_backend", 'pip install "lstmcpu[numba]"'),
    "cython": (
        "lstmcpu.backends.cython",
        "reinstall lstmcpu from source with a C compiler so that its extension is built "
        "(pip install --force-reinstall --no-binary lstmcpu lstmcpu)",
    ),
}

_lock = threading.RLock()
_factories = {}  # name -> zero-argument callable returning a Backend
_loaded = {}  # name -> Backend
_failures = {}  # name -> reason it cannot be loaded
_entry_points_scanned = False


def register_backend(name, factory, *, replace=False):
    """Register a backend under ``name``.

    Parameters
    ----------
    name : str
        The name users pass as ``backend=``.
    factory : Backend or callable
        A backend instance, or a zero-argument callable returning one. A callable is called
        on first use, so registering is cheap.
    replace : bool, default=False
        Allow replacing an existing registration.

    Examples
    --------
    >>> import lstmcpu
    >>> from lstmcpu.backends.numpy_backend import NumpyBackend
    >>> class Mine(NumpyBackend):
    ...     name = "mine"
    >>> lstmcpu.register_backend("mine", Mine)
    >>> lstmcpu.get_backend("mine").name
    'mine'
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"backend name must be a non-empty string other than 'auto', got {name!r}")
    with _lock:
        _scan_entry_points()
        if not replace and (name in _factories or name in _BUILTINS):
            raise ValueError(f"a backend named {name!r} is already registered; pass replace=True")
        _factories[name] = factory if callable(factory) else (lambda: factory)
        _loaded.pop(name, None)
        _failures.pop(name, None)


def _scan_entry_points():
    """Read the ``lstmcpu.backends`` entry points once; a broken plugin only warns."""
    global _entry_points_scanned
    if _entry_points_scanned:
        return
    _entry_points_scanned = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTINS or ep.name in _factories:
            warnings.warn(
                f"lstmcpu backend plugin {ep.name!r} ({ep.value}) is ignored: the name is taken",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        _factories[ep.name] = _entry_point_factory(ep)


def _entry_point_factory(ep):
    def factory():
        obj = ep.load()
        return obj() if callable(obj) and not isinstance(obj, Backend) else obj

    return factory


def _load(name):
    """Load (once) and return the backend called ``name``, or raise why it cannot be used."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name in _failures:
            raise BackendUnavailableError(_failures[name])
        try:
            if name in _BUILTINS:
                module_name, _ = _BUILTINS[name]
                backend = importlib.import_module(module_name).make_backend()
            else:
                backend = _factories[name]()
        except Exception as exc:  # an import error, or a plugin that is broken
            reason = _unavailable_reason(name, exc)
            _failures[name] = reason
            if name not in _BUILTINS:
                warnings.warn(reason, RuntimeWarning, stacklevel=3)
            raise BackendUnavailableError(reason) from exc
        if not isinstance(backend, Backend):
            reason = (
                f"backend {name!r} is unusable: its factory returned {type(backend).__name__}, "
                "not an lstmcpu.Backend"
            )
            _failures[name] = reason
            warnings.warn(reason, RuntimeWarning, stacklevel=3)
            raise BackendUnavailableError(reason)
        _loaded[name] = backend
        return backend


def _unavailable_reason(name, exc):
    if name in _BUILTINS:
        hint = _BUILTINS[name][1]
        return f"backend {name!r} is not available ({type(exc).__name__}: {exc}); to get it: {hint}"
    return f"backend plugin {name!r} failed to load ({type(exc).__name__}: {exc})"


def _all_names():
    with _lock:
        _scan_entry_points()
        return list(_BUILTINS) + [n for n in _factories if n not in _BUILTINS]


def available_backends():
    """Names of the backends that load on this machine.

    Returns
    -------
    list of str
        Built-ins first (numpy, numba, cython), then plugins. See
        :func:`unavailable_backends` for why a backend is missing.

    Examples
    --------
    >>> import lstmcpu
    >>> "numpy" in lstmcpu.available_backends()
    True
    """
    names = []
    for name in _all_names():
        try:
            _load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def unavailable_backends():
    """Backends known to lstmcpu that cannot be used here, with the reason and the fix.

    Returns
    -------
    dict of str to str
    """
    reasons = {}
    for name in _all_names():
        try:
            _load(name)
        except BackendUnavailableError as exc:
            reasons[name] = str(exc)
    return reasons


def get_backend(backend="auto", *, cell="lstm", dtype=np.float32):
    """Resolve a backend name, ``"auto"`` or a backend object to a :class:`Backend`.

    Parameters
    ----------
    backend : str or Backend, default="auto"
        A registered name, a :class:`Backend` instance, or ``"auto"``: the
        ``LSTMCPU_BACKEND`` environment variable when set, else the first of cython, numba,
        numpy that can run ``cell`` in ``dtype``.
    cell : str, default="lstm"
        Cell type the caller will run (used by ``"auto"`` and checked for a named backend).
    dtype : dtype, default=np.float32

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones), or a backend that cannot run
        ``cell`` in ``dtype``.
    BackendUnavailableError
        A known backend whose dependency or compiled extension is missing.

    Examples
    --------
    >>> import lstmcpu
    >>> lstmcpu.get_backend("numpy").name
    'numpy'
    """
    if isinstance(backend, Backend):
        _check_can_run(backend, cell, dtype)
        return backend
    if backend is None:
        backend = "auto"
    if not isinstance(backend, str):
        raise TypeError(
            f"backend must be a name, 'auto' or an lstmcpu.Backend instance, got {type(backend).__name__}"
        )
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env != "auto":
            return get_backend(env, cell=cell, dtype=dtype)
        for name in AUTO_ORDER:
            try:
                candidate = _load(name)
            except BackendUnavailableError:
                continue
            if candidate.can_run(cell, dtype):
                return candidate
        raise ValueError(f"no available backend can run cell {cell!r} in {np.dtype(dtype)}")
    instance = _loaded.get(backend)  # a name loaded before is known (a dict read is atomic)
    if instance is None:
        names = _all_names()
        if backend not in names:
            raise ValueError(
                f"unknown backend {backend!r}; available backends: {available_backends()} "
                f"(all known: {names}, or 'auto')"
            )
        instance = _load(backend)
    _check_can_run(instance, cell, dtype)
    return instance


def _check_can_run(backend, cell, dtype):
    if not backend.can_run(cell, dtype):
        raise ValueError(
            f"backend {backend.name!r} cannot run cell {cell!r} in {np.dtype(dtype)}; "
            f"it supports cells {list(backend.cells)} in {[str(d) for d in backend.dtypes]}"
        )


def _reset_for_tests():
    """Forget loaded backends, failures and plugins (tests use this to re-scan)."""
    global _entry_points_scanned
    with _lock:
        _factories.clear()
        _loaded.clear()
        _failures.clear()
        _entry_points_scanned = False
