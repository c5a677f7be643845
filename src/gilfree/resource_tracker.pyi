"""Type stubs for gilfree.resource_tracker."""

from multiprocessing.resource_tracker import ResourceTracker as ResourceTracker
from multiprocessing.resource_tracker import ensure_running as ensure_running
from multiprocessing.resource_tracker import getfd as getfd
from multiprocessing.resource_tracker import main as main
from typing import Any

__all__ = ["ensure_running", "register", "unregister"]

def register(name: str, rtype: str) -> None: ...
def unregister(name: str, rtype: str) -> None: ...
def __getattr__(name: str) -> Any: ...
