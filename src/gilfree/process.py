"""Processes: :class:`Process` with the standard library's API and behaviour.

``gilfree.Process`` is a :class:`multiprocessing.process.BaseProcess` (so ``name``, ``daemon``,
``pid``, ``exitcode``, ``join``, ``is_alive``, ``terminate``, ``kill``, ``close``, ``sentinel``,
subclassing with ``run()``, ``current_process()``, ``active_children()`` and
``parent_process()`` are the standard library's own code), started by gilfree's Popen classes:

* ``fork`` (the default): :func:`gilfree._core.fork` -- a fork with a pidfd per child: the pidfd
  is the ``sentinel`` (selectable), ``join(timeout)`` waits on it with the GIL released (Ctrl-C
  works) and reaps with ``waitid(P_PIDFD)``, signals go through it (no pid-reuse race). The
  child runs the standard ``BaseProcess._bootstrap`` (exit codes, printed exceptions, stdio
  flushing, atexit/finalizers as the standard library does them).
* ``spawn`` and ``forkserver``: the standard library's Popen classes, with the arena's memfd
  passed to the child (``GILFREE_ARENA_FD``) so that it attaches to the same shared memory and
  gilfree objects passed to it keep working.

The process registry (``_dangling``, ``_cleanup``, ``active_children``, ``current_process``)
is the standard library's: gilfree's processes are ``BaseProcess`` objects, listed with the
standard library's. This module also owns the program's start method (see below).
"""

import os
import signal
import threading

from multiprocessing import util as _util
from multiprocessing.process import (BaseProcess, _cleanup, _dangling,  # noqa: F401
                                     active_children, current_process, parent_process)

from gilfree import _core

# _core consumed GILFREE_ARENA_FD (a spawned child of a gilfree process) with unsetenv() at
# import; drop it from os.environ's snapshot too, so that our own subprocesses do not inherit it.
os.environ.pop("GILFREE_ARENA_FD", None)

__all__ = ["Process", "ForkProcess", "SpawnProcess", "ForkServerProcess", "current_process",
           "active_children", "parent_process"]


class _ParentSentinel:
    """The parent_process() sentinel of a forked child: a selectable object whose fileno() (a
    pidfd of the parent, opened on first use: most children never ask) becomes readable when
    the parent exits. If the parent is already gone, the read end of a closed pipe."""

    __slots__ = ("_pid", "_fd")

    def __init__(self, parent_pid):
        self._pid = parent_pid
        self._fd = None

    def fileno(self):
        if self._fd is None:
            fd = None
            try:
                if os.getppid() == self._pid:
                    fd = os.pidfd_open(self._pid)
                    if os.getppid() != self._pid:  # died (and the pid may be reused) meanwhile
                        os.close(fd)
                        fd = None
            except OSError:
                fd = None
            if fd is None:
                fd, w = os.pipe()
                os.close(w)
            self._fd = fd
        return self._fd

    def __repr__(self):
        return "<parent sentinel of pid %d>" % self._pid


class _ForkPopen:
    """multiprocessing Popen protocol over :func:`gilfree._core.fork` and a pidfd."""

    method = "fork"

    def __init__(self, process_obj):
        _util._flush_std_streams()
        self.returncode = None
        self.finalizer = None
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        return fd

    def _launch(self, process_obj):
        parent_pid = os.getpid()

        def child_main():
            return process_obj._bootstrap(parent_sentinel=_ParentSentinel(parent_pid))

        self._proc = _core.fork(child_main)
        self.pid = self._proc.pid
        self.sentinel = self._proc.sentinel

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            code = self._proc.poll() if flag & os.WNOHANG else self._proc.wait()
            if code is not None:
                self.returncode = code
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            if timeout is not None and timeout < 0:
                timeout = 0  # the standard library treats a negative join timeout as 0
            code = self._proc.wait(timeout)
            if code is not None:
                self.returncode = code
        return self.returncode

    def _send_signal(self, sig):
        if self.returncode is None:
            self._proc.signal(sig)

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()
        self._proc.close()


# ---------------------------------------------------------------- spawn / forkserver

_env_lock = threading.RLock()


class _ArenaForChild:
    """While active: GILFREE_ARENA_FD names the arena's memfd in the environment and the fd is
    added to the fds handed to the next util.spawnv_passfds (whose child then attaches to the
    same arena when it imports gilfree)."""

    def __init__(self, fds=None):
        self.fds = fds

    def __enter__(self):
        _env_lock.acquire()
        fd = _core.arena_fd()
        self._old_env = os.environ.get("GILFREE_ARENA_FD")
        os.environ["GILFREE_ARENA_FD"] = str(fd)
        self._old_spawn = _util.spawnv_passfds
        if self.fds is not None:
            self.fds.append(fd)
        else:
            orig = self._old_spawn

            def spawnv_passfds(path, args, passfds):
                return orig(path, args, list(passfds) + [fd])

            _util.spawnv_passfds = spawnv_passfds
        return self

    def __exit__(self, *exc):
        try:
            _util.spawnv_passfds = self._old_spawn
            if self._old_env is None:
                os.environ.pop("GILFREE_ARENA_FD", None)
            else:
                os.environ["GILFREE_ARENA_FD"] = self._old_env
        finally:
            _env_lock.release()


def _ensure_forkserver():
    """Start the fork server (if it is not running) with the arena's fd and environment, so that
    it and every child it forks share this process tree's arena."""
    from multiprocessing import forkserver
    with _ArenaForChild():
        forkserver.ensure_running()


# The spawn and forkserver Popen classes subclass the standard library's, whose modules import
# much (socket, hashlib, the fork server): built on first use, so that a program that only
# forks does not carry them (every page a process maps makes each of its forks slower).
_popen_classes = {}


def _popen_class(method):
    """gilfree's Popen class for the 'spawn' or 'forkserver' start method."""
    cls = _popen_classes.get(method)
    if cls is not None:
        return cls
    if method == "spawn":
        from multiprocessing import popen_spawn_posix as base

        class _SpawnPopen(base.Popen):
            def _launch(self, process_obj):
                with _ArenaForChild(self._fds):
                    super()._launch(process_obj)
        cls = _SpawnPopen
    else:
        from multiprocessing import popen_forkserver as base

        class _ForkServerPopen(base.Popen):
            def _launch(self, process_obj):
                _ensure_forkserver()
                super()._launch(process_obj)
        cls = _ForkServerPopen
    _popen_classes[method] = cls
    return cls


# ---------------------------------------------------------------- Process classes

class _GilfreeProcess(BaseProcess):
    """BaseProcess whose child knows gilfree's start method: the standard library's bootstrap
    forces *its* start method to the process's; this forces gilfree's too (the one the
    process was started with), so that get_start_method() in a spawned child says 'spawn'."""

    _gf_started_with = None  # set by Process._Popen: the method that started this object

    def _bootstrap(self, parent_sentinel=None):
        method = self._start_method or self._gf_started_with
        if method is not None:
            _set_start_method(method, force=True)
        return super()._bootstrap(parent_sentinel)


class ForkProcess(_GilfreeProcess):
    """A Process started with fork (gilfree's Popen)."""
    _start_method = "fork"

    @staticmethod
    def _Popen(process_obj):
        return _ForkPopen(process_obj)


class SpawnProcess(_GilfreeProcess):
    """A Process started with spawn: the child gets the arena's fd and attaches."""
    _start_method = "spawn"

    @staticmethod
    def _Popen(process_obj):
        return _popen_class("spawn")(process_obj)

    @staticmethod
    def _after_fork():
        pass  # spawned: nothing inherited to fix up


class ForkServerProcess(_GilfreeProcess):
    """A Process started through the fork server."""
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj):
        return _popen_class("forkserver")(process_obj)


# ---------------------------------------------------------------- the default start method
# Owned here, below gilfree.context, so that whatever starts processes (Process below, pools,
# managers) follows the program's start method without importing the contexts, which are the
# factories *above* all of them. gilfree.context's set_start_method / get_start_method and
# DefaultContext are views of this state.

START_METHODS = ("fork", "spawn", "forkserver")
_DEFAULT_METHOD = "fork"
_actual_method = None  # fixed at first use (or by _set_start_method), as in multiprocessing


def _get_start_method(allow_none=False):
    """The name of the start method in use; fixed to the default ('fork') at the first call
    unless allow_none (then None while nothing fixed it)."""
    global _actual_method
    if _actual_method is None:
        if allow_none:
            return None
        _actual_method = _DEFAULT_METHOD
    return _actual_method


def _set_start_method(method, force=False):
    """Fix the start method to `method` (one of START_METHODS; None with force: unset).
    RuntimeError if it is already fixed and not force; ValueError for an unknown method."""
    global _actual_method
    if _actual_method is not None and not force:
        raise RuntimeError("context has already been set")
    if method is None:
        if not force:
            raise ValueError("cannot find context for None")
        _actual_method = None
        return
    if method not in START_METHODS:
        raise ValueError("cannot find context for %r" % (method,))
    _actual_method = method


_PROCESS_CLASSES = {"fork": ForkProcess, "spawn": SpawnProcess,
                    "forkserver": ForkServerProcess}


class Process(_GilfreeProcess):
    """multiprocessing.Process, started the way gilfree's current start method says."""

    _start_method = None

    @staticmethod
    def _Popen(process_obj):
        method = _get_start_method()
        process_obj._gf_started_with = method
        return _PROCESS_CLASSES[method]._Popen(process_obj)

    @staticmethod
    def _after_fork():
        return _PROCESS_CLASSES[_get_start_method()]._after_fork()
