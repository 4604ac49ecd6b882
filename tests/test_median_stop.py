"""``--median-stop``: a child under its parents' median at its rung stops there, scored as a
finished trial is; a trial that goes on trains exactly as it would without the rule."""

import dataclasses
import statistics

import pytest
import torch

from menas_zoo.errors import MenasError
from menas_zoo.search import SearchConfig, run_search
from menas_zoo.search.evolution import Candidate
from menas_zoo.search.report import render_markdown
from menas_zoo.search.state import RunState
from menas_zoo.search.trial import TrialJob, run_trial
from menas_zoo.space.genotype import BlockSpec, Genotype

pytestmark = pytest.mark.usefixtures("one_thread")

GENOTYPE = Genotype(stem=8, stages=((BlockSpec(3, 8, 2, hidden=24, se=8),), (BlockSpec(5, 16, 2, hidden=40),)), head=32)


def config(profile, **changes):
    settings = dict(strategy="evolution", profile=profile, epochs=3, device="cpu", batch_size=128,
                    median_stop=True)
    return SearchConfig(**{**settings, **changes})


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_trial_that_goes_on_trains_exactly_as_without_the_rule(tiny_splits, tiny_profile):
    plain = run_trial(TrialJob(Candidate(3, 1, GENOTYPE, "mutate", parent=0)), tiny_splits,
                      config(tiny_profile, median_stop=False))
    for stop_below in (None, 0.0):  # no threshold yet (generation 0), and one the trial beats
        ruled = run_trial(TrialJob(Candidate(3, 1, GENOTYPE, "mutate", parent=0), stop_below=stop_below),
                          tiny_splits, config(tiny_profile))
        assert ruled.accuracy == plain.accuracy and same_weights(ruled.state, plain.state)
        assert not ruled.median_stopped and 0.0 < ruled.rung_accuracy <= 1.0
    assert plain.rung_accuracy is None and not plain.median_stopped


def test_a_trial_under_the_median_stops_at_its_rung_scored_as_a_finished_one(tmp_path, tiny_splits, tiny_profile):
    cfg = config(tiny_profile)
    full = run_trial(TrialJob(Candidate(3, 1, GENOTYPE, "mutate", parent=0)), tiny_splits, cfg)
    stopped = run_trial(TrialJob(Candidate(3, 1, GENOTYPE, "mutate", parent=0), stop_below=full.rung_accuracy + 0.01),
                        tiny_splits, cfg, work_dir=tmp_path)
    assert stopped.median_stopped and stopped.rung_accuracy == full.rung_accuracy
    assert stopped.accuracy == stopped.rung_accuracy  # the fitness is the rung's score
    assert not same_weights(stopped.state, full.state)  # it trained cfg.median_stop_epoch epochs, not cfg.epochs
    # Resumed after it stopped (its checkpoint says so), it neither trains on nor forgets its rung.
    again = run_trial(TrialJob(Candidate(3, 1, GENOTYPE, "mutate", parent=0), stop_below=0.99), tiny_splits, cfg,
                      work_dir=tmp_path)
    assert again.median_stopped and again.accuracy == stopped.accuracy and same_weights(again.state, stopped.state)


def test_a_trial_interrupted_after_its_rung_resumes_with_it(tmp_path, tiny_splits, tiny_profile):
    from menas_zoo.train import TrainingInterrupted

    cfg = config(tiny_profile)
    job = TrialJob(Candidate(4, 1, GENOTYPE, "mutate", parent=0), stop_below=0.0)
    full = run_trial(job, tiny_splits, cfg)
    calls = []

    def budget_runs_out() -> bool:  # 2 steps an epoch: stop inside epoch 3, after the rung at epoch 2
        calls.append(1)
        return len(calls) >= 6

    with pytest.raises(TrainingInterrupted):
        run_trial(job, tiny_splits, cfg, should_stop=budget_runs_out, work_dir=tmp_path)
    resumed = run_trial(job, tiny_splits, cfg, work_dir=tmp_path)
    assert resumed.rung_accuracy == full.rung_accuracy and resumed.accuracy == full.accuracy
    assert not resumed.median_stopped and same_weights(resumed.state, full.state)


def test_a_search_stops_the_children_under_their_parents_median(tmp_path, tiny_splits, tiny_profile):
    cfg = config(tiny_profile, population=3, generations=2, val_size=256, train_subset=256, seed=5)
    state = run_search(cfg, tmp_path / "run", splits=tiny_splits, write_report=False).state
    trials = RunState.load(tmp_path / "run").trials  # what trials.jsonl kept
    assert all(t.rung_accuracy is not None for t in trials)
    rung = {t.index: t.rung_accuracy for t in trials}
    for t in trials:  # the population each generation was bred from: aging keeps the youngest
        parents = state.history[t.generation - 1]["population"] if t.generation else []
        median = statistics.median(rung[i] for i in parents) if parents else None
        assert t.median_stopped == (median is not None and t.rung_accuracy < median), t.index
        if t.median_stopped:
            assert t.fitness == t.accuracy == t.rung_accuracy
    assert any(t.median_stopped for t in trials) and any(not t.median_stopped for t in trials if t.generation)
    stopped = sum(t.median_stopped for t in trials)
    report = render_markdown(RunState.load(tmp_path / "run"), [], stopped_by_budget=False)
    saved = stopped * (cfg.epochs - cfg.median_stop_epoch) / (len(trials) * cfg.epochs)
    assert (f"- median stop: {stopped} of {len(trials)} trials scored under their parents' median after "
            f"2 of 3 epochs and stopped there, {saved:.0%} of the trials' training epochs saved") in report
    # Generation 0 has no median to beat: its trials are plain evolution's, score for score.
    plain = run_search(dataclasses.replace(cfg, median_stop=False, generations=0), tmp_path / "plain",
                       splits=tiny_splits, write_report=False)
    assert [t.fitness for t in plain.state.trials] == [t.fitness for t in trials if t.generation == 0]


@pytest.mark.parametrize("changes, message", [
    ({"strategy": "menas"}, "--median-stop stops dense trials: add --no-tickets"),
    ({"median_stop_epoch": 3}, "--median-stop-epoch must be in [1, --epochs), got 3"),
    ({"median_stop_epoch": 0}, "--median-stop-epoch must be in [1, --epochs), got 0"),
])
def test_bad_settings_are_clear_errors(tiny_profile, changes, message):
    with pytest.raises(MenasError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config(tiny_profile, **changes)
