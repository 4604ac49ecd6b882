"""Artifacts: save and load are exact inverses, and every broken folder fails with one clear line."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from menas_zoo.artifact import (SCHEMA_VERSION, build_config, is_artifact, load_artifact, read_config,
                                save_artifact, write_artifact)
from menas_zoo.cli import app
from menas_zoo.errors import MenasError
from menas_zoo.nets import build_model
from menas_zoo.slim import channel_masks, materialize
from menas_zoo.space import resolve_genotype

from conftest import TINY_GENOTYPE


def test_round_trip_gives_identical_outputs_and_config(tiny_artifact, real_batch):
    first = load_artifact(tiny_artifact)
    again = save_artifact(tiny_artifact.parent / "copy", first.model, metrics=first.config["metrics"],
                          input_spec=first.config["input_spec"], labels=first.config["labels"],
                          provenance=first.config["provenance"])
    second = load_artifact(again)
    assert torch.equal(first.model(real_batch), second.model(real_batch))
    assert second.config == first.config
    assert first.config["schema_version"] == SCHEMA_VERSION
    assert first.config["metrics"]["params"] == sum(p.numel() for p in first.model.parameters())


def test_ticket_masks_round_trip_and_match_the_parent(tmp_path, real_batch):
    parent = build_model(resolve_genotype(TINY_GENOTYPE)).eval()
    masks = channel_masks(parent, 0.25, min_channels=4)
    ticket = materialize(parent, masks).eval()
    save_artifact(tmp_path / "t", ticket, parent_genotype=parent.genotype, masks=masks)
    loaded = load_artifact(tmp_path / "t")
    assert loaded.parent_genotype == parent.genotype
    assert {k: v.tolist() for k, v in loaded.masks.items()} == {k: v.tolist() for k, v in masks.items()}
    assert loaded.config["prune_summary"] == {k: [int(v.sum()), v.numel()] for k, v in masks.items()}
    assert torch.equal(loaded.model(real_batch), ticket(real_batch))


def test_masks_that_do_not_give_the_genotype_are_refused(tmp_path):
    parent = build_model(resolve_genotype(TINY_GENOTYPE))
    masks = channel_masks(parent, 0.25, min_channels=4)
    with pytest.raises(MenasError, match="do not give this model's genotype"):
        save_artifact(tmp_path / "t", parent, parent_genotype=parent.genotype, masks=masks)


def test_saving_into_a_run_folder_keeps_its_other_files_and_leaves_no_temporaries(tmp_path, tiny_artifact):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"keep me")
    model = load_artifact(tiny_artifact).model
    parent_masks = channel_masks(model, 0.25, min_channels=4)
    save_artifact(run, materialize(model, parent_masks), parent_genotype=model.genotype, masks=parent_masks)
    save_artifact(run, model)  # no masks now: the stale masks.safetensors must go
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny"]
    assert load_artifact(run).masks is None


def test_a_network_s_description_without_weights_is_an_incomplete_artifact(tmp_path, tiny_artifact):
    """What a search keeps of an individual whose weights it dropped: config.json and masks, never weights
    that config.json does not describe."""
    model = load_artifact(tiny_artifact).model
    masks = channel_masks(model, 0.25, min_channels=4)
    ticket = materialize(model, masks)
    config = build_config(ticket.genotype, parent_genotype=model.genotype, masks=masks)
    folder = write_artifact(tmp_path / "described", config, None, masks)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "masks.safetensors"]
    assert is_artifact(folder) and read_config(folder) == json.loads(json.dumps(config))
    with pytest.raises(MenasError, match="has no model.safetensors; the artifact is incomplete"):
        load_artifact(folder)
    write_artifact(folder, config, ticket.state_dict(), masks)  # weights again: a whole artifact
    loaded = load_artifact(folder).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in ticket.state_dict().items())
    write_artifact(folder, config, None, masks)  # and dropped: the stale weights go with the save
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "masks.safetensors"]


def test_is_artifact(tiny_artifact, tmp_path):
    assert is_artifact(tiny_artifact)
    assert not is_artifact(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    assert not is_artifact(tmp_path)


# -- broken folders: one line, exit code 2, through the real CLI ---------------------------------

def cli_error(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_not_an_artifact_folder(tmp_path):
    assert "is not a menas-zoo artifact" in cli_error("load", str(tmp_path))


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path):
    # A pickle that would create a file if anything unpickled it.
    sentinel = tmp_path / "unpickled"
    payload = f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()
    (tmp_path / "pytorch_model.bin").write_bytes(payload)
    assert "only pickled weights (pytorch_model.bin)" in cli_error("load", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION,
                                                      "genotype": resolve_genotype(TINY_GENOTYPE).to_dict()}))
    assert "only pickled weights" in cli_error("load", str(tmp_path))
    assert not sentinel.exists()


def test_missing_weights(tiny_artifact):
    (tiny_artifact / "model.safetensors").unlink()
    assert "has no model.safetensors" in cli_error("load", str(tiny_artifact))


def test_corrupt_weights(tiny_artifact):
    path = tiny_artifact / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable safetensors file" in cli_error("load", str(tiny_artifact))


def test_unknown_schema_version(tiny_artifact):
    config = json.loads((tiny_artifact / "config.json").read_text())
    config["schema_version"] = SCHEMA_VERSION + 1
    (tiny_artifact / "config.json").write_text(json.dumps(config))
    assert f"schema version {SCHEMA_VERSION + 1}" in cli_error("load", str(tiny_artifact))


def test_genotype_that_does_not_match_the_weights(tiny_artifact):
    config = json.loads((tiny_artifact / "config.json").read_text())
    config["genotype"]["stages"][1][0] = "k3_h32_c16_s2_hs"  # 24 hidden channels in the weights
    (tiny_artifact / "config.json").write_text(json.dumps(config))
    assert "wrong shape: stages.1.0.expand.conv.weight (24, 8, 1, 1) != (32, 8, 1, 1)" in cli_error(
        "load", str(tiny_artifact))


def test_weights_with_a_missing_tensor(tiny_artifact):
    path = tiny_artifact / "model.safetensors"
    state = load_file(path)
    del state["classifier.bias"]
    save_file(state, path)
    assert "missing: classifier.bias" in cli_error("load", str(tiny_artifact))


def test_a_train_run_folder_is_an_artifact(tmp_path):
    # One epoch on 64 images: enough to prove the run folder loads and pushes as an artifact.
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", TINY_GENOTYPE, "--out", str(run), "--epochs", "1",
                                      "--train-subset", "64", "--val-size", "64", "--batch-size", "32",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    artifact = load_artifact(run)
    assert (run / "checkpoint.safetensors").is_file() and (run / "metrics.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert artifact.config["metrics"]["val_accuracy"]["value"] == metrics["val_acc"]
    assert artifact.config["labels"][0] == "T-shirt/top" and artifact.config["input_spec"]["mean"] == [0.286]
    assert artifact.config["provenance"]["seed"] == 0
