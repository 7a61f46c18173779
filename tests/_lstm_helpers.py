"""Helpers shared by the test modules: random problems and a torch reference."""

import numpy as np


def random_problem(T, B, I, H, dtype, seed=0, lengths=False):
    """Inputs, weights and states of one kernel call, drawn from a seeded generator."""
    rng = np.random.default_rng(seed)

    def draw(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    problem = dict(
        x=draw(T, B, I),
        w_ih=draw(4 * H, I, scale=0.5),
        w_hh=draw(4 * H, H, scale=0.5),
        b=draw(4 * H, scale=0.5),
        h0=draw(B, H, scale=0.5),
        c0=draw(B, H, scale=0.5),
        lengths=None,
    )
    if lengths:
        problem["lengths"] = rng.integers(1, T + 1, size=B)
        problem["lengths"][0] = T
    return problem


def upstream_grads(T, B, H, dtype, seed=1):
    """Random dL/dy, dL/dh_n, dL/dc_n: the gradient of the loss sum(y*Ry)+sum(h_n*Rh)+sum(c_n*Rc)."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((T, B, H)).astype(dtype),
        rng.standard_normal((B, H)).astype(dtype),
        rng.standard_normal((B, H)).astype(dtype),
    )


def results_in_threads(calls, repeats=3):
    """Run every zero-argument callable of ``calls`` in its own thread, all released at once,
    ``repeats`` times each; return the last result of each (an exception in a thread is
    re-raised here)."""
    import threading

    results, errors = [None] * len(calls), []
    barrier = threading.Barrier(len(calls))

    def work(k):
        try:
            barrier.wait()
            for _ in range(repeats):
                results[k] = calls[k]()
        except BaseException as exc:  # reported in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
