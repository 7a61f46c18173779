"""Build script: maps the ``backends/`` folder to the ``lstmcpu.backends`` package.

Package metadata lives in pyproject.toml; this file only says where the packages
are and which compiled extensions to build.
"""
from setuptools import setup

PACKAGES = ["lstmcpu", "lstmcpu.backends"]
PACKAGE_DIR = {"lstmcpu": "lstmcpu", "lstmcpu.backends": "backends"}

setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
