"""One training epoch of LSTMClassifier against a plain PyTorch loop, side by side.

Task: scikit-learn's digits read as sequences (8 steps of 8 pixels), a one-layer LSTM with
64 hidden units and a dense 10-class head, Adam (lr 0.01), minibatches of 32, no gradient
clipping, float32, one thread for BLAS, Numba and PyTorch (set ``NUMBA_NUM_THREADS`` to let
the Numba backend use more). Both loops shuffle every epoch.

Prints the median milliseconds per epoch of ``fit`` for every available lstmcpu backend and
for PyTorch, their ratio, and the training time each needs to reach 0.95 test accuracy. A
last row times the training loop alone (a backend whose kernels return zeros at once): what
``fit`` spends around the kernels.

Run: ``python benchmarks/compare_fit_epoch.py [--repeats 7] [--epochs 5]``
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

import lstmcpu
from lstmcpu.backend import Backend

HIDDEN, BATCH, LR, TARGET = 64, 32, 0.01, 0.95
MAX_EPOCHS_TO_TARGET = 60


def digits_sequences():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 8, 8).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def make_lstmcpu(backend, max_iter, seed=0):
    return lstmcpu.LSTMClassifier(
        hidden_size=HIDDEN, batch_size=BATCH, learning_rate=LR, clip_norm=None,
        max_iter=max_iter, tol=0.0, n_iter_no_change=max_iter + 1, backend=backend,
        random_state=seed,
    )  # fmt: skip


def lstmcpu_ms_per_epoch(backend, X, y, epochs, repeats):
    times = []
    for seed in range(repeats):
        clf = make_lstmcpu(backend, epochs, seed)
        start = time.perf_counter()
        clf.fit(X, y)
        times.append((time.perf_counter() - start) / epochs * 1e3)
    return statistics.median(times)


def lstmcpu_time_to_target(backend, X, y, X_test, y_test):
    """Training seconds (evaluation excluded) and epochs until test accuracy >= TARGET."""
    clf = make_lstmcpu(backend, 1)
    classes = np.unique(y)
    spent = 0.0
    for epoch in range(1, MAX_EPOCHS_TO_TARGET + 1):
        start = time.perf_counter()
        clf.partial_fit(X, y, classes=classes)
        spent += time.perf_counter() - start
        if clf.score(X_test, y_test) >= TARGET:
            return spent, epoch
    return float("nan"), MAX_EPOCHS_TO_TARGET


class NoOpKernels(Backend):
    """Kernels that return zeros without computing: isolates the cost of the loop around them."""

    name = "no-op"

    def forward(self, x, w_ih, w_hh, b, h0, c0, lengths=None, need_cache=True):
        T, B, _ = x.shape
        y = np.zeros((T, B, w_hh.shape[1]), x.dtype)
        return y, h0.copy(), c0.copy(), (x.shape, w_ih.shape, w_hh.shape, x.dtype)

    def backward(self, dy, dh_n, dc_n, cache):
        x_shape, w_ih_shape, w_hh_shape, dtype = cache
        return (np.zeros(x_shape, dtype), np.zeros(w_ih_shape, dtype), np.zeros(w_hh_shape, dtype),
                np.zeros(w_hh_shape[0], dtype), dh_n.copy(), dc_n.copy())  # fmt: skip


class TorchModel:
    """nn.LSTM + nn.Linear trained the usual way: shuffle, slice, forward, backward, step."""

    def __init__(self, torch, seed=0):
        self.torch = torch
        torch.manual_seed(seed)
        self.lstm = torch.nn.LSTM(8, HIDDEN, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, 10)
        params = list(self.lstm.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(params, lr=LR)
        self.loss = torch.nn.CrossEntropyLoss()

    def logits(self, X):
        _, (h_n, _) = self.lstm(X)
        return self.head(h_n[-1])

    def epoch(self, X, y):
        torch = self.torch
        order = torch.randperm(X.shape[0])
        for start in range(0, X.shape[0], BATCH):
            idx = order[start : start + BATCH]
            self.opt.zero_grad()
            loss = self.loss(self.logits(X[idx]), y[idx])
            loss.backward()
            self.opt.step()

    def accuracy(self, X, y):
        with self.torch.no_grad():
            return float((self.logits(X).argmax(dim=1) == y).float().mean())


def torch_ms_per_epoch(torch, X, y, epochs, repeats):
    times = []
    for seed in range(repeats):
        model = TorchModel(torch, seed)
        start = time.perf_counter()
        for _ in range(epochs):
            model.epoch(X, y)
        times.append((time.perf_counter() - start) / epochs * 1e3)
    return statistics.median(times)


def torch_time_to_target(torch, X, y, X_test, y_test):
    model = TorchModel(torch)
    spent = 0.0
    for epoch in range(1, MAX_EPOCHS_TO_TARGET + 1):
        start = time.perf_counter()
        model.epoch(X, y)
        spent += time.perf_counter() - start
        if model.accuracy(X_test, y_test) >= TARGET:
            return spent, epoch
    return float("nan"), MAX_EPOCHS_TO_TARGET


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed fits per contender")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed fit")
    args = parser.parse_args()
    # One thread everywhere; set before lstmcpu first imports numba (on backend lookup).
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    warnings.simplefilter("ignore", ConvergenceWarning)
    X_train, X_test, y_train, y_test = digits_sequences()
    print(
        f"digits as sequences: {len(X_train)} training sequences, T=8, I=8, H={HIDDEN}, "
        f"batch {BATCH}, Adam lr {LR}, 1 thread; median of {args.repeats} fits x {args.epochs} epochs"
    )
    results = {}
    with threadpool_limits(1):
        for backend in lstmcpu.available_backends():
            make_lstmcpu(backend, 1).fit(X_train[:64], y_train[:64])  # warm-up (JIT, caches)
            ms = lstmcpu_ms_per_epoch(backend, X_train, y_train, args.epochs, args.repeats)
            results[f"lstmcpu[{backend}]"] = (ms, *lstmcpu_time_to_target(backend, X_train, y_train, X_test, y_test))
        try:
            import torch
        except ImportError:
            torch = None
            print("torch is not installed: no PyTorch comparison (pip install torch==2.13.0)")
        if torch is not None:
            torch.set_num_threads(1)
            Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train).long()
            Xv, yv = torch.from_numpy(X_test), torch.from_numpy(y_test).long()
            TorchModel(torch).epoch(Xt[:64], yt[:64])  # warm-up
            ms = torch_ms_per_epoch(torch, Xt, yt, args.epochs, args.repeats)
            results[f"torch {torch.__version__}"] = (ms, *torch_time_to_target(torch, Xt, yt, Xv, yv))
        lstmcpu.register_backend("no-op", NoOpKernels, replace=True)
        loop_ms = lstmcpu_ms_per_epoch("no-op", X_train, y_train, args.epochs, args.repeats)
    torch_ms = next((r[0] for name, r in results.items() if name.startswith("torch")), None)
    print(f"{'contender':<22}{'ms/epoch':>10}{'torch/this':>12}{'s to 0.95':>11}{'epochs':>8}")
    for name, (ms, seconds, epochs) in results.items():
        ratio = f"{torch_ms / ms:.2f}x" if torch_ms else "-"
        print(f"{name:<22}{ms:>10.2f}{ratio:>12}{seconds:>11.3f}{epochs:>8}")
    print(f"{'lstmcpu loop only':<22}{loop_ms:>10.2f}   (fit with no-op kernels: the cost around them)")


if __name__ == "__main__":
    main()
