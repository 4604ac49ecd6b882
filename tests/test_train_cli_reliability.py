"""``menas-zoo train`` as a user runs it: the same seed gives the same bytes, a failed write is one line."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from menas_zoo.cli import app

GENOTYPE = "stem8 / k3_h16_c8_s2_se_re / head32"
QUICK = ["--epochs", "1", "--train-subset", "512", "--val-size", "256", "--batch-size", "128", "--json",
         "--device", "cpu"]


def test_the_same_seed_twice_gives_byte_identical_weights(tmp_path, one_thread):
    runs = []
    for name in ("a", "b"):
        result = CliRunner().invoke(app, ["train", GENOTYPE, "--out", str(tmp_path / name), "--seed", "3", *QUICK])
        assert result.exit_code == 0, result.output
        runs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert runs[0] == runs[1]
    result = CliRunner().invoke(app, ["train", GENOTYPE, "--out", str(tmp_path / "c"), "--seed", "4", *QUICK])
    assert result.exit_code == 0 and (tmp_path / "c" / "model.safetensors").read_bytes() != runs[0]


# Train with the kernel refusing files over 20 KB, as a full disk refuses any write: the checkpoint fails.
LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write(), not a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from menas_zoo.cli import app
app(sys.argv[1:])
"""


@pytest.mark.parametrize("command", ["train", "export"])
def test_a_write_that_fails_mid_way_is_one_line_and_leaves_nothing(tmp_path, command):
    out = tmp_path / "out"
    if command == "train":
        args = ["train", GENOTYPE, "--out", str(out), *QUICK]
    else:  # a network whose ONNX file is over the limit
        args = ["export", "stem16 / k3_h64_c32_s2_se_re / head128", "--random-init", "--out", str(out),
                "--exporter", "torchscript", "--runs", "10", "--parity-images", "16"]
    result = subprocess.run([sys.executable, "-c", LIMITED, *args], capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ") and "File too large" in lines[0], lines
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []
    assert not (out / "checkpoint.safetensors").exists() and not (out / "model.onnx").exists()
