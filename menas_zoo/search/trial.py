"""One trial: one training from a fresh initialization, inside which a ticket is cut; then the score.

Every trial of every strategy trains ``epochs`` epochs from a seeded fresh initialization with one
recipe, and its fitness is the validation accuracy at the end (BN recalibrated first). So fitness is
the same measurement of an architecture whatever its lineage, and a MENAS trial costs what an
evolution trial costs: one training, not a mask phase plus a proxy.

With tickets (MENAS) the training has two parts, as in Early-Bird tickets (You et al. 2020):

1. **Dense.** The child trains with calibrated BN sparsity (the shrink adds up over the dense cap) until
   the Early-Bird rule sees its channel mask stop moving, or the cap (``SearchConfig.dense_epochs``).
2. **Ticket.** The child is pruned into its ticket (``ticket.py``), further where needed to fit the cost
   limit, keeping the trained weights of the kept channels, and the ticket trains the remaining epochs
   on the same learning-rate schedule. The ticket is narrower, so the sooner Early-Bird cuts it, the
   cheaper the trial. Its weights are what the population keeps.

Without tickets (regularized evolution, random search, ``--no-tickets``) the child trains all
``epochs`` epochs as it is; with ``--median-stop`` it is scored after ``median_stop_epoch`` of them as
at the end (BN recalibrated, the whole validation split) and stops there when under its parents'
median (``TrialJob.stop_below``), that score its fitness. With ``--steer`` that training has the
calibrated BN shrink over its first ``mask_epochs``, and the trial records the ticket the child's
|gamma| would give (``ticket_widths``), which steers its children's widths; the child itself is scored
and kept dense. ``--weight-sharing`` starts a child from its parents' weights (a crossover child takes
each stage from the parent that gave it) instead of a fresh initialization.

:func:`run_trial` is a pure function of its inputs (the candidate, the parents' weights, the data, the
config): its random streams are seeded from ``(seed, trial index)``, so the same trial gives the same
result in-process, after a resume, or (with the same thread count) on a Ray worker.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from menas_zoo.data import DataSplits
from menas_zoo.errors import MenasError
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.search.config import SearchConfig, derive_seed
from menas_zoo.search.evolution import Candidate
from menas_zoo.search.fitness import LatencyFn
from menas_zoo.search.inherit import inherit_weights, stage_keys
from menas_zoo.search.state import TrialRecord
from menas_zoo.search.ticket import make_ticket, pruned_fraction, ticket_masks
from menas_zoo.slim import Masks, channel_masks, mask_summary, slim_genotype, top_channels
from menas_zoo.space.genotype import Genotype
from menas_zoo.train import TrainConfig, evaluate, recalibrate_bn, resolve_device, train


class EarlyBird:
    """``on_epoch_end`` hook: True (stop) once the channel mask has stopped moving.

    Each epoch's mask is also written into the epoch's metrics (``eb_mask``, hex), so a trial resumed
    from a checkpoint restores the window it had (:meth:`restore`) and stops where it would have.
    """

    def __init__(self, prune_ratio: float, window: int = 5, threshold: float = 0.1, min_channels: int = 8,
                 allocation: str = "global"):
        self.prune_ratio, self.threshold, self.min_channels = prune_ratio, threshold, min_channels
        self.allocation = allocation
        self.masks: deque[torch.Tensor] = deque(maxlen=window)

    def restore(self, history: list[dict]) -> None:
        for metrics in history:
            if "eb_mask" in metrics:
                self.masks.append(_unpack(metrics["eb_mask"], int(metrics["eb_mask_len"])))

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return (a != b).float().mean().item() if a.numel() else 0.0

    def __call__(self, epoch: int, model: MobileNetMT, metrics: dict[str, float]) -> bool:
        # The exact threshold (no rounding): Early-Bird watches the ranking converge, not the final widths.
        masks = channel_masks(model, self.prune_ratio, self.min_channels, multiple_of=1, allocation=self.allocation)
        flat = torch.cat(list(masks.values())) if masks else torch.zeros(0, dtype=torch.bool)
        self.masks.append(flat)
        metrics["eb_mask"], metrics["eb_mask_len"] = _pack(flat), flat.numel()
        if len(self.masks) < self.masks.maxlen:
            return False
        newest = self.masks[-1]
        return all(self.distance(newest, old) < self.threshold for old in list(self.masks)[:-1])


class MedianStop:
    """``on_epoch_end`` hook of ``--median-stop``: after ``epoch`` epochs the trial is scored as a finished
    one is (BN recalibrated, the whole validation split) and stops (True) when under ``stop_below``. The
    score goes into the epoch's metrics (``rung_acc``), so a resumed trial keeps it. The scoring runs on
    a forked RNG (its forward passes would draw dropout masks), and BN running statistics neither shape
    the training nor survive the final recalibration: a trial that goes on trains and scores exactly as
    it would without the rule."""

    def __init__(self, epoch: int, stop_below: float | None, splits: DataSplits, seed: int):
        self.epoch, self.stop_below, self.splits, self.seed = epoch, stop_below, splits, seed

    def __call__(self, epoch: int, model: MobileNetMT, metrics: dict[str, float]) -> bool:
        if epoch != self.epoch:
            return False
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            recalibrate_bn(model, self.splits.train, batches=RECALIBRATION_BATCHES, seed=self.seed)
            metrics["rung_acc"] = evaluate(model, self.splits.val)["acc"]
        return self.stop_below is not None and metrics["rung_acc"] < self.stop_below

    @staticmethod
    def outcome(history: list[dict]) -> tuple[float | None, bool]:
        """``(rung accuracy, stopped there)`` from a training's history (None: no rung was scored)."""
        rung = [m for m in history if "rung_acc" in m]
        if not rung:
            return None, False
        return rung[0]["rung_acc"], bool(history[-1].get("stopped_early"))


def _pack(mask: torch.Tensor) -> str:
    bits = "".join("1" if b else "0" for b in mask.tolist())
    return f"{int(bits, 2):x}" if bits else ""


def _unpack(text: str, length: int) -> torch.Tensor:
    bits = bin(int(text, 16))[2:].zfill(length) if length else ""
    return torch.tensor([c == "1" for c in bits], dtype=torch.bool)


@dataclass
class TrialJob:
    """Everything a trial needs besides the data and the config (what a Ray task receives)."""

    candidate: Candidate
    parent_genotype: Genotype | None = None
    parent_state: dict[str, torch.Tensor] | None = None
    second_genotype: Genotype | None = None  # crossover: the parent that gave ``candidate.second_stages``
    second_state: dict[str, torch.Tensor] | None = None
    diverged_parents: tuple[int, ...] = ()  # parents whose weights were not finite: no donors
    stop_below: float | None = None  # --median-stop: the parents' median rung score (None: no rule yet)


@dataclass
class TrialOutcome:
    candidate: Candidate
    genotype: Genotype  # what enters the population: the ticket's genotype, or the child's without tickets
    state: dict[str, torch.Tensor]  # its weights at the end of the trial's training (CPU)
    masks: Masks  # ticket masks relative to the dense child (empty without tickets)
    accuracy: float  # fitness proxy: validation accuracy after ``epochs`` epochs from a fresh initialization
    trained_accuracy: float | None  # the dense child's accuracy when its ticket was cut (None without tickets)
    epochs: int  # dense epochs before the ticket was cut (0 without tickets)
    stopped_early: bool  # Early-Bird cut the ticket before the dense cap
    seconds: float
    latency_ms: float | None = None
    inherit: dict[str, Any] = field(default_factory=dict)
    ticket_accuracy: float | None = None  # the ticket just cut, with the child's weights, BN recalibrated
    pruned: float = 0.0  # fraction of prunable channels the ticket really removed
    feasible: bool = True  # False: even the most pruned ticket is over a hard limit (trained no further)
    diverged: bool = False  # True: the training ended with NaN or infinite weights (not scored, none kept)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # mask (dense), ticket (cut), proxy (rest), score
    ticket_widths: dict[str, list[int]] = field(default_factory=dict)  # --steer: the ticket the child would give
    rung_accuracy: float | None = None  # --median-stop: the validation score after median_stop_epoch epochs
    median_stopped: bool = False  # --median-stop: under the median there, so trained no further


def run_trial(job: TrialJob, splits: DataSplits, cfg: SearchConfig, latency_fn: LatencyFn | None = None,
              should_stop=None, work_dir: Path | None = None) -> TrialOutcome:
    """Run one trial (see the module doc). ``should_stop`` interrupts it between two training steps
    (:class:`~menas_zoo.train.TrainingInterrupted`); with ``work_dir`` each part checkpoints every
    epoch there, and the same call later resumes from the last finished epoch."""
    start = time.perf_counter()
    phase_dir = (lambda name: Path(work_dir) / name) if work_dir is not None else (lambda name: None)
    candidate = job.candidate
    seed = derive_seed(cfg.seed, "trial", candidate.index)
    recipe = proxy_config(cfg, seed)
    torch.manual_seed(derive_seed(cfg.seed, "proxy", candidate.index))  # the fresh initialization
    model = build_model(candidate.genotype)
    inherit = _inherit(model, job) if cfg.weight_sharing else {}
    masks, phases = {}, {}
    trained_accuracy = ticket_accuracy = None
    dense_epochs, stopped_early, feasible = 0, False, True
    desc = f"trial {candidate.index}"

    if cfg.tickets:
        dense_epochs, stopped_early = _train_dense(model, splits, cfg, recipe, desc=desc, should_stop=should_stop,
                                                   out_dir=phase_dir("mask"))
        phases["mask"] = time.perf_counter() - start
        t0 = time.perf_counter()
        # Dense and ticket accuracy (reported, not ranked on) are both measured after BN recalibration, on
        # the first REPORT_IMAGES validation images: enough to compare the two, cheap next to the training.
        report_val = splits.val.subset(torch.arange(min(REPORT_IMAGES, len(splits.val))))
        recalibrate_bn(model, splits.train, batches=REPORT_RECALIBRATION_BATCHES, seed=seed)
        trained_accuracy = evaluate(model, report_val)["acc"]
        ticket = make_ticket(model, splits, prune_ratio=cfg.prune_ratio, min_channels=cfg.min_channels,
                             channel_multiple=cfg.channel_multiple, budget=cfg.budget(),
                             max_ratio=cfg.max_prune_ratio, seed=seed, allocation=cfg.ticket_allocation,
                             recalibration_batches=REPORT_RECALIBRATION_BATCHES)
        model, masks = ticket.model, ticket.masks
        ticket_accuracy = evaluate(model, report_val)["acc"]  # make_ticket recalibrated its BN
        feasible = cfg.budget().fits(model.genotype)
        phases["ticket"] = time.perf_counter() - t0
        recipe = dataclasses.replace(recipe, epochs=cfg.epochs - dense_epochs, schedule_offset=dense_epochs,
                                     seed=derive_seed(seed, "ticket"))
    elif cfg.steer:  # the dense child trains the whole trial, with the shrink that lets |gamma| rank its channels
        recipe = sparse_config(recipe, cfg)

    accuracy, latency, state = 0.0, None, {}  # an infeasible ticket scores 0 and trains no further
    ticket_widths = {}
    diverged = median_stopped = False
    rung_accuracy = None
    if feasible:
        t0 = time.perf_counter()
        rung = MedianStop(cfg.median_stop_epoch, job.stop_below, splits, seed) if cfg.median_stop else None
        if recipe.epochs > 0:
            result = train(model, splits, recipe, progress=False, desc=desc, should_stop=should_stop,
                           validate="none", out_dir=phase_dir("proxy"), on_epoch_end=rung)
            rung_accuracy, median_stopped = MedianStop.outcome(result.history)
        phases["proxy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # After a short run the BN running averages lag the fast-moving weights: re-estimate them first.
        recalibrate_bn(model, splits.train, batches=RECALIBRATION_BATCHES, seed=seed)
        # A diverged training scores 0 and keeps no weights: NaN weights would make every child of it fail.
        diverged = not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    if feasible and not diverged:
        accuracy = evaluate(model, splits.val)["acc"]
        model.eval()
        latency = float(latency_fn(model)) if latency_fn is not None else None
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if cfg.steer:
            ticket_widths = mask_summary(ticket_masks(model, cfg.prune_ratio, min_channels=cfg.min_channels,
                                                      channel_multiple=cfg.channel_multiple,
                                                      allocation=cfg.ticket_allocation))
        phases["score"] = time.perf_counter() - t0
    return TrialOutcome(candidate=candidate, genotype=model.genotype, state=state,
                        masks={k: v.cpu() for k, v in masks.items()}, accuracy=accuracy,
                        trained_accuracy=trained_accuracy, epochs=dense_epochs, stopped_early=stopped_early,
                        seconds=time.perf_counter() - start, latency_ms=latency, inherit=inherit,
                        ticket_accuracy=ticket_accuracy, pruned=pruned_fraction(masks) if masks else 0.0,
                        feasible=feasible, diverged=diverged, phase_seconds=phases, ticket_widths=ticket_widths,
                        rung_accuracy=rung_accuracy, median_stopped=median_stopped)


def _train_dense(model: MobileNetMT, splits: DataSplits, cfg: SearchConfig, recipe: TrainConfig, *, desc: str,
                 should_stop=None, out_dir: Path | None = None) -> tuple[int, bool]:
    """A ticket's dense part: the child trains with BN sparsity until Early-Bird sees its channel mask
    settle, or the dense cap. Returns the epochs it trained and whether Early-Bird stopped it."""
    cap = cfg.dense_epochs
    early_bird = EarlyBird(cfg.prune_ratio, cfg.eb_window, cfg.eb_threshold, cfg.min_channels, cfg.ticket_allocation) \
        if cfg.early_bird else None

    def cut(epoch: int, net: MobileNetMT, metrics: dict[str, float]) -> bool:
        settled = early_bird(epoch, net, metrics) if early_bird is not None else False
        if settled and epoch < cap:
            metrics["early_bird"] = 1.0
        return settled or epoch >= cap

    if early_bird is not None:
        cut.restore = early_bird.restore  # type: ignore[attr-defined]
    result = train(model, splits, sparse_config(recipe, cfg), on_epoch_end=cut, progress=False, out_dir=out_dir,
                   desc=f"{desc} dense", should_stop=should_stop, validate="none")
    return result.epochs, any(m.get("early_bird") for m in result.history)


def replay_ticket_masks(record: TrialRecord, cfg: SearchConfig, splits: DataSplits) -> Masks:
    """Trial ``record``'s ticket masks, for a run folder that kept its trials.jsonl but not its tickets
    (trials.jsonl records how many channels each block kept, not which). The trial's dense part trains
    again from its seeds, and each block keeps its recorded number of channels, those with the largest
    |gamma|, as the cut ranks them. With the same machine, library versions and thread count the replay
    is the trial's own training and gives its masks; elsewhere floating point can reorder near-tied
    channels, so the masks are the replay's, with the recorded widths. A trial that inherited weights
    (``--weight-sharing``) cannot be replayed from its record alone."""
    if not record.masks:
        raise MenasError(f"trial {record.index} cut no ticket: it has no masks to replay")
    if cfg.weight_sharing and record.parent is not None:
        raise MenasError(f"trial {record.index} started from its parent's weights: it cannot be replayed "
                         "without its parent's ticket")
    seed = derive_seed(cfg.seed, "trial", record.index)
    torch.manual_seed(derive_seed(cfg.seed, "proxy", record.index))  # as run_trial initializes it
    model = build_model(record.trained_genotype)
    _train_dense(model, splits, cfg, proxy_config(cfg, seed), desc=f"replay of trial {record.index}")
    masks = top_channels(model, {name: kept for name, (kept, _) in record.masks.items()})
    if slim_genotype(record.trained_genotype, masks) != record.genotype:
        raise MenasError(f"trial {record.index}'s recorded widths do not give its ticket's genotype; "
                         "its record is damaged")
    return masks


#: Batches of 256 training images that re-estimate BN statistics before scoring: 1,024 images give
#: stable statistics for these networks and keep the work outside training a small share of a trial.
RECALIBRATION_BATCHES = 4
#: Validation images (and batches of 256 training images re-estimating BN) with which a trial reports its
#: dense child's and its just-cut ticket's accuracy: a paired comparison, averaged over the run's trials.
REPORT_IMAGES, REPORT_RECALIBRATION_BATCHES = 500, 2


def proxy_config(cfg: SearchConfig, seed: int) -> TrainConfig:
    """The fitness proxy's recipe: the same for every trial of every strategy."""
    return TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                       seed=derive_seed(seed, "proxy"), device=str(resolve_device(cfg.device)))


def sparse_config(recipe: TrainConfig, cfg: SearchConfig) -> TrainConfig:
    """The recipe with the search's BN sparsity over the dense cap, which lets |gamma| rank channels."""
    return dataclasses.replace(recipe, bn_l1=cfg.bn_l1, bn_shrink=cfg.bn_shrink, shrink_epochs=cfg.dense_epochs)


def _inherit(child: MobileNetMT, job: TrialJob) -> dict[str, Any]:
    """Weight sharing: the first parent's weights everywhere, then the second parent's for its stages. A
    parent that diverged gives nothing (``diverged_parents``): without the first, the child starts fresh."""
    refused = {"diverged_parents": list(job.diverged_parents)} if job.diverged_parents else {}
    if job.parent_state is None or job.parent_genotype is None:
        return refused
    second = set(job.candidate.second_stages) if job.second_state is not None else set()
    own = stage_keys(second)
    report = inherit_weights(child, job.parent_state, job.parent_genotype, keys=lambda k: not own(k)).as_dict()
    if second:
        other = inherit_weights(child, job.second_state, job.second_genotype, keys=own).as_dict()
        report = {k: report[k] + other[k] for k in report}
        report["second_stages"] = sorted(second)
    return {**report, **refused}
