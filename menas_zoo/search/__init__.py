"""MENAS: evolutionary multi-trial NAS where every trial is replaced by its lottery ticket.

``run_search(SearchConfig(...), out)`` is the entry point; ``menas-zoo search`` wraps it. One concept per
module: config (settings, strategies), evolution (selection, mutation, crossover), inherit (weight
sharing), trial (one trial with Early-Bird), ticket (pruning), fitness (cost limits), state (run folder,
resume), backends (in-process, Ray), report (report.md, pareto.png, winners), run (the loop).
"""

from menas_zoo.search.config import STRATEGIES, SearchConfig
from menas_zoo.search.fitness import CostLimits
from menas_zoo.search.run import SearchResult, default_latency_fn, fixed_on_resume, run_search
from menas_zoo.search.state import RunState, TrialRecord

__all__ = ["STRATEGIES", "CostLimits", "RunState", "SearchConfig", "SearchResult", "TrialRecord", "default_latency_fn",
           "fixed_on_resume", "run_search"]
