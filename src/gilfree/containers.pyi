"""Type stubs for gilfree.containers."""

from gilfree import _core

__all__ = ["SharedDict", "SharedList"]

class SharedDict(_core.SharedDict): ...
class SharedList(_core.SharedList): ...
