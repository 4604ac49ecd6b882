"""The search loop: plan a generation, run its trials, persist each one, select survivors, repeat.

    generation 0       ``population`` random genotypes, trained from scratch
    generation 1..G    ``population`` children of the survivors (evolution.py), each a trial (trial.py)
    after each trial   the individual's folder, trials.jsonl line, state.json (state.py)
    after each gen.    survivors -> population; the population's mean MACs and best fitness -> history
    at the end         report.md, pareto.png and the winners as zoo artifacts (report.py)

``budget_minutes`` bounds one call: the loop stops within a training step of it, keeps the interrupted
trial's last finished epoch, and still writes the report. ``resume=True`` continues from the run folder
with no finished trial lost or re-run, the interrupted trial resumed, and a fresh budget.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from menas_zoo.costs import genotype_cost
from menas_zoo.data import DataSplits, load_splits
from menas_zoo.errors import MenasError
from menas_zoo.nets import build_model
from menas_zoo.search.backends import InProcessBackend
from menas_zoo.search.config import RESUMABLE_OVERRIDES, SearchConfig
from menas_zoo.search.evolution import propose, select_survivors
from menas_zoo.search.fitness import CostLimits, LatencyFn
from menas_zoo.search.state import RunState, TrialRecord
from menas_zoo.search.trial import TrialJob, TrialOutcome
from menas_zoo.slim import mask_summary
from menas_zoo.space.budget import check_feasible
from menas_zoo.space.genotype import Genotype

TrialCallback = Callable[[TrialRecord, RunState], None]


@dataclass
class SearchResult:
    state: RunState
    stopped_by_budget: bool
    report: Path | None

    @property
    def best(self) -> TrialRecord | None:
        return max(self.state.trials, key=lambda t: (t.fitness, -t.index), default=None)


def cost_limits(cfg: SearchConfig) -> CostLimits:
    return CostLimits(cfg.max_macs, cfg.max_params, cfg.max_latency_ms, cfg.penalty)


def fixed_on_resume(settings: dict) -> list[str]:
    """The settings among ``settings`` (those given, i.e. not None) that a resumed search cannot change:
    its run folder fixes everything but :data:`RESUMABLE_OVERRIDES` (the budget and the device)."""
    return [key for key, value in settings.items() if value is not None and key not in RESUMABLE_OVERRIDES]


def default_latency_fn(table: str | Path | None = None) -> LatencyFn:
    """The latency a ``max_latency_ms`` limit is checked against when no function is given: ONNX Runtime's
    measurement (:func:`menas_zoo.export.latency.measure_latency_ms`), or with ``table`` the prediction of
    that per-block latency table. The exporter is imported only here, when a latency limit is set."""
    try:
        from menas_zoo.export.latency import latency_fn
    except ImportError as exc:
        raise MenasError(f"a latency limit needs the exporter (onnx, onnxruntime): {exc}") from None
    return latency_fn(table)


def run_search(cfg: SearchConfig | None, out: str | Path, *, resume: bool = False, splits: DataSplits | None = None,
               latency_fn: LatencyFn | None = None, backend=None, on_trial: TrialCallback | None = None,
               overrides: dict | None = None, write_report: bool = True,
               on_start: Callable[[RunState], None] | None = None) -> SearchResult:
    """Run (or with ``resume=True`` continue) a search in ``out``. ``splits`` overrides the dataset in the
    config (tests, benchmarks); ``overrides`` may change only budget and device on resume
    (:func:`fixed_on_resume`). With a latency limit and no ``latency_fn``, candidates are measured in ONNX
    Runtime (:func:`default_latency_fn`). ``on_start`` sees the state once it is loaded or created, before
    the first trial."""
    out = Path(out)
    if resume:
        fixed = fixed_on_resume(overrides or {})
        if fixed:
            raise MenasError(f"{', '.join(fixed)} cannot change on --resume (the run folder fixes it); "
                             f"only {', '.join(RESUMABLE_OVERRIDES)} can")
        state = RunState.load(out)
        for key, value in (overrides or {}).items():
            if value is not None:
                setattr(state.config, key, value)
        cfg = state.config
        if cfg.max_latency_ms is not None and latency_fn is None:
            latency_fn = default_latency_fn()
    else:
        if cfg is None:
            raise MenasError("a new search needs its settings")
        if cfg.max_latency_ms is not None and latency_fn is None:  # before the run folder exists
            latency_fn = default_latency_fn()
        splits = splits or load_data(cfg)
        if cfg.resolution is not None and splits.train.resolution != cfg.resolution:
            raise MenasError(f"{cfg.dataset} images are {splits.train.resolution} px, not {cfg.resolution} px "
                             "(a resolution is chosen for an image folder only)")
        if cfg.in_chans is not None and splits.train.in_chans != cfg.in_chans:
            raise MenasError(f"{cfg.dataset} images are {splits.train.in_chans}-channel, not {cfg.in_chans}-channel "
                             "(channels are chosen for an image folder only)")
        cfg.in_chans, cfg.num_classes = splits.train.in_chans, len(splits.train.classes)
        cfg.resolution = splits.train.resolution
        # A limit no genotype of the profile can meet is refused before the run folder exists.
        check_feasible(cfg.profile, cfg.budget(), **cfg.genotype_fields())
        state = RunState.create(out, cfg)
    splits = splits or load_data(cfg)
    if on_start is not None:
        on_start(state)
    backend = backend or InProcessBackend()
    limits = cost_limits(cfg)
    session_start = call_start = time.perf_counter()

    def elapsed() -> float:
        return state.elapsed + time.perf_counter() - session_start

    def over_budget() -> bool:  # each call (a new search or a resume) gets the whole budget
        return cfg.budget_minutes is not None and time.perf_counter() - call_start >= cfg.budget_minutes * 60

    def accept(genotype: Genotype) -> bool:
        # Params and MACs limits are met by construction (the proposals are fitted and repaired).
        if limits.hard and cfg.max_latency_ms is not None:  # same shapes, same latency: untrained measures the same
            return latency_fn(build_model(genotype).eval()) <= cfg.max_latency_ms
        return True

    stopped = False
    while not state.finished:
        if state.pending is None:
            seen = {t.genotype for t in state.trials} | {t.trained_genotype for t in state.trials}
            state.pending = propose(state.members(), cfg, state.generation, state.next_index, seen, accept)
            state.save()
        done = {t.index for t in state.trials}
        jobs = [_job(state, c) for c in state.pending if c.index not in done]
        for outcome in backend.run(jobs, splits, cfg, latency_fn, over_budget, work_dir=state.partial_dir):
            record = trial_record(outcome, limits, elapsed())
            state.add_trial(record, outcome.state, outcome.masks, input_spec=splits.input_spec(),
                            labels=list(splits.train.classes))
            shutil.rmtree(state.partial_dir(record.index), ignore_errors=True)
            state.elapsed, session_start = elapsed(), time.perf_counter()
            state.save()
            if on_trial is not None:
                on_trial(record, state)
        if {c.index for c in state.pending} - {t.index for t in state.trials}:
            stopped = over_budget()
            if not stopped:  # a backend only returns early on the budget
                raise MenasError("the backend stopped before finishing the generation")
            break
        _close_generation(state)
    state.elapsed, session_start = elapsed(), time.perf_counter()
    state.save()
    report = None
    if write_report and state.trials:
        from menas_zoo.search.report import write_report as write

        report = write(state, splits, stopped_by_budget=stopped)
    return SearchResult(state=state, stopped_by_budget=stopped, report=report)


def _close_generation(state: RunState) -> None:
    """Survivors of (population + this generation's children) become the next population."""
    cfg = state.config
    children = [t for t in state.trials if t.generation == state.generation]
    pool = state.members() + children
    survivors = select_survivors(pool, cfg)
    state.population = [m.index for m in survivors]
    members = state.members()
    state.history.append({
        "generation": state.generation,
        "population": state.population,
        "mean_macs": sum(m.macs for m in members) / len(members),
        "mean_params": sum(m.params for m in members) / len(members),
        "best_fitness": max(m.fitness for m in members),
        "mean_fitness": sum(m.fitness for m in members) / len(members),
        "elapsed": state.elapsed,
    })
    state.generation += 1
    state.pending = None
    state.finished = state.generation > cfg.generations
    state.save()
    state.drop_tickets(set(state.population))  # only after state.json no longer needs them


def _job(state: RunState, candidate) -> TrialJob:
    job = _inheriting_job(state, candidate)
    job.stop_below = median_rung(state)
    return job


def median_rung(state: RunState) -> float | None:
    """``--median-stop``'s threshold for the children of the current generation: the median rung score of
    the population they are bred from (fixed for the generation, so a resumed run stops the same trials)."""
    if not state.config.median_stop:
        return None
    scores = [m.rung_accuracy for m in state.members() if m.rung_accuracy is not None]
    return statistics.median(scores) if scores else None


def _inheriting_job(state: RunState, candidate) -> TrialJob:
    cfg = state.config
    if candidate.parent is None or not (cfg.weight_sharing and cfg.tickets):  # inheritance starts from tickets
        return TrialJob(candidate)
    genotype, weights = state.parent_weights(candidate.parent)
    if weights is None:  # a diverged parent: the child starts from a fresh initialization, and says so
        return TrialJob(candidate, diverged_parents=(candidate.parent,))
    job = TrialJob(candidate, parent_genotype=genotype, parent_state=weights)
    if candidate.second_parent is not None and candidate.second_stages:
        second_genotype, second_state = state.parent_weights(candidate.second_parent)
        if second_state is None:  # the first parent's weights then fill the whole child
            job.diverged_parents = (candidate.second_parent,)
        else:
            job.second_genotype, job.second_state = second_genotype, second_state
    return job


def trial_record(outcome: TrialOutcome, limits: CostLimits, elapsed: float) -> TrialRecord:
    """What trials.jsonl keeps of a finished trial: its outcome with its costs and fitness under ``limits``."""
    c = outcome.candidate
    cost = genotype_cost(outcome.genotype)
    return TrialRecord(
        index=c.index, generation=c.generation, op=c.op, parent=c.parent, second_parent=c.second_parent,
        genotype=outcome.genotype, trained_genotype=c.genotype, accuracy=outcome.accuracy,
        trained_accuracy=outcome.trained_accuracy,
        # A diverged trial ranks with the infeasible ones, below every model that can survive or breed.
        fitness=-1.0 if outcome.diverged else limits.fitness(outcome.accuracy, cost.macs, cost.params,
                                                             outcome.latency_ms),
        macs=cost.macs, params=cost.params, latency_ms=outcome.latency_ms, epochs=outcome.epochs,
        stopped_early=outcome.stopped_early, seconds=outcome.seconds, elapsed=elapsed,
        masks=mask_summary(outcome.masks), inherit=outcome.inherit, ticket_accuracy=outcome.ticket_accuracy,
        pruned=outcome.pruned, feasible=outcome.feasible, phase_seconds=outcome.phase_seconds,
        diverged=outcome.diverged, ticket_widths=outcome.ticket_widths, rung_accuracy=outcome.rung_accuracy,
        median_stopped=outcome.median_stopped)


def load_data(cfg: SearchConfig) -> DataSplits:
    """The search's images: an image folder is read at the run's resolution (the profile's unless set) and
    with its channels (RGB unless set), and a resumed run reads it as it started."""
    return load_splits(cfg.dataset, cfg.data_dir, val_size=cfg.val_size, seed=cfg.seed, train_subset=cfg.train_subset,
                       in_chans=cfg.in_chans, resolution=cfg.resolution or cfg.profile.resolution)
