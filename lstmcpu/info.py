"""``python -m lstmcpu info``: versions, backends (and why others are missing), BLAS, CPU."""

import platform
import sys

import numpy as np
from threadpoolctl import threadpool_info

import lstmcpu

_CPU_FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16")


def cpu_flags():
    """The SIMD features of this CPU that matter to the kernels (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in _CPU_FLAGS_OF_INTEREST if flag in flags]
    except OSError:
        pass
    return []


def report():
    """The lines that ``python -m lstmcpu info`` prints."""
    lines = [f"lstmcpu {lstmcpu.__version__}", f"python {platform.python_version()} ({sys.executable})"]
    for name in ("numpy", "scipy", "sklearn", "threadpoolctl", "numba", "torch", "onnx", "onnxruntime"):
        try:
            version = __import__(name).__version__
        except ImportError:
            version = "not installed"
        lines.append(f"  {name}: {version}")
    lines.append(f"available backends: {lstmcpu.available_backends()}")
    lines.append(f"  'auto' picks: {lstmcpu.get_backend('auto', dtype=np.float32).name} (float32)")
    for name, reason in lstmcpu.unavailable_backends().items():
        lines.append(f"  not available: {reason}")
    lines.append("BLAS / OpenMP thread pools:")
    for pool in threadpool_info():
        lines.append(
            f"  {pool.get('internal_api')} {pool.get('version')} {pool.get('architecture', '')}: "
            f"{pool.get('num_threads')} threads ({pool.get('filepath')})"
        )
    lines.append(f"cpu: {platform.machine()}, SIMD: {' '.join(cpu_flags()) or 'unknown'}")
    return lines


def main(args=None):
    print("\n".join(report()))
