"""The run folder: an interrupted and resumed search equals an uninterrupted one; damage is a clear error."""

import dataclasses
import json
import shutil

import pytest
import torch
from cli_helpers import assert_one_line_error
from cli_helpers import run as cli
from safetensors.torch import load_file, save_file

import menas_zoo.search.backends as backends
from menas_zoo.artifact import load_artifact, read_config
from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError
from menas_zoo.search import SearchConfig, run_search
from menas_zoo.search.report import render_markdown, save_winners
from menas_zoo.search.state import RunState, load_single_file_ticket, ticket_masks_path
from menas_zoo.search.trial import replay_ticket_masks
from menas_zoo.slim import load_masks, mask_summary

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
    trials = [(t.index, t.generation, t.parent, t.genotype.to_compact(), t.fitness, t.macs)
              for t in result.state.trials]
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
    # every trial keeps its folder and masks; only the population's weights are kept once a generation is closed
    folders = sorted((out / "tickets").iterdir())
    assert [p.name for p in folders] == [f"trial-{i:06d}" for i in range(6)]
    assert all(sorted(p.name for p in folder.iterdir()) in (["config.json", "masks.safetensors"],
                                                            ["config.json", "masks.safetensors", "model.safetensors"])
               for folder in folders)
    with_weights = [p.name for p in folders if (p / "model.safetensors").exists()]
    assert with_weights == [f"trial-{i:06d}" for i in sorted(state["population"])]
    assert not (out / "masks").exists()  # masks are written once, in the tickets' folders
    assert not list(out.rglob("*.tmp"))


def test_an_individual_s_folder_is_a_zoo_model(uninterrupted, real_batch):
    state = uninterrupted.state
    record = state.members()[0]
    folder = state.out / "tickets" / f"trial-{record.index:06d}"
    artifact = load_artifact(folder)
    assert artifact.genotype == record.genotype and artifact.parent_genotype == record.trained_genotype
    assert artifact.config["prune_summary"] == record.masks
    assert artifact.config["metrics"]["accuracy"] == {"value": record.accuracy, "dataset": "fashion-mnist",
                                                      "split": "validation"}
    assert artifact.config["metrics"]["fitness"] == record.fitness
    assert artifact.config["labels"] and artifact.config["input_spec"]["mean"]  # predict can feed it as it is
    assert artifact.config["provenance"]["trial"] == record.index
    # the search's own reader is the zoo's
    assert torch.equal(state.load_ticket(record.index).model(real_batch), artifact.model(real_batch))
    # ... and the command line takes the folder as it takes any model
    result, stdout, _ = cli("info", folder, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(stdout)
    assert info["model"]["kind"] == "artifact" and info["genotype"] == record.genotype.to_dict()
    result, stdout, _ = cli("load", folder, "--json")
    assert result.exit_code == 0, result.output
    loaded = json.loads(stdout)
    assert (loaded["source"], loaded["path"]) == ("local", str(folder))
    assert loaded["genotype"] == record.genotype.to_compact() and loaded["metrics"]["fitness"] == record.fitness


def test_a_trial_s_ticket_masks_replay_from_its_record(uninterrupted, tiny_splits):
    """A run folder that lost its tickets (a summary copied elsewhere) gets a trial's masks back from its
    trials.jsonl line: on the same machine and thread count, the very masks the trial cut."""
    state = uninterrupted.state
    record = next(t for t in state.trials if t.masks and t.masks != {k: [n, n] for k, (_, n) in t.masks.items()})
    saved = load_masks(ticket_masks_path(state.out, record.index), record.trained_genotype)
    replayed = replay_ticket_masks(record, state.config, tiny_splits)
    assert replayed.keys() == saved.keys() and all(torch.equal(replayed[k], saved[k]) for k in saved)
    damaged = dataclasses.replace(record, masks={k: [kept - 1, n] for k, (kept, n) in record.masks.items()})
    with pytest.raises(MenasError, match=f"trial {record.index}'s recorded widths do not give"):
        replay_ticket_masks(damaged, state.config, tiny_splits)
    inherited = dataclasses.replace(state.config, weight_sharing=True)
    child = next(t for t in state.trials if t.parent is not None and t.masks)
    with pytest.raises(MenasError, match="started from its parent's weights"):
        replay_ticket_masks(child, inherited, tiny_splits)


def test_a_dropped_individual_keeps_its_description_and_masks(uninterrupted):
    state = uninterrupted.state
    record = next(t for t in state.trials if t.index not in state.population)
    folder = state.out / "tickets" / f"trial-{record.index:06d}"
    assert read_config(folder)["parent_genotype"] == record.trained_genotype.to_dict()
    masks = load_masks(ticket_masks_path(state.out, record.index), record.trained_genotype)
    assert mask_summary(masks) == record.masks
    result, _, stderr = cli("load", folder)
    assert_one_line_error(result, stderr, "has no model.safetensors")
    # ... and says why, from the individual's provenance (not its folder's name), and how to get weights
    assert stderr == (f"error: {folder} has no model.safetensors; search {state.out.name} dropped the weights of "
                      f"trial {record.index}, which did not survive (a search keeps only its survivors'); retrain it "
                      f"from its genotype with 'menas-zoo train {folder} --out DIR'\n")
    renamed = shutil.copytree(folder, state.out.parent / "elsewhere")
    with pytest.raises(MenasError, match=f"search {state.out.name} dropped the weights of trial {record.index},"):
        load_artifact(renamed)
    config = json.loads((renamed / "config.json").read_text())
    del config["provenance"]["trial"]  # not a search's individual: just an incomplete artifact
    (renamed / "config.json").write_text(json.dumps(config))
    with pytest.raises(MenasError, match="has no model.safetensors; the artifact is incomplete$"):
        load_artifact(renamed)
    # the advice works: the folder trains as its genotype
    result, _, _ = cli("train", folder, "--out", state.out.parent / "retrained", "--epochs", 1, "--train-subset", 64,
                       "--val-size", 32, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert load_artifact(state.out.parent / "retrained").genotype == record.genotype


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
    (lambda out: (out / "trials.jsonl").write_text((out / "trials.jsonl").read_text()[:-40] + "\n"),
     "line 6 is corrupt"),
    (lambda out: (out / "state.json").write_text(json.dumps({"format": "menas-zoo-search", "version": 99})),
     "version 99"),
    (lambda out: next((out / "tickets").glob("*/model.safetensors")).unlink(), "missing"),
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


# -- run folders written before individuals were artifacts: one safetensors file per ticket ------------------

def as_single_file_tickets(out):
    """Rewrite ``out``'s tickets as they were written before they were artifact folders: one safetensors file
    per ticket with weights (``model.*`` and ``mask.*`` tensors, both genotypes in its metadata), and every
    ticket's masks again in masks/."""
    for folder in sorted((out / "tickets").iterdir()):
        config = json.loads((folder / "config.json").read_text())
        masks = load_file(folder / "masks.safetensors") if (folder / "masks.safetensors").exists() else {}
        if masks:
            (out / "masks").mkdir(exist_ok=True)
            save_file(masks, out / "masks" / f"{folder.name}.safetensors")
        if (folder / "model.safetensors").exists():
            tensors = {f"model.{k}": v for k, v in load_file(folder / "model.safetensors").items()}
            tensors.update({f"mask.{k}": v for k, v in masks.items()})
            meta = {"format": "menas-zoo-search", "genotype": json.dumps(config["genotype"]),
                    "trained_genotype": json.dumps(config["parent_genotype"])}
            save_file(tensors, out / "tickets" / f"{folder.name}.safetensors", metadata=meta)
        shutil.rmtree(folder)


def test_a_finished_run_with_single_file_tickets_still_reports(tmp_path, tiny_splits, uninterrupted, real_batch):
    old = tmp_path / "old"
    shutil.copytree(uninterrupted.state.out, old)
    as_single_file_tickets(old)
    state = RunState.load(old)
    new = uninterrupted.state
    for index in state.population:
        ticket, folder = state.load_ticket(index), new.load_ticket(index)
        assert ticket.genotype == folder.genotype and ticket.parent_genotype == folder.parent_genotype
        assert ticket.masks.keys() == folder.masks.keys() and all(torch.equal(ticket.masks[k], folder.masks[k])
                                                                  for k in folder.masks)
        assert torch.equal(ticket.model(real_batch), folder.model(real_batch))
        assert ticket_masks_path(old, index) == old / "masks" / f"trial-{index:06d}.safetensors"
    winners = save_winners(state, tiny_splits)
    assert winners and [t.index for t, _ in winners] == [t.index for t, _ in save_winners(new, tiny_splits)]
    for t, path in winners:
        assert load_artifact(path).genotype == t.genotype


def test_a_single_file_ticket_that_is_not_one_is_a_clear_error(tmp_path):
    path = tmp_path / "trial-000000.safetensors"
    path.write_bytes(b"half a ticket")
    with pytest.raises(MenasError, match="trial-000000.safetensors is unreadable .*; the run folder is damaged"):
        load_single_file_ticket(path)
    save_file({"model.w": torch.zeros(1)}, path, metadata={"format": "something-else"})
    with pytest.raises(MenasError, match="is not a menas-zoo search ticket"):
        load_single_file_ticket(path)


@pytest.fixture(scope="module")
def uninterrupted_sharing(tmp_path_factory, tiny_profile, tiny_splits):
    torch.set_num_threads(1)
    return run_search(config(tiny_profile, weight_sharing=True), tmp_path_factory.mktemp("run") / "sharing",
                      splits=tiny_splits, write_report=False)


def test_a_run_with_single_file_tickets_resumes_to_the_same_population(tmp_path, tiny_profile, tiny_splits,
                                                                       uninterrupted_sharing):
    """Killed in generation 0, resumed by this version: its children inherit from the old files and the
    new folders alike, and the run ends as one run in the new layout would have."""
    out = tmp_path / "run"

    def kill_after_two(record, state):
        if len(state.trials) == 2:
            raise Killed

    with pytest.raises(Killed):
        run_search(config(tiny_profile, weight_sharing=True), out, splits=tiny_splits, on_trial=kill_after_two,
                   write_report=False)
    as_single_file_tickets(out)
    assert sorted(p.name for p in (out / "tickets").iterdir()) == ["trial-000000.safetensors",
                                                                   "trial-000001.safetensors"]
    resumed = run_search(None, out, resume=True, splits=tiny_splits, write_report=False)
    children = [t for t in resumed.state.trials if t.generation == 1]
    assert {t.parent for t in children} & {0, 1} and all(t.inherit for t in children)  # ... from the old files too
    assert summary(resumed) == summary(uninterrupted_sharing)
    population = set(resumed.state.population)
    assert {t.index for t in resumed.state.trials if resumed.state.has_weights(t.index)} == population


def test_a_diverged_trial_neither_breeds_nor_gives_its_weights(tmp_path, tiny_profile, tiny_splits, monkeypatch):
    """A trial whose training diverges (NaN weights) scores -1 and keeps no weights, and a parent whose saved
    weights hold NaN (a run folder written before trials were checked) gives none: the weight-sharing search
    goes on, its children start from a fresh initialization and their records say why."""
    import menas_zoo.search.trial as trial_module

    real_train = trial_module.train

    def diverging(model, splits, cfg, **kwargs):
        result = real_train(model, splits, cfg, **kwargs)
        if kwargs.get("desc") == "trial 1":  # the end of trial 1's training
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        return result

    def kill_after_generation_0(record, state):
        if len(state.trials) == 3:
            raise Killed

    out = tmp_path / "run"
    monkeypatch.setattr(trial_module, "train", diverging)
    with pytest.raises(Killed):
        run_search(config(tiny_profile, weight_sharing=True), out, splits=tiny_splits, on_trial=kill_after_generation_0,
                   write_report=False)
    monkeypatch.setattr(trial_module, "train", real_train)
    diverged = RunState.load(out).by_index[1]
    assert diverged.diverged and diverged.fitness == -1.0 and diverged.accuracy == 0.0
    folder = out / "tickets" / "trial-000001"
    assert not (folder / "model.safetensors").exists()
    with pytest.raises(MenasError, match="trial 1 of search run diverged .its weights were not finite., so none were"):
        load_artifact(folder)
    for index in (0, 2):  # the others' weights as a diverged training before this check would have left them
        path = out / "tickets" / f"trial-{index:06d}" / "model.safetensors"
        save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                   for k, v in load_file(path).items()}, path)
    result = run_search(None, out, resume=True, splits=tiny_splits, write_report=False)
    state = result.state
    assert state.finished and 1 not in state.population
    children = [t for t in state.trials if t.generation == 1]
    assert children and all(t.parent in (0, 2) and not t.diverged for t in children)
    for child in children:
        assert child.inherit == {"diverged_parents": [child.parent]}, child.inherit  # a fresh initialization


def test_a_steered_search_keeps_dense_trials_and_records_their_tickets(tmp_path, tiny_profile, tiny_splits):
    """--steer: every trial is scored and kept dense (no masks, nothing pruned), and records the ticket its
    |gamma| would give, block by block over the trained widths; the record survives trials.jsonl."""
    cfg = config(tiny_profile, strategy="evolution", tickets=False, steer=True, bn_shrink=0.5)
    result = run_search(cfg, tmp_path / "run", splits=tiny_splits, write_report=False)
    trials = RunState.load(tmp_path / "run").trials
    assert [t.ticket_widths for t in trials] == [t.ticket_widths for t in result.state.trials]
    for t in trials:
        assert t.genotype == t.trained_genotype and not t.masks and t.pruned == 0.0
        expanding = {f"stages.{s}.{b}": block.hidden for s, b, _, block in t.genotype.blocks()
                     if block.hidden is not None}
        assert {name: total for name, (_, total) in t.ticket_widths.items()} == expanding
        kept = sum(k for k, _ in t.ticket_widths.values()) / sum(expanding.values())
        assert 0.6 <= kept <= 0.95  # about the 20% prune asked, within what min_channels allows
    best = max(trials, key=lambda t: (t.fitness, -t.index))
    report = render_markdown(result.state, [], stopped_by_budget=False)
    kept = sum(k for k, _ in best.ticket_widths.values()) / sum(t for _, t in best.ticket_widths.values())
    name, (k, total) = next(iter(best.ticket_widths.items()))
    block = f"{name.removeprefix('stages.')} {k}/{total}"
    assert f"ticket would keep {kept:.0%} of its hidden channels (stage.block kept/total: {block}" in report
    assert f"- steering: trial {best.index}'s ticket" in report
    assert "within the params and MACs their mutation gave them" not in report
    result.state.config.steer_keep_cost = True
    assert "within the params and MACs their mutation gave them" in render_markdown(result.state, [], False)
