"""Package attributes imported on first use, so importing a package costs only what is used.

``menas-zoo --help`` and ``menas-zoo list`` must not pay for torch: a package whose ``__init__`` imported
every submodule would load it for any ``from menas_zoo.export.defaults import ...``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(namespace: dict, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is ``namespace``: each of ``names``
    is imported from its module on first use, then kept in the namespace."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
