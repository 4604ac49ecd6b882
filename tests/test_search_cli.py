"""``menas-zoo search``: a whole (tiny) search from the command line, its run folder, and user errors."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from menas_zoo.artifact import load_artifact
from menas_zoo.cli import app

SMOKE = ["--population", "2", "--generations", "1", "--epochs", "1", "--train-subset", "256", "--val-size", "256",
         "--max-macs", "4e5", "--device", "cpu", "--threads", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory, tiny_profile):
    path = tmp_path_factory.mktemp("profile") / "tiny.json"
    path.write_text(json.dumps(dataclasses.asdict(tiny_profile)))
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory, profile_file):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(app, ["search", "--out", str(out), "--profile", profile_file, *SMOKE, "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_search_writes_report_winners_and_summary(run):
    out, summary = run
    assert summary["trials"] == 4 and summary["finished"] and not summary["stopped_by_budget"]
    assert all(json.loads(line)["trained_genotype"] and json.loads(line)["macs"] <= 4e5
               for line in (out / "trials.jsonl").read_text().splitlines())  # the hard limit held for every trial
    assert summary["trials_per_minute"] > 0
    for name in ("report.md", "pareto.png", "trials.jsonl", "state.json", "config.json"):
        assert (out / name).is_file()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "Pareto front" in report and "mean MACs" in report
    winners = sorted((out / "winners").iterdir())
    assert winners
    artifact = load_artifact(winners[0])
    assert artifact.config["parent_genotype"] is not None and artifact.config["prune_summary"]
    assert artifact.masks is not None  # the ticket's masks relative to the trained child
    assert artifact.config["metrics"]["accuracy"]["split"] == "validation"


def test_resume_of_a_finished_search_runs_nothing(run):
    out, summary = run
    result = CliRunner().invoke(app, ["search", "--resume", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trials"] == summary["trials"]


@pytest.mark.parametrize("args, message", [
    (["--strategy", "bayes"], "unknown strategy"),
    (["--population", "1"], "--population must be at least 2"),
    (["--backend", "spark"], "unknown backend"),
    (["--profile", "missing.json"], "cannot read profile"),
    (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], "device"),
    (["--max-params", "10", "--val-size", "256", "--train-subset", "256"],
     "no genotype of profile 'small' fits params 10"),
    (["--max-params", "0"], "must be a positive number"),
    (["--max-macs", "-5e6"], "must be a positive number"),
    (["--prune-ratio", "1.5"], "--prune-ratio must be in (0, 1)"),
    (["--prune-ratio", "0"], "--prune-ratio must be in (0, 1)"),
    (["--eb-window", "0"], "--eb-window must be at least 2"),
    (["--ticket-allocation", "layer"], "--ticket-allocation must be global or uniform"),
    (["--strategy", "evolution", "--steer-keep-cost"], "--steer-keep-cost keeps a steered child's cost: add --steer"),
    (["--median-stop"], "--median-stop stops dense trials: add --no-tickets"),
    (["--strategy", "evolution", "--median-stop", "--median-stop-epoch", "4"],
     "--median-stop-epoch must be in [1, --epochs), got 4"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["search", "--out", str(out), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()  # nothing half-made on disk


def test_resume_errors(tmp_path, run, profile_file):
    out, _ = run
    runner = CliRunner()
    not_a_run = runner.invoke(app, ["search", "--resume", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "not a search run folder" in not_a_run.output
    changed = runner.invoke(app, ["search", "--resume", str(out), "--population", "4"])
    assert changed.exit_code == 2 and "--population" in changed.output
    both = runner.invoke(app, ["search", "--out", str(tmp_path / "x"), "--resume", str(out)])
    assert both.exit_code == 2
    again = runner.invoke(app, ["search", "--out", str(out), "--profile", profile_file, *SMOKE])
    assert again.exit_code == 2 and "--resume" in again.output
