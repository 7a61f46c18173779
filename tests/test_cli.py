"""The command line: info, bench and demo run and print what they promise."""

import json
import subprocess
import sys

import pytest

from lstmcpu import bench
from lstmcpu.__main__ import main


def test_info_lists_backends_and_blas(capsys):
    main(["info"])
    out = capsys.readouterr().out
    assert "available backends: [" in out and "'numpy'" in out
    assert "'auto' picks:" in out
    assert "BLAS / OpenMP thread pools:" in out


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


def test_demo_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "lstmcpu", "demo", "--quick", "--backend", "numpy"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "numpy" in result.stdout and "forward ms" in result.stdout
