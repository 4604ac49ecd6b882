"""The ``menas-zoo`` command line. Each module registers its commands on the shared app.

``predict`` is the command meant for machines without torch: started from the command line as
``menas-zoo predict ...``, only its own module is loaded, so classifying with an ``.onnx`` file imports
onnxruntime, numpy and Pillow but no torch, and starts in a fraction of a second. Every other use
(``menas-zoo export ...``, ``from menas_zoo.cli import app``) loads all commands.
"""

import os
import sys

from menas_zoo.cli.app import app, main


def _predict_only() -> bool:
    started_as_cli = os.path.basename(sys.argv[0]) == "menas-zoo" or sys.argv[0].endswith(
        os.path.join("menas_zoo", "__main__.py"))
    return started_as_cli and sys.argv[1:2] == ["predict"]


if not _predict_only():
    from menas_zoo.cli import core  # noqa: F401
    from menas_zoo.cli import export  # noqa: F401
    from menas_zoo.cli import zoo  # noqa: F401
    from menas_zoo.cli import search  # noqa: F401
from menas_zoo.cli import predict  # noqa: F401,E402  (predict and demo; imports no torch)

__all__ = ["app", "main"]
