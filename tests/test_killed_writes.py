"""Processes killed mid-write: no report that lies, and the next run removes what the dead one left.

The kills are real (SIGKILL of a child process); the child picks its moment by wrapping ``os.replace``,
so the test hits the one instant that matters instead of hoping a timer does.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from export_fixtures import fashion_test_split, tiny_export_artifact, tiny_model  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.io import remove_stale_temporaries, temporary_prefix, write_text_atomic

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
