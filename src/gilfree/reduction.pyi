"""Type stubs for gilfree.reduction."""

from multiprocessing.connection import Connection as _StdConnection
from multiprocessing.reduction import HAVE_SEND_HANDLE as HAVE_SEND_HANDLE
from multiprocessing.reduction import AbstractReducer as AbstractReducer
from multiprocessing.reduction import DupFd as DupFd
from multiprocessing.reduction import ForkingPickler as ForkingPickler
from multiprocessing.reduction import dump as dump
from multiprocessing.reduction import recvfds as recvfds
from multiprocessing.reduction import register as register
from multiprocessing.reduction import sendfds as sendfds

from gilfree.connection import Connection

__all__: list[str]

def send_handle(conn: Connection | _StdConnection, handle: int, destination_pid: int) -> None: ...
def recv_handle(conn: Connection | _StdConnection) -> int: ...
