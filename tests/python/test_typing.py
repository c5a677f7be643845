"""Type stubs: _core.pyi declares everything the extension exports, and a user script of the
public API passes ``mypy --strict`` (skipped when mypy is not installed; it is pinned in
requirements/test.txt)."""

import ast
import os
import subprocess
import sys

import pytest

import gilfree
import gilfree._core as _core

PKG = os.path.dirname(gilfree.__file__)
USER = os.path.join(os.path.dirname(__file__), "data", "typing_user.py")


def _stub_names():
    """{name: set of member names} for the top-level classes of _core.pyi, plus module names."""
    with open(os.path.join(PKG, "_core.pyi")) as f:
        tree = ast.parse(f.read())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.ClassDef):
            m = set()
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    m.add(sub.name)
                elif isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                    m.add(sub.target.id)
            for base in node.bases:  # members declared on a stub base class
                if isinstance(base, ast.Name) and base.id in members:
                    m |= members[base.id]
            members[node.name] = m
    return names, members


def test_stubs_installed_next_to_package():
    for name in ("py.typed", "_core.pyi", "__init__.pyi"):
        assert os.path.exists(os.path.join(PKG, name)), name


def test_core_stub_declares_every_export():
    names, members = _stub_names()
    missing = [n for n in dir(_core) if not n.startswith("__") and n not in names]
    assert not missing, "gilfree/_core.pyi lacks: %s" % missing
    gaps = []
    for n in dir(_core):
        obj = getattr(_core, n)
        if not isinstance(obj, type) or issubclass(obj, BaseException):
            continue
        for m in vars(obj):
            if m.startswith("__") and m not in ("__enter__", "__exit__", "__len__", "__iter__",
                                                "__getitem__", "__setitem__", "__contains__"):
                continue
            if m not in members.get(n, ()):
                gaps.append("%s.%s" % (n, m))
    assert not gaps, "gilfree/_core.pyi lacks members: %s" % gaps


def test_mypy_strict_on_user_script(tmp_path):
    pytest.importorskip("mypy")
    # The gilfree actually imported: an installed one (site-packages) mypy finds by itself
    # (py.typed); a source tree (editable install, a copy on PYTHONPATH) goes on MYPYPATH
    # (mypy refuses site-packages there).
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    parent = os.path.dirname(PKG)
    if os.path.basename(parent) not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = parent
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache"), USER],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_user_script_runs():
    r = subprocess.run([sys.executable, USER], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
