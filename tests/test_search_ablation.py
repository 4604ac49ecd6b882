"""The search ablation (benchmarks/search_ablation.py) runs end to end on a few hundred images: searches,
from-scratch retraining, the table, a resumed summary, and a budget too short for any trial."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("search_ablation", ROOT / "benchmarks" / "search_ablation.py")
search_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(search_ablation)
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
        bred = [t["macs"] for t in trials if t["generation"] > 0]
        assert rows[name]["child_macs"] == (sum(bred) / len(bred) if bred else None)
    assert rows["menas"]["pruned"] > 0 and rows["random"]["pruned"] is None  # only MENAS cuts tickets

    again = ablation(tmp_path, "--rows", "menas", "random", "--budget-minutes", "0.3", "--tau-trials", "3",
                     "--no-retrain")
    assert again.returncode == 0, again.stderr
    assert f"retraining 0 architectures from scratch ({len(retrained)} already done, 0 the same" in again.stdout
    assert "best fitness" not in again.stdout  # no search resumed: --no-retrain runs nothing new
    assert {r["row"]: r for r in json.loads((tmp_path / "ablation.json").read_text())["rows"]} == rows


def test_a_budget_that_finishes_no_trial_is_one_line(tmp_path):
    done = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.001")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: random seed 0 finished no trial within --budget-minutes 0.001: give the searches more time"]
    assert not (tmp_path / "ablation.json").exists() and not (tmp_path / "retrain.jsonl").exists()


def test_rows_that_share_a_trial_share_its_retraining_and_a_copy_is_what_a_retraining_gives(tmp_path):
    # Evolution and random search with one seed draw the same generation 0: its retrainings run once.
    done = ablation(tmp_path, "--rows", "evolution", "random", "--budget-minutes", "0.2", "--tau-trials", "3")
    assert done.returncode == 0, done.stderr
    retrained = [json.loads(line) for line in (tmp_path / "retrain.jsonl").read_text().splitlines()]
    copies = [r for r in retrained if "copied_from" in r]
    assert copies and "copied from" in done.stdout

    args = argparse.Namespace(out=tmp_path)
    records = {(r["row"], r["seed"], r["trial"]): search_ablation.planned_trial(r["row"], r["seed"], r["trial"], args)
               for r in retrained}
    trained = [r for r in retrained if "copied_from" not in r]
    assert len({(json.dumps(records[r["row"], r["seed"], r["trial"]]["genotype"]), r["train_seed"])
                for r in trained}) == len(trained)  # nothing trained twice
    for copy in copies:
        source = next(r for r in trained if [r["row"], r["seed"], r["trial"]] == copy["copied_from"])
        mine = records[copy["row"], copy["seed"], copy["trial"]]
        assert mine["genotype"] == records[tuple(copy["copied_from"])]["genotype"]
        assert copy["holdout_acc"] == source["holdout_acc"] and copy["fitness"] == mine["fitness"]

    # A copy is what training gives: random search alone, in a fresh folder, retrains its own trials.
    alone = ablation(tmp_path / "alone", "--rows", "random", "--budget-minutes", "0.2", "--tau-trials", "3")
    assert alone.returncode == 0, alone.stderr
    own = {(r["trial"], r["train_seed"]): r["holdout_acc"]
           for r in map(json.loads, (tmp_path / "alone" / "retrain.jsonl").read_text().splitlines())}
    compared = [(own[c["trial"], c["train_seed"]], c["holdout_acc"]) for c in copies if c["row"] == "random"
                and (c["trial"], c["train_seed"]) in own]
    assert compared and all(a == b for a, b in compared)


def test_a_cut_summarizes_each_search_as_if_it_had_stopped_then_and_leaves_the_full_table(tmp_path):
    done = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.3", "--tau-trials", "2")
    assert done.returncode == 0, done.stderr
    full = (tmp_path / "ablation.json").read_text(), (tmp_path / "table.txt").read_text()
    trials = [json.loads(line) for line in (tmp_path / "runs" / "random-seed0" / "trials.jsonl").open()]
    assert len(trials) >= 3
    cut = trials[1]["elapsed"] / 60 + 1e-6  # the search as if it had stopped after its second trial
    cut_run = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.3", "--tau-trials", "2",
                       "--cut-minutes", f"{cut:.8f}")
    assert cut_run.returncode == 0, cut_run.stderr
    row = json.loads(next(tmp_path.glob("ablation-cut*min.json")).read_text())["rows"][0]
    best = min(trials[:2], key=lambda t: (-t["fitness"], t["index"]))
    retrained = [json.loads(line) for line in (tmp_path / "retrain.jsonl").read_text().splitlines()]
    assert row["trials"] == [2] and row["search_fitness"] == [best["fitness"]]
    assert row["winner_holdout"] == [r["holdout_acc"] for r in retrained if r["trial"] == best["index"]]
    assert row["tau_n"] == 2  # only the two trials inside the cut count, though later ones were retrained
    assert "cut at" in next(tmp_path.glob("table-cut*min.txt")).read_text()
    assert ((tmp_path / "ablation.json").read_text(), (tmp_path / "table.txt").read_text()) == full

    # A second training seed retrains the winners again in the same folder; the table planned with the
    # first settings is still that table: a summary counts its own plan, not whatever the folder holds.
    more = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.3", "--tau-trials", "2",
                    "--train-seeds", "0", "1")
    assert more.returncode == 0 and len(json.loads((tmp_path / "ablation.json").read_text())["rows"][0]
                                        ["winner_holdout"]) == 2
    again = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.3", "--tau-trials", "2", "--no-retrain")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "ablation.json").read_text())["rows"] == json.loads(full[0])["rows"]

    for bad in ("0", "1"):  # not in (0, --budget-minutes]
        wrong = ablation(tmp_path, "--rows", "random", "--budget-minutes", "0.3", "--cut-minutes", bad)
        assert wrong.returncode == 2 and "--cut-minutes must be in (0, --budget-minutes]" in wrong.stderr
    tickets = ablation(tmp_path, "--rows", "ticket-after", "--budget-minutes", "0.3", "--cut-minutes", "0.1")
    assert tickets.returncode == 2 and "--cut-minutes cannot cut" in tickets.stderr
