"""``python -m gilfree demo --quick`` runs, writes its chart and ASCII GIF, and every variant
counts the same IPs (skipped only if gilfree cannot be imported)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_quick(tmp_path):
    gilfree = pytest.importorskip("gilfree")
    env = dict(os.environ)
    if getattr(gilfree, "__file__", None):  # the child imports this same gilfree
        parent = str(Path(gilfree.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([parent] + [p for p in
                                            env.get("PYTHONPATH", "").split(os.pathsep) if p])
    out = tmp_path / "demo-out"
    proc = subprocess.run([sys.executable, "-m", "gilfree", "demo", "--quick", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
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
