"""The evolutionary half of MENAS: who survives, who breeds, and how children are made.

* Survivors (MENAS, a (mu + lambda) scheme): the top ``K`` of parents and children by fitness plus a
  ``keep_largest`` fraction of the largest remaining models by MACs. Tickets slim the population every
  generation; keeping a few large models stops it from collapsing into small ones.
* Survivors (regularized evolution): the youngest ``population`` models (aging), as in Real et al. 2019.
* Parents: by tournament (the fittest of ``tournament_size`` members drawn at random) in both evolutionary
  strategies. In a (mu + lambda) scheme the first generation's survivors are the whole initial
  population, so a parent drawn uniformly from the survivors would make generation 1 a random walk; the
  ablation measured exactly that (``--tournament 1`` is the uniform draw).
* Children: per-gene mutation (each gene resampled from the profile's choice sets with probability
  ``mutation_rate``) and stage-wise crossover; regularized evolution only mutates; random search samples
  every child afresh.
* Steering (``--steer``, dense candidates): a mutated child's hidden widths follow its parent's ticket,
  the channels the parent's |gamma| ranking would keep (``steer``), before any repair. Growing a block
  at a high resolution costs more MACs than shrinking one at a low resolution saves, so steered children
  grow; with ``--steer-keep-cost`` the steered widths share one factor that keeps the child within the
  params and MACs the mutation gave it: the ticket moves width between blocks and adds none.
* A child over a hard params/MACs limit is *repaired*: its costliest genes shrink one step at a time
  until it fits (``space/budget.py``), so no trial is spent and no draw is wasted on it. With tickets
  the limit a child must meet is the final one over (1 - prune ratio): its ticket is pruned to fit.
  A child already seen (trained or proposed), or over a latency limit, is redrawn.

Every draw comes from a ``random.Random`` seeded by ``(seed, generation)``, never from global state, so a
resumed run proposes exactly the children the uninterrupted one did.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from menas_zoo.costs import genotype_cost
from menas_zoo.errors import MenasError
from menas_zoo.search.config import SearchConfig, derive_seed
from menas_zoo.space.genotype import BlockSpec, Genotype, default_se_width, make_divisible
from menas_zoo.space.budget import Budget, check_feasible, set_hidden_widths, shrink, widen_hidden
from menas_zoo.space.sampling import SearchProfile, sample_block, sample_genotype

#: Steering's range: a block's width factor is its parent's ticket's keep share over the whole ticket's,
#: clipped to this: one short trial's ranking may halve a block, and grow one by what a 20% prune takes back.
STEER_RANGE = (0.5, 1.25)
#: Redraws allowed per child before the search gives up (the space is exhausted or a latency limit too tight).
MAX_DRAWS = 200


class Member(Protocol):
    """What selection needs to know about a trained individual (a trial record)."""

    index: int
    genotype: Genotype
    fitness: float
    macs: int
    ticket_widths: dict[str, list[int]]  # steering: {block: [kept, total]} of the ticket its |gamma| gives


@dataclass(frozen=True)
class Candidate:
    """A child waiting to be trained: trial ``index`` of ``generation``."""

    index: int
    generation: int
    genotype: Genotype
    op: str  # "sample" | "mutate" | "crossover"
    parent: int | None = None  # the individual whose ticket weights the child inherits
    second_parent: int | None = None  # crossover's other parent
    second_stages: tuple[int, ...] = ()  # crossover: the stages taken (with their weights) from second_parent

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "generation": self.generation, "genotype": self.genotype.to_dict(),
                "op": self.op, "parent": self.parent, "second_parent": self.second_parent,
                "second_stages": list(self.second_stages)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(index=data["index"], generation=data["generation"], genotype=Genotype.from_dict(data["genotype"]),
                   op=data["op"], parent=data["parent"], second_parent=data["second_parent"],
                   second_stages=tuple(data.get("second_stages", ())))


# -- selection -------------------------------------------------------------------------------------

def select_survivors(pool: Sequence[Member], cfg: SearchConfig) -> list[Member]:
    """The next population from the current one plus this generation's children, by strategy. A model of
    negative fitness (an infeasible ticket, a diverged trial) survives only to fill what the others cannot."""
    size = cfg.population
    usable = [m for m in pool if m.fitness >= 0]
    if len(usable) <= size:
        fill = sorted((m for m in pool if m.fitness < 0), key=lambda m: (-m.fitness, m.index))[:size - len(usable)]
        return sorted(usable + fill, key=lambda m: m.index)
    pool = usable
    if cfg.strategy == "evolution":
        return sorted(pool, key=lambda m: m.index)[-size:]  # aging: the oldest die
    n_largest = round(cfg.keep_largest * size) if cfg.strategy == "menas" else 0
    by_fitness = sorted(pool, key=lambda m: (-m.fitness, m.index))
    best = by_fitness[:size - n_largest]
    chosen = {m.index for m in best}
    rest = [m for m in pool if m.index not in chosen]
    largest = sorted(rest, key=lambda m: (-m.macs, -m.fitness, m.index))[:n_largest]
    return sorted(best + largest, key=lambda m: m.index)


def tournament(population: Sequence[Member], size: int, rng: random.Random) -> Member:
    sample = rng.sample(list(population), min(size, len(population)))
    return max(sample, key=lambda m: (m.fitness, -m.index))


# -- variation -------------------------------------------------------------------------------------

def mutate(genotype: Genotype, profile: SearchProfile, rng: random.Random, rate: float) -> Genotype:
    """Resample each gene with probability ``rate``; retried until at least one gene changed."""
    child = genotype
    for _ in range(100):
        child = _mutate_once(genotype, profile, rng, rate)
        if child != genotype:
            break
    return child


def _mutate_once(g: Genotype, profile: SearchProfile, rng: random.Random, rate: float) -> Genotype:
    def maybe(current, choices):
        return rng.choice(choices) if rng.random() < rate else current

    stem = maybe(g.stem, profile.stem_choices)
    stages, in_chans = [], stem
    for s, stage in enumerate(g.stages):
        width_choices = profile.stage_width_choices(min(s, len(profile.base_widths) - 1))
        out = maybe(stage[-1].out, width_choices)
        depth = len(stage)
        if rng.random() < rate:
            depth = rng.randint(1, profile.max_depth)
        blocks = []
        for b in range(depth):
            block_in = in_chans if b == 0 else out
            stride = stage[0].stride if b == 0 else 1
            if b < len(stage):
                blocks.append(_mutate_block(stage[b], profile, rng, rate, block_in, out, stride))
            else:  # a deeper stage grows at its end, where the new block starts as the identity (inherit.py)
                blocks.append(sample_block(profile, rng, block_in, out, stride))
        stages.append(tuple(blocks))
        in_chans = out
    return g.replace(stem=stem, stages=tuple(stages), head=maybe(g.head, profile.head_choices),
                     fc=maybe(g.fc, profile.fc_choices))


def _mutate_block(old: BlockSpec, profile: SearchProfile, rng: random.Random, rate: float, in_chans: int,
                  out: int, stride: int) -> BlockSpec:
    hidden = old.hidden
    if hidden is not None and rng.random() < rate:
        hidden = make_divisible(in_chans * rng.choice(profile.expansions))
    dw = hidden if hidden is not None else in_chans
    se = old.se
    if rng.random() < rate:
        se = 0 if old.se else default_se_width(dw)
    elif se and hidden != old.hidden:
        se = default_se_width(dw)  # a resampled hidden width gets MobileNetV3's squeeze width again
    # An unmutated hidden width stays as the ticket left it: that is how the population slims.
    kernel = rng.choice(profile.kernels) if rng.random() < rate else old.kernel
    act = rng.choice(profile.activations) if rng.random() < rate else old.act
    return BlockSpec(kernel=kernel, out=out, stride=stride, hidden=hidden, se=se, act=act)


def steer(child: Genotype, ticket_widths: dict[str, list[int]], multiple: int = 8, min_channels: int = 8,
          keep_cost: bool = False) -> Genotype:
    """Ticket-steered widths: each block of ``child`` that kept the hidden width its parent's ticket was cut
    from (``ticket_widths``: ``{block: [kept, total]}``; a block the mutation resampled has another width)
    is rescaled by how much of it that ticket keeps, relative to the whole ticket: a block whose channels
    the |gamma| ranking keeps grows, one it prunes shrinks (factor clipped to :data:`STEER_RANGE`, widths
    rounded to the nearest ``multiple``). A block of at most ``min_channels`` the ticket could not prune,
    so it says nothing and is left alone. The ticket informs the child; it is not the child. With
    ``keep_cost``, the steered widths are all scaled by the largest factor (at most 1) at which the child
    costs no more params or MACs than it did before steering."""
    votes = {name: (kept, total) for name, (kept, total) in ticket_widths.items() if total > min_channels}
    total = sum(n for _, n in votes.values())
    if not total:
        return child
    overall = sum(k for k, _ in votes.values()) / total
    low, high = STEER_RANGE
    widths = {}
    for s, b, _, block in child.blocks():
        kept = votes.get(f"stages.{s}.{b}")
        if kept is None or kept[1] != block.hidden:
            continue
        widths[(s, b)] = block.hidden * min(high, max(low, kept[0] / kept[1] / overall))

    def steered(scale: float) -> Genotype:
        return set_hidden_widths(child, {k: max(multiple, multiple * round(w * scale / multiple))
                                         for k, w in widths.items()})

    full = steered(1.0)
    cost = genotype_cost(child) if keep_cost else None
    budget = Budget(max_params=cost.params, max_macs=cost.macs) if cost else Budget()
    if not keep_cost or budget.fits(full):
        return full
    if not budget.fits(steered(0.0)):  # every steered block one multiple wide: only when blocks were narrower
        return child
    fits, over = 0.0, 1.0  # the cost grows with the scale: bisect between a scale that fits and one that does not
    while over - fits > 1e-3:
        mid = (fits + over) / 2
        fits, over = (mid, over) if budget.fits(steered(mid)) else (fits, mid)
    return steered(fits)


def crossover(a: Genotype, b: Genotype, rng: random.Random) -> tuple[Genotype, tuple[int, ...]]:
    """Each stage (and stem, head, fc) from one parent or the other; at least one stage from each.
    Returns the child and the stages it took from ``b`` (they inherit ``b``'s weights)."""
    n = min(len(a.stages), len(b.stages))
    from_a = [rng.random() < 0.5 for _ in range(n)]
    if n > 1 and len(set(from_a)) == 1:
        flip = rng.randrange(n)
        from_a[flip] = not from_a[flip]
    stages = tuple(a.stages[s] if from_a[s] else b.stages[s] for s in range(n))
    pick = lambda: a if rng.random() < 0.5 else b  # noqa: E731
    child = a.replace(stages=stages, stem=pick().stem, head=pick().head, fc=pick().fc)
    return child, tuple(s for s in range(n) if not from_a[s])


# -- proposals -------------------------------------------------------------------------------------

def propose(population: Sequence[Member], cfg: SearchConfig, generation: int, start_index: int,
            seen: set[Genotype], accept: Callable[[Genotype], bool]) -> list[Candidate]:
    """The children of ``generation`` (generation 0: the initial random population), each within the
    child budget (repaired if a variation overshot it), new, and accepted by ``accept``."""
    rng = random.Random(derive_seed(cfg.seed, "generation", generation))
    budget = cfg.child_budget()
    check_feasible(cfg.profile, budget, **cfg.genotype_fields())
    children: list[Candidate] = []
    for i in range(cfg.population):
        for _ in range(MAX_DRAWS):
            child = _draw(population, cfg, generation, start_index + i, rng, budget)
            if child.genotype not in seen and accept(child.genotype):
                break
        else:
            raise MenasError(f"no new genotype within the limits after {MAX_DRAWS} draws; loosen "
                             "--max-latency-ms or use a larger profile")
        seen.add(child.genotype)
        children.append(child)
    return children


def _draw(population: Sequence[Member], cfg: SearchConfig, generation: int, index: int,
          rng: random.Random, budget: Budget) -> Candidate:
    if generation == 0 or cfg.strategy == "random" or not population:
        genotype = sample_genotype(cfg.profile, rng, **cfg.genotype_fields(), max_params=budget.max_params,
                                   max_macs=budget.max_macs)
        return Candidate(index, generation, genotype, "sample")
    if cfg.strategy == "evolution":
        parent = tournament(population, cfg.tournament_size, rng)
        child = _mutate_child(parent, cfg, rng)
        return Candidate(index, generation, _repair(child, cfg, budget, rng), "mutate", parent.index)
    if len(population) >= 2 and rng.random() < cfg.crossover_rate:
        a = tournament(population, cfg.tournament_size, rng)
        b = tournament([m for m in population if m.index != a.index], cfg.tournament_size, rng)
        child, from_b = crossover(a.genotype, b.genotype, rng)
        if rng.random() < 0.5:  # crossover alone only reshuffles; a light mutation keeps exploring
            child = mutate(child, cfg.profile, rng, cfg.mutation_rate / 2)
        return Candidate(index, generation, _repair(child, cfg, budget, rng), "crossover", a.index, b.index, from_b)
    parent = tournament(population, cfg.tournament_size, rng)
    child = _mutate_child(parent, cfg, rng)
    return Candidate(index, generation, _repair(child, cfg, budget, rng), "mutate", parent.index)


def _mutate_child(parent: Member, cfg: SearchConfig, rng: random.Random) -> Genotype:
    child = mutate(parent.genotype, cfg.profile, rng, cfg.mutation_rate)
    if cfg.steer and parent.ticket_widths:
        child = steer(child, parent.ticket_widths, cfg.channel_multiple, cfg.min_channels, cfg.steer_keep_cost)
    return child


def _repair(child: Genotype, cfg: SearchConfig, budget: Budget, rng: random.Random) -> Genotype:
    """Shrink a child over the budget until it fits (its costliest genes first); with regrow, then widen
    its hidden widths back towards the budget."""
    if budget and not budget.fits(child):
        child = shrink(child, cfg.profile, budget, rng)
    if cfg.tickets and cfg.regrow:
        child = widen_hidden(child, budget, max_factor=cfg.unprune_factor, multiple=cfg.channel_multiple)
    return child
