"""Budget-aware sampling and repair: draws fit, spread over the budget, and impossible budgets say so."""

import random

import pytest

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import GenotypeError
from menas_zoo.space import get_profile, sample_genotype
from menas_zoo.space.budget import Budget, shrink, smallest_genotype


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
