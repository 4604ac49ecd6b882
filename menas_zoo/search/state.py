"""The run folder: everything a search needs to resume where it was killed, written atomically.

    config.json             the SearchConfig (``--resume`` reads it back)
    trials.jsonl            one line per finished trial (the source of truth for "finished")
    state.json              generation, population, the generation's planned children, history
    tickets/trial-000012/   every individual as a zoo artifact (see below)
    partial/trial-000013/   per-epoch checkpoints of the trial in progress (resumed after a kill)
    report.md, pareto.png, winners/   written at the end (report.py)
    .search.lock            held by the one process running the search (see lock_run_folder)

An individual's folder is what ``menas_zoo.artifact`` writes and reads for any model: config.json (its
genotype, the trained child's genotype as parent genotype, the prune summary, the search's validation
accuracy and fitness, the data's input spec and labels, provenance), masks.safetensors (with tickets:
the ticket's masks against the child, kept for every trial) and model.safetensors, kept while the
search may still need the weights (the population, the generation's children) and then deleted; the
rest of the folder stays. So ``menas-zoo load``, ``info`` or ``export`` take ``tickets/trial-000012``
as they take any model. An infeasible ticket is never trained further and has no weights to keep, nor
has a trial whose training diverged (NaN weights): it scores -1, so it neither survives nor breeds
while any other can, and no child inherits from it.

A trial is finished once its line is in trials.jsonl. Its folder is written first (staged beside and
renamed into place), then the line, then state.json, each by write-to-temporary-and-rename, so a kill
at any instant leaves either the trial finished with its weights or not finished at all (then it is
re-run from scratch: trials are pure functions of their inputs, so the result is the same). A file that
is not ours, or is damaged, is a clear MenasError, never a silent restart.

Run folders written before individuals were artifacts hold single-file tickets
(``tickets/trial-000012.safetensors``: weights and masks, genotypes in its metadata) and every ticket's
masks again in ``masks/``. They are still read, reported and resumed (:func:`load_single_file_ticket`,
:func:`ticket_masks_path`); trials run after such a resume write folders.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from menas_zoo.artifact import MASKS, WEIGHTS, Artifact, build_config, check_state_dict, load_artifact, write_artifact
from menas_zoo.errors import GenotypeError, MenasError, NonFiniteWeightsError, first_line
from menas_zoo.io import write_json_atomic, write_text_atomic
from menas_zoo.nets import build_model
from menas_zoo.search.config import SearchConfig
from menas_zoo.search.evolution import Candidate
from menas_zoo.slim import Masks
from menas_zoo.space.genotype import Genotype

FORMAT = "menas-zoo-search"
# 2: one training per trial (the ticket is cut inside the fitness proxy). Individuals became artifact
# folders within version 2: the layout tells the two kinds of ticket apart, and both are read.
VERSION = 2
CONFIG, TRIALS, STATE, TICKETS, PARTIAL = "config.json", "trials.jsonl", "state.json", "tickets", "partial"
#: Where runs with single-file tickets kept every ticket's masks a second time; read, never written now.
LEGACY_MASKS = "masks"
LOCK = ".search.lock"


@dataclass
class TrialRecord:
    """One line of trials.jsonl: a finished trial and the individual it produced."""

    index: int
    generation: int
    op: str
    parent: int | None
    second_parent: int | None
    genotype: Genotype  # the individual (the ticket's genotype with tickets on)
    trained_genotype: Genotype  # the child as trained, before pruning
    accuracy: float  # validation accuracy (split carved from the training set)
    trained_accuracy: float | None  # the dense child when its ticket was cut (None without tickets)
    fitness: float
    macs: int
    params: int
    latency_ms: float | None
    epochs: int
    stopped_early: bool
    seconds: float  # this trial's wall-clock time
    elapsed: float  # the run's wall-clock time when the trial finished (across resumes)
    masks: dict[str, list[int]] = field(default_factory=dict)  # {block: [kept, total]}
    inherit: dict[str, Any] = field(default_factory=dict)
    ticket_accuracy: float | None = None  # the ticket with the child's (inherited, trained) weights
    pruned: float = 0.0  # fraction of prunable channels the ticket really removed
    feasible: bool = True
    phase_seconds: dict[str, float] = field(default_factory=dict)
    diverged: bool = False  # its training ended with non-finite weights: scored -1, no weights kept
    ticket_widths: dict[str, list[int]] = field(default_factory=dict)  # steering: the ticket its |gamma| gives
    rung_accuracy: float | None = None  # --median-stop: validation score after median_stop_epoch epochs
    median_stopped: bool = False  # --median-stop: under its parents' median there, trained no further

    @property
    def kept_weights(self) -> bool:
        """Whether the search keeps (while it needs them) this individual's weights: not an infeasible
        ticket's, never trained to the end, nor a diverged one's, which no child may inherit."""
        return self.feasible and not self.diverged

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["genotype"] = self.genotype.to_dict()
        data["trained_genotype"] = self.trained_genotype.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        data = dict(data)
        data["genotype"] = Genotype.from_dict(data["genotype"])
        data["trained_genotype"] = Genotype.from_dict(data["trained_genotype"])
        return cls(**data)


@dataclass
class RunState:
    """The search's progress. ``population`` and ``pending`` hold trial indices / planned children."""

    out: Path
    config: SearchConfig
    trials: list[TrialRecord] = field(default_factory=list)
    generation: int = 0
    population: list[int] = field(default_factory=list)
    pending: list[Candidate] | None = None  # children planned for ``generation``; None = not planned yet
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per finished generation
    elapsed: float = 0.0  # seconds of search before this session
    finished: bool = False
    lock: FileLock | None = field(default=None, repr=False, compare=False)  # held while this state lives

    # -- lookups ---------------------------------------------------------------------------------
    @property
    def by_index(self) -> dict[int, TrialRecord]:
        return {t.index: t for t in self.trials}

    def members(self) -> list[TrialRecord]:
        lookup = self.by_index
        return [lookup[i] for i in self.population]

    @property
    def next_index(self) -> int:
        planned = [c.index for c in self.pending or []]
        return max([t.index for t in self.trials] + planned, default=-1) + 1

    def ticket_dir(self, index: int) -> Path:
        """Individual ``index`` as a zoo artifact (see the module doc)."""
        return self.out / TICKETS / trial_name(index)

    def has_weights(self, index: int) -> bool:
        """Whether individual ``index``'s weights are still on disk (in its folder, or an older run's file)."""
        return (self.ticket_dir(index) / WEIGHTS).is_file() or single_file_ticket_path(self.out, index).is_file()

    # -- create / load ---------------------------------------------------------------------------
    @classmethod
    def create(cls, out: Path, config: SearchConfig) -> RunState:
        out = Path(out)
        if (out / STATE).exists() or (out / CONFIG).exists():
            raise MenasError(f"{out} already holds a search; continue it with --resume {out}, or pick a new --out")
        if out.exists() and not out.is_dir():
            raise MenasError(f"--out {out} exists and is not a folder")
        lock = lock_run_folder(out)
        if (out / STATE).exists() or (out / CONFIG).exists():  # created while we waited for the lock
            raise MenasError(f"{out} already holds a search; continue it with --resume {out}, or pick a new --out")
        state = cls(out=out, config=config, lock=lock)
        write_json_atomic(out / CONFIG, {"format": FORMAT, "version": VERSION, "config": config.to_dict()})
        state.save()
        return state

    @classmethod
    def load(cls, out: Path) -> RunState:
        out = Path(out)
        if not (out / STATE).exists() or not (out / CONFIG).exists():
            raise MenasError(f"{out} is not a search run folder (no {STATE} and {CONFIG}); start one with --out")
        lock = lock_run_folder(out)
        config = read_run_config(out)
        doc = _read_json(out / STATE)
        try:
            state = cls(out=out, config=config, generation=int(doc["generation"]),
                        population=[int(i) for i in doc["population"]],
                        pending=None if doc["pending"] is None else [Candidate.from_dict(c) for c in doc["pending"]],
                        history=list(doc["history"]), elapsed=float(doc["elapsed"]), finished=bool(doc["finished"]),
                        lock=lock)
        except (KeyError, TypeError, ValueError) as exc:
            raise MenasError(f"{out / STATE} is damaged ({type(exc).__name__}: {exc}); it cannot be resumed") from None
        state.trials = read_trials(out)
        state._check()
        for leftover in out.rglob(".*.tmp"):  # a write that SIGKILL cut short; never under a final name
            if leftover.is_dir():  # an artifact's staging folder (tickets/, winners/)
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return state

    def _check(self) -> None:
        indices = [t.index for t in self.trials]
        if len(indices) != len(set(indices)):
            raise MenasError(f"{self.out / TRIALS} lists a trial twice; the run folder is damaged")
        known = set(indices)
        missing = [i for i in self.population if i not in known]
        if missing:
            raise MenasError(f"{self.out / STATE} names individuals {missing} that {TRIALS} does not have")
        needed = set(self.population) | {t.index for t in self.trials if t.generation == self.generation}
        lookup = self.by_index
        absent = [i for i in sorted(needed) if lookup[i].kept_weights and not self.has_weights(i)]
        if absent and not self.finished:
            raise MenasError(f"ticket weights of trials {absent} are missing from {self.out / TICKETS}")

    # -- write -----------------------------------------------------------------------------------
    def save(self) -> None:
        write_json_atomic(self.out / STATE, {
            "format": FORMAT, "version": VERSION, "generation": self.generation, "population": self.population,
            "pending": None if self.pending is None else [c.to_dict() for c in self.pending],
            "history": self.history, "elapsed": self.elapsed, "finished": self.finished})

    def add_trial(self, record: TrialRecord, weights: dict[str, torch.Tensor], masks: Masks, *,
                  input_spec: dict[str, Any] | None = None, labels: list[str] | None = None) -> None:
        """Persist one finished trial: its folder, then its trials.jsonl line (see the module doc).

        ``input_spec`` and ``labels`` describe the search's data, so the individual's folder is a model
        that ``predict`` can feed as it is."""
        config = build_config(record.genotype, parent_genotype=record.trained_genotype, masks=masks or None,
                              metrics=trial_metrics(record, self.config), input_spec=input_spec, labels=labels,
                              provenance=trial_provenance(record, self))
        # An infeasible ticket was never trained further, a diverged trial's weights are not finite: their
        # folders describe them, without weights.
        write_artifact(self.ticket_dir(record.index), config, weights if record.kept_weights else None,
                       masks or None)
        self.trials.append(record)
        lines = "".join(json.dumps(t.to_dict(), allow_nan=False) + "\n" for t in self.trials)
        write_text_atomic(self.out / TRIALS, lines)

    def drop_tickets(self, keep: set[int]) -> None:
        """Delete weights no longer needed (after state.json stopped referring to them); their folders stay."""
        folder = self.out / TICKETS
        for path in folder.iterdir() if folder.exists() else []:
            index = _trial_index(path.name.removesuffix(".safetensors"))
            if index is None or index in keep:
                continue
            if path.is_dir():
                (path / WEIGHTS).unlink(missing_ok=True)
            elif path.suffix == ".safetensors":  # an older run's ticket; its masks are in masks/
                path.unlink(missing_ok=True)

    def partial_dir(self, index: int) -> Path:
        """Checkpoints of a trial still running (removed once the trial is in trials.jsonl)."""
        return self.out / PARTIAL / trial_name(index)

    def load_ticket(self, index: int) -> Artifact:
        """Individual ``index`` with its weights, loaded as the zoo loads any model (or an older run's file)."""
        legacy = single_file_ticket_path(self.out, index)
        if not (self.ticket_dir(index) / WEIGHTS).is_file() and legacy.is_file():
            return load_single_file_ticket(legacy)
        return load_artifact(self.ticket_dir(index))

    def parent_weights(self, index: int) -> tuple[Genotype, dict[str, torch.Tensor] | None]:
        """What a child of individual ``index`` inherits from it: its genotype and weights. An infeasible
        ticket was never trained further and has no weights: its children get an empty state, as they
        did when its ticket file held masks alone (so a resumed run inherits what it would have). A
        diverged individual is no donor (None): its record says so, or, in a run folder written before
        records did, its weights are not finite."""
        record = self.by_index[index]
        if not record.feasible:
            return record.genotype, {}
        if record.diverged:
            return record.genotype, None
        try:
            ticket = self.load_ticket(index)
        except NonFiniteWeightsError:
            return record.genotype, None
        return ticket.genotype, ticket.model.state_dict()


def trial_name(index: int) -> str:
    return f"trial-{index:06d}"


def _trial_index(name: str) -> int | None:
    prefix, _, number = name.partition("-")
    return int(number) if prefix == "trial" and number.isdigit() else None


def trial_metrics(record: TrialRecord, cfg: SearchConfig) -> dict[str, Any]:
    """What the search measured of an individual, in an artifact's metrics: its validation accuracy (a
    split carved from the training images; none for an infeasible ticket or a diverged trial, which are not
    scored) and fitness."""
    metrics: dict[str, Any] = {"fitness": record.fitness}
    if record.kept_weights:
        metrics["accuracy"] = {"value": record.accuracy, "dataset": cfg.dataset, "split": "validation"}
    return metrics


def trial_provenance(record: TrialRecord, state: RunState) -> dict[str, Any]:
    cfg = state.config
    provenance = {"search_run": state.out.name, "strategy": cfg.strategy, "seed": cfg.seed, "trial": record.index,
                  "generation": record.generation}
    return {**provenance, "diverged": True} if record.diverged else provenance


# -- one search per run folder -----------------------------------------------------------------------

def lock_run_folder(out: Path) -> FileLock:
    """Hold ``out`` for this process, or fail at once with one line if another search holds it.

    An OS lock (flock) on ``out/.search.lock``: it is released when the state that holds it is dropped or
    the process ends, however it ends (a SIGKILL included), so a killed search never blocks its resume.
    Within one process the same lock is shared (``is_singleton``), so a caller may resume a search it ran.
    """
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK, timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise MenasError(f"{out} is in use by another search that is still running; wait for it to finish or stop "
                         "it before resuming") from None
    return lock


# -- runs written before individuals were artifacts -----------------------------------------------------

def single_file_ticket_path(out: Path, index: int) -> Path:
    return Path(out) / TICKETS / f"{trial_name(index)}.safetensors"


def load_single_file_ticket(path: Path) -> Artifact:
    """An older run's ticket file (``model.*`` and ``mask.*`` tensors, genotypes in its metadata), as the
    :class:`~menas_zoo.artifact.Artifact` its folder would load as: what resuming and reporting need."""
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
        if meta.get("format") != FORMAT:
            raise MenasError(f"{path} is not a menas-zoo search ticket")
        genotype, trained = Genotype.from_json(meta["genotype"]), Genotype.from_json(meta["trained_genotype"])
    except (OSError, SafetensorError, KeyError) as exc:
        raise MenasError(f"ticket {path} is unreadable ({first_line(exc)}); the run folder is damaged") from None
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    masks = {k.removeprefix("mask."): v for k, v in tensors.items() if k.startswith("mask.")}
    model = build_model(genotype)
    check_state_dict(weights, model, where=str(path))
    model.load_state_dict(weights)
    config = build_config(genotype, parent_genotype=trained, masks=masks or None)
    return Artifact(model=model.eval(), config=config, masks=masks or None, path=path)


def ticket_masks_path(out: Path, index: int) -> Path | None:
    """Trial ``index``'s ticket masks (against its trained child), kept whether or not its weights are:
    in its folder, or in an older run's ``masks/``. None for a trial without masks (no tickets)."""
    name = trial_name(index)
    for path in (Path(out) / TICKETS / name / MASKS, Path(out) / LEGACY_MASKS / f"{name}.safetensors"):
        if path.is_file():
            return path
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise MenasError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MenasError(f"{path} is corrupt (not JSON: {exc}); it cannot be resumed") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MenasError(f"{path} was not written by a menas-zoo search; refusing to resume from it")
    if doc.get("version") != VERSION:
        raise MenasError(f"{path} has search-state version {doc.get('version')!r}; this menas-zoo reads {VERSION}")
    return doc


def read_run_config(out: Path) -> SearchConfig:
    """A run folder's settings, from its config.json alone (a summary copied without state.json will do)."""
    path = Path(out) / CONFIG
    try:
        return SearchConfig.from_dict(_read_json(path)["config"])
    except (KeyError, TypeError, GenotypeError) as exc:
        raise MenasError(f"{path} is damaged ({exc})") from None


def read_trials(out: Path) -> list[TrialRecord]:
    """A run folder's trial records as its trials.jsonl has them, without the weights a resume needs."""
    path = Path(out) / TRIALS
    if not path.exists():
        return []
    trials = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            trials.append(TrialRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, GenotypeError) as exc:
            raise MenasError(f"{path} line {n} is corrupt ({type(exc).__name__}: {exc}); "
                             "it cannot be resumed") from None
    return trials

