"""Type stubs for gilfree.dummy.connection."""

from multiprocessing.dummy.connection import Client as Client
from multiprocessing.dummy.connection import Connection as Connection
from multiprocessing.dummy.connection import Listener as Listener
from multiprocessing.dummy.connection import Pipe as Pipe
from multiprocessing.dummy.connection import families as families

__all__ = ["Client", "Listener", "Pipe"]
