"""A Hub that never answers, lies about commit ids or fails with HTTP 500: bounded, contained, one line.

Every server here is a real socket on 127.0.0.1 (see hostile_servers.py). Timeouts are set to 1 s through
huggingface_hub's own variables so the tests stay fast; the default (10 s) is measured by hand.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile_servers import json_answer, scripted_hub, silent_endpoint
from menas_zoo.errors import MenasError
from menas_zoo.hub.http import check_commit_id
from menas_zoo.hub.push import push_artifact
from menas_zoo.hub.resolve import resolve

MENAS_ZOO = Path(sys.executable).with_name("menas-zoo")
GOOD_SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def short_timeouts(monkeypatch):
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def run_cli(*args, **env) -> tuple[subprocess.CompletedProcess, float]:
    full_env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "1",
                "HF_HUB_DOWNLOAD_TIMEOUT": "1", **env}
    start = time.perf_counter()
    result = subprocess.run([str(MENAS_ZOO), *args], capture_output=True, text=True, env=full_env, timeout=60)
    return result, time.perf_counter() - start


def test_a_silent_endpoint_fails_within_the_timeout(tmp_path, short_timeouts):
    with silent_endpoint() as url:
        start = time.perf_counter()
        with pytest.raises(MenasError, match=f"the Hub at {url} did not answer within 1 s"):
            resolve("hf-hub:org/name", offline=False, endpoint=url, cache=tmp_path)
        assert time.perf_counter() - start < 5


def test_cli_load_and_push_against_a_silent_endpoint_are_one_line(tmp_path, tiny_artifact):
    with silent_endpoint() as url:
        result, seconds = run_cli("load", "hf-hub:org/name", HF_ENDPOINT=url, HF_HOME=str(tmp_path / "home"))
        assert f"the Hub at {url} did not answer" in one_line(result) and seconds < 15
        result, seconds = run_cli("push", str(tiny_artifact), "--repo-id", "org/name", "--token", "t",
                                  HF_ENDPOINT=url, HF_HOME=str(tmp_path / "home"))
        assert f"the Hub at {url} did not answer" in one_line(result) and seconds < 15


def test_a_bad_timeout_variable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(MenasError, match="HF_HUB_DOWNLOAD_TIMEOUT must be a number"):
        resolve("hf-hub:org/name", offline=False, endpoint="http://127.0.0.1:9", cache=tmp_path)


@pytest.mark.parametrize("commit", ["../../../../victim", "main", GOOD_SHA.upper(), GOOD_SHA + "0", None])
def test_check_commit_id_refuses_anything_but_40_hex(commit):
    with pytest.raises(MenasError, match="invalid commit id"):
        check_commit_id(commit, "http://x")


def test_a_path_as_commit_id_is_refused_before_anything_is_written(tmp_path, short_timeouts):
    def answer(method, path):
        return json_answer({"id": "org/name", "sha": "../../../../victim", "siblings": []})

    cache = tmp_path / "deep" / "er" / "cache"
    with scripted_hub(answer) as url:
        with pytest.raises(MenasError, match=r"invalid commit id '\.\./\.\./\.\./\.\./victim'"):
            resolve("hf-hub:org/name", offline=False, endpoint=url, cache=cache)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


def test_a_path_in_the_commit_header_is_refused(tmp_path, short_timeouts):
    """repo_info is honest, the file answers carry a hostile X-Repo-Commit: refused by the session hook."""
    def answer(method, path):
        if path.startswith("/api/models/org/name/revision/"):
            return json_answer({"id": "org/name", "sha": GOOD_SHA, "siblings": []})
        if path.startswith("/api/models/org/name/tree/"):
            return json_answer([{"type": "file", "path": "config.json", "size": 2, "oid": "a" * 40}])
        return 200, {"X-Repo-Commit": "../../../../victim", "ETag": '"abc"', "Content-Type": "text/plain"}, b"{}"

    cache = tmp_path / "cache"
    with scripted_hub(answer) as url:
        with pytest.raises(MenasError, match="invalid commit id"):
            resolve("hf-hub:org/name", offline=False, endpoint=url, cache=cache)
    assert not list(tmp_path.rglob("victim*"))
    assert all(p.resolve().is_relative_to(cache.resolve()) for p in tmp_path.rglob("*"))


def test_http_500_is_reported_as_such(tmp_path, short_timeouts, tiny_artifact):
    with scripted_hub(lambda method, path: json_answer({"error": "boom"}, status=500)) as url:
        with pytest.raises(MenasError, match=f"the Hub at {url} answered HTTP 500 \\(a server error\\)"):
            resolve("hf-hub:org/name", offline=False, endpoint=url, cache=tmp_path)
        with pytest.raises(MenasError, match="HTTP 500"):
            push_artifact(tiny_artifact, "org/name", token="t", endpoint=url)


def test_push_to_a_server_without_xet_falls_back_to_lfs_and_leaves_no_copy(hub_servers, tiny_artifact, tmp_path,
                                                                           monkeypatch):
    """huggingface_hub tries Xet first; our write server has none (404 on xet-write-token)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    commit = push_artifact(tiny_artifact, "menas/no-xet", token=hub_servers.token, endpoint=hub_servers.write_url)
    assert len(commit) == 40 and huggingface_hub.constants.HF_HUB_DISABLE_XET is False
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing staged in the temp folder, nothing left there
    # Read back through olah by branch; the branch -> commit mapping we cached answers offline afterwards.
    cache = tmp_path / "cache"
    online = resolve("hf-hub:menas/no-xet", offline=False, endpoint=hub_servers.read_url, cache=cache)
    offline = resolve("hf-hub:menas/no-xet", offline=True, cache=cache)
    assert online.path == offline.path and online.path.name == commit and offline.source == "cache"
