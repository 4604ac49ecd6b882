"""Selection, mutation, crossover and proposals of the evolutionary search; fitness under cost limits."""

import dataclasses
import random
from dataclasses import dataclass

import pytest

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError
from menas_zoo.search.config import SearchConfig
from menas_zoo.search.evolution import crossover, mutate, propose, select_survivors, steer
from menas_zoo.search.fitness import CostLimits
from menas_zoo.space.budget import set_hidden_widths
from menas_zoo.space.genotype import Genotype
from menas_zoo.space.sampling import get_profile, sample_genotype


@dataclass
class Member:
    index: int
    fitness: float
    macs: int
    genotype: Genotype | None = None
    ticket_widths: dict | None = None


def pool(*pairs):
    return [Member(i, fitness, macs) for i, (fitness, macs) in enumerate(pairs)]


def test_menas_keeps_the_best_and_the_largest(tiny_profile):
    cfg = SearchConfig(strategy="menas", population=5, keep_largest=0.2, profile=tiny_profile)
    # fitness:        high ........................ low;  the least fit is by far the largest
    members = pool((0.9, 10), (0.8, 20), (0.7, 30), (0.6, 40), (0.5, 5), (0.1, 999), (0.2, 50))
    survivors = select_survivors(members, cfg)
    assert [m.index for m in survivors] == [0, 1, 2, 3, 5]  # top 4 by fitness + 1 largest of the rest


def test_without_keep_largest_only_fitness_counts(tiny_profile):
    cfg = SearchConfig(strategy="menas", population=5, keep_largest=0.0, profile=tiny_profile)
    members = pool((0.9, 10), (0.8, 20), (0.7, 30), (0.6, 40), (0.5, 5), (0.1, 999), (0.2, 50))
    assert [m.index for m in select_survivors(members, cfg)] == [0, 1, 2, 3, 4]


def test_regularized_evolution_keeps_the_youngest(tiny_profile):
    cfg = SearchConfig(strategy="evolution", population=3, profile=tiny_profile)
    members = pool((0.9, 10), (0.1, 20), (0.2, 30), (0.3, 40), (0.4, 5))
    assert [m.index for m in select_survivors(members, cfg)] == [2, 3, 4]


@pytest.mark.parametrize("strategy", ["menas", "evolution", "random"])
def test_a_model_of_negative_fitness_survives_only_to_fill_the_population(tiny_profile, strategy):
    """An infeasible ticket or a diverged trial (fitness < 0): never kept while enough others can be, the
    youngest of them included under aging; the least bad ones fill a population the others cannot."""
    cfg = SearchConfig(strategy=strategy, population=3, profile=tiny_profile)
    members = pool((0.5, 10), (0.6, 20), (0.7, 30), (-1.0, 999), (-0.2, 40))
    assert [m.index for m in select_survivors(members, cfg)] == [0, 1, 2]
    members = pool((0.5, 10), (-1.0, 999), (-0.2, 40), (-1.0, 50))
    assert [m.index for m in select_survivors(members, cfg)] == [0, 1, 2]


def test_mutation_changes_a_gene_and_stays_in_the_profile(tiny_profile):
    rng = random.Random(0)
    for seed in range(30):
        parent = sample_genotype(tiny_profile, seed)
        child = mutate(parent, tiny_profile, rng, rate=0.15)
        assert child != parent
        assert child.stem in tiny_profile.stem_choices and child.head in tiny_profile.head_choices
        for s, stage in enumerate(child.stages):
            assert 1 <= len(stage) <= tiny_profile.max_depth
            assert stage[0].stride == tiny_profile.stage_strides[s]
            assert {b.out for b in stage} <= set(tiny_profile.stage_width_choices(s))
            assert all(b.kernel in tiny_profile.kernels and b.act in tiny_profile.activations for b in stage)


def test_mutation_is_a_function_of_the_rng(tiny_profile):
    parent = sample_genotype(tiny_profile, 3)
    assert mutate(parent, tiny_profile, random.Random(5), 0.2) == mutate(parent, tiny_profile, random.Random(5), 0.2)


def test_mutation_keeps_unmutated_pruned_widths(tiny_profile):
    parent = sample_genotype(tiny_profile, 1)
    pruned = parent.replace(stages=tuple(tuple(b.__class__(**{**b.__dict__, "hidden": 11}) for b in stage)
                                         for stage in parent.stages))
    child = mutate(pruned, tiny_profile, random.Random(0), rate=0.05)
    hidden = [b.hidden for stage in child.stages for b in stage]
    assert 11 in hidden  # a ticket's odd widths survive unless their gene is resampled


def test_crossover_takes_each_stage_from_a_parent(tiny_profile):
    a, b = sample_genotype(tiny_profile, 1), sample_genotype(tiny_profile, 2)
    child, from_b = crossover(a, b, random.Random(0))
    for s, stage in enumerate(child.stages):
        assert stage == (b.stages[s] if s in from_b else a.stages[s])
    assert 0 < len(from_b) < len(child.stages)  # at least one stage from each parent


@pytest.mark.parametrize("strategy", ["menas", "evolution"])
def test_proposals_skip_duplicates_and_respect_the_limit(tiny_profile, strategy):
    limit = sorted(genotype_cost(sample_genotype(tiny_profile, s)).macs for s in range(12))[3]
    cfg = SearchConfig(strategy=strategy, population=6, profile=tiny_profile, seed=4, max_macs=limit, mutation_rate=0.5)
    # With tickets a child may exceed the limit by 1 / (1 - prune ratio): its ticket is pruned to fit.
    child_limit = limit / (1 - cfg.prune_ratio) if strategy == "menas" else limit
    seen: set = set()
    children = propose([], cfg, 0, 0, seen, lambda g: True)
    assert [c.index for c in children] == list(range(6))
    assert len({c.genotype for c in children}) == 6
    assert all(genotype_cost(c.genotype).macs <= child_limit for c in children)
    again = propose([], cfg, 0, 0, set(), lambda g: True)
    assert [c.genotype for c in again] == [c.genotype for c in children]  # seeded by (seed, generation)
    members = [Member(c.index, 0.5 + 0.01 * c.index, genotype_cost(c.genotype).macs, c.genotype) for c in children]
    next_gen = propose(members, cfg, 1, 6, seen, lambda g: True)
    assert all(c.genotype not in {m.genotype for m in members} for c in next_gen)
    assert all(genotype_cost(c.genotype).macs <= child_limit for c in next_gen)  # repaired, not rejected
    assert {c.op for c in next_gen} <= {"mutate", "crossover"}
    assert all(c.parent in {m.index for m in members} for c in next_gen)


def test_a_rejecting_latency_check_is_a_clear_error(tiny_profile):
    cfg = SearchConfig(population=2, profile=tiny_profile)
    with pytest.raises(MenasError, match="no new genotype within the limits"):
        propose([], cfg, 0, 0, set(), lambda g: False)


def test_a_limit_no_genotype_meets_is_a_clear_error(tiny_profile):
    cfg = SearchConfig(population=2, profile=tiny_profile, max_params=50)
    with pytest.raises(MenasError, match="no genotype of profile .* fits params 62"):
        propose([], cfg, 0, 0, set(), lambda g: True)


def test_fitness_hard_limit_and_mnasnet_penalty():
    hard = CostLimits(max_macs=1000)
    assert hard.fitness(0.9, 900, 10) == 0.9
    assert hard.fitness(0.9, 1100, 10) == pytest.approx(-0.1)  # below every feasible model
    soft = CostLimits(max_macs=1000, penalty=0.07)
    assert soft.fitness(0.9, 900, 10) == 0.9  # under the limit: not rewarded, not punished
    assert soft.fitness(0.9, 2000, 10) == pytest.approx(0.9 * 2 ** -0.07)
    both = CostLimits(max_macs=1000, max_params=10, penalty=1.0)
    assert both.fitness(0.8, 2000, 20) == pytest.approx(0.8 / 4)
    assert both.violations(2000, 5) == ["macs"]


def test_strategies_are_presets_that_switches_override(tiny_profile):
    evolution = SearchConfig(strategy="evolution", profile=tiny_profile)
    assert (evolution.tickets, evolution.weight_sharing, evolution.keep_largest) == (False, False, 0.0)
    ablation = SearchConfig(strategy="menas", tickets=False, keep_largest=0.0, profile=tiny_profile)
    assert (ablation.tickets, ablation.early_bird, ablation.keep_largest) == (False, True, 0.0)
    sharing = SearchConfig(strategy="menas", weight_sharing=True, profile=tiny_profile)
    assert (sharing.tickets, sharing.weight_sharing, sharing.keep_largest) == (True, True, 0.2)
    with pytest.raises(MenasError, match="unknown strategy"):
        SearchConfig(strategy="bayes")


def test_regrow_widens_ticket_children_back_towards_the_budget():
    """Children of tickets (narrowed by pruning) widen their hidden widths back, within the child budget;
    without regrow the population slims a little more every generation."""
    cfg = SearchConfig(strategy="menas", population=6, profile="tiny", seed=1, max_params=100_000)
    parents = propose([], cfg, 0, 0, set(), lambda g: True)

    def ticket(g: Genotype) -> Genotype:  # every hidden width 20% narrower, as a ticket's cut leaves it
        def cut(b):
            return b if b.hidden is None else dataclasses.replace(b, hidden=max(8, int(b.hidden * 0.8) // 8 * 8))
        return g.replace(stages=tuple(tuple(cut(b) for b in stage) for stage in g.stages))

    members = [Member(c.index, 0.5 + 0.01 * c.index, 0, ticket(c.genotype)) for c in parents]
    sizes = {}
    for regrow in (True, False):
        cfg = dataclasses.replace(cfg, regrow=regrow)
        children = propose(members, cfg, 1, 6, set(), lambda g: True)
        assert all(cfg.child_budget().fits(c.genotype) for c in children)
        sizes[regrow] = sum(genotype_cost(c.genotype).params for c in children)
    assert sizes[True] > 1.1 * sizes[False]


def test_menas_parents_are_chosen_by_tournament():
    """Generation 1's survivors are the whole initial population, so only the parents' tournament puts
    pressure on it: the fitter members breed more often than under a uniform draw (``tournament=1``)."""
    cfg = SearchConfig(strategy="menas", population=8, profile="tiny", seed=3, max_params=100_000)
    founders = propose([], cfg, 0, 0, set(), lambda g: True)
    members = [Member(c.index, 0.1 * c.index, genotype_cost(c.genotype).macs, c.genotype) for c in founders]
    mean_parent = {}
    for size in (0, 1):
        run = dataclasses.replace(cfg, tournament=size)
        parents = []
        for generation in range(1, 11):
            for child in propose(members, run, generation, 8 * generation, set(), lambda g: True):
                parents.append(child.parent)
                if child.op == "crossover":
                    assert child.second_parent != child.parent
        mean_parent[size] = sum(parents) / len(parents)  # a member's index is its fitness rank here
    assert mean_parent[1] == pytest.approx(3.5, abs=0.8)  # uniform over indices 0..7
    assert mean_parent[0] > mean_parent[1] + 1.0  # tournaments of 2: 5 expected


def test_a_tournament_larger_than_the_population_is_refused():
    with pytest.raises(MenasError, match="--tournament must be in"):
        SearchConfig(population=4, tournament=5, profile="tiny")


def test_steer_grows_the_blocks_a_ticket_keeps_and_shrinks_those_it_prunes():
    """Steering rescales each unchanged block by its ticket keep share over the whole ticket's, clipped;
    a block the ticket could not prune (at most min_channels) neither moves nor counts."""
    g = sample_genotype(get_profile("tiny"), random.Random(0))
    expanding = [(s, b) for s, b, _, block in g.blocks() if block.hidden is not None]
    assert len(expanding) >= 4
    a, p, o, m = expanding[:4]
    g = set_hidden_widths(g, {a: 32, p: 48, o: 64, m: 8})
    name = "stages.{}.{}".format
    widths = {name(*a): [32, 32],  # all kept
              name(*p): [24, 48],  # half pruned
              name(*o): [40, 72],  # recorded for another width: not this block's ticket
              name(*m): [8, 8]}  # at min_channels: could not be pruned
    steered = steer(g, widths, multiple=1, min_channels=8)
    overall = (32 + 24 + 40) / (32 + 48 + 72)  # 0.63
    assert steered.stages[a[0]][a[1]].hidden == 40  # 32 x min(1.25, 1 / 0.63)
    assert steered.stages[p[0]][p[1]].hidden == round(48 * 0.5 / overall)  # 38
    assert steered.stages[o[0]][o[1]] == g.stages[o[0]][o[1]]
    assert steered.stages[m[0]][m[1]] == g.stages[m[0]][m[1]]
    assert steer(g, widths, multiple=8).stages[p[0]][p[1]].hidden == 40  # 38 to the nearest multiple of 8
    # A block the mutation resampled is the mutation's, not the parent's ticket's.
    child = set_hidden_widths(g, {a: 56})
    assert steer(child, widths, multiple=1).stages[a[0]][a[1]].hidden == 56
    assert steer(g, {}, multiple=1) == g


def test_steered_children_follow_their_parents_tickets():
    """With --steer, evolution's children differ from plain evolution's only in the widths the parents'
    tickets steer; they still fit the limit."""
    cfg = SearchConfig(strategy="evolution", population=6, profile="tiny", seed=2, max_params=100_000)
    founders = propose([], cfg, 0, 0, set(), lambda g: True)

    def first_block_kept(g):  # every ticket keeps all of its first expanding block and half of the others
        names = [f"stages.{s}.{b}" for s, b, _, block in g.blocks() if block.hidden is not None]
        return {n: [g.stages[int(n.split(".")[1])][int(n.split(".")[2])].hidden // (1 if i == 0 else 2),
                    g.stages[int(n.split(".")[1])][int(n.split(".")[2])].hidden] for i, n in enumerate(names)}

    members = [Member(c.index, 0.1 * c.index, 0, c.genotype, first_block_kept(c.genotype)) for c in founders]
    plain = propose(members, cfg, 1, 6, set(), lambda g: True)
    steered = propose(members, dataclasses.replace(cfg, steer=True), 1, 6, set(), lambda g: True)
    assert [c.parent for c in plain] == [c.parent for c in steered]  # the same draws
    assert all(cfg.budget().fits(c.genotype) for c in steered)
    assert any(p.genotype != s.genotype for p, s in zip(plain, steered))
    for p, s in zip(plain, steered):
        assert [len(stage) for stage in p.genotype.stages] == [len(stage) for stage in s.genotype.stages]
    # Steering made most of these children costlier in MACs than their plain mutations; --steer-keep-cost
    # holds every one of them to its mutation's cost (for these draws, also where a repair shrank it).
    kept = propose(members, dataclasses.replace(cfg, steer=True, steer_keep_cost=True), 1, 6, set(), lambda g: True)
    costs = lambda children: [genotype_cost(c.genotype) for c in children]  # noqa: E731
    assert sum(s.macs > p.macs for p, s in zip(costs(plain), costs(steered))) >= len(plain) // 2
    assert [c.parent for c in kept] == [c.parent for c in plain]
    assert all(k.macs <= p.macs and k.params <= p.params for p, k in zip(costs(plain), costs(kept)))
    assert any(k.genotype != s.genotype for k, s in zip(kept, steered))


def test_steer_keep_cost_moves_width_between_blocks_and_adds_none():
    """Steering grows the blocks a ticket keeps; with keep_cost one factor on the steered widths holds the
    child to the params and MACs it had, and the blocks keep their order of growth."""
    g = sample_genotype(get_profile("tiny"), random.Random(0))
    expanding = [(s, b) for s, b, _, block in g.blocks() if block.hidden is not None]
    g = set_hidden_widths(g, {k: 64 for k in expanding})
    # The first (highest-resolution) block is kept whole, every other one loses half: steering grows the
    # costly first block and shrinks the cheap ones, and the child costs more MACs than before.
    widths = {f"stages.{s}.{b}": [64 if i == 0 else 32, 64] for i, (s, b) in enumerate(expanding)}
    free, kept = steer(g, widths, multiple=1), steer(g, widths, multiple=1, keep_cost=True)
    before, grown, held = genotype_cost(g), genotype_cost(free), genotype_cost(kept)
    assert grown.macs > before.macs  # what keep_cost is for
    assert held.macs <= before.macs and held.params <= before.params
    assert held.macs > 0.95 * before.macs  # the largest factor that fits, not a collapse
    hidden = lambda n: [n.stages[s][b].hidden for s, b in expanding]  # noqa: E731
    ratio = hidden(kept)[0] / hidden(free)[0]
    assert ratio < 1 and all(abs(k / f - ratio) < 0.05 for k, f in zip(hidden(kept), hidden(free)))
    # A steered child that already costs no more (here two blocks of the last stage: the one halved
    # shrinks by more than the one kept grows) is steered as without keep_cost.
    (s1, b1), (s2, b2) = expanding[-2:]
    cheaper = {f"stages.{s1}.{b1}": [32, 64], f"stages.{s2}.{b2}": [64, 64]}
    cost = genotype_cost(steer(g, cheaper, multiple=1))
    assert cost.macs <= before.macs and cost.params <= before.params
    assert steer(g, cheaper, multiple=1, keep_cost=True) == steer(g, cheaper, multiple=1) != g


def test_steer_needs_dense_candidates():
    with pytest.raises(MenasError, match="--steer steers dense candidates"):
        SearchConfig(strategy="menas", steer=True, profile="tiny")
    assert SearchConfig(strategy="menas", tickets=False, steer=True, profile="tiny").steer
    # Steering ranks channels by |gamma|: it brings MENAS's BN shrink unless one is given.
    assert SearchConfig(strategy="evolution", steer=True, profile="tiny").bn_shrink == 0.5
    assert SearchConfig(strategy="evolution", steer=True, bn_shrink=0.0, profile="tiny").bn_shrink == 0.0
    assert SearchConfig(strategy="evolution", profile="tiny").bn_shrink == 0.0
    with pytest.raises(MenasError, match="--steer-keep-cost keeps a steered child's cost: add --steer"):
        SearchConfig(strategy="evolution", steer_keep_cost=True, profile="tiny")
