"""Every Python example in the README and docs/ runs as written."""

import os
import pathlib
import re

import pytest

from lstmcpu import registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

EXAMPLES = [
    pytest.param(code, id=f"{page.name}-{n}")
    for page in PAGES
    for n, code in enumerate(BLOCK.findall(page.read_text()))
]


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code, monkeypatch, tmp_path):
    if "import torch" in code:
        pytest.importorskip("torch")
    if "dask" in code:
        pytest.importorskip("dask.distributed")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    saved_environ = dict(os.environ)  # a Dask example's nanny writes into os.environ
    try:
        exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})
    finally:
        registry._reset_for_tests()  # forget backends an example registered
        os.environ.clear()
        os.environ.update(saved_environ)


def test_examples_were_found():
    assert len(EXAMPLES) >= 4
