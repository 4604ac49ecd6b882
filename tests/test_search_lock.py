"""One search per run folder: a second one is one clear line; a killed holder never blocks a resume."""

import signal
import subprocess
import sys

from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.search import SearchConfig
from menas_zoo.search.state import RunState

HOLD = """
import sys
from pathlib import Path
from menas_zoo.search.state import RunState
state = RunState.load(Path(sys.argv[1]))
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_second_search_in_a_running_folder_is_refused(tmp_path, tiny_profile):
    out = tmp_path / "run"
    config = SearchConfig(strategy="menas", profile=tiny_profile, population=3, generations=1, epochs=1,
                          val_size=256, train_subset=256, device="cpu", seed=0)
    RunState.create(out, config).lock.release()  # a fresh run folder that no one holds
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = CliRunner().invoke(app, ["search", "--resume", str(out)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "is in use by another search that is still running" in lines[0]
        assert "Traceback" not in result.output
        result = CliRunner().invoke(app, ["search", "--out", str(out), "--population", "3"])
        assert result.exit_code == 2 and "already holds a search" in result.stderr  # never runs beside it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    state = RunState.load(out)  # the kill released the lock: the run resumes
    assert state.lock is not None and state.lock.is_locked
