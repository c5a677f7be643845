"""The documentation's code runs as written (docs/, built by scripts/test.sh with Sphinx -W).

* Every ```python block of every page (docs/**/*.md, pages added later included) runs in its
  own interpreter, with a timeout, from an empty directory: each block is a whole program.
* Every ```c block is a whole C program: it is compiled against the static library and run,
  and must exit 0. The library is built, and the program compiled, by the very commands of
  docs/c-api.md's ```sh block (in the test's own directories), so those stay true too.
* A block that cannot run here says so in its info string, visibly in the source:
  ```` ```python notest ```` (MyST renders it as any Python block). Blocks of other
  languages (```sh, ```text) are not run.
* The API reference (docs/api.md and conf.py's gilfree_api_modules) covers every public module
  of the installed package.
"""

import ast
import glob
import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = os.path.join(ROOT, "docs")
NOTEST = "notest"
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^`\n]*)\n(?P<code>.*?)^(?P=fence)[ \t]*$",
                   re.S | re.M)


def _pages():
    if not os.path.isdir(DOCS):  # tests run against an installed package without the tree
        return []
    pages = glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
    return sorted(p for p in pages if "_build" not in p.split(os.sep))


def fences(text, lang):
    """[(line, info words after the language, code)] of the fenced blocks of `lang` in a
    MyST page (a block nested in a longer fence belongs to that fence, and is not listed)."""
    out = []
    for m in FENCE.finditer(text):
        words = m.group("info").split()
        if words and words[0] == lang:
            out.append((text.count("\n", 0, m.start()) + 1, words[1:], m.group("code")))
    return out


def blocks(lang):
    """[(id, info words, code)] of the fenced blocks of `lang` in every page."""
    out = []
    for page in _pages():
        with open(page, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(page, DOCS)
        out += [("%s:%d" % (rel, line), words, code) for line, words, code in fences(text, lang)]
    return out


def _runnable(lang):
    return [b for b in blocks(lang) if NOTEST not in b[1]]


def test_docs_have_pages_and_blocks():
    if not _pages():
        pytest.skip("docs/ not found next to tests/")
    assert len(_runnable("python")) >= 10
    assert _runnable("c"), "docs/c-api.md should hold a complete C example"


def test_notest_blocks_are_few():
    """A page may mark a block it cannot run here (a remote address), but the docs are meant
    to be run: at most one block in ten."""
    py = blocks("python") + blocks("c")
    skipped = [b[0] for b in py if NOTEST in b[1]]
    assert len(skipped) * 10 <= max(len(py), 10), skipped


def test_fences_and_the_notest_marker():
    page = ("# P\n\n```python\nprint(1)\n```\n\n```python notest\nconnect('far:1')\n```\n\n"
            "````md\n```python\nnested()\n```\n````\n\n```sh\nls\n```\n")
    got = fences(page, "python")
    assert [(line, words) for line, words, _ in got] == [(3, []), (7, ["notest"])]
    assert got[0][2] == "print(1)\n"
    assert [c for _, _, c in fences(page, "sh")] == ["ls\n"]


@pytest.mark.timeout(180)  # the block's own limit (120 s) reports first, with its output
@pytest.mark.parametrize("where,words,code", _runnable("python"),
                         ids=[b[0] for b in _runnable("python")])
def test_python_block_runs(where, words, code, tmp_path):
    if re.search(r"^\s*(import numpy|from numpy)", code, re.M):
        pytest.importorskip("numpy")
    script = tmp_path / "block.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, "docs block %s failed:\n%s\n--- output:\n%s%s" % (
        where, code, r.stdout, r.stderr)


def _build_commands():
    """The shell lines of docs/c-api.md that build libgilfree and a program against it (the
    ```sh block with `meson setup`), split into words."""
    for where, _words, code in blocks("sh"):
        if where.startswith("c-api.md") and "meson setup" in code:
            lines = [ln.split("#")[0].strip() for ln in code.splitlines()]
            return [ln.split() for ln in lines if ln]
    raise AssertionError("docs/c-api.md has no ```sh block with the meson build commands")


def _substitute(argv, mapping):
    return [mapping.get(a, a) for a in argv]


@pytest.fixture(scope="module")
def libgilfree(tmp_path_factory):
    """{path the docs give: path here} for the static library, built from this tree by the
    commands of docs/c-api.md, in a directory of the test's own."""
    if os.environ.get("GILFREE_ASAN"):
        # scripts/pytest_asan.sh preloads libasan into every child: not into the compiler.
        # (The C core runs under ASan in scripts/ctests.sh.)
        pytest.skip("the C example is built and run by the plain pytest run")
    bindir = os.path.dirname(sys.executable)   # the venv's meson and ninja
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    if not shutil.which("meson", path=env["PATH"]) or not shutil.which("cc"):
        pytest.skip("meson or cc not available")
    build = tmp_path_factory.mktemp("docs-c")
    cmds = _build_commands()
    setup = [c for c in cmds if c[:2] == ["meson", "setup"]]
    ninja = [c for c in cmds if c[:1] == ["ninja"]]
    assert len(setup) == 1 and len(ninja) == 1, cmds
    doc_dir = setup[0][2]
    for argv in (setup[0], ninja[0]):
        r = subprocess.run(_substitute(argv, {doc_dir: str(build)}), cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, "%s failed:\n%s%s" % (" ".join(argv), r.stdout, r.stderr)
    assert (build / "libgilfree.a").exists()
    return {os.path.join(doc_dir, "libgilfree.a"): str(build / "libgilfree.a")}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("where,words,code", _runnable("c"), ids=[b[0] for b in _runnable("c")])
def test_c_block_builds_and_runs(where, words, code, tmp_path, libgilfree):
    """Compiled by the docs' own command (plus -Wall -Wextra -Werror), then run."""
    src = tmp_path / "program.c"
    src.write_text(code)
    exe = tmp_path / "program"
    cc = [c for c in _build_commands() if c[0] in ("cc", "gcc", "clang")]
    assert len(cc) == 1, "docs/c-api.md should give one compile command"
    mapping = dict(libgilfree, **{"program.c": str(src), "program": str(exe)})
    argv = _substitute(cc[0], mapping) + ["-Wall", "-Wextra", "-Werror"]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "docs C block %s does not compile (%s):\n%s" % (
        where, " ".join(argv), r.stderr)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, "docs C block %s failed:\n%s%s" % (where, r.stdout, r.stderr)


def _api_modules():
    """gilfree_api_modules from docs/conf.py (read, not executed: conf.py imports Sphinx's
    extensions' path and the package)."""
    with open(os.path.join(DOCS, "conf.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "gilfree_api_modules" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("docs/conf.py defines no gilfree_api_modules")


def test_api_reference_covers_every_public_module():
    if not _pages():
        pytest.skip("docs/ not found next to tests/")
    import gilfree
    public = {"gilfree", "gilfree._core"}
    for info in pkgutil.iter_modules(gilfree.__path__):
        if info.name.startswith("_") or info.name == "demo":  # demo: the CLI (--help)
            continue
        public.add("gilfree." + info.name)
        importlib.import_module("gilfree." + info.name)
    listed = set(_api_modules())
    with open(os.path.join(DOCS, "api.md"), encoding="utf-8") as f:
        api = f.read()
    on_page = set(re.findall(r"^\.\. gilfree-automodule:: (\S+)", api, re.M))
    assert public <= listed, "add to gilfree_api_modules in docs/conf.py: %s" % (
        sorted(public - listed))
    assert listed <= on_page, "add a section to docs/api.md for: %s" % sorted(listed - on_page)
    m = re.search(r"^\.\. autosummary::\n\n((?:   \S+\n)+)", api, re.M)
    in_table = set(m.group(1).split()) if m else set()
    assert listed <= in_table, "add to the module table of docs/api.md: %s" % sorted(
        listed - in_table)
