"""Budget-aware sampling: how fast a search's first generation is proposed, and where draws land.

For each profile and params limit: the time to propose generation 0 (``--population`` children, as a
search does), and over ``--seeds`` draws of ``space sample --max-params``: how many fit (all must), the
share within [0.5, 1.0] of the limit, and the median usage. Also the closed-form cost's speed against
torch's flop counter, which it replaced.

    python benchmarks/sampler.py
"""

from __future__ import annotations

import argparse
import statistics
import time

from menas_zoo.costs import counted_cost, genotype_cost
from menas_zoo.search.config import SearchConfig
from menas_zoo.search.evolution import propose
from menas_zoo.space import sample_genotype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--population", type=int, default=8)
    args = parser.parse_args()

    print(f"{'profile':<8} {'limit':>9} {'gen 0 (s)':>10} {'fit':>8} {'in [0.5,1]':>11} "
          f"{'median use':>11} {'ms/draw':>8}")
    for profile, limit in (("tiny", 100_000), ("tiny", 500_000), ("tiny", 1_000_000), ("small", 100_000),
                           ("small", 1_000_000)):
        cfg = SearchConfig(profile=profile, population=args.population, max_params=limit, strategy="evolution")
        started = time.perf_counter()
        propose([], cfg, 0, 0, set(), lambda g: True)
        gen0 = time.perf_counter() - started
        started = time.perf_counter()
        usage = [genotype_cost(sample_genotype(profile, s, max_params=limit)).params / limit for s in range(args.seeds)]
        per_draw = (time.perf_counter() - started) / args.seeds * 1000
        fit = sum(u <= 1.0 for u in usage)
        spread = sum(0.5 <= u <= 1.0 for u in usage)
        print(f"{profile:<8} {limit:>9,} {gen0:>10.3f} {fit:>4}/{args.seeds:<3} {spread / args.seeds:>11.0%} "
              f"{statistics.median(usage):>11.2f} {per_draw:>8.1f}")

    genotypes = [sample_genotype("tiny", s) for s in range(20)]
    started = time.perf_counter()
    closed = [genotype_cost(g) for g in genotypes]
    closed_us = (time.perf_counter() - started) / len(genotypes) * 1e6
    started = time.perf_counter()
    counted = [counted_cost(g) for g in genotypes]
    counted_us = (time.perf_counter() - started) / len(genotypes) * 1e6
    assert closed == counted, "closed form and flop counter disagree"
    print(f"\ncost of one genotype: closed form {closed_us:.0f} us, flop counter {counted_us / 1000:.0f} ms "
          f"({counted_us / closed_us:.0f}x); identical on all {len(genotypes)}")


if __name__ == "__main__":
    main()
