"""Core CLI commands: tables and --json, and user mistakes end in one line and exit code 2."""

import json

import pytest
import torch
from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.space import Genotype

runner = CliRunner()


def test_space_sample_prints_a_valid_genotype():
    result = runner.invoke(app, ["space", "sample", "--profile", "small", "--seed", "3"])
    assert result.exit_code == 0
    genotype = Genotype.from_json(result.stdout)
    assert genotype.profile == "small" and genotype.in_chans == 1
    again = runner.invoke(app, ["space", "sample", "--profile", "small", "--seed", "3", "--compact"])
    assert again.stdout.strip() == genotype.to_compact()


def test_info_table_and_json():
    table = runner.invoke(app, ["info", "mobilenetv3-small"])
    assert table.exit_code == 0 and "2,542,856" in table.stdout and "k5_h576_c96_s1_se_hs" in table.stdout
    data = json.loads(runner.invoke(app, ["info", "mobilenetv3-large", "--json"]).stdout)
    assert data["params"] == 5483032 and len(data["blocks"]) == 15
    assert sum(b["params"] for b in data["blocks"]) < data["params"]


@pytest.mark.parametrize("args, message", [
    (["info", "stem16 / k4_c16_s1_re / head32"], "stage 1, block 1 'k4_c16_s1_re': kernel must be an odd number"),
    (["info", "no-such-genotype"], "is not a reference genotype"),
    (["space", "sample", "--profile", "huge"], "unknown search profile 'huge'"),
    (["train", "mobilenetv3-small", "--out", "{tmp}/run", "--epochs", "1"], "genotype expects 3x224px input"),
    (["train", "stem8 / k3_c8_s1_re / head16", "--out", "{tmp}/run", "--data-dir", "{tmp}/none"],
     "apt-get install dataset-fashion-mnist"),
    pytest.param(["train", "stem8 / k3_c8_s1_re / head16", "--out", "{tmp}/run", "--device", "cuda:0"],
                 "CUDA is not available", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
])
def test_user_errors_are_one_line(args, message, tmp_path):
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()
