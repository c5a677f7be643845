"""Shared containers: :class:`SharedDict` and :class:`SharedList`, a dict and a list whose
contents live in gilfree's shared-memory arena (see ``gilfree._core.SharedDict`` /
``SharedList`` and the "Shared dict and list" section of DESIGN.md).

They are what ``Manager().dict()`` / ``.list()`` return, and what ``gilfree.shared_memory``
keeps its name table in; this module sits below both.
"""

from collections.abc import MutableMapping, MutableSequence

from gilfree import _core

__all__ = ["SharedDict", "SharedList"]


class SharedDict(_core.SharedDict):
    """A dict in shared memory (see ``gilfree._core.SharedDict``)."""
    __slots__ = ()


class SharedList(_core.SharedList):
    """A list in shared memory (see ``gilfree._core.SharedList``)."""
    __slots__ = ()


MutableMapping.register(_core.SharedDict)
MutableSequence.register(_core.SharedList)
