"""``python -m gilfree demo --quick`` runs, writes its chart and ASCII GIF, and every variant
counts the same IPs (skipped only if gilfree cannot be imported)."""

import json
import os
import sys
from pathlib import Path

import pytest

import _hang


@pytest.mark.timeout(330)  # the run's own limit (150 s) and its hang report come first
def test_demo_quick(tmp_path):
    gilfree = pytest.importorskip("gilfree")
    env = dict(os.environ)
    if getattr(gilfree, "__file__", None):  # the child imports this same gilfree
        parent = str(Path(gilfree.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([parent] + [p for p in
                                            env.get("PYTHONPATH", "").split(os.pathsep) if p])
    out = tmp_path / "demo-out"
    env["GILFREE_CYTHON_CACHE"] = str(tmp_path / "cython-cache")  # the nogil row's build
    # a hang fails with every process's stacks and wait channels (_hang), not only a timeout
    proc = _hang.run_module("gilfree", ["demo", "--quick", "--out", str(out)], 150, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "demo.png").stat().st_size > 1000
    assert (out / "ascii_kitten.gif").stat().st_size > 1000
    with open(out / "results.json") as f:
        results = json.load(f)["results"]
    assert not [r for r in results if r["status"] in ("WRONG", "failed")], results
    log = [r for r in results if r["workload"].startswith("log analytics")]
    ran = [r for r in log if r["status"] == "ok"]
    assert {r["runner"] for r in ran} >= {"serial", "stdlib-pool", "gilfree-pool"}, log
    assert all(r["note"] in ("counts equal",) for r in ran if r["runner"] != "serial"), ran
    gif = [r for r in results if r["workload"].startswith("ASCII GIF") and r["status"] == "ok"]
    assert {r["runner"] for r in gif} >= {"serial", "stdlib-pool", "gilfree-pool"}, gif
    assert "counts equal" in proc.stdout
    gif_gf = [r for r in gif if r["runner"] == "gilfree-pool"]
    assert gif_gf and all(r["note"] == "frames equal" for r in gif_gf), gif_gf
    assert any("shared frames" in r["variant"] for r in gif_gf), gif_gf
    assert any(r["variant"] == "gilfree Pool.map" for r in gif_gf), gif_gf  # the same code


# ------------------------------------------------------------------ in-process unit tests

ROOT = Path(__file__).resolve().parents[2]


def test_full_size_is_one_million_lines():
    from gilfree import demo
    assert demo.FULL["lines"] == 1_000_000
    p = demo.add_arguments(__import__("argparse").ArgumentParser())
    assert demo._inputs(p.parse_args([]))["lines"] == 1_000_000
    assert demo._inputs(p.parse_args(["--quick", "--lines", "7"]))["lines"] == 7


def test_shared_frames_equal_tutorial_frames():
    """The gilfree variant's path (frames in a shared array, written back into another)
    gives the same pixels as the tutorial's ascii(frame), in a worker process."""
    pytest.importorskip("PIL")
    pytest.importorskip("numpy")
    gilfree = pytest.importorskip("gilfree")
    from PIL import Image
    from gilfree.demo import workloads as w

    frames = [Image.new("RGB", (64, 48), (40 * i, 200 - 30 * i, 90)) for i in range(3)]
    for i, f in enumerate(frames):
        f.putpixel((i, i), (255, 255, 255))
    want = [w.frame_digest(w.ascii(f)) for f in frames]
    src = w.frames_to_array(frames, gilfree.shared_array)
    dst = gilfree.shared_array(src.shape, src.dtype)
    import pickle
    assert len(pickle.dumps((src[0], dst[0]), 5)) < 1024  # by reference, not 9 KB of pixels
    with gilfree.Pool(2) as pool:
        assert pool.map(w.ascii_into, [(src[i], dst[i]) for i in range(3)]) == [None] * 3
    got = [w.frame_digest(f) for f in w.array_to_frames(dst)]
    assert got == want


class _Spy:
    def __init__(self, tty):
        self.tty = tty
        self.text = []

    def write(self, s):
        self.text.append(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_silent_without_a_terminal():
    from gilfree.demo import report
    spy = _Spy(False)
    with report.Progress("x", stream=spy) as bar:
        bar.bar(10)
        for _ in range(10):
            bar.update(1)
        assert bar.hand_over() is False
    assert spy.text == [] and bar.n == 10


def test_progress_plain_bar_without_tqdm(monkeypatch):
    from gilfree.demo import report
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    spy = _Spy(True)
    with report.Progress("label", stream=spy) as bar:
        bar.bar(4)
        for _ in range(4):
            bar.update(1)
    out = "".join(spy.text)
    assert "label" in out and "4/4" in out and "#" in out


def test_progress_spinner_says_why():
    import time
    from gilfree.demo import report
    spy = _Spy(True)
    with report.Progress("label", stream=spy) as bar:
        bar.spinner("no hook here")
        time.sleep(0.35)
    assert "no hook here" in "".join(spy.text)


def test_serial_session_drives_a_bar():
    from gilfree.demo import report, runners

    class Count(report.Quiet):
        def bar(self, total, unit="it"):
            self.total = total
            return self

    with runners.SerialRunner().session(1) as s:
        s.progress = Count()
        assert s.map(abs, range(-1000, 0)) == list(range(1000, 0, -1))
        assert s.progress.total == 1000 and s.progress.n == 1000
        with pytest.raises(runners.Unsupported):
            s.map_lines(abs, "/dev/null")
        with pytest.raises(runners.Unsupported):
            s.shared_array((1,), "u1")


def test_cluster_backend_hook(monkeypatch):
    """A configured backend (gilfree.cluster.demo.demo_runners) adds rows without touching the
    workloads; none configured -> no rows."""
    import types
    from gilfree.demo import runners
    monkeypatch.setitem(sys.modules, "gilfree.cluster.demo", None)
    assert runners.backends() == []

    class Fake(runners.SerialRunner):
        name = "fake-cluster"
        label = "fake cluster"

    mod = types.ModuleType("gilfree.cluster.demo")
    mod.demo_runners = lambda: [Fake()]
    monkeypatch.setitem(sys.modules, "gilfree.cluster.demo", mod)
    assert [b.name for b in runners.backends()] == ["fake-cluster"]


def test_demo_runs_a_configured_backend(tmp_path, monkeypatch):
    import types
    from gilfree import demo
    from gilfree.demo import runners

    class Fake(runners.SerialRunner):
        name = "fake-cluster"
        label = "fake cluster"

    mod = types.ModuleType("gilfree.cluster.demo")
    mod.demo_runners = lambda: [Fake()]
    monkeypatch.setitem(sys.modules, "gilfree.cluster.demo", mod)
    rc = demo.main(["--only", "countdown", "--count", "20000", "--out", str(tmp_path),
                    "--workers", "2"])
    assert rc == 0
    with open(tmp_path / "results.json") as f:
        rows = json.load(f)["results"]
    fake = [r for r in rows if r["runner"] == "fake-cluster"]
    assert len(fake) == 1 and fake[0]["status"] == "ok", rows


def _load(path, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_covers_issue_5_groups():
    bench = _load(ROOT / "bench" / "run.py", "gf_bench_run")
    need = {"map_tiny", "apply_async", "submit", "latency", "queue_small", "queue_1mib",
            "manager_dict", "dict_scaling", "numpy_array", "pool_start", "seed_log",
            "seed_gif", "seed_countdown"}
    assert need <= set(bench.GROUPS)
    peers = {v for g in bench.GROUPS.values() for v in g["variants"]}
    assert {"stdlib", "gilfree", "stdlib-executor", "loky", "mpire", "faster-fifo"} <= peers
    assert "gilfree-map_lines" in bench.GROUPS["seed_log"]["variants"]
    assert "gilfree-shared" in bench.GROUPS["seed_gif"]["variants"]


def test_bench_markdown_and_readme_splice(tmp_path):
    bench = _load(ROOT / "bench" / "run.py", "gf_bench_run")
    upd = _load(ROOT / "bench" / "update_readme.py", "gf_bench_update")
    g = bench.GROUPS["map_tiny"]
    runs = {"stdlib": [{"ok": True, "value": 2.0}, {"ok": True, "value": 4.0},
                       {"ok": True, "value": 3.0}],
            "gilfree": [{"ok": True, "value": 6.0}] * 3,
            "loky": [{"ok": False, "skipped": "loky not installed"}]}
    summ = bench.summarise(g, runs)
    assert summ["stdlib"]["median"] == 3.0 and summ["gilfree"]["x_stdlib"] == 2.0
    assert summ["loky"]["skipped"] == "loky not installed"
    doc = {"name": "t", "machine": "m", "repeat": 3,
           "groups": {"map_tiny": {"title": g["title"], "unit": g["unit"], "note": "",
                                   "n": 10, "variants": summ}}}
    md = tmp_path / "t.md"
    md.write_text(bench.markdown(doc))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n%s\nold table\n%s\nafter\n" % (upd.BEGIN, upd.END))
    assert upd.main([str(md), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "| gilfree | 6.00 |" in text
    assert text.startswith("# x\n\nbefore\n" + upd.BEGIN) and text.endswith(upd.END + "\nafter\n")
    assert upd.main([str(md), "--readme", str(readme), "--check"]) == 0
    assert upd.main([str(md), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers\n")
    assert upd.main([str(md), "--readme", str(readme)]) == 2


def test_repo_readme_has_bench_markers():
    upd = _load(ROOT / "bench" / "update_readme.py", "gf_bench_update")
    text = (ROOT / "README.md").read_text()
    assert text.count(upd.BEGIN) == 1 and text.count(upd.END) == 1


def test_repeat_interleaves_rounds(tmp_path, capsys):
    from gilfree import demo
    rc = demo.main(["--only", "countdown", "--count", "20000", "--out", str(tmp_path),
                    "--workers", "2", "--repeat", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    rounds = [l.split("[round ")[1] for l in out.splitlines() if "[round " in l]
    # serial, threads, threads + Cython nogil (where it builds), stdlib, gilfree
    k = 5 if demo.runners.NogilThreadRunner().available()[0] else 4
    assert rounds == ["1/2]"] * k + ["2/2]"] * k, out  # every variant once, then again
    with open(tmp_path / "results.json") as f:
        rows = [r for r in json.load(f)["results"] if r["status"] != "skipped"]
    assert len(rows) == k
    assert all(len(r["runs"]) == 2 and r["status"] == "ok" for r in rows), rows
