"""Files on disk: atomic writes, and JSON reads that distrust their input.

Every writer in menas-zoo (checkpoints, search state, artifacts, reports) goes through here, so a
process killed at any moment never leaves a half-written file behind. Every JSON file that may come
from elsewhere (a config.json from a repo) is read through :func:`read_json`: capped in size, and a
hostile nesting depth is one line, not a RecursionError.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from menas_zoo.errors import MenasError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the final file normal permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


#: The most JSON menas-zoo reads from a file it did not write (a config.json from a repo is a few KB).
MAX_JSON_BYTES = 1 << 20


def read_json(path: str | Path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file that may come from anywhere: size-capped, depth-safe, every failure one line."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise MenasError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise MenasError(f"{path} is over {max_bytes // 1024} KiB; a {what} is never that large, refusing to parse it")
    try:
        return json.loads(data)
    except RecursionError:
        raise MenasError(f"{path} is nested too deeply to be a {what}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MenasError(f"{path} is not valid JSON: {exc}") from None
