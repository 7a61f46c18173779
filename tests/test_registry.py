"""The backend registry: names, "auto", the environment variable, plugins and their failures."""

import numpy as np
import pytest

import lstmcpu
from lstmcpu import registry
from lstmcpu.backends.numpy_backend import NumpyBackend


@pytest.fixture
def clean_registry(monkeypatch):
    """A registry that forgets plugins and loaded backends before and after the test."""
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    registry._reset_for_tests()
    yield registry
    registry._reset_for_tests()


class FakeEntryPoint:
    def __init__(self, name, load):
        self.name, self.value, self._load = name, f"fake_module:{name}", load

    def load(self):
        return self._load()


def install_entry_points(monkeypatch, *eps):
    monkeypatch.setattr(
        registry, "entry_points", lambda group: list(eps) if group == registry.ENTRY_POINT_GROUP else []
    )


class Renamed(NumpyBackend):
    name = "renamed"


def test_numpy_is_always_available(clean_registry):
    assert "numpy" in lstmcpu.available_backends()
    backend = lstmcpu.get_backend("numpy")
    assert backend.name == "numpy"
    assert lstmcpu.get_backend("numpy") is backend, "built-ins are memoized"


def test_unavailable_backends_say_how_to_get_them(clean_registry):
    unavailable = lstmcpu.unavailable_backends()
    assert set(unavailable).isdisjoint(lstmcpu.available_backends())
    assert set(unavailable) | set(lstmcpu.available_backends()) >= {"numpy", "numba", "cython"}
    if "numba" in unavailable:
        assert 'pip install "lstmcpu[numba]"' in unavailable["numba"]


def test_missing_builtin_raises_backend_unavailable_with_the_fix(clean_registry, monkeypatch):
    monkeypatch.setitem(registry._BUILTINS, "numba", ("lstmcpu.backends.no_such_module", 'pip install "lstmcpu[numba]"'))
    with pytest.raises(lstmcpu.BackendUnavailableError, match='pip install "lstmcpu\\[numba\\]"') as info:
        lstmcpu.get_backend("numba")
    assert isinstance(info.value, ImportError)
    assert "numba" not in lstmcpu.available_backends()


def test_auto_skips_unavailable_backends(clean_registry, monkeypatch):
    monkeypatch.setattr(registry, "AUTO_ORDER", ("broken", "numpy"))
    monkeypatch.setitem(registry._BUILTINS, "broken", ("lstmcpu.backends.no_such_module", "nothing"))
    assert lstmcpu.get_backend("auto").name == "numpy"


def test_auto_prefers_the_first_backend_that_can_run(clean_registry, monkeypatch):
    class Float64Only(NumpyBackend):
        name = "float64only"
        dtypes = (np.dtype(np.float64),)

    lstmcpu.register_backend("float64only", Float64Only)
    monkeypatch.setattr(registry, "AUTO_ORDER", ("float64only", "numpy"))
    assert lstmcpu.get_backend("auto", dtype=np.float64).name == "float64only"
    assert lstmcpu.get_backend("auto", dtype=np.float32).name == "numpy"


def test_unknown_name_lists_the_available_ones(clean_registry):
    with pytest.raises(ValueError, match="unknown backend 'fortran'; available backends: \\[.*'numpy'.*\\]"):
        lstmcpu.get_backend("fortran")


def test_backend_that_cannot_run_the_request_is_a_clear_error(clean_registry):
    with pytest.raises(ValueError, match="cannot run cell 'lstm' in float16"):
        lstmcpu.get_backend("numpy", dtype=np.float16)
    with pytest.raises(ValueError, match="cannot run cell 'mlstm'"):
        lstmcpu.get_backend("numpy", cell="mlstm")


def test_environment_variable_drives_auto(clean_registry, monkeypatch):
    lstmcpu.register_backend("renamed", Renamed)
    monkeypatch.setenv(registry.ENV_VAR, "renamed")
    assert lstmcpu.get_backend("auto").name == "renamed"
    assert lstmcpu.get_backend("numpy").name == "numpy", "an explicit name beats the variable"
    monkeypatch.setenv(registry.ENV_VAR, "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        lstmcpu.LSTM(2, 3)


def test_backend_object_is_used_as_is(clean_registry):
    mine = Renamed()
    assert lstmcpu.get_backend(mine) is mine
    layer = lstmcpu.LSTM(2, 3, backend=mine, random_state=0)
    reference = lstmcpu.LSTM(2, 3, backend="numpy", random_state=0)
    x = np.ones((3, 1, 2))
    np.testing.assert_array_equal(layer(x)[0], reference(x)[0])


def test_register_backend_rules(clean_registry):
    lstmcpu.register_backend("renamed", Renamed)
    with pytest.raises(ValueError, match="already registered"):
        lstmcpu.register_backend("renamed", Renamed)
    with pytest.raises(ValueError, match="already registered"):
        lstmcpu.register_backend("numpy", Renamed)
    lstmcpu.register_backend("renamed", Renamed(), replace=True)  # an instance works too
    assert lstmcpu.get_backend("renamed").name == "renamed"
    with pytest.raises(ValueError, match="other than 'auto'"):
        lstmcpu.register_backend("auto", Renamed)


def test_entry_point_plugin_is_found(clean_registry, monkeypatch):
    install_entry_points(monkeypatch, FakeEntryPoint("plugin", lambda: Renamed))
    assert "plugin" in lstmcpu.available_backends()
    assert isinstance(lstmcpu.get_backend("plugin"), Renamed)


def test_broken_plugin_warns_and_never_breaks_the_rest(clean_registry, monkeypatch):
    def explode():
        raise RuntimeError("plugin bug")

    install_entry_points(
        monkeypatch,
        FakeEntryPoint("exploding", explode),
        FakeEntryPoint("not_a_backend", lambda: (lambda: object())),
        FakeEntryPoint("numpy", lambda: Renamed),
    )
    with pytest.warns(RuntimeWarning) as record:
        names = lstmcpu.available_backends()
    messages = " | ".join(str(w.message) for w in record)
    assert "'exploding' failed to load (RuntimeError: plugin bug)" in messages
    assert "not an lstmcpu.Backend" in messages
    assert "'numpy'" in messages and "name is taken" in messages
    assert "numpy" in names and "exploding" not in names and "not_a_backend" not in names
    assert lstmcpu.get_backend("numpy").name == "numpy"
    with pytest.raises(lstmcpu.BackendUnavailableError, match="plugin bug"):
        lstmcpu.get_backend("exploding")
