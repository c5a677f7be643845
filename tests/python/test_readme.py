"""The README's ```python blocks run as written (each in its own interpreter, with a timeout),
so that the API tour stays true."""

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def _blocks():
    if not os.path.exists(README):  # tests run against an installed package without the tree
        return []
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_readme_has_python_blocks():
    if not os.path.exists(README):
        pytest.skip("README.md not found next to tests/")
    assert len(_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index, tmp_path):
    code = _blocks()[index]
    if "numpy" in code:
        pytest.importorskip("numpy")
    script = tmp_path / ("readme_block_%d.py" % index)
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, "README block %d failed:\n%s\n--- output:\n%s%s" % (
        index, code, r.stdout, r.stderr)
