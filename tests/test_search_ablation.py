"""The search ablation (benchmarks/search_ablation.py) runs end to end on a few hundred images: searches,
from-scratch retraining, the table, a resumed summary, and a budget too short for any trial."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--seeds", "0", "--train-subset", "128", "--val-size", "64", "--holdout", "128", "--jobs", "1",
         "--epochs", "2", "--mask-epochs", "1", "--retrain-epochs", "1", "--population", "3", "--train-seeds", "0"]


def ablation(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_ablation.py"), "--out", str(out),
                           *SMALL, *args], capture_output=True, text=True, timeout=600)


def test_a_small_ablation_scores_each_rows_winner_from_scratch_and_resumes(tmp_path):
    done = ablation(tmp_path, "--rows", "menas", "random", "--budget-minutes", "0.3", "--tau-trials", "3")
    assert done.returncode == 0, done.stderr
    rows = {r["row"]: r for r in json.loads((tmp_path / "ablation.json").read_text())["rows"]}
    retrained = [json.loads(line) for line in (tmp_path / "retrain.jsonl").read_text().splitlines()]
    for name in ("menas", "random"):
        trials = [json.loads(line) for line in (tmp_path / "runs" / f"{name}-seed0" / "trials.jsonl").open()]
        best = min(trials, key=lambda t: (-t["fitness"], t["index"]))
        assert rows[name]["trials"] == [len(trials)] and rows[name]["search_fitness"] == [best["fitness"]]
        # The winner's from-scratch column is the retraining of the trial with the best search fitness.
        assert rows[name]["winner_holdout"] == [r["holdout_acc"] for r in retrained
                                                if r["row"] == name and r["trial"] == best["index"]]
        assert rows[name]["tau_n"] == min(3, len(trials)) == sum(r["row"] == name for r in retrained)
    assert rows["menas"]["pruned"] > 0 and rows["random"]["pruned"] is None  # only MENAS cuts tickets

    again = ablation(tmp_path, "--rows", "menas", "random", "--budget-minutes", "0.3", "--tau-trials", "3",
                     "--no-retrain")
    assert again.returncode == 0, again.stderr
    assert f"retraining 0 architectures from scratch ({len(retrained)} already done)" in again.stdout
    assert "best fitness" not in again.stdout  # no search resumed: --no-retrain runs nothing new
    assert {r["row"]: r for r in json.loads((tmp_path / "ablation.json").read_text())["rows"]} == rows


def test_a_budget_that_finishes_no_trial_is_one_line(tmp_path):
    done = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.001")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: random seed 0 finished no trial within --budget-minutes 0.001: give the searches more time"]
    assert not (tmp_path / "ablation.json").exists() and not (tmp_path / "retrain.jsonl").exists()
