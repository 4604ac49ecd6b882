"""The run folder: an interrupted and resumed search equals an uninterrupted one; damage is a clear error."""

import json
import shutil

import pytest

import menas_zoo.search.backends as backends
from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError
from menas_zoo.search import SearchConfig, run_search
from menas_zoo.search.state import RunState

pytestmark = pytest.mark.usefixtures("one_thread")


class Killed(Exception):
    """Stands in for SIGKILL: raised mid-search, nothing after it runs."""


def config(profile, **changes):
    # channel_multiple=1: the tiny space has 8-48 hidden channels a block, where rounding kept counts to
    # multiples of 8 would undo most 20% prunes.
    settings = dict(strategy="menas", profile=profile, population=3, generations=1, epochs=2, eb_window=2,
                    val_size=256, train_subset=256, device="cpu", seed=11, channel_multiple=1)
    return SearchConfig(**{**settings, **changes})


def summary(result):
    trials = [(t.index, t.generation, t.parent, t.genotype.to_compact(), t.fitness, t.macs) for t in result.state.trials]
    history = [{k: v for k, v in h.items() if k != "elapsed"} for h in result.state.history]  # wall clock differs
    return sorted(trials), result.state.population, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_profile, tiny_splits):
    import torch

    torch.set_num_threads(1)
    return run_search(config(tiny_profile), tmp_path_factory.mktemp("run") / "full", splits=tiny_splits,
                      write_report=False)


def test_interrupted_between_trials_resumes_to_the_same_population(tmp_path, tiny_profile, tiny_splits, uninterrupted):
    out = tmp_path / "run"

    def kill_after_two(record, state):
        if len(state.trials) == 2:
            raise Killed

    with pytest.raises(Killed):
        run_search(config(tiny_profile), out, splits=tiny_splits, on_trial=kill_after_two, write_report=False)
    finished = [t.index for t in RunState.load(out).trials]
    assert finished == [0, 1]
    ran = []
    resumed = run_search(None, out, resume=True, splits=tiny_splits, write_report=False,
                         on_trial=lambda record, state: ran.append(record.index))
    assert ran == list(range(2, 6))  # nothing finished is re-run, nothing is skipped
    assert summary(resumed) == summary(uninterrupted)
    assert resumed.state.finished and len(uninterrupted.state.trials) == 6


def test_killed_in_the_middle_of_a_trial_reruns_only_that_trial(tmp_path, tiny_profile, tiny_splits, uninterrupted,
                                                                  monkeypatch):
    out = tmp_path / "run"
    real_trial, started = backends.run_trial, []

    def dies_in_trial_four(job, *args, **kwargs):
        started.append(job.candidate.index)
        if job.candidate.index == 4:
            raise Killed  # the trial was running: its result never reached the run folder
        return real_trial(job, *args, **kwargs)

    monkeypatch.setattr(backends, "run_trial", dies_in_trial_four)
    with pytest.raises(Killed):
        run_search(config(tiny_profile), out, splits=tiny_splits, write_report=False)
    assert [t.index for t in RunState.load(out).trials] == [0, 1, 2, 3]
    monkeypatch.setattr(backends, "run_trial", real_trial)
    ran = []
    resumed = run_search(None, out, resume=True, splits=tiny_splits, write_report=False,
                         on_trial=lambda record, state: ran.append(record.index))
    assert ran == [4, 5]
    assert summary(resumed) == summary(uninterrupted)


def test_budget_stops_cleanly_and_resume_continues(tmp_path, tiny_profile, tiny_splits):
    import time

    out = tmp_path / "run"
    # Each finished trial takes at least 1 s of wall clock (the callback sleeps), so a 1.5 s budget runs out
    # after the first or second trial on any machine, fast or loaded.
    result = run_search(config(tiny_profile, budget_minutes=0.025, generations=1, population=2), out,
                        splits=tiny_splits, on_trial=lambda record, state: time.sleep(1.0))
    assert result.stopped_by_budget and 1 <= len(result.state.trials) < 4
    assert (out / "report.md").exists() and (out / "pareto.png").exists()
    assert "stopped by the time budget" in (out / "report.md").read_text()
    resumed = run_search(None, out, resume=True, splits=tiny_splits, overrides={"budget_minutes": 60})
    assert resumed.state.finished and len(resumed.state.trials) == 4
    assert [t.index for t in resumed.state.trials] == list(range(4))


def test_run_folder_layout(uninterrupted):
    out = uninterrupted.state.out
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 6
    first = json.loads(lines[0])
    for key in ("genotype", "parent", "masks", "fitness", "macs", "params", "epochs", "seconds"):
        assert key in first
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and len(state["population"]) == 3 and len(state["history"]) == 2
    # only the population's ticket weights are kept once a generation is closed
    kept = sorted(p.name for p in (out / "tickets").iterdir())
    assert kept == [f"trial-{i:06d}.safetensors" for i in sorted(state["population"])]
    assert not list(out.rglob("*.tmp"))


def test_tickets_slim_the_children(uninterrupted):
    for t in uninterrupted.state.trials:
        assert t.masks, "every menas trial is replaced by its ticket"
        assert sum(k for k, _ in t.masks.values()) < sum(n for _, n in t.masks.values())
        assert t.macs < genotype_cost(t.trained_genotype).macs


def test_new_search_refuses_an_existing_run(uninterrupted, tiny_profile, tiny_splits):
    with pytest.raises(MenasError, match="already holds a search"):
        run_search(config(tiny_profile), uninterrupted.state.out, splits=tiny_splits)


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / "state.json").write_text("{not json"), "corrupt"),
    (lambda out: (out / "config.json").write_text(json.dumps({"format": "something-else", "version": 1})),
     "not written by a menas-zoo search"),
    (lambda out: (out / "trials.jsonl").write_text((out / "trials.jsonl").read_text()[:-40] + "\n"), "line 6 is corrupt"),
    (lambda out: (out / "state.json").write_text(json.dumps({"format": "menas-zoo-search", "version": 99})), "version 99"),
    (lambda out: next((out / "tickets").iterdir()).unlink(), "missing"),
])
def test_damaged_run_folder_is_a_clear_error(tmp_path, tiny_splits, uninterrupted, damage, message):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted.state.out, out)
    state = json.loads((out / "state.json").read_text())
    state["finished"] = False  # as if killed before the end, so the tickets are still needed
    (out / "state.json").write_text(json.dumps(state))
    damage(out)
    with pytest.raises(MenasError, match=message):
        run_search(None, out, resume=True, splits=tiny_splits)


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(MenasError, match="not a search run folder"):
        run_search(None, tmp_path, resume=True)
