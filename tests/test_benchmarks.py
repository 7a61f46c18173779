"""Every asv benchmark runs once here, so that a broken benchmark also fails the test suite.

The benchmarks are imported with ``LSTMCPU_ASV_PRESETS`` set to the smallest preset, and each
runs for every backend, dtype and cell the way asv runs it: ``setup_cache()`` once per class,
then ``setup``, the benchmark and ``teardown`` per parameter combination, where a
``NotImplementedError`` from ``setup`` means "skip" (pytest reports it as a skip).
"""

import functools
import importlib
import inspect
import itertools
import math
import os
import pathlib
import pkgutil
import sys

import pytest

from lstmcpu import bench

ROOT = pathlib.Path(__file__).resolve().parent.parent
PREFIXES = ("time_", "timeraw_", "mem_", "peakmem_", "track_")
SMALLEST = min(bench.PRESETS, key=lambda name: bench.flops(*bench.PRESETS[name], "train"))


def import_benchmark_modules():
    """Import every module of benchmarks/ (a folder of the repository, not a package)."""
    sys.path.insert(0, str(ROOT))
    previous = os.environ.get("LSTMCPU_ASV_PRESETS")
    os.environ["LSTMCPU_ASV_PRESETS"] = SMALLEST
    try:
        package = importlib.import_module("benchmarks")
        return [importlib.import_module(f"benchmarks.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    finally:
        sys.path.remove(str(ROOT))
        if previous is None:
            del os.environ["LSTMCPU_ASV_PRESETS"]
        else:
            os.environ["LSTMCPU_ASV_PRESETS"] = previous


MODULES = import_benchmark_modules()
CLASSES = [
    cls
    for module in MODULES
    for cls in vars(module).values()
    if inspect.isclass(cls) and cls.__module__ == module.__name__
]
CASES = [
    pytest.param(cls, method, params, id=f"{cls.__module__.split('.')[-1]}.{cls.__name__}.{method}-{'-'.join(params)}")
    for cls in CLASSES
    for method in sorted(name for name in dir(cls) if name.startswith(PREFIXES))
    for params in itertools.product(*cls.params)
]


@functools.cache
def cached(cls):
    return cls().setup_cache()


@pytest.mark.parametrize("cls, method, params", CASES)
def test_benchmark_runs(cls, method, params):
    benchmark = cls()
    args = (cached(cls),) if hasattr(cls, "setup_cache") else ()
    try:
        benchmark.setup(*args, *params)
    except NotImplementedError as exc:
        benchmark.teardown(*args, *params)  # asv tears down after a skip too
        pytest.skip(f"asv skips it: {exc}")
    try:
        result = getattr(benchmark, method)(*args, *params)
    finally:
        if hasattr(benchmark, "teardown"):
            benchmark.teardown(*args, *params)
    if method.startswith("track_"):
        assert isinstance(result, float) and math.isfinite(result) and result >= 0, result


def test_every_benchmark_is_found():
    methods = {case.values[1] for case in CASES}
    assert {
        "time_forward",
        "time_train_step",
        "peakmem_train_step",
        "track_forward_max_abs_error",
        "track_gradient_max_rel_error",
        "time_fit_epoch",
        "time_predict",
    } <= methods
    for cls in CLASSES:
        if "preset" in cls.param_names:
            assert cls.params[cls.param_names.index("preset")] == [SMALLEST], cls


def test_benchmarks_are_methods_of_classes():
    """asv also runs module-level benchmark functions; this test runs only classes, so none may exist."""
    free = [
        f"{module.__name__}.{name}"
        for module in MODULES
        for name, value in vars(module).items()
        if name.startswith(PREFIXES) and inspect.isfunction(value)
    ]
    assert not free, f"put these benchmarks in a class: {free}"

