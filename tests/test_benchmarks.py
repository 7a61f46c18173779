"""Every asv benchmark runs once here, so that a broken benchmark also fails the test suite.

The benchmarks are imported with ``LSTMCPU_ASV_PRESETS`` set to the smallest preset, and each
runs for every backend, dtype and cell the way asv runs it: ``setup_cache()`` once per class,
then ``setup``, the benchmark and ``teardown`` per parameter combination, where a
``NotImplementedError`` from ``setup`` means "skip" (pytest reports it as a skip).
"""

import dataclasses
import doctest
import functools
import importlib
import inspect
import itertools
import json
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
    teardown = getattr(benchmark, "teardown", lambda *args: None)
    try:
        benchmark.setup(*args, *params)
    except NotImplementedError as exc:
        teardown(*args, *params)  # asv tears down after a skip too
        pytest.skip(f"asv skips it: {exc}")
    try:
        result = getattr(benchmark, method)(*args, *params)
    finally:
        teardown(*args, *params)
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
        if "preset" in getattr(cls, "param_names", ()):  # helper classes have no parameters
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


# ---------------------------------------------------------------------- benchmarks/make_report.py

make_report = importlib.import_module("benchmarks.make_report")


def fake_results():
    """bench results as ``--json`` writes them: numba and numpy against both peers."""
    times = {"numpy": 3.0, "numba": 1.0, "torch": 2.0, "onnxruntime": 1.6}
    results = []
    for shape in ("small", "online"):
        for mode in ("forward", "train"):
            impls = [i for i in times if not (mode == "train" and i == "onnxruntime")]
            best_peer = min(times[i] for i in impls if i in make_report.PEERS)
            for impl in impls:
                result = bench.Result("lstm", shape, mode, impl, times[impl], 1.0, times[impl] / best_peer)
                results.append(dataclasses.asdict(result))
    return results


def test_table_has_a_row_per_case_and_a_column_per_implementation():
    lines = make_report.format_table(fake_results()).splitlines()
    assert lines[0] == "| cell | shape | mode | numpy | numba | torch | onnxruntime |"  # backends, then peers
    assert len(lines) == 2 + 4
    assert lines[2] == "| lstm | small | forward | 3.00 ms (1.88) | 1.00 ms (0.62) | 2.00 ms (1.25) | 1.60 ms (1.00) |"
    assert lines[3] == "| lstm | small | train | 3.00 ms (1.50) | 1.00 ms (0.50) | 2.00 ms (1.00) | — |"


def test_table_without_peers_has_no_ratios():
    results = [dict(r, ratio_to_best_peer=None) for r in fake_results() if r["impl"] not in make_report.PEERS]
    assert make_report.format_table(results).splitlines()[2] == "| lstm | small | forward | 3.00 ms | 1.00 ms |"


def test_section_replaces_only_the_text_between_the_markers():
    page = f"# Title\n\nHand-written.\n\n{make_report.BEGIN}\nold figures\n{make_report.END}\n\nMore prose.\n"
    once = make_report.replace_section(page, "new figures")
    assert once == f"# Title\n\nHand-written.\n\n{make_report.BEGIN}\nnew figures\n{make_report.END}\n\nMore prose.\n"
    assert make_report.replace_section(once, "new figures") == once


@pytest.mark.parametrize(
    "page",
    [
        "no markers",
        f"{make_report.BEGIN}\nno end",
        f"{make_report.END}\n{make_report.BEGIN}\n",
        f"{make_report.BEGIN}\n{make_report.END}\n{make_report.BEGIN}\n{make_report.END}\n",
    ],
    ids=["none", "no-end", "reversed", "twice"],
)
def test_section_needs_each_marker_once_in_order(page):
    with pytest.raises(ValueError, match="must hold the line"):
        make_report.replace_section(page, "figures")


def test_docs_page_holds_the_markers_and_the_plot():
    page = make_report.PAGE.read_text()
    make_report.replace_section(page, "figures")
    assert make_report.PLOT.name in page.split(make_report.BEGIN)[1] and make_report.PLOT.exists()


def test_make_report_examples():
    assert doctest.testmod(make_report).failed == 0


def test_one_command_runs_the_comparison_and_writes_page_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    page, plot = tmp_path / "page.md", tmp_path / "plot.png"
    page.write_text(f"Prose.\n{make_report.BEGIN}\n{make_report.END}\nEnd.\n")
    options = ["--shapes", "small", "--modes", "forward", "--backends", "numpy", "--peers", "", "--min-time", "0"]
    make_report.main([*options, "--save-json", str(tmp_path), "--page", str(page), "--plot", str(plot)])
    text = page.read_text()
    assert text.startswith(f"Prose.\n{make_report.BEGIN}\n") and text.endswith(f"\n{make_report.END}\nEnd.\n")
    assert "### 1 thread\n" in text and "### 2 threads\n" in text and "](plot.png)" in text
    assert "- Load average of the machine (1 minute) as each run started: " in text
    for threads in (1, 2):
        run = json.loads((tmp_path / f"bench-{threads}t.json").read_text())
        assert run["environment"]["threads"] == threads
        assert f"| lstm | small | forward | {run['results'][0]['median_ms']:.2f} ms |" in text
    assert plot.read_bytes().startswith(b"\x89PNG")
