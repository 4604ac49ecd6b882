"""The ``menas-zoo`` command line. Each module registers its commands on the shared app.

No command module imports torch, onnx or onnxruntime at load time: each command imports what it needs
when it runs, so ``menas-zoo --help``, ``--version`` and ``list`` start in a fraction of the time of
``import torch``, and ``predict model.onnx`` runs on onnxruntime, numpy and Pillow alone.
"""

# Each import registers a module's commands; their order is the order of `menas-zoo --help`.
from menas_zoo.cli import core  # noqa: F401
from menas_zoo.cli import export  # noqa: F401
from menas_zoo.cli import zoo  # noqa: F401
from menas_zoo.cli import search  # noqa: F401
from menas_zoo.cli import predict  # noqa: F401
from menas_zoo.cli.app import app, main

__all__ = ["app", "main"]
