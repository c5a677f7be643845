"""Utilities, as :mod:`multiprocessing.util`: finalizers, after-fork hooks, logging, temp dir.

gilfree's processes run the standard library's process bootstrap (``BaseProcess._bootstrap``),
which runs the standard library's after-fork hooks and finalizers and logs to its
``multiprocessing`` logger. So the registries this module's functions act on must be those: the
names here *are* the standard library's objects (not copies), and ``Finalize``,
``register_after_fork``, ``get_logger``, ``log_to_stderr``, ``is_exiting``, ``get_temp_dir``,
``ForkAwareThreadLock``, ``ForkAwareLocal`` work with gilfree's Process, Pool and Manager as they
do with the standard library's. Names not listed (the private registries, ``_exit_function``,
...) are looked up in :mod:`multiprocessing.util`.
"""

from multiprocessing import util as _std
from multiprocessing.util import (DEBUG, INFO, NOTSET, SUBDEBUG, SUBWARNING,  # noqa: F401
                                  LOGGER_NAME, DEFAULT_LOGGING_FORMAT, Finalize,
                                  ForkAwareLocal, ForkAwareThreadLock, abstract_sockets_supported,
                                  close_all_fds_except, close_fds, debug, get_logger,
                                  get_temp_dir, info, is_abstract_socket_namespace, is_exiting,
                                  log_to_stderr, register_after_fork, spawnv_passfds, sub_debug,
                                  sub_warning)

__all__ = list(_std.__all__)


def __getattr__(name):
    """Any other name of :mod:`multiprocessing.util` (the same object)."""
    try:
        return getattr(_std, name)
    except AttributeError:
        raise AttributeError("module 'gilfree.util' has no attribute %r" % (name,)) from None
