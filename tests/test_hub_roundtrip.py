"""Push -> load through two independent Hub servers: our write endpoint stores, olah serves back."""

import pytest
import torch
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from menas_zoo.artifact import load_artifact
from menas_zoo.cli import app
from menas_zoo.hub.resolve import load


def push(*args):
    return CliRunner().invoke(app, ["push", *args])


def test_push_then_load_gives_identical_outputs(hub_servers, tiny_artifact, tmp_path, real_batch):
    result = push(str(tiny_artifact), "--repo-id", "menas/roundtrip", "--endpoint", hub_servers.write_url,
                  "--token", hub_servers.token, "--commit-message", "round trip")
    assert result.exit_code == 0, result.output
    commit = result.stdout.strip()
    assert len(commit) == 40 and hub_servers.token not in result.output

    artifact, resolved = load(f"hf-hub:menas/roundtrip@{commit}", endpoint=hub_servers.read_url, offline=False,
                              cache=tmp_path / "cache")
    assert resolved.source == "hub"
    original = load_artifact(tiny_artifact)
    diff = (artifact.model(real_batch) - original.model(real_batch)).abs().max().item()
    print(f"push -> load round trip: max abs output difference {diff}")
    assert diff == 0.0
    assert artifact.config == original.config

    card = ModelCard((resolved.path / "README.md").read_text())
    assert card.data.library_name == "menas-zoo"
    assert card.data.eval_results[0].metric_value == round(original.config["metrics"]["accuracy"]["value"], 4)

    # The server may go away now: the pinned revision loads from the cache, offline.
    again, resolved = load(f"hf-hub:menas/roundtrip@{commit}", offline=True, cache=tmp_path / "cache")
    assert resolved.source == "cache"
    assert torch.equal(again.model(real_batch), artifact.model(real_batch))


def test_second_push_to_an_existing_repo_and_a_branch(hub_servers, tiny_artifact, tmp_path):
    common = ["--repo-id", "menas/twice", "--endpoint", hub_servers.write_url, "--token", hub_servers.token]
    first = push(str(tiny_artifact), *common)
    second = push(str(tiny_artifact), *common, "--revision", "experiment")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert first.stdout.strip() != second.stdout.strip()
    _, resolved = load("hf-hub:menas/twice@experiment", endpoint=hub_servers.read_url, offline=False,
                       cache=tmp_path / "cache")
    assert resolved.path.name == second.stdout.strip()  # the snapshot folder is named by the commit


def one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_push_without_a_token(hub_servers, tiny_artifact, no_hf_credentials):
    error = one_line_error(push(str(tiny_artifact), "--repo-id", "menas/x", "--endpoint", hub_servers.write_url))
    assert "no Hugging Face token" in error


def test_push_with_a_wrong_token_never_shows_it(hub_servers, tiny_artifact):
    result = push(str(tiny_artifact), "--repo-id", "menas/x", "--endpoint", hub_servers.write_url,
                  "--token", "hf_wrong_secret")
    assert "HTTP 401" in one_line_error(result)
    assert "hf_wrong_secret" not in result.output


def test_push_of_a_folder_that_is_not_an_artifact(hub_servers, tmp_path):
    error = one_line_error(push(str(tmp_path), "--repo-id", "menas/x", "--endpoint", hub_servers.write_url,
                                "--token", hub_servers.token))
    assert "is not a menas-zoo artifact" in error


@pytest.mark.parametrize("repo_id", ["no-org", "a/b/c"])
def test_push_to_an_invalid_repo_id(tiny_artifact, repo_id):
    assert "invalid repo id" in one_line_error(push(str(tiny_artifact), "--repo-id", repo_id, "--token", "t"))


def test_push_to_an_unreachable_hub(tiny_artifact):
    error = one_line_error(push(str(tiny_artifact), "--repo-id", "menas/x", "--endpoint", "http://127.0.0.1:9",
                                "--token", "t"))
    assert "cannot reach the Hub at http://127.0.0.1:9 while pushing to menas/x" in error
