"""Model cards: rendered from the template with every number taken from config.json, and checked."""

from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from menas_zoo.artifact import load_artifact
from menas_zoo.cli import app
from menas_zoo.errors import MenasError
from menas_zoo.hub.card import check_card, render_card, template_path


def test_packaged_template_is_the_repo_template():
    root_template = Path(__file__).resolve().parents[1] / "MODEL_CARD.md"
    assert template_path().read_text() == root_template.read_text()


def test_card_metadata_and_numbers_come_from_the_config(tiny_artifact):
    config = load_artifact(tiny_artifact).config
    card = render_card(config, model_name="tiny")
    data = card.data
    assert data.library_name == "menas-zoo" and data.license == "apache-2.0"
    assert "menas-zoo" in data.tags and data.datasets == ["zalando-datasets/fashion_mnist"]
    result = data.eval_results[0]
    assert (result.metric_type, result.dataset_split) == ("accuracy", config["metrics"]["accuracy"]["split"])
    assert result.metric_value == round(config["metrics"]["accuracy"]["value"], 4)
    assert f"{config['metrics']['params']:,}" in card.text and f"{config['metrics']['macs']:,}" in card.text
    check_card(card, config)


def test_a_card_that_disagrees_with_its_config_fails_the_check(tiny_artifact):
    config = load_artifact(tiny_artifact).config
    text = str(render_card(config, model_name="tiny"))
    params = f"{config['metrics']['params']:,}"
    with pytest.raises(MenasError, match="row 'parameters'"):
        check_card(text.replace(params, "1,000,000"), config)
    with pytest.raises(MenasError, match="library_name"):
        check_card(text.replace("library_name: menas-zoo", "library_name: timm"), config)


def test_card_command_writes_a_checked_readme(tiny_artifact):
    result = CliRunner().invoke(app, ["card", str(tiny_artifact)])
    assert result.exit_code == 0, result.output
    card = ModelCard((tiny_artifact / "README.md").read_text())
    assert card.data.model_name == "tiny"
    check_card(card, load_artifact(tiny_artifact).config)


def test_card_command_on_a_folder_that_is_not_an_artifact(tmp_path):
    result = CliRunner().invoke(app, ["card", str(tmp_path)])
    assert result.exit_code == 2 and "is not a menas-zoo artifact" in result.stderr
