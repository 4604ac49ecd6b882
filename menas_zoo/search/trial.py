"""One trial: find the child's lottery ticket, then score the ticket's architecture from scratch.

With tickets (MENAS), a trial has two phases:

1. **Mask phase.** Build the child and start it from its parents' ticket weights (weight sharing;
   a crossover child takes each stage from the parent that gave it). Train with calibrated BN
   sparsity until the Early-Bird rule (You et al. 2020) sees the channel mask stop moving, or the
   ``mask_epochs`` cap; its epochs are passes over a seeded ``mask_fraction`` of the training images,
   since a ticket's structure emerges long before its weights converge (that is Early-Bird's finding).
   Prune the ticket (``ticket.py``), further where needed to fit the cost limit.
2. **Fitness proxy.** Train the ticket's architecture *from scratch* (a fresh seeded initialization)
   for ``epochs`` epochs with the search's one recipe, recalibrate BN and score it on the validation
   split. These weights are what the population keeps and what children inherit.

Without tickets (regularized evolution, random search, ``--no-tickets``) only phase 2 runs, on the
child itself. So every fitness in every strategy is the same measurement of an architecture, however
much training its lineage accumulated: inherited weights speed up finding the ticket (Early-Bird stops
sooner), they never inflate the score. (An earlier design scored the inherited, further-trained
weights; its winners lost to plain evolution's when both were retrained from scratch.)

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
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.search.config import SearchConfig, derive_seed
from menas_zoo.search.evolution import Candidate
from menas_zoo.search.fitness import LatencyFn
from menas_zoo.search.inherit import inherit_weights, stage_keys
from menas_zoo.search.ticket import make_ticket, pruned_fraction
from menas_zoo.slim import Masks, channel_masks
from menas_zoo.space.genotype import Genotype
from menas_zoo.train import TrainConfig, evaluate, recalibrate_bn, resolve_device, train


class EarlyBird:
    """``on_epoch_end`` hook: True (stop) once the channel mask has stopped moving.

    Each epoch's mask is also written into the epoch's metrics (``eb_mask``, hex), so a trial resumed
    from a checkpoint restores the window it had (:meth:`restore`) and stops where it would have.
    """

    def __init__(self, prune_ratio: float, window: int = 5, threshold: float = 0.1, min_channels: int = 8):
        self.prune_ratio, self.threshold, self.min_channels = prune_ratio, threshold, min_channels
        self.masks: deque[torch.Tensor] = deque(maxlen=window)

    def restore(self, history: list[dict]) -> None:
        for metrics in history:
            if "eb_mask" in metrics:
                self.masks.append(_unpack(metrics["eb_mask"], int(metrics["eb_mask_len"])))

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return (a != b).float().mean().item() if a.numel() else 0.0

    def __call__(self, epoch: int, model: MobileNetMT, metrics: dict[str, float]) -> bool:
        # The exact threshold (no rounding): Early-Bird watches the ranking converge, not the final widths.
        masks = channel_masks(model, self.prune_ratio, self.min_channels, multiple_of=1)
        flat = torch.cat(list(masks.values())) if masks else torch.zeros(0, dtype=torch.bool)
        self.masks.append(flat)
        metrics["eb_mask"], metrics["eb_mask_len"] = _pack(flat), flat.numel()
        if len(self.masks) < self.masks.maxlen:
            return False
        newest = self.masks[-1]
        return all(self.distance(newest, old) < self.threshold for old in list(self.masks)[:-1])


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


@dataclass
class TrialOutcome:
    candidate: Candidate
    genotype: Genotype  # what enters the population: the ticket's genotype, or the child's without tickets
    state: dict[str, torch.Tensor]  # its weights after the fitness proxy (CPU)
    masks: Masks  # ticket masks relative to the trained child (empty without tickets)
    accuracy: float  # fitness proxy: validation accuracy of ``genotype`` trained from scratch
    trained_accuracy: float | None  # mask phase: the trained child's validation accuracy (None without tickets)
    epochs: int  # epochs of the mask phase (0 without tickets)
    stopped_early: bool
    seconds: float
    latency_ms: float | None = None
    inherit: dict[str, Any] = field(default_factory=dict)
    ticket_accuracy: float | None = None  # the ticket with the child's weights, BN recalibrated
    pruned: float = 0.0  # fraction of prunable channels the ticket really removed
    feasible: bool = True  # False: even the most pruned ticket is over a hard limit (no proxy trained)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # mask, ticket, proxy, score


def run_trial(job: TrialJob, splits: DataSplits, cfg: SearchConfig, latency_fn: LatencyFn | None = None,
              should_stop=None, work_dir: Path | None = None) -> TrialOutcome:
    """Run one trial (see the module doc). ``should_stop`` interrupts it between two training steps
    (:class:`~menas_zoo.train.TrainingInterrupted`); with ``work_dir`` each phase checkpoints every
    epoch there, and the same call later resumes from the last finished epoch."""
    start = time.perf_counter()
    phase_dir = (lambda name: Path(work_dir) / name) if work_dir is not None else (lambda name: None)
    candidate = job.candidate
    seed = derive_seed(cfg.seed, "trial", candidate.index)
    device = resolve_device(cfg.device)
    genotype, masks, inherit, phases = candidate.genotype, {}, {}, {}
    trained_accuracy = ticket_accuracy = None
    mask_epochs, stopped_early, feasible = 0, False, True

    if cfg.tickets:
        torch.manual_seed(seed)  # the child's fresh initialization, where nothing is inherited
        child = build_model(candidate.genotype)
        if cfg.weight_sharing:
            inherit = _inherit(child, job)
        snapshots: dict[str, dict[str, torch.Tensor]] = {}
        early_bird = EarlyBird(cfg.prune_ratio, cfg.eb_window, cfg.eb_threshold, cfg.min_channels) \
            if cfg.early_bird else None

        def on_epoch_end(epoch: int, net: MobileNetMT, metrics: dict[str, float]) -> bool:
            if cfg.rewind_epoch == epoch:
                snapshots["rewind"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return early_bird(epoch, net, metrics) if early_bird is not None else False

        if early_bird is not None:
            on_epoch_end.restore = early_bird.restore  # type: ignore[attr-defined]

        mask_cfg = TrainConfig(epochs=cfg.mask_epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                               bn_l1=cfg.bn_l1, bn_shrink=cfg.bn_shrink, seed=seed, device=str(device))
        result = train(child, mask_splits(splits, cfg.mask_fraction, seed), mask_cfg, on_epoch_end=on_epoch_end,
                       progress=False, out_dir=phase_dir("mask"), desc=f"trial {candidate.index} mask",
                       should_stop=should_stop, validate="none")
        mask_epochs, stopped_early = result.epochs, result.stopped_early
        phases["mask"] = time.perf_counter() - start
        t0 = time.perf_counter()
        # Dense and ticket accuracy (reported, not ranked on) are both measured after BN recalibration, on
        # the first REPORT_IMAGES validation images: enough to compare the two, cheap next to the proxy.
        report_val = splits.val.subset(torch.arange(min(REPORT_IMAGES, len(splits.val))))
        recalibrate_bn(child, splits.train, batches=RECALIBRATION_BATCHES, seed=seed)
        trained_accuracy = evaluate(child, report_val)["acc"]
        finetune = dataclasses.replace(mask_cfg, epochs=cfg.finetune_epochs, seed=seed + 1) \
            if cfg.finetune_epochs else None
        ticket = make_ticket(child, splits, prune_ratio=cfg.prune_ratio, min_channels=cfg.min_channels,
                             channel_multiple=cfg.channel_multiple, budget=cfg.budget(),
                             max_ratio=cfg.max_prune_ratio, rewind_state=snapshots.get("rewind"), finetune=finetune,
                             seed=seed, recalibration_batches=RECALIBRATION_BATCHES)
        genotype, masks = ticket.model.genotype, ticket.masks
        ticket_accuracy = evaluate(ticket.model, report_val)["acc"]  # make_ticket recalibrated its BN
        feasible = cfg.budget().fits(genotype)
        phases["ticket"] = time.perf_counter() - t0

    accuracy, latency, state = 0.0, None, {}  # an infeasible ticket scores 0 and trains no proxy
    if feasible:
        t0 = time.perf_counter()
        torch.manual_seed(derive_seed(cfg.seed, "proxy", candidate.index))
        model = build_model(genotype)
        train(model, splits, proxy_config(cfg, seed), progress=False, desc=f"trial {candidate.index}",
              should_stop=should_stop, validate="none", out_dir=phase_dir("proxy"))
        phases["proxy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # After a short run the BN running averages lag the fast-moving weights: re-estimate them first.
        recalibrate_bn(model, splits.train, batches=RECALIBRATION_BATCHES, seed=seed)
        accuracy = evaluate(model, splits.val)["acc"]
        model.eval()
        latency = float(latency_fn(model)) if latency_fn is not None else None
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        phases["score"] = time.perf_counter() - t0
    return TrialOutcome(candidate=candidate, genotype=genotype, state=state,
                        masks={k: v.cpu() for k, v in masks.items()}, accuracy=accuracy,
                        trained_accuracy=trained_accuracy, epochs=mask_epochs, stopped_early=stopped_early,
                        seconds=time.perf_counter() - start, latency_ms=latency, inherit=inherit,
                        ticket_accuracy=ticket_accuracy, pruned=pruned_fraction(masks) if masks else 0.0,
                        feasible=feasible, phase_seconds=phases)


#: Batches of 256 training images that re-estimate BN statistics before scoring: 1,024 images give
#: stable statistics for these networks and keep the work outside training a small share of a trial.
RECALIBRATION_BATCHES = 4
#: Validation images on which a trial reports its dense child's and its ticket's accuracy.
REPORT_IMAGES = 1000


def mask_splits(splits: DataSplits, fraction: float, seed: int) -> DataSplits:
    """The mask phase's data: a seeded ``fraction`` of the training images (and the same validation)."""
    if fraction >= 1.0:
        return splits
    n = max(1, int(len(splits.train) * fraction))
    index = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:n]
    return DataSplits(train=splits.train.subset(index), val=splits.val)


def proxy_config(cfg: SearchConfig, seed: int) -> TrainConfig:
    """The fitness proxy's recipe: the same for every trial of every strategy."""
    return TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                       seed=derive_seed(seed, "proxy"), device=cfg.device if cfg.device != "auto" else "auto")


def _inherit(child: MobileNetMT, job: TrialJob) -> dict[str, Any]:
    """Weight sharing: the first parent's weights everywhere, then the second parent's for its stages."""
    report: dict[str, Any] = {}
    if job.parent_state is None or job.parent_genotype is None:
        return report
    second = set(job.candidate.second_stages) if job.second_state is not None else set()
    own = stage_keys(second)
    report = inherit_weights(child, job.parent_state, job.parent_genotype, keys=lambda k: not own(k)).as_dict()
    if second:
        other = inherit_weights(child, job.second_state, job.second_genotype, keys=own).as_dict()
        report = {k: report[k] + other[k] for k in report}
        report["second_stages"] = sorted(second)
    return report
