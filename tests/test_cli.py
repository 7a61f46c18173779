"""The command line: info, bench and demo run and print what they promise."""

import json
import subprocess
import sys

import numpy as np
import pytest

import lstmcpu
from lstmcpu import bench, registry
from lstmcpu.__main__ import main
from lstmcpu.backends.numpy_backend import NumpyBackend


def test_info_lists_backends_and_blas(capsys):
    main(["info"])
    out = capsys.readouterr().out
    assert "available backends: [" in out and "'numpy'" in out
    assert "'auto' picks:" in out
    assert "BLAS / OpenMP thread pools:" in out


def test_bench_implementations_take_turns_each_warmed_up_first(monkeypatch):
    """Each implementation is timed in every round, in turn, each turn starting with untimed
    calls (after another implementation's, whose thread pool may still be busy): one slow
    spell of the machine cannot fall on one of them only."""
    monkeypatch.setattr(bench, "WARMUP_CALLS", 2)
    monkeypatch.setattr(bench, "WARMUP_SECONDS", 0.0)
    calls = []

    def fake(name, seconds):
        def run():
            calls.append(name)
            bench.time.sleep(seconds)

        return run

    timed = bench.time_interleaved({"a": fake("a", 0.001), "b": fake("b", 0.003)}, min_time=0.0, rounds=3,
                                   min_repeats=3)  # fmt: skip
    assert calls == ["a", "a", "a", "b", "b", "b"] * 3  # two untimed calls, one timed, per turn
    assert 0.001 <= timed["a"] < 0.003 <= timed["b"]


def test_bench_times_backends_and_peers(tmp_path, capsys):
    path = tmp_path / "bench.json"
    main(["bench", "--shapes", "small", "--backends", "numpy", "--cells", "lstm,gru", "--min-time", "0.01",
          "--json", str(path)])  # fmt: skip
    out = capsys.readouterr().out
    assert "| lstm | small | forward | numpy |" in out and "| lstm | small | train | numpy |" in out
    assert "| gru | small | forward | numpy |" in out
    report = json.loads(path.read_text())
    assert report["environment"]["threads"] == 1
    impls = {(r["cell"], r["mode"], r["impl"]) for r in report["results"]}
    assert {("lstm", "forward", "numpy"), ("lstm", "train", "numpy"), ("gru", "train", "numpy")} <= impls
    peers = [r for r in report["results"] if r["impl"] in bench.PEERS]
    for r in report["results"]:
        assert r["median_ms"] > 0 and r["gflops"] > 0
        same = [p["median_ms"] for p in peers if (p["mode"], p["cell"]) == (r["mode"], r["cell"])]
        if same:
            assert r["ratio_to_best_peer"] == pytest.approx(r["median_ms"] / min(same))


def test_bench_rejects_unknown_names():
    with pytest.raises(SystemExit, match="unknown shape"):
        main(["bench", "--shapes", "huge"])
    with pytest.raises(SystemExit, match="unknown backend"):
        main(["bench", "--backends", "fortran"])


def test_flop_count():
    T, B, I, H = bench.PRESETS["small"]
    assert bench.flops(T, B, I, H, "forward") == 2 * T * B * 4 * H * (I + H)
    assert bench.flops(T, B, I, H, "train") == 3 * bench.flops(T, B, I, H, "forward")
    assert bench.flops(T, B, I, H, "forward", "gru") == 2 * T * B * 3 * H * (I + H)


def test_demo_runs_as_a_module(tmp_path):
    # --quick trains seed 0 for at most 20 epochs at gaps 5 and 50. At gap 50 the LSTM and the
    # GRU learnt it (100% test accuracy, in 10 to 15 epochs, on the numpy and the Cython
    # backends) and the RNN did not (24% on Cython, 63% on numpy: it is still near chance).
    plot = tmp_path / "demo.png"
    result = subprocess.run(
        [sys.executable, "-m", "lstmcpu", "demo", "--quick", "--backend", "numpy", "--out", str(plot)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["gap", "RNN", "LSTM", "GRU"])
    rows = {int(line.split()[0]): line.split()[1:] for line in lines[header + 1 : header + 3]}
    assert rows[5][1::2] == ["1/1", "1/1", "1/1"], "every cell solves gap 5"
    rnn, lstm, gru = (float(rows[50][i].rstrip("%")) for i in (0, 2, 4))
    assert rows[50][1::2] == ["0/1", "1/1", "1/1"] and lstm == gru == 100 and rnn < 80, rows[50]
    assert "numpy:" in result.stdout, "the per-backend timing"
    assert plot.stat().st_size > 1000, "the plot was written"


def test_demo_task_and_table():
    from lstmcpu.demo import format_results, make_task, run_seeds

    X, y = make_task(50, gap=7, n_symbols=3, n_distractors=5, seed=1)
    assert X.shape == (50, 9, 9) and set(np.unique(y)) <= {0, 1, 2}
    np.testing.assert_array_equal(X[:, 0, :3].argmax(axis=1), y)
    assert np.all(X.sum(axis=2) == 1), "exactly one symbol per step"
    assert np.all(X[:, -1, -1] == 1) and np.all(X[:, 1:-1, 3:8].sum(axis=2) == 1)
    assert not np.array_equal(make_task(20, 3, seed=[0, 0])[0], make_task(20, 3, seed=[0, 1])[0])
    assert run_seeds(2, 5) == [10, 11, 12, 13, 14] and run_seeds(0, 1) == [0]
    results = [dict(gap=g, cell=c, accuracy=a) for g, c, a in
               [(5, "rnn", 1.0), (5, "rnn", 0.25), (5, "rnn", 0.3), (5, "lstm", 0.96), (5, "lstm", 1.0),
                (5, "lstm", 0.94), (5, "gru", 0.5), (5, "gru", 0.2), (5, "gru", 0.25)]]  # fmt: skip
    table = format_results(results, [5])
    assert table.splitlines()[0].split() == ["gap", "RNN", "LSTM", "GRU"]
    assert table.splitlines()[1].split() == ["5", "30%", "1/3", "96%", "2/3", "25%", "0/3"]


class LSTMOnly(NumpyBackend):
    name = "lstm-only"
    cells = ("lstm",)


def test_demo_trains_other_cells_on_auto_when_the_backend_lacks_them():
    from lstmcpu.demo import backends_for

    assert backends_for("numpy") == {"rnn": "numpy", "lstm": "numpy", "gru": "numpy"}
    lstmcpu.register_backend("lstm-only", LSTMOnly, replace=True)
    try:
        assert backends_for("lstm-only") == {"rnn": "auto", "lstm": "lstm-only", "gru": "auto"}
    finally:
        registry._reset_for_tests()
    with pytest.raises(SystemExit, match="unknown backend 'fortran'"):
        main(["demo", "--backend", "fortran"])
