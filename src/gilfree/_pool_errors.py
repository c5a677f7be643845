"""Task kinds, statuses and pool states shared by gilfree.pool, its results and
gilfree.futures (the protocol with gilfree._core.Pool), and the errors a task's status turns
into. Private: import these names from gilfree.pool, which re-exports them."""

import pickle
import traceback
from multiprocessing import TimeoutError
from multiprocessing.pool import MaybeEncodingError

K_CALL, K_MAP, K_STARMAP, K_BATCH = 0, 1, 2, 3
S_OK, S_ERROR, S_LOST, S_TIMEOUT, S_CANCELLED, S_DECODE = 0, 1, 2, 3, 4, 5
RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class WorkerLostError(RuntimeError):
    """The worker process running this task died (killed, crashed, os._exit)."""


class TaskTimeoutError(TimeoutError):
    """The task ran past its ``timeout=``: its worker was killed and replaced."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (attached as ``__cause__``)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb



# ---------------------------------------------------------------- worker-side helpers

def _errfn(exc, where):
    """In the worker: the bytes reporting `exc` (pickled (exception, traceback text))."""
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        tb = repr(exc)
    tb = '\n"""\n' + tb + '"""'
    if where == "result":
        exc = MaybeEncodingError(exc, "<result>")
    try:
        return pickle.dumps((exc, tb))
    except Exception as e:
        return pickle.dumps((MaybeEncodingError(e, repr(exc)), tb))



def _rebuild_error(value):
    if isinstance(value, BaseException):
        return value
    if not value:
        return RuntimeError("gilfree: the task failed and its error could not be reported")
    try:
        exc, tb = pickle.loads(value)
    except Exception as e:
        return RuntimeError("gilfree: the task failed and its exception could not be "
                            "unpickled in the parent: %r" % (e,))
    if isinstance(exc, BaseException):
        try:
            exc.__cause__ = RemoteTraceback(tb)
        except Exception:
            pass
        return exc
    return RuntimeError(repr(exc))



def _cancelled():
    """A new concurrent.futures.CancelledError (imported here, on first use: concurrent.futures
    loads logging, ~6 ms that a program's first Pool() need not pay)."""
    from concurrent.futures import CancelledError
    return CancelledError()


def _status_error(status, value, worker):
    if status == S_ERROR:
        return _rebuild_error(value)
    if status == S_LOST:
        return WorkerLostError("the worker process running this task died unexpectedly")
    if status == S_TIMEOUT:
        return TaskTimeoutError("the task exceeded its timeout; its worker was killed")
    if status == S_CANCELLED:
        return _cancelled()
    if status == S_DECODE:
        e = RuntimeError("gilfree: could not decode the task's result: %r" % (value,))
        e.__cause__ = value if isinstance(value, BaseException) else None
        return e
    return RuntimeError("gilfree: unknown task status %r" % (status,))
