"""Type stubs for gilfree.resource_sharer (the standard library's resource sharer)."""

from multiprocessing.resource_sharer import DupFd as DupFd
from multiprocessing.resource_sharer import stop as stop

__all__ = ["DupFd", "stop"]
