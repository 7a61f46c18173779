"""The comparison command: ``python -m lstmcpu bench``.

Times one recurrent layer's inference forward pass and one training step (forward plus
backward of a sum loss w.r.t. the input and all weights) for every available lstmcpu
backend and, when installed, PyTorch's ``nn.LSTM`` / ``nn.GRU`` and ONNX Runtime's ``LSTM`` /
``GRU`` operators — all in one process at one thread count, with warm-up and medians of
repeated runs, the implementations of each row taking turns (:func:`time_interleaved`).

Examples
--------
.. code-block:: console

    $ python -m lstmcpu bench --threads 1 --shapes small,online
    $ python -m lstmcpu bench --threads 2 --cells lstm,gru --json bench-2t.json
"""

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import lstmcpu

#: name -> (T, B, I, H)
PRESETS = {
    "small": (50, 32, 32, 64),
    "medium": (100, 64, 128, 256),
    "large": (200, 128, 256, 512),
    "online": (100, 1, 64, 256),
}
MODES = ("forward", "train")
PEERS = ("torch", "onnxruntime")
#: cell -> (lstmcpu / torch.nn class, ONNX operator, gate blocks)
CELLS = {"lstm": ("LSTM", "LSTM", 4), "gru": ("GRU", "GRU", 3)}


@dataclass
class Result:
    cell: str
    shape: str
    mode: str
    impl: str
    median_ms: float
    gflops: float
    ratio_to_best_peer: float | None = None


def flops(T, B, I, H, mode, cell="lstm"):
    """Multiply-adds of the gate GEMMs, times 2: ``2 T B G H (I + H)`` with G gate blocks
    (4 for LSTM, 3 for GRU); training counts 3x."""
    forward = 2 * T * B * CELLS[cell][2] * H * (I + H)
    return forward * (3 if mode == "train" else 1)


#: Rounds in which the implementations of one table row take turns, each timed for
#: ``min_time / ROUNDS`` per turn. On a shared machine whose speed drifts over seconds (the
#: 2-core Xeon this was written on: the same call 1.5x slower for seconds at a time),
#: each implementation then meets the same mix of fast and slow moments; timed one after
#: the other, one could fall wholly in a fast spell and its peer in a slow one (measured,
#: Numba's online forward at 1 thread: 1.93 ms in one run, PyTorch's 1.74; 1.97 and 2.23
#: in the next).
ROUNDS = 5
#: Untimed calls at the start of every turn, for at least this many seconds (and
#: :data:`WARMUP_CALLS` calls): the implementation before may leave its thread pool
#: spinning for a while, which slows the first calls that follow at 2 threads (the
#: Numba backend's single-sequence forward: 4.5 and 5.0 ms among its first three calls
#: after PyTorch's, then 1.4-1.5).
WARMUP_SECONDS = 0.03
WARMUP_CALLS = 3


def time_interleaved(fns, min_time=0.2, rounds=ROUNDS, min_repeats=5):
    """Median wall time in seconds of each callable of ``fns`` (a dict), timed in
    ``rounds`` rounds in which every callable takes a turn: untimed warm-up calls
    (:data:`WARMUP_SECONDS`, :data:`WARMUP_CALLS`), then calls timed for ``min_time /
    rounds`` seconds (``min_repeats / rounds`` calls at least, one at least)."""
    times = {name: [] for name in fns}
    per_round = max(1, -(-min_repeats // rounds))
    for _ in range(rounds):
        for name, fn in fns.items():
            for timed, least_calls, least_seconds in ((None, WARMUP_CALLS, WARMUP_SECONDS),
                                                      (times[name], per_round, min_time / rounds)):  # fmt: skip
                start, calls = time.perf_counter(), 0
                while calls < least_calls or time.perf_counter() - start < least_seconds:
                    t0 = time.perf_counter()
                    fn()
                    if timed is not None:
                        timed.append(time.perf_counter() - t0)
                    calls += 1
    return {name: statistics.median(t) for name, t in times.items()}


# ---------------------------------------------------------------------- runners


def lstmcpu_runner(backend, cell, mode, T, B, I, H, dtype, rng):
    if not lstmcpu.get_backend(backend).can_run(cell, dtype):
        return None
    layer = getattr(lstmcpu, CELLS[cell][0])(I, H, dtype=dtype, backend=backend, random_state=0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    if mode == "forward":
        layer.eval()
        return lambda: layer(x)
    grad_out = np.ones((T, B, H), dtype=dtype)

    def step():
        layer(x)
        layer.backward(grad_out)

    return step


def torch_runner(cell, mode, T, B, I, H, dtype, rng):
    import torch

    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    layer = getattr(torch.nn, CELLS[cell][0])(I, H, dtype=torch_dtype)
    x = torch.from_numpy(rng.standard_normal((T, B, I)).astype(dtype))
    if mode == "forward":
        layer.eval()

        def forward():
            with torch.inference_mode():
                layer(x)

        return forward
    x.requires_grad_(True)

    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = layer(x)
        out.sum().backward()

    return step


def onnxruntime_runner(cell, mode, T, B, I, H, dtype, rng, threads):
    if mode != "forward" or dtype != np.float32:
        return None  # ONNX Runtime's recurrent operators have no training and no float64 kernel
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    _, op, n_gates = CELLS[cell]
    W = rng.uniform(-0.1, 0.1, (1, n_gates * H, I)).astype(np.float32)
    R = rng.uniform(-0.1, 0.1, (1, n_gates * H, H)).astype(np.float32)
    Bias = np.zeros((1, 2 * n_gates * H), np.float32)
    # linear_before_reset=1 is PyTorch's GRU formulation (b_hn inside the reset product).
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], hidden_size=H, **extra)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bias, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return lambda: session.run(None, {"X": x})


def peer_runners(cell, mode, T, B, I, H, dtype, rng, threads, peers):
    runners = {}
    if "torch" in peers:
        try:
            runners["torch"] = torch_runner(cell, mode, T, B, I, H, dtype, rng)
        except ImportError:
            pass
    if "onnxruntime" in peers:
        try:
            runner = onnxruntime_runner(cell, mode, T, B, I, H, dtype, rng, threads)
        except ImportError:
            runner = None
        if runner is not None:
            runners["onnxruntime"] = runner
    return runners


# ---------------------------------------------------------------------- driver


def run(shapes, modes, backends, peers, threads, dtype, min_time, cells=("lstm",), progress=print):
    """Time every implementation; returns a list of :class:`Result`."""
    _set_threads(threads)
    rng = np.random.default_rng(0)
    results = []
    with threadpool_limits(limits=threads):
        for cell, shape, mode in ((c, s, m) for c in cells for s in shapes for m in modes):
            T, B, I, H = PRESETS[shape]
            runners = {name: lstmcpu_runner(name, cell, mode, T, B, I, H, dtype, rng) for name in backends}
            runners.update(peer_runners(cell, mode, T, B, I, H, dtype, rng, threads, peers))
            rows = []
            timed = time_interleaved({impl: fn for impl, fn in runners.items() if fn is not None}, min_time=min_time)
            for impl, seconds in timed.items():
                gflops = flops(T, B, I, H, mode, cell) / seconds / 1e9
                rows.append(Result(cell, shape, mode, impl, seconds * 1e3, gflops))
                progress(f"  {cell:>4} {shape:>7} {mode:>7} {impl:>12} {seconds * 1e3:10.3f} ms")
            peer_times = [r.median_ms for r in rows if r.impl in PEERS]
            if peer_times:
                best = min(peer_times)
                for r in rows:
                    r.ratio_to_best_peer = r.median_ms / best
            results.extend(rows)
    return results


def _set_threads(threads):
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


def format_table(results):
    """A Markdown table of the results."""
    lines = [
        "| cell | shape | mode | impl | median ms | GFLOP/s | vs best peer |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in results:
        ratio = "" if r.ratio_to_best_peer is None else f"{r.ratio_to_best_peer:.2f}x"
        lines.append(
            f"| {r.cell} | {r.shape} | {r.mode} | {r.impl} | {r.median_ms:.3f} | {r.gflops:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def environment(threads, dtype):
    """Versions and machine facts printed beside the figures."""
    env = {
        "lstmcpu": lstmcpu.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "dtype": np.dtype(dtype).name,
        "blas": [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info()],
    }
    for name in ("torch", "onnxruntime", "numba"):
        try:
            env[name] = __import__(name).__version__
        except ImportError:
            pass
    return env


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def add_arguments(parser):
    parser.add_argument("--threads", type=int, default=1, help="threads for every implementation (default 1)")
    parser.add_argument("--shapes", default="small,medium,large,online",
                        help=f"comma-separated presets from {list(PRESETS)}")  # fmt: skip
    parser.add_argument("--modes", default="forward,train", help="comma-separated: forward, train")
    parser.add_argument("--cells", default="lstm", help=f"comma-separated cells from {list(CELLS)}")
    parser.add_argument("--backends", default=None, help="comma-separated lstmcpu backends (default: all available)")
    parser.add_argument("--peers", default="torch,onnxruntime", help="comma-separated peers; empty for none")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timed runs per measurement")
    parser.add_argument("--json", default=None, help="also write the results and environment to this file")


def main(args):
    """Entry point of ``python -m lstmcpu bench`` (``args`` from :func:`add_arguments`)."""
    shapes = _csv(args.shapes, PRESETS, "shape")
    modes = _csv(args.modes, MODES, "mode")
    cells = _csv(args.cells, CELLS, "cell")
    backends = _csv(args.backends, lstmcpu.available_backends(), "backend") if args.backends else lstmcpu.available_backends()
    peers = _csv(args.peers, PEERS, "peer") if args.peers else []
    if args.threads < 1:
        raise SystemExit("--threads must be at least 1")
    dtype = np.dtype(args.dtype).type
    env = environment(args.threads, dtype)
    print("lstmcpu bench: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    results = run(shapes, modes, backends, peers, args.threads, dtype, args.min_time, cells)
    print()
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": [asdict(r) for r in results]}, f, indent=2)
        print(f"\nwrote {args.json}")


def _csv(text, allowed, what):
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}(s) {unknown}; choose from {list(allowed)}")
    return items
