"""Start the two local Hub servers the zoo tests use: olah (reads) and hub_write_server (writes).

Both share one mirrors folder: a push lands there as a git commit and olah serves it back, so every
round trip crosses two independent implementations of the Hub protocol.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hub_write_server import make_server

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_local_test_token"


def olah_cli() -> str | None:
    """MENAS_OLAH_CLI (set by `make test`), else the repo's .venv-olah, else olah-cli on PATH."""
    for candidate in (os.environ.get("MENAS_OLAH_CLI"), REPO_ROOT / ".venv-olah/bin/olah-cli",
                      shutil.which("olah-cli")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"olah exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"olah did not answer at {url} within {timeout:.0f} s")


@dataclass
class HubServers:
    read_url: str  # olah
    write_url: str  # hub_write_server
    token: str
    mirrors: Path


@contextmanager
def run_hub_servers(workdir: Path, olah: str):
    mirrors, olah_cache, logs = workdir / "mirrors", workdir / "olah-cache", workdir / "olah-logs"
    for folder in (mirrors / "models", olah_cache, logs):
        folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'repos-path = "{olah_cache}"\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'mirrors-path = ["{mirrors}"]\n'
        "[accessibility]\noffline = true\n"  # without it olah forwards every request to huggingface.co
    )
    olah_log = open(workdir / "olah.out", "wb")
    process = subprocess.Popen([olah, "-c", str(config), "--log-path", str(logs)], cwd=workdir,
                               stdout=olah_log, stderr=subprocess.STDOUT)
    writer = make_server(mirrors, TOKEN)
    thread = threading.Thread(target=writer.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process)
        yield HubServers(read_url=f"http://127.0.0.1:{port}", write_url=f"http://127.0.0.1:{writer.server_address[1]}",
                         token=TOKEN, mirrors=mirrors)
    finally:
        writer.shutdown()
        writer.server_close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        olah_log.close()
