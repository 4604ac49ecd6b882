"""Lottery tickets, the Early-Bird stop and one whole trial on a tiny network."""

import copy
import json

import pytest
import torch

from menas_zoo.nets import build_model
from menas_zoo.search.config import SearchConfig
from menas_zoo.search.evolution import Candidate
from menas_zoo.search.ticket import make_ticket
from menas_zoo.search.trial import EarlyBird, TrialJob, run_trial
from menas_zoo.slim import apply_masks, slim_genotype
from menas_zoo.space.genotype import BlockSpec, Genotype
from menas_zoo.train import evaluate

GENOTYPE = Genotype(stem=8, stages=((BlockSpec(3, 8, 2, hidden=24, se=8),), (BlockSpec(5, 16, 2, hidden=40),)), head=32)


def with_gammas(genotype: Genotype) -> torch.nn.Module:
    """Depthwise-BN gammas 1, 2, 3, ... across the network: the global ranking is known in advance."""
    model = build_model(genotype).eval()
    with torch.no_grad():
        start = 1.0
        for block in (model.stages[0][0], model.stages[1][0]):
            n = block.dw.bn.weight.numel()
            block.dw.bn.weight.copy_(torch.arange(start, start + n))
            start += n
    return model


def test_ticket_prunes_the_smallest_gammas_globally(tiny_splits, real_batch):
    model = with_gammas(GENOTYPE)
    ticket = make_ticket(model, tiny_splits, prune_ratio=0.2, recalibrate=False)
    # 64 hidden channels, 20% -> 12.8 channels, all in the first block (gammas 1..24). Kept counts are
    # multiples of 8 (fast kernels), so the choices are pruning 8 (12.5%) or 16 (25%): 25% is closer.
    assert ticket.summary == {"stages.0.0": [8, 24], "stages.1.0": [40, 40]}
    assert ticket.pruned_fraction == 0.25
    assert ticket.masks["stages.0.0"].tolist() == [False] * 16 + [True] * 8
    assert ticket.model.genotype == slim_genotype(GENOTYPE, ticket.masks)
    assert ticket.model.stages[0][0].dw.conv.weight.shape[0] == 8  # physically narrower
    masked = apply_masks(copy.deepcopy(model), ticket.masks)  # the same weights, pruned channels zeroed
    assert torch.allclose(ticket.model(real_batch), masked(real_batch), atol=1e-5)


def test_a_uniform_ticket_prunes_each_block_by_the_same_share(tiny_splits):
    model = with_gammas(GENOTYPE)  # global pruning would take all 16 channels from the first block
    ticket = make_ticket(model, tiny_splits, prune_ratio=0.2, recalibrate=False, allocation="uniform")
    # Per block, 20% then rounded to 8: 24 -> 24 and 40 -> 32 prunes 12.5%; 25% (24 -> 16, 40 -> 32) is closer.
    assert ticket.summary == {"stages.0.0": [16, 24], "stages.1.0": [32, 40]}
    assert ticket.pruned_fraction == 0.25
    assert ticket.masks["stages.0.0"].tolist() == [False] * 8 + [True] * 16  # the largest |gamma| in each block
    assert ticket.masks["stages.1.0"].tolist() == [False] * 8 + [True] * 32
    assert ticket.model.genotype == slim_genotype(GENOTYPE, ticket.masks)


def test_ticket_pruned_fraction_is_close_to_the_one_asked(tiny_splits):
    genotype = Genotype(stem=8, stages=((BlockSpec(3, 16, 1, hidden=96),), (BlockSpec(5, 24, 2, hidden=144),),
                                        (BlockSpec(3, 32, 2, hidden=192),)), head=32)
    model = build_model(genotype)
    with torch.no_grad():
        for bn in (b.dw.bn for s in model.stages for b in s):
            bn.weight.copy_(torch.rand(bn.weight.numel()))
    for asked in (0.2, 0.3, 0.5):
        ticket = make_ticket(model, tiny_splits, prune_ratio=asked, recalibrate=False)
        assert abs(ticket.pruned_fraction - asked) <= 0.03


def test_ticket_is_pruned_further_until_it_fits_the_budget(tiny_splits):
    from menas_zoo.costs import genotype_cost
    from menas_zoo.space.budget import Budget

    model = with_gammas(GENOTYPE)
    plain = make_ticket(model, tiny_splits, prune_ratio=0.1, recalibrate=False)
    limit = genotype_cost(plain.model.genotype).params - 1
    fitted = make_ticket(model, tiny_splits, prune_ratio=0.1, budget=Budget(max_params=limit), recalibrate=False)
    assert genotype_cost(fitted.model.genotype).params <= limit
    assert fitted.pruned_fraction > plain.pruned_fraction


def test_ticket_keeps_at_least_min_channels_per_block(tiny_splits):
    ticket = make_ticket(with_gammas(GENOTYPE), tiny_splits, prune_ratio=0.6, min_channels=8, recalibrate=False)
    assert ticket.summary["stages.0.0"] == [8, 24]  # would be 0 by the global ranking alone
    assert ticket.summary["stages.1.0"][0] >= 8


def test_ticket_recalibrates_bn_and_leaves_the_trained_model_alone(tiny_splits):
    model = with_gammas(GENOTYPE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ticket = make_ticket(model, tiny_splits, prune_ratio=0.2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    stats = ticket.model.stages[1][0].dw.bn.running_var
    assert not torch.allclose(stats, torch.ones_like(stats))  # re-estimated on training images


def test_ticket_rewinds_to_a_snapshot(tiny_splits):
    early = with_gammas(GENOTYPE)
    snapshot = {k: v.clone() for k, v in early.state_dict().items()}
    trained = with_gammas(GENOTYPE)
    with torch.no_grad():
        trained.stages[1][0].project.conv.weight.mul_(3)
    ticket = make_ticket(trained, tiny_splits, prune_ratio=0.2, rewind_state=snapshot, recalibrate=False)
    assert torch.equal(ticket.model.stages[1][0].project.conv.weight, early.stages[1][0].project.conv.weight)


def test_early_bird_stops_once_the_mask_settles():
    model = with_gammas(GENOTYPE)
    hook = EarlyBird(prune_ratio=0.2, window=3, threshold=0.1)
    assert [hook(e, model, {}) for e in (1, 2)] == [False, False]  # not enough masks yet
    assert hook(3, model, {}) is True  # three identical masks
    moving = EarlyBird(prune_ratio=0.2, window=3, threshold=0.1)
    for epoch in range(1, 6):
        with torch.no_grad():  # reverse the ranking every epoch: the mask keeps changing
            for block in (model.stages[0][0], model.stages[1][0]):
                block.dw.bn.weight.copy_(block.dw.bn.weight.flip(0) * (1 + epoch))
        assert moving(epoch, model, {}) is False


def test_trial_trains_tickets_and_returns_loadable_weights(tiny_splits, tiny_profile, one_thread):
    cfg = SearchConfig(profile=tiny_profile, epochs=2, eb_window=2, device="cpu", batch_size=128, weight_sharing=True)
    parent = with_gammas(GENOTYPE)
    child = Genotype(stem=8, stages=((BlockSpec(3, 8, 2, hidden=24, se=8),),
                                     (BlockSpec(3, 16, 2, hidden=40), BlockSpec(3, 16, 1, hidden=32))), head=32)
    job = TrialJob(Candidate(3, 1, child, "mutate", parent=0), parent.genotype, parent.state_dict())
    outcome = run_trial(job, tiny_splits, cfg)
    assert outcome.inherit["new_blocks"] == ["stages.1.1"]
    assert outcome.genotype == slim_genotype(child, outcome.masks)
    kept = sum(int(m.sum()) for m in outcome.masks.values())
    total = sum(m.numel() for m in outcome.masks.values())
    assert kept < total
    assert outcome.epochs == cfg.dense_epochs == 1  # a 2-epoch trial: one dense epoch, one for the ticket
    assert set(outcome.phase_seconds) == {"mask", "ticket", "proxy", "score"}
    rebuilt = build_model(outcome.genotype)
    rebuilt.load_state_dict(outcome.state)  # strict: the weights are those of the ticket's genotype
    assert evaluate(rebuilt, tiny_splits.val)["acc"] == outcome.accuracy  # the fitness is these weights' score
    again = run_trial(job, tiny_splits, cfg)  # seeded by (seed, trial index): the same trial repeats
    assert again.accuracy == outcome.accuracy
    assert all(torch.equal(again.state[k], v) for k, v in outcome.state.items())


def test_a_trial_cuts_the_ticket_its_config_allocates(tiny_splits, tiny_profile, one_thread, monkeypatch):
    import menas_zoo.search.trial as trial

    asked = []
    monkeypatch.setattr(trial, "make_ticket", lambda *a, **kw: asked.append(kw["allocation"]) or make_ticket(*a, **kw))
    cfg = SearchConfig(profile=tiny_profile, epochs=2, eb_window=2, device="cpu", batch_size=128,
                       ticket_allocation="uniform")
    outcome = run_trial(TrialJob(Candidate(0, 0, GENOTYPE, "sample")), tiny_splits, cfg)
    assert asked == ["uniform"]
    assert {name: int(m.sum()) for name, m in outcome.masks.items()} == {"stages.0.0": 16, "stages.1.0": 32}


def test_fitness_does_not_depend_on_the_lineage(tiny_splits, tiny_profile, one_thread):
    """Without weight sharing (the default) a trial starts from a fresh initialization: the same child
    scores the same whoever its parent was, so fitness ranks architectures, not lineages."""
    cfg = SearchConfig(profile=tiny_profile, epochs=2, device="cpu", batch_size=128)
    trained, untrained = with_gammas(GENOTYPE), build_model(GENOTYPE)
    runs = [run_trial(TrialJob(Candidate(5, 1, GENOTYPE, "mutate", parent=0), parent.genotype, parent.state_dict()),
                      tiny_splits, cfg) for parent in (trained, untrained)]
    runs.append(run_trial(TrialJob(Candidate(5, 0, GENOTYPE, "sample")), tiny_splits, cfg))
    assert runs[0].accuracy == runs[1].accuracy == runs[2].accuracy
    assert runs[0].genotype == runs[1].genotype == runs[2].genotype
    assert all(torch.equal(runs[2].state[k], v) for k, v in runs[0].state.items())
    assert runs[0].inherit == {}
    # The switch is real: with weight sharing the parent's weights change what the trial trains.
    sharing = SearchConfig(profile=tiny_profile, epochs=2, device="cpu", batch_size=128, weight_sharing=True)
    shared = run_trial(TrialJob(Candidate(5, 1, GENOTYPE, "mutate", parent=0), trained.genotype,
                                trained.state_dict()), tiny_splits, sharing)
    assert shared.inherit
    assert shared.genotype != runs[0].genotype or not all(torch.equal(shared.state[k], v)
                                                          for k, v in runs[0].state.items())


def test_a_ticket_trial_trains_as_many_epochs_as_a_plain_one(tmp_path, tiny_splits, tiny_profile, one_thread):
    """One training per trial: dense epochs plus the ticket's epochs add up to --epochs, on one schedule."""
    from safetensors import safe_open

    cfg = SearchConfig(profile=tiny_profile, epochs=3, mask_epochs=2, eb_window=2, device="cpu", batch_size=128)
    outcome = run_trial(TrialJob(Candidate(2, 0, GENOTYPE, "sample")), tiny_splits, cfg, work_dir=tmp_path)

    def history(part: str) -> list[dict]:
        with safe_open(str(tmp_path / part / "checkpoint.safetensors"), "pt") as fh:
            return json.loads(fh.metadata()["menas_zoo_checkpoint"])["history"]

    dense, ticket = history("mask"), history("proxy")
    assert len(dense) == outcome.epochs and len(dense) + len(ticket) == cfg.epochs
    assert ticket[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the ticket finishes the dense run's schedule


def test_crossover_child_inherits_each_stage_from_the_parent_that_gave_it(tiny_splits):
    from menas_zoo.search.trial import _inherit

    a, b = with_gammas(GENOTYPE), build_model(GENOTYPE)
    child = build_model(GENOTYPE)
    job = TrialJob(Candidate(1, 1, GENOTYPE, "crossover", parent=0, second_parent=1, second_stages=(1,)),
                   a.genotype, a.state_dict(), b.genotype, b.state_dict())
    report = _inherit(child, job)
    assert report["second_stages"] == [1]
    assert torch.equal(child.stages[0][0].dw.bn.weight, a.stages[0][0].dw.bn.weight)  # stage 0 from a
    assert torch.equal(child.stages[1][0].dw.bn.weight, b.stages[1][0].dw.bn.weight)  # stage 1 from b
    assert not torch.equal(child.stages[1][0].dw.bn.weight, a.stages[1][0].dw.bn.weight)


def test_an_interrupted_trial_resumes_from_its_last_epoch(tmp_path, tiny_splits, tiny_profile, one_thread):
    from menas_zoo.train import TrainingInterrupted

    cfg = SearchConfig(profile=tiny_profile, epochs=3, mask_epochs=1, device="cpu", batch_size=128)
    parent = with_gammas(GENOTYPE)
    job = TrialJob(Candidate(7, 1, GENOTYPE, "mutate", parent=0), parent.genotype, parent.state_dict())
    full = run_trial(job, tiny_splits, cfg)
    # 256 training images at batch 128: 2 steps an epoch. Stop before the 6th step: the dense epoch (2 steps)
    # and the ticket's first epoch (2 steps) are done, the budget runs out inside the ticket's second epoch.
    calls = []

    def budget_runs_out() -> bool:
        calls.append(1)
        return len(calls) >= 6

    work = tmp_path / "partial"
    with pytest.raises(TrainingInterrupted):
        run_trial(job, tiny_splits, cfg, should_stop=budget_runs_out, work_dir=work)
    assert (work / "mask" / "checkpoint.safetensors").exists() and (work / "proxy" / "checkpoint.safetensors").exists()
    resumed = run_trial(job, tiny_splits, cfg, work_dir=work)
    assert resumed.accuracy == full.accuracy and resumed.genotype == full.genotype
    assert all(torch.equal(resumed.state[k], v) for k, v in full.state.items())
