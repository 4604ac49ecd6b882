"""Processes killed mid-write: no report that lies, and the next run removes what the dead one left.

The kills are real (SIGKILL of a child process); the child picks its moment by wrapping ``os.replace``,
so the test hits the one instant that matters instead of hoping a timer does.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from menas_zoo.artifact import load_artifact
from menas_zoo.cli import app
from menas_zoo.io import remove_stale_temporaries, temporary_prefix, write_text_atomic
from menas_zoo.search import run_search
from menas_zoo.search.state import RunState

FAST = ["--exporter", "torchscript", "--runs", "10", "--parity-images", "64"]

# Export, and SIGKILL ourselves right after the new model.onnx has been moved into the output folder.
KILLED_EXPORT = """
import os, signal, sys
from menas_zoo.cli import app
real_replace = os.replace
def replace_then_die(src, dst, **kwargs):
    real_replace(src, dst, **kwargs)
    if str(dst).endswith("model.onnx") and ".tmp" not in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_die
app(sys.argv[1:])
"""


def export(artifact, out):
    result = CliRunner().invoke(app, ["export", str(artifact), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output


def test_an_export_killed_while_replacing_leaves_no_lying_report(tiny_export_artifact, tmp_path):
    out = tmp_path / "out"
    export(tiny_export_artifact, out)
    old_model = (out / "model.onnx").read_bytes()
    # A different network in the same folder: the old report must not end up beside the new model.
    other = tmp_path / "other"
    result = CliRunner().invoke(app, ["train", "stem8 / k3_h16_c8_s1_re / head32", "--out", str(other),
                                      "--epochs", "1", "--train-subset", "256", "--val-size", "256", "--json"])
    assert result.exit_code == 0, result.output
    child = subprocess.run([sys.executable, "-c", KILLED_EXPORT, "export", str(other), "--out", str(out), *FAST],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert (out / "model.onnx").read_bytes() != old_model  # the kill came after the new model was in place
    assert not (out / "export_report.json").exists()  # ... and the old report was gone before it
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".export.")]
    assert leftovers, "the killed export's staging folder should still be there for this test to mean anything"

    export(other, out)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    report = json.loads((out / "export_report.json").read_text())
    assert report["onnx"]["size_bytes"] == (out / "model.onnx").stat().st_size


def test_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".checkpoint.safetensors.{dead.pid}.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    stale_dir = tmp_path / f".run.{dead.pid}.x1y2.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"half a model")
    mine = Path(tempfile.mkstemp(prefix=temporary_prefix("checkpoint.safetensors"), suffix=".tmp", dir=tmp_path)[1])
    other_name = tmp_path / f".state.json.{dead.pid}.abcd.tmp"
    other_name.write_text("{}")

    write_text_atomic(tmp_path / "checkpoint.safetensors", "new")  # every atomic write sweeps its own name
    assert not stale.exists() and mine.exists() and other_name.exists()
    assert remove_stale_temporaries(tmp_path, "run") == [stale_dir] and not stale_dir.exists()


def test_a_training_run_killed_mid_save_is_cleaned_by_the_next_save(tmp_path, one_thread):
    """SIGKILL while save_artifact stages the final weights; the re-run removes the staging folder."""
    out = tmp_path / "run"
    args = ["train", "stem8 / k3_h16_c8_s1_re / head32", "--out", str(out), "--epochs", "1",
            "--train-subset", "256", "--val-size", "256", "--json"]
    killed_save = """
import os, signal, sys
from menas_zoo.cli import app
real_replace = os.replace
def replace_then_die(src, dst, **kwargs):
    if str(dst).endswith("model.safetensors") and ".tmp" not in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, **kwargs)
os.replace = replace_then_die
app(sys.argv[1:])
"""
    child = subprocess.run([sys.executable, "-c", killed_save, *args], capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [p for p in out.iterdir() if p.name.endswith(".tmp")], "the kill should have left a staging folder"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert os.path.isfile(out / "model.safetensors") and os.path.isfile(out / "config.json")


# A two-trial search that SIGKILLs itself when trial 1's folder is renamed into tickets/: just before, or just
# after (the folder is whole, but the trial's line is not in trials.jsonl yet).
KILLED_TICKET = """
import os, signal, sys
from pathlib import Path
import torch
from menas_zoo.data import load_splits
from menas_zoo.search import SearchConfig, run_search
out, profile, when = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ticket = str(out / "tickets" / "trial-000001")
real_replace = os.replace
def replace_and_die(src, dst, **kwargs):
    if str(dst) == ticket and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, **kwargs)
    if str(dst) == ticket:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_and_die
torch.set_num_threads(1)
cfg = SearchConfig(profile=profile, population=2, generations=0, epochs=2, eb_window=2, val_size=256, train_subset=256,
                   device="cpu", seed=11, channel_multiple=1)
run_search(cfg, out, splits=load_splits("fashion-mnist", val_size=256, seed=0, train_subset=256), write_report=False)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_search_killed_while_writing_an_individual_re_runs_only_that_trial(tmp_path, tiny_profile, tiny_splits,
                                                                               one_thread, when):
    out, profile = tmp_path / "run", tmp_path / "profile.json"
    profile.write_text(json.dumps(dataclasses.asdict(tiny_profile)))
    child = subprocess.run([sys.executable, "-c", KILLED_TICKET, str(out), str(profile), when], capture_output=True,
                           text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr
    folder = out / "tickets" / "trial-000001"
    if when == "before":
        assert not folder.exists() and [p for p in (out / "tickets").iterdir() if p.name.endswith(".tmp")]
    else:
        killed_weights = load_file(folder / "model.safetensors")  # whole, yet the trial is not finished
    assert [t.index for t in RunState.load(out).trials] == [0]  # not finished ...
    assert not list(out.rglob("*.tmp"))  # ... and what the kill left half-staged is gone once the run is read
    ran = []
    resumed = run_search(None, out, resume=True, splits=tiny_splits, write_report=False,
                         on_trial=lambda record, state: ran.append(record.index))
    assert ran == [1] and [t.index for t in resumed.state.trials] == [0, 1]
    weights = load_artifact(folder).model.state_dict()
    if when == "after":  # a trial is a pure function of its inputs: the re-run wrote what the killed one had
        assert weights.keys() == killed_weights.keys()
        assert all(torch.equal(weights[k], killed_weights[k]) for k in weights)
    assert not list(out.rglob("*.tmp"))
