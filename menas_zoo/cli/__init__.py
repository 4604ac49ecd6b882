"""The ``menas-zoo`` command line. Each module registers its commands on the shared app."""

from menas_zoo.cli import core  # noqa: F401  (registers commands)
from menas_zoo.cli import export  # noqa: F401
from menas_zoo.cli import zoo  # noqa: F401
from menas_zoo.cli import search  # noqa: F401
from menas_zoo.cli.app import app, main

__all__ = ["app", "main"]
