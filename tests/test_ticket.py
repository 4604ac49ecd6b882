"""Lottery tickets, the Early-Bird stop and one whole trial on a tiny network."""

import copy

import torch

from menas_zoo.nets import build_model
from menas_zoo.search.config import SearchConfig
from menas_zoo.search.evolution import Candidate
from menas_zoo.search.ticket import make_ticket
from menas_zoo.search.trial import EarlyBird, TrialJob, run_trial
from menas_zoo.slim import apply_masks, slim_genotype
from menas_zoo.space.genotype import BlockSpec, Genotype

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
    # 64 hidden channels, 20% -> the 12 smallest gammas, all in the first block (gammas 1..24); the 12 kept
    # there round to 16 (multiples of 8 run fast), taking back the 4 largest of the pruned ones.
    assert ticket.summary == {"stages.0.0": [16, 24], "stages.1.0": [40, 40]}
    assert ticket.masks["stages.0.0"].tolist() == [False] * 8 + [True] * 16
    assert ticket.model.genotype == slim_genotype(GENOTYPE, ticket.masks)
    assert ticket.model.stages[0][0].dw.conv.weight.shape[0] == 16  # physically narrower
    masked = apply_masks(copy.deepcopy(model), ticket.masks)  # the same weights, pruned channels zeroed
    assert torch.allclose(ticket.model(real_batch), masked(real_batch), atol=1e-5)


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
    cfg = SearchConfig(profile=tiny_profile, epochs=2, eb_window=2, device="cpu", batch_size=128)
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
    assert 1 <= outcome.epochs <= 2 and 0.0 <= outcome.accuracy <= 1.0
    rebuilt = build_model(outcome.genotype)
    rebuilt.load_state_dict(outcome.state)  # strict: the weights are those of the ticket's genotype
    again = run_trial(job, tiny_splits, cfg)  # seeded by (seed, trial index): the same trial repeats
    assert again.accuracy == outcome.accuracy
    assert all(torch.equal(again.state[k], v) for k, v in outcome.state.items())
