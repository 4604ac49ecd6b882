"""Core CLI commands: tables and --json, and user mistakes end in one line and exit code 2."""

import json

import pytest
import torch
from typer.testing import CliRunner

from menas_zoo import list_models
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


def test_tables_right_align_numbers_and_left_align_words():
    from menas_zoo.cli.app import console, print_table

    with console.capture() as out:
        print_table(None, ["model", "mt-a"], [["source", "bundled"], ["params", "97,714"]])
        print_table(None, ["name", "params", "p50"], [["a", "97.71K", "0.224 ms"], ["bb", "1.53M", "-"]])
    lines = [line for line in out.get().splitlines() if line.startswith("│")]
    assert "│ bundled " in lines[0] and "│ 97,714 " in lines[1]  # a key/value table's values: left
    assert "│  1.53M │" in lines[3] and "│        - │" in lines[3]  # numbers (and "-" for none): right


def test_info_table_and_json():
    table = runner.invoke(app, ["info", "mobilenetv3-small"])
    assert table.exit_code == 0 and "2,542,856" in table.stdout and "k5_h576_c96_s1_se_hs" in table.stdout
    data = json.loads(runner.invoke(app, ["info", "mobilenetv3-large", "--json"]).stdout)
    assert data["params"] == 5483032 and len(data["blocks"]) == 15
    assert sum(b["params"] for b in data["blocks"]) < data["params"]


@pytest.mark.parametrize("name", ["mt-a", "mt-test"])
def test_info_takes_zoo_names_as_load_does(name, monkeypatch, tmp_path):
    """info resolves a zoo name through the same resolver as load/export/bench: the pinned revision."""
    from menas_zoo.hub.registry import get_entry

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached: the bundled copy, offline
    result = runner.invoke(app, ["info", name, "--offline", "--json"])
    assert result.exit_code == 0, result.output
    data, entry = json.loads(result.stdout), get_entry(name)
    assert data["params"] == entry.metrics["params"] and data["macs"] == entry.metrics["macs"]
    assert data["model"] == {"ref": name, "kind": "hub", "revision": entry.revision,
                             "weights_sha256": entry.files["model.safetensors"]}
    table = runner.invoke(app, ["info", name, "--offline"])
    assert table.exit_code == 0 and f"{name} @ {entry.revision[:12]}" in table.stdout
    assert f"{entry.metrics['params']:,}" in table.stdout


def test_info_takes_an_artifact_folder_and_says_a_genotype_is_untrained(tiny_artifact):
    from menas_zoo.artifact import file_sha256

    data = json.loads(runner.invoke(app, ["info", str(tiny_artifact), "--json"]).stdout)
    assert data["model"]["kind"] == "artifact"
    assert data["model"]["weights_sha256"] == file_sha256(tiny_artifact / "model.safetensors")
    same = json.loads(runner.invoke(app, ["info", json.dumps(data["genotype"]), "--json"]).stdout)
    assert same["model"] is None and (same["params"], same["blocks"]) == (data["params"], data["blocks"])


def test_info_reaches_the_hub_at_endpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = runner.invoke(app, ["info", "hf-hub:menas/absent", "--endpoint", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "cannot reach the Hub at http://127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


ZOO = ", ".join(list_models(pretrained=True))  # the listed zoo models, whichever are registered


@pytest.mark.parametrize("args, message", [
    (["info", "stem16 / k4_c16_s1_re / head32"], "stage 1, block 1 'k4_c16_s1_re': kernel must be an odd number"),
    (["info", "no-such-genotype"], f"unknown model 'no-such-genotype': zoo models: {ZOO}; reference genotypes: "
                                   "mobilenetv3-large, mobilenetv3-small"),
    (["info", "mt-tst"], "unknown model 'mt-tst': did you mean mt-test"),
    (["info", "mobilenetv3-smal"], "did you mean mobilenetv3-small"),
    (["info", "mt-a", "--offline", "--num-classes", "3"], "mt-a is a trained model: its weights fix its input"),
    (["info", "hf-hub:menas/absent", "--offline"], "HF_HUB_OFFLINE"),
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
