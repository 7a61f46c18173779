"""Build script: maps the ``backends/`` folder to the ``lstmcpu.backends`` package and builds
the Cython backend's extensions.

Package metadata lives in pyproject.toml; this file only says where the packages are and
which compiled extensions to build.

Build switches (environment variables read at build time):

``LSTMCPU_CYTHON_DEBUG=1``
    Compile the Cython backend with ``boundscheck``, ``wraparound`` and ``initializedcheck``
    on and without optimisation, so that tests catch any out-of-range memoryview index.
``LSTMCPU_CYTHON_NATIVE=1``
    Add ``-march=native``: a binary tuned for (and only runnable on) the build machine. The
    default build is portable; its hot C loops pick AVX-512/AVX2 at run time instead.
"""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

PACKAGES = ["lstmcpu", "lstmcpu.backends", "lstmcpu.backends.cython", "lstmcpu.backends.numba_backend"]
PACKAGE_DIR = {"lstmcpu": "lstmcpu", "lstmcpu.backends": "backends"}

DEBUG = os.environ.get("LSTMCPU_CYTHON_DEBUG", "") == "1"
NATIVE = os.environ.get("LSTMCPU_CYTHON_NATIVE", "") == "1"

# No -ffast-math: it would change NaN/inf handling and the rounding of the gate functions.
# -fno-trapping-math only drops the floating-point exception flags (nothing here reads
# them); it lets GCC turn the branch-free selects of lstm_cell.h into vector blends.
compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-fno-trapping-math"]
if NATIVE:
    compile_args.append("-march=native")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
}


# Every header and .pxd the kernels include: a change to any of them rebuilds every module.
HEADERS = ("activations.h", "lstm_cell.h", "lstm_fused.h", "lstm_panel.h", "lstm_step.h",
           "team.h", "lstm_variant_cell.h", "gru_cell.h", "rnn_cell.h", "recurrent.h",
           "_blas.pxd", "_loops.pxd")


def cython_extension(name):
    return Extension(
        f"lstmcpu.backends.cython.{name}",
        [f"backends/cython/{name}.pyx"],
        include_dirs=["backends/cython", np.get_include()],
        depends=[f"backends/cython/{f}" for f in HEADERS],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args,
    )


setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"lstmcpu.backends.cython": ["*.pxd", "*.pyx", "*.h"]},
    ext_modules=cythonize(
        [cython_extension(name) for name in ("_lstm", "_lstm_variants", "_gru", "_rnn")],
        compiler_directives=directives,
        include_path=["backends/cython"],
        # The generated C of the two builds lives apart: Cython does not regenerate a .c file
        # newer than its .pyx, so a shared one would keep the other build's directives.
        build_dir=os.path.join("build", "cython-debug" if DEBUG else "cython"),
    ),
)
