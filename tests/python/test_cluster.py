"""gilfree.Pool / ProcessPoolExecutor on a real Dask cluster (issue 10): what is particular to
the cluster -- the hook, cloudpickle, scattered arguments, a killed worker, timeouts, bad
addresses, version mismatches, TLS, ``cluster="local"``. The shared API suite is
test_cluster_api.py; the cluster (a `dask scheduler` and two `dask worker` processes on
127.0.0.1) is conftest.py's ``dask_cluster``."""

import concurrent.futures as cf
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("distributed")
if os.environ.get("GILFREE_ASAN"):  # pure Python over Dask: the plain pass runs it
    pytest.skip("cluster tests run in the plain pass", allow_module_level=True)

import gilfree  # noqa: E402
from gilfree.pool import TaskTimeoutError, WorkerLostError  # noqa: E402


def sq(x):
    return x * x


def nbytes_plus(a, i):
    return int(a[:4].sum()) + len(a) + i


def marked(path, seconds):
    """Append this worker's pid to `path`, then sleep: the test kills the worker meanwhile."""
    with open(path, "a") as f:
        f.write("%d\n" % os.getpid())
    time.sleep(seconds)
    return "done"


def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def give_lock(_=None):
    return threading.Lock()


def _scattered(client):
    """Keys of scattered data on the scheduler (tasks without a function)."""
    return client.run_on_scheduler(
        lambda dask_scheduler: sorted(k for k, ts in dask_scheduler.tasks.items()
                                      if ts.run_spec is None))


def _ntasks(client):
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def _wait_lines(path, n, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().split()
            if len(lines) >= n:
                return [int(x) for x in lines]
        time.sleep(0.02)
    raise AssertionError("%s: fewer than %d lines after %s s" % (path, n, timeout))


@pytest.fixture
def cpool(dask_address):
    with gilfree.Pool(cluster=dask_address) as p:
        yield p


# ------------------------------------------------------------------ the hook

@pytest.mark.timeout(60)
def test_cluster_keyword_and_environment(dask_address, monkeypatch):
    from gilfree.cluster import ClusterExecutor, ClusterPool

    monkeypatch.delenv("GILFREE_CLUSTER", raising=False)
    with gilfree.Pool(2, cluster=dask_address) as p:
        assert type(p) is ClusterPool and isinstance(p, gilfree.Pool)
        assert p.map(sq, range(10)) == [x * x for x in range(10)]
    with gilfree.Pool(1) as p:
        assert type(p) is gilfree.pool.Pool
    monkeypatch.setenv("GILFREE_CLUSTER", dask_address)
    with gilfree.Pool(1) as p:
        assert type(p) is ClusterPool
    with gilfree.Pool(1, cluster=False) as p:  # explicitly local
        assert type(p) is gilfree.pool.Pool
    with gilfree.ProcessPoolExecutor(2) as ex:
        assert type(ex) is ClusterExecutor and isinstance(ex, gilfree.ProcessPoolExecutor)
        f = ex.submit(sq, 7)
        assert isinstance(f, cf.Future) and f.result(timeout=30) == 49
    with pytest.raises(ValueError, match="maxtasksperchild"):
        gilfree.Pool(1, maxtasksperchild=2)


@pytest.mark.timeout(60)
def test_a_local_pool_loads_no_dask():
    code = ("import sys, gilfree\n"
            "with gilfree.Pool(1) as p:\n"
            "    assert p.map(abs, [-1]) == [1]\n"
            "import gilfree.cluster\n"
            "print(sorted(m for m in ('dask', 'distributed', 'cloudpickle') "
            "if m in sys.modules))\n")
    env = dict(os.environ)
    env.pop("GILFREE_CLUSTER", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=50, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ pickling

@pytest.mark.timeout(60)
def test_lambdas_and_closures_travel_by_value(cpool):
    k = 10
    assert cpool.map(lambda x: x + k, range(5)) == [10, 11, 12, 13, 14]

    def closure(x, _k=k):
        return x * _k

    assert cpool.apply(closure, (3,)) == 30
    with gilfree.ProcessPoolExecutor(cluster=cpool.client) as ex:
        assert ex.submit(lambda f, x: f(x), lambda y: y - 1, 5).result(timeout=30) == 4


@pytest.mark.timeout(60)
def test_what_does_not_pickle_fails_at_submit_and_nothing_is_sent(cpool):
    client = cpool.client
    before = _ntasks(client)
    lock = threading.Lock()
    with pytest.raises(TypeError, match="lock"):
        cpool.apply_async(sq, (lock,))
    with pytest.raises(TypeError, match="lock"):
        cpool.map(sq, [1, lock, 3])
    with pytest.raises(TypeError, match="lock"):
        cpool.apply_async(lambda: lock)  # the function (a closure) does not pickle
    with gilfree.ProcessPoolExecutor(cluster=client) as ex:
        f = ex.submit(sq, lock)
        assert isinstance(f.exception(timeout=0), TypeError)
    assert cpool.stats()["outstanding"] == 0
    assert _ntasks(client) == before
    assert cpool.apply(sq, (3,)) == 9


@pytest.mark.timeout(60)
def test_a_result_that_does_not_pickle_fails_only_its_call(cpool):
    import multiprocessing.pool

    with pytest.raises(multiprocessing.pool.MaybeEncodingError):
        cpool.apply(give_lock)
    rs = [cpool.apply_async(sq, (2,)), cpool.apply_async(give_lock), cpool.apply_async(sq, (3,))]
    assert rs[0].get(30) == 4 and rs[2].get(30) == 9
    with pytest.raises(multiprocessing.pool.MaybeEncodingError):
        rs[1].get(30)


# ------------------------------------------------------------------ large arguments

@pytest.mark.timeout(90)
def test_large_arguments_are_scattered_once_and_shared(cpool):
    np = pytest.importorskip("numpy")
    client = cpool.client
    assert _scattered(client) == []
    assert cpool.map(sq, range(1000)) == [x * x for x in range(1000)]
    assert _scattered(client) == []  # small items travel in the tasks
    a = np.arange(300_000, dtype=np.float64)  # 2.4 MB
    want = [int(a[:4].sum()) + len(a) + i for i in range(40)]
    assert cpool.starmap(nbytes_plus, [(a, i) for i in range(40)], chunksize=1) == want
    assert len(_scattered(client)) == 1
    assert [cpool.apply_async(nbytes_plus, (a, i)).get(30) for i in range(5)] == want[:5]
    assert len(_scattered(client)) == 1  # the same array: not sent again
    a[0] = 100.0  # changed in place: the next call sees the new contents
    assert cpool.apply(nbytes_plus, (a, 0)) == want[0] + 100
    blob = bytes(range(256)) * 8192  # 2 MiB
    assert cpool.map(len, [blob] * 8) == [len(blob)] * 8
    assert cpool.apply(len, (blob,)) == len(blob)
    deadline = time.monotonic() + 10  # the replaced copy of `a` is released
    while len(_scattered(client)) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_scattered(client)) == 2


# ------------------------------------------------------------------ a worker is lost

@pytest.mark.timeout(120)
def test_a_killed_worker_retries_or_fails_and_the_pool_keeps_running(cpool, tmp_path):
    # retries=1: the call whose worker is killed under it runs again, and returns
    m1 = str(tmp_path / "m1")
    r = cpool.apply_async(marked, (m1, 4.0), retries=1)
    pid = _wait_lines(m1, 1)[0]
    os.kill(pid, signal.SIGKILL)
    assert r.get(timeout=60) == "done"
    assert len(_wait_lines(m1, 2)) == 2  # exactly two attempts
    # no retries: WorkerLostError, and the call ran once (Dask does not rerun it silently)
    m2 = str(tmp_path / "m2")
    with gilfree.ProcessPoolExecutor(cluster=cpool.client) as ex:
        f = ex.submit(marked, m2, 4.0)
        os.kill(_wait_lines(m2, 1)[0], signal.SIGKILL)
        with pytest.raises(WorkerLostError):
            f.result(timeout=60)
        assert ex.submit(sq, 5).result(timeout=60) == 25
    time.sleep(0.5)
    assert len(_wait_lines(m2, 1)) == 1
    # the pool goes on, and the nannies bring the cluster back to two workers
    assert cpool.map(sq, range(200)) == [x * x for x in range(200)]
    deadline = time.monotonic() + 60
    while cpool.stats()["live_workers"] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cpool.stats()["live_workers"] == 2
    assert cpool.stats()["deaths"] == 1  # (the executor's loss is its own pool's)


# ------------------------------------------------------------------ timeouts

@pytest.mark.timeout(120)
def test_timeouts_interrupt_python_code_and_replace_a_worker_stuck_in_c(cpool):
    pids = set(cpool.worker_pids())
    t0 = time.monotonic()
    with pytest.raises(TaskTimeoutError):
        cpool.apply(spin, (60,), timeout=0.5)
    assert time.monotonic() - t0 < 15
    assert cpool.apply(sq, (6,)) == 36
    assert set(cpool.worker_pids()) == pids  # interrupted: no worker was harmed
    t0 = time.monotonic()
    with pytest.raises(TaskTimeoutError):
        cpool.apply(time.sleep, (60,), timeout=0.5)  # blocked in C: not interruptible
    assert time.monotonic() - t0 < 15
    deadline = time.monotonic() + 60  # its worker is killed and its nanny starts another
    while time.monotonic() < deadline:
        now = cpool.worker_pids()
        if len(now) == 2 and set(now) != pids:
            break
        time.sleep(0.2)
    assert len(set(now) & pids) == 1, (pids, now)
    assert cpool.map(sq, range(20)) == [x * x for x in range(20)]


# ------------------------------------------------------------------ bad input

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_an_unreachable_address_fails_within_the_connect_timeout():
    addr = "tcp://127.0.0.1:%d" % _free_port()
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        gilfree.Pool(cluster=addr, connect_timeout=2)
    assert time.monotonic() - t0 < 2 + 8
    with pytest.raises(ConnectionError):
        gilfree.ProcessPoolExecutor(cluster=addr, connect_timeout=1)


@pytest.mark.timeout(180)
def test_a_version_mismatch_raises_dasks_message(tmp_path):
    from _dask_cluster import DaskCluster
    from gilfree.cluster import VersionMismatchError

    # a worker environment whose toolz (a package Dask requires to match) says 0.0.1
    fake = tmp_path / "fake-site"
    meta = fake / "toolz-0.0.1.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: toolz\nVersion: 0.0.1\n")
    c = DaskCluster(tmp_path / "cluster", nworkers=1, worker_env_path=[str(fake)]).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(VersionMismatchError, match="Mismatched versions") as ei:
            gilfree.Pool(cluster=c.address)
        assert "toolz" in str(ei.value) and "0.0.1" in str(ei.value)
        assert time.monotonic() - t0 < 30
    finally:
        c.stop()


# ------------------------------------------------------------------ TLS (Security objects)

def _make_certs(d):
    """A CA and a certificate it signed for 127.0.0.1 (openssl), as Dask's TLS wants."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True,
                       timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
        "node.key", "-out", "node.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "node.pem")
    return str(d / "ca.pem"), str(d / "node.pem"), str(d / "node.key")


@pytest.mark.timeout(180)
def test_tls_through_a_dask_security_object(tmp_path):
    from distributed import Security
    from _dask_cluster import DaskCluster

    if not subprocess.run(["which", "openssl"], capture_output=True).returncode == 0:
        pytest.skip("no openssl command to make certificates")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = _make_certs(certs)
    tls = ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
    c = DaskCluster(tmp_path / "cluster", nworkers=1, protocol="tls", scheduler_args=tls,
                    worker_args=tls)
    sec = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                   require_encryption=True)
    c.client_kw = {"security": sec}
    c.start()
    try:
        assert c.address.startswith("tls://")
        with gilfree.Pool(cluster=c.address, security=sec) as p:
            assert p.map(sq, range(50)) == [x * x for x in range(50)]
        with pytest.raises(Exception):  # no certificates: refused, not a hang
            gilfree.Pool(cluster=c.address, connect_timeout=3)
    finally:
        c.stop()


# ------------------------------------------------------------------ cluster="local"

@pytest.mark.timeout(180)
def test_local_cluster_starts_and_stops_with_the_pool(mp_resource_tracker):
    with gilfree.Pool(2, cluster="local") as p:
        assert p.stats()["live_workers"] == 2
        assert p.map(sq, range(1000)) == [x * x for x in range(1000)]
        assert len(p.worker_pids()) == 2
    with gilfree.ProcessPoolExecutor(1, cluster="local") as ex:
        assert list(ex.map(sq, range(5))) == [0, 1, 4, 9, 16]
    # (the leak check then sees that no worker process is left)


# ------------------------------------------------------------------ the demo's cluster rows

@pytest.mark.timeout(300)
def test_demo_adds_cluster_rows_checked_against_serial(tmp_path):
    import json

    out = tmp_path / "demo"
    env = dict(os.environ)
    env.pop("GILFREE_CLUSTER", None)
    proc = subprocess.run([sys.executable, "-m", "gilfree", "demo", "--cluster", "local",
                           "--workers", "2", "--lines", "20000", "--frames", "4", "--count",
                           "2000000", "--out", str(out)], capture_output=True, text=True,
                          timeout=280, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "results.json") as f:
        rows = json.load(f)["results"]
    dask = [r for r in rows if r["runner"] == "gilfree-dask"]
    assert len(dask) == 3 and all(r["status"] == "ok" for r in dask), dask
    notes = {r["workload"].split(" ")[0]: r["note"] for r in dask}
    assert notes["log"] == "counts equal" and notes["ASCII"] == "frames equal", notes
    assert "gilfree Pool on Dask (local cluster)" in proc.stdout
    assert (out / "demo.png").stat().st_size > 1000
