"""The registry tells the truth: every published number is recomputed from the live model.

As torchvision does for its weights: params, MACs and file sha256s come from the files and the network
they build, and the registry entry, config.json and model card must all agree with them.
"""

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from menas_zoo import create_model, list_models
from menas_zoo.artifact import file_sha256, load_artifact
from menas_zoo.cli import app
from menas_zoo.hub.card import check_card
from menas_zoo.hub.registry import get_entry
from menas_zoo.hub.resolve import resolve

MODELS = list_models(pretrained=True, include_fixtures=True)  # the zoo's trained models, fixtures too


def test_registry_is_not_empty_and_patterns_filter():
    assert "mt-test" in MODELS
    assert list_models("mt-*", pretrained=True, include_fixtures=True) == [m for m in MODELS if m.startswith("mt-")]
    assert list_models("no-such-*") == []


def test_fixtures_load_by_name_but_stay_out_of_the_listing():
    assert get_entry("mt-test").fixture and "mt-test" not in list_models()
    listed = CliRunner().invoke(app, ["list", "--json"])
    assert listed.exit_code == 0 and "mt-test" not in {m["name"] for m in json.loads(listed.stdout)}


@pytest.mark.parametrize("name", MODELS)
def test_registered_numbers_match_the_live_model(name, tmp_path):
    entry = get_entry(name)
    resolved = resolve(name, offline=True, cache=tmp_path)  # the bundled copy, or the HF cache
    assert re.fullmatch(r"[0-9a-f]{40}", entry.revision), entry.revision  # a commit id, not a branch
    for file_name, sha256 in entry.files.items():
        assert file_sha256(resolved.path / file_name) == sha256, file_name
    artifact = load_artifact(resolved.path)
    model, genotype = artifact.model, artifact.genotype
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, genotype.in_chans, genotype.resolution, genotype.resolution))
    macs = counter.get_total_flops() // 2
    for metrics in (entry.metrics, artifact.config["metrics"]):
        assert (metrics["params"], metrics["macs"]) == (params, macs)
    assert entry.metrics == artifact.config["metrics"]
    check_card((resolved.path / "README.md").read_text(), artifact.config)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_registered_accuracy_is_reproduced(name, fashion_test):
    from menas_zoo.train import evaluate

    recorded = get_entry(name).metrics["accuracy"]
    assert (recorded["dataset"], recorded["split"]) == ("fashion-mnist", "test")
    model = create_model(name, offline=True)
    measured = evaluate(model, fashion_test)["acc"]
    assert measured == pytest.approx(recorded["value"], abs=1e-3)


def test_list_command_shows_registered_numbers():
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(listed) == set(list_models(pretrained=True))  # trained models only: no architectures
    for name, row in listed.items():
        assert row["metrics"] == get_entry(name).metrics


def test_unknown_name_suggests_the_closest():
    result = CliRunner().invoke(app, ["load", "mt-tset"])
    assert result.exit_code == 2
    match = re.fullmatch(r"error: unknown model 'mt-tset': did you mean (.+)\? \(or pass hf-hub:ORG/NAME, an "
                         r"artifact folder, or where a command takes one, a genotype\)", result.stderr.strip())
    assert match, result.stderr
    suggested = match[1].split(", ")  # the nearest first; the rest depend on what the zoo holds
    assert suggested[0] == "mt-test" and len(suggested) <= 3, suggested
    assert set(suggested) <= set(list_models(include_fixtures=True)), suggested


def test_bundled_files_are_exactly_the_pinned_files():
    for name in MODELS:
        entry = get_entry(name)
        if entry.bundled:
            folder = resources.files("menas_zoo.hub").joinpath("bundled", name)
            assert sorted(p.name for p in folder.iterdir()) == sorted({**entry.files, **entry.assets})


@pytest.mark.parametrize("name", [m for m in MODELS if get_entry(m).assets])
def test_deployment_assets_are_the_model(name, fashion_test):
    """The ONNX files a zoo repo ships are pinned, and they compute the registered network: fp32 at parity
    with PyTorch on real test images, int8 (shipped only within 0.3 points) agreeing on the top-1 class."""
    import numpy as np

    from menas_zoo.export.parity import real_images
    from menas_zoo.export.runtime import ort_session

    entry = get_entry(name)
    folder = Path(str(resources.files("menas_zoo.hub").joinpath("bundled", name)))
    for file_name, sha256 in entry.assets.items():
        assert file_sha256(folder / file_name) == sha256, file_name
    artifact = load_artifact(folder)
    spec = artifact.config["input_spec"]
    x = real_images(fashion_test, 256, mean=spec["mean"], std=spec["std"])
    with torch.inference_mode():
        expected = artifact.model(x).numpy()
    fp32 = ort_session(folder / "model.onnx")
    logits = fp32.run(None, {fp32.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(logits, expected, atol=1e-3)
    if "model.int8.onnx" in entry.assets:
        int8 = ort_session(folder / "model.int8.onnx")
        top1 = int8.run(None, {int8.get_inputs()[0].name: x.numpy()})[0].argmax(1)
        assert (top1 == expected.argmax(1)).mean() >= 0.97
