"""Seed 000's Celery cell (examples/celery/) on a real redis-server and a real Celery worker,
both started here and stopped at the end, next to the same job on gilfree.Pool(cluster=
"local"): all of them write the same ASCII frames as the serial tutorial code."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("celery")
pytest.importorskip("redis")
pytest.importorskip("distributed")
if os.environ.get("GILFREE_ASAN"):  # pure Python over Dask: the plain pass runs it
    pytest.skip("cluster tests run in the plain pass", allow_module_level=True)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CELERY = EXAMPLES / "celery"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(out):
    m = re.search(r"frames, digest ([0-9a-f]+)", out)
    assert m, out
    return m.group(1)


def _run(script, cwd, env):
    p = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _stop(proc, timeout=30):
    """SIGTERM the process group (Celery's pool children too), then SIGKILL; reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.mark.timeout(600)
def test_seed_celery_cell_and_the_cluster_pool_agree(tmp_path, mp_resource_tracker):
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("no redis-server (scripts/test.sh installs Debian's redis-server)")
    import redis

    port = _free_port()
    env = dict(os.environ, EXAMPLES_FAST="1", REDIS_URL="redis://127.0.0.1:%d/0" % port)
    env.pop("GILFREE_CLUSTER", None)
    if os.geteuid() == 0:
        env["C_FORCE_ROOT"] = "1"  # Celery refuses a pickle-accepting worker as root without
    procs = []
    try:
        procs.append(subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True))
        r = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if r.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise
                time.sleep(0.05)
        r.close()
        log = open(tmp_path / "celery.log", "wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
             "--loglevel=WARNING", "--concurrency=2", "--without-gossip", "--without-mingle",
             "-n", "gilfree-test@%h"],
            cwd=CELERY, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))
        log.close()
        serial = _digest(_run(EXAMPLES / "seed000_gif_serial.py", tmp_path, env))
        celery_out = _run(CELERY / "seed000_gif_celery.py", tmp_path, env)
        assert _digest(celery_out) == serial, (tmp_path / "celery.log").read_text()
        assert "24 frames" in celery_out
        cluster_out = _run(CELERY / "seed000_gif_cluster.py", tmp_path, env)
        assert _digest(cluster_out) == serial
        assert procs[1].poll() is None  # the worker served the job and is still up
    finally:
        for p in reversed(procs):
            _stop(p)
