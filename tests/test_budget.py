"""Budget-aware sampling and repair: draws fit, spread over the budget, and impossible budgets say so."""

import random

import pytest

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import GenotypeError
from menas_zoo.space import get_profile, sample_genotype
from menas_zoo.nets import build_model
from menas_zoo.space.budget import Budget, scale_widths, shrink, smallest_genotype, widen_hidden


@pytest.mark.parametrize("profile,limit", [("tiny", 100_000), ("tiny", 500_000), ("small", 100_000)])
def test_budgeted_draws_fit_and_spread_over_the_budget(profile, limit):
    usage = [genotype_cost(sample_genotype(profile, seed, max_params=limit)).params / limit for seed in range(40)]
    assert max(usage) <= 1.0
    assert sum(0.5 <= u for u in usage) >= 0.9 * len(usage)  # not piled at the small end


def test_macs_and_params_limits_together():
    for seed in range(10):
        cost = genotype_cost(sample_genotype("tiny", seed, max_params=300_000, max_macs=5_000_000))
        assert cost.params <= 300_000 and cost.macs <= 5_000_000


def test_budgeted_sampling_is_seeded():
    assert sample_genotype("tiny", 7, max_params=100_000) == sample_genotype("tiny", 7, max_params=100_000)


def test_shrink_repairs_a_genotype_over_the_limit():
    big = sample_genotype("small", 0)
    limit = genotype_cost(big).params // 3
    repaired = shrink(big, get_profile("small"), Budget(max_params=limit), random.Random(0))
    assert genotype_cost(repaired).params <= limit
    assert len(repaired.stages) == len(big.stages)


def test_a_budget_under_the_smallest_genotype_is_a_clear_error():
    floor = genotype_cost(smallest_genotype(get_profile("tiny"))).params
    assert genotype_cost(sample_genotype("tiny", 0, max_params=floor)).params <= floor  # the floor itself fits
    with pytest.raises(GenotypeError, match=f"its smallest has {floor:,} params"):
        sample_genotype("tiny", 0, max_params=floor - 1)


@pytest.mark.parametrize("limit", [0, -5])
def test_non_positive_limits_are_refused(limit):
    with pytest.raises(GenotypeError, match="must be positive"):
        sample_genotype("tiny", 0, max_params=limit)


def _hidden(genotype):
    return [block.hidden for _, _, _, block in genotype.blocks() if block.hidden is not None]


@pytest.mark.parametrize("seed", range(6))
def test_widen_hidden_scales_every_hidden_width_by_one_factor_within_the_budget(seed):
    g = sample_genotype("tiny", seed, max_params=80_000)
    budget = Budget(max_params=100_000)
    wide = widen_hidden(g, budget, max_factor=1.25)
    assert budget.fits(wide)
    assert genotype_cost(wide).params > genotype_cost(g).params
    before, after = _hidden(g), _hidden(wide)
    # Only hidden widths move (the rest of the genotype is the same), none narrower, none past the cap.
    assert wide.replace(stages=g.stages) == g and [len(s) for s in wide.stages] == [len(s) for s in g.stages]
    assert all(h <= a <= 8 * round(h * 1.25 / 8) for h, a in zip(before, after))
    # One factor for every block: the widths' ratios (the allocation) stay within rounding to 8.
    factors = [a / h for h, a in zip(before, after) if h >= 64]
    assert max(factors) - min(factors) < 0.2


@pytest.mark.parametrize("seed", range(5))
def test_scale_widths_is_a_width_multiplier_that_builds(seed):
    g = sample_genotype("tiny", seed, max_params=500_000)
    assert scale_widths(g, 1.0) == g
    wide = scale_widths(g, 2.0)
    pairs = [(a, b) for sa, sb in zip(g.stages, wide.stages) for a, b in zip(sa, sb)]
    # Every width doubles (SE widths up to rounding to 8); kernels, strides, activations and depth stay.
    assert [len(s) for s in wide.stages] == [len(s) for s in g.stages]
    assert all(b.out == 2 * a.out and b.hidden == (a.hidden and 2 * a.hidden) for a, b in pairs)
    assert all((a.kernel, a.stride, a.act) == (b.kernel, b.stride, b.act) for a, b in pairs)
    assert all(abs(b.se - 2 * a.se) <= 8 and bool(a.se) == bool(b.se) for a, b in pairs)
    assert (wide.stem, wide.head, wide.fc) == (2 * g.stem, 2 * g.head, 2 * g.fc)
    # Doubling every width of convs that dominate the cost roughly quadruples it; the network builds.
    assert 3 * genotype_cost(g).params < genotype_cost(wide).params < 4.5 * genotype_cost(g).params
    assert sum(p.numel() for p in build_model(wide).parameters()) == genotype_cost(wide).params
    with pytest.raises(GenotypeError, match="positive"):
        scale_widths(g, 0)


def test_widen_hidden_stops_at_the_budget_and_leaves_an_over_budget_genotype_alone():
    g = sample_genotype("tiny", 3, max_params=100_000)
    params = genotype_cost(g).params
    tight = Budget(max_params=int(params * 1.05))
    wide = widen_hidden(g, tight, max_factor=2.0)
    assert params < genotype_cost(wide).params <= tight.max_params
    assert widen_hidden(g, Budget(max_params=params - 1), max_factor=2.0) == g
    assert widen_hidden(g, Budget(max_params=10 * params), max_factor=1.0) == g
    # Without a limit the factor is the cap.
    assert _hidden(widen_hidden(g, Budget(), max_factor=2.0)) == [2 * h for h in _hidden(g)]
