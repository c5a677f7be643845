"""A real Dask cluster on 127.0.0.1 for the tests: one ``dask scheduler`` and N
``dask worker`` processes (each a nanny with one single-threaded worker process), started
with subprocess on random free ports (the scheduler picks its port and writes it to a
scheduler file) and stopped with everything they started.

The scheduler runs with the settings gilfree's own clusters use
(``gilfree.cluster.dask.LOCAL_CONFIG``: no silent re-runs of a task whose worker died, no
task queued on a worker beyond the one it runs), so the local pool's failure contract holds.
Each process gets PR_SET_PDEATHSIG, so nothing outlives the test process even if it is killed.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def dask_env(extra_path=()):
    """The environment of the cluster's processes: the tests' modules importable (their
    functions are pickled by reference), gilfree's cluster settings."""
    env = dict(os.environ)
    env.pop("GILFREE_CLUSTER", None)
    env["PYTHONPATH"] = os.pathsep.join(list(extra_path) + [HERE] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
    env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = "1.0"
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    # a nanny forks its worker: multiprocessing's named semaphores (the nanny's queues to
    # the worker) are then unlinked at once; with spawn they would sit in /dev/shm while the
    # worker lives, and a worker that a test kills is replaced *during* that test
    env["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] = "fork"
    return env


class DaskCluster:
    """``start()`` a scheduler and ``nworkers`` workers in ``workdir``; ``stop()`` them.
    ``address`` is the scheduler's; ``worker_env_path`` goes first on the workers'
    PYTHONPATH; ``scheduler_args`` / ``worker_args`` are extra command-line options."""

    def __init__(self, workdir, nworkers=2, worker_env_path=(), scheduler_args=(),
                 worker_args=(), protocol="tcp"):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.nworkers = nworkers
        self.worker_env_path = list(worker_env_path)
        self.scheduler_args = list(scheduler_args)
        self.worker_args = list(worker_args)
        self.protocol = protocol
        self.client_kw = {}  # e.g. security= for a TLS cluster
        self.procs = []
        self.address = None
        self.scheduler_file = os.path.join(self.workdir, "scheduler.json")

    def _spawn(self, name, argv, env):
        log = open(os.path.join(self.workdir, name + ".log"), "wb")
        try:
            p = subprocess.Popen([sys.executable, "-m", "dask"] + argv, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=self.workdir, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.procs.append(p)
        return p

    def start(self, timeout=90):
        """Start everything; returns once every worker has joined (RuntimeError naming the
        logs otherwise)."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout):
        deadline = time.monotonic() + timeout
        self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--protocol", self.protocol, "--no-dashboard",
                                  "--scheduler-file", self.scheduler_file]
                    + self.scheduler_args, dask_env())
        while self.address is None:  # (the file may exist before it is written)
            self._check_alive(deadline)
            time.sleep(0.05)
            try:
                with open(self.scheduler_file) as f:
                    self.address = json.load(f)["address"]
            except (OSError, ValueError, KeyError):
                pass
        wenv = dask_env(self.worker_env_path)
        for i in range(self.nworkers):
            self._spawn("worker%d" % i, ["worker", "--scheduler-file", self.scheduler_file,
                                         "--host", "127.0.0.1", "--nthreads", "1",
                                         "--nworkers", "1", "--no-dashboard",
                                         "--name", "w%d" % i, "--death-timeout", "60",
                                         "--local-directory", self.workdir,
                                         "--memory-limit", "0"] + self.worker_args, wenv)
        self.wait_for_workers(self.nworkers, deadline - time.monotonic())

    def client(self, **kw):
        """A new distributed.Client of this cluster (close it)."""
        from distributed import Client
        return Client(self.address, timeout=30, set_as_default=False, **kw)

    def wait_for_workers(self, n, timeout=60):
        """Return once the scheduler has n workers (RuntimeError with the logs otherwise)."""
        deadline = time.monotonic() + timeout
        with self.client(**self.client_kw) as c:
            while len(c.scheduler_info(n_workers=-1)["workers"]) < n:
                self._check_alive(deadline)
                time.sleep(0.1)

    def _check_alive(self, deadline):
        dead = [p for p in self.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError("the test Dask cluster did not start (%s); logs in %s:\n%s" % (
                "a process exited" if dead else "timed out", self.workdir, self.logs()))

    def logs(self):
        """The tail of every process's log."""
        out = []
        for name in sorted(os.listdir(self.workdir)):
            if name.endswith(".log"):
                with open(os.path.join(self.workdir, name), errors="replace") as f:
                    out.append("--- %s\n%s" % (name, f.read()[-3000:]))
        return "\n".join(out)

    def stop(self):
        """Stop the workers, then the scheduler (SIGTERM, then SIGKILL), and reap them."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs = []


