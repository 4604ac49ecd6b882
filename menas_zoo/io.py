"""Files on disk: atomic writes, and JSON reads that distrust their input.

Every writer in menas-zoo (checkpoints, search state, artifacts, reports) goes through here, so a
process killed at any moment never leaves a half-written file behind, and the temporaries it was
writing carry its PID, so the next writer of the same file removes them. Every JSON file that may come
from elsewhere (a config.json from a repo) is read through :func:`read_json`: capped in size, and a
hostile nesting depth is one line, not a RecursionError.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from menas_zoo.errors import MenasError, first_line

# Read once: reading the umask means setting it, and while it is 0 another thread's new files would be 0666.
_UMASK = os.umask(0)
os.umask(_UMASK)


def umask_mode(folder: bool = False) -> int:
    """The mode a new file (or folder) gets under this process's umask.

    The temporaries handed out here are private (mkstemp: 0600, mkdtemp: 0700), and some writers recreate
    them (safetensors); what takes a final name is given this mode first, as a plain ``open`` would."""
    return (0o777 if folder else 0o666) & ~_UMASK


# -- temporaries: named after their owner's process, so a later run can tell a killed one's leftovers --

#: ``.NAME.PID.RANDOM.tmp``: the temporaries this module hands out; older versions omitted the PID.
_TEMPORARY = re.compile(r"\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp")
#: A temporary without a PID is taken as abandoned once it is this old (seconds).
_LEGACY_AGE = 3600


def temporary_prefix(name: str) -> str:
    """``mkstemp``/``mkdtemp`` prefix for a temporary of ``name`` owned by this process."""
    return f".{name}.{os.getpid()}."


def remove_stale_temporaries(folder: str | Path, name: str, legacy_prefix: str | None = None) -> list[Path]:
    """Delete temporaries of ``name`` in ``folder`` left by processes that are gone (killed mid-write).

    Those of a live process (another writer at work) are left alone. ``legacy_prefix`` also matches
    temporaries of an older naming (``.export-XXXX``), removed once they are an hour old.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match and match["name"] == name:
            stale = not _process_alive(int(match["pid"])) if match["pid"] else _older_than(entry, _LEGACY_AGE)
        elif legacy_prefix and entry.name.startswith(legacy_prefix):
            stale = _older_than(entry, _LEGACY_AGE)
        else:
            continue
        if stale:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or an absurd number): not ours to judge
    return True


def _older_than(entry: os.DirEntry, seconds: float) -> bool:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > seconds
    except OSError:
        return False


# -- atomic writes ---------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync and rename it over ``path``.

    Temporaries of ``path`` that a killed process left beside it are removed first. A write that fails
    (a full disk, a file-size limit, a read-only folder) is one line naming ``path``, and leaves nothing."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with write_errors(path):
            yield tmp_path
            os.chmod(tmp_path, umask_mode())  # once written: a writer may have recreated the file
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def write_errors(path: str | Path) -> Iterator[None]:
    """Turn a failed write of ``path`` (OSError, or safetensors' own error for the same causes) into one line."""
    try:
        yield
    except OSError as exc:
        raise MenasError(f"cannot write {path}: {exc.strerror or exc}") from None
    except SafetensorError as exc:
        detail = first_line(exc)
        raise MenasError(f"cannot write {path}: {detail}") from None


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
