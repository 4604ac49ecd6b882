"""One trial: build the child, inherit its parent's ticket weights, train with an early stop, ticket it.

:func:`run_trial` is a pure function of its inputs (the candidate, the parent's weights, the data, the
config): its random streams are seeded from ``(seed, trial index)``, so the same trial gives the same
ticket in-process, after a resume, or (with the same thread count) on a Ray worker.

Early stop is the Early-Bird rule (You et al. 2020): after every epoch take the ticket's channel mask;
once the last ``window`` masks are all within normalized Hamming distance ``threshold`` of the newest,
the ticket has emerged and training stops. Otherwise the max-epoch cap ends training.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from menas_zoo.data import DataSplits
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.search.config import SearchConfig, derive_seed
from menas_zoo.search.evolution import Candidate
from menas_zoo.search.fitness import LatencyFn
from menas_zoo.search.inherit import inherit_weights
from menas_zoo.search.ticket import make_ticket
from menas_zoo.slim import Masks, channel_masks
from menas_zoo.space.genotype import Genotype
from menas_zoo.train import TrainConfig, evaluate, recalibrate_bn, resolve_device, train


class EarlyBird:
    """``on_epoch_end`` hook: True (stop) once the channel mask has stopped moving."""

    def __init__(self, prune_ratio: float, window: int = 5, threshold: float = 0.1, min_channels: int = 8):
        self.prune_ratio, self.threshold, self.min_channels = prune_ratio, threshold, min_channels
        self.masks: deque[torch.Tensor] = deque(maxlen=window)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return (a != b).float().mean().item() if a.numel() else 0.0

    def __call__(self, epoch: int, model: MobileNetMT, metrics: dict[str, float]) -> bool:
        # The exact threshold (no rounding): Early-Bird watches the ranking converge, not the final widths.
        masks = channel_masks(model, self.prune_ratio, self.min_channels, multiple_of=1)
        flat = torch.cat(list(masks.values())) if masks else torch.zeros(0, dtype=torch.bool)
        self.masks.append(flat)
        if len(self.masks) < self.masks.maxlen:
            return False
        newest = self.masks[-1]
        return all(self.distance(newest, old) < self.threshold for old in list(self.masks)[:-1])


@dataclass
class TrialJob:
    """Everything a trial needs besides the data and the config (what a Ray task receives)."""

    candidate: Candidate
    parent_genotype: Genotype | None = None
    parent_state: dict[str, torch.Tensor] | None = None


@dataclass
class TrialOutcome:
    candidate: Candidate
    genotype: Genotype  # what enters the population: the ticket's genotype, or the child's without tickets
    state: dict[str, torch.Tensor]  # its weights (CPU)
    masks: Masks  # ticket masks relative to the trained child (empty without tickets)
    accuracy: float  # validation accuracy of what enters the population
    trained_accuracy: float  # validation accuracy of the trained child before pruning
    epochs: int
    stopped_early: bool
    seconds: float
    latency_ms: float | None = None
    inherit: dict[str, Any] = field(default_factory=dict)


def run_trial(job: TrialJob, splits: DataSplits, cfg: SearchConfig, latency_fn: LatencyFn | None = None) -> TrialOutcome:
    start = time.perf_counter()
    candidate = job.candidate
    seed = derive_seed(cfg.seed, "trial", candidate.index)
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)  # the child's fresh initialization
    model = build_model(candidate.genotype)
    inherit = {}
    if cfg.weight_sharing and job.parent_state is not None and job.parent_genotype is not None:
        inherit = inherit_weights(model, job.parent_state, job.parent_genotype).as_dict()

    snapshots: dict[str, dict[str, torch.Tensor]] = {}
    early_bird = EarlyBird(cfg.prune_ratio, cfg.eb_window, cfg.eb_threshold, cfg.min_channels) if cfg.early_bird else None

    def on_epoch_end(epoch: int, net: MobileNetMT, metrics: dict[str, float]) -> bool:
        if cfg.tickets and cfg.rewind_epoch == epoch:
            snapshots["rewind"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return early_bird(epoch, net, metrics) if early_bird is not None else False

    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                            bn_l1=cfg.bn_l1, seed=seed, device=str(device))
    result = train(model, splits, train_cfg, on_epoch_end=on_epoch_end, progress=False, desc=f"trial {candidate.index}")
    trained_accuracy = result.val_acc
    final, masks = model, {}
    if cfg.tickets:
        finetune = dataclasses.replace(train_cfg, epochs=cfg.finetune_epochs, seed=seed + 1) \
            if cfg.finetune_epochs else None
        ticket = make_ticket(model, splits, prune_ratio=cfg.prune_ratio, min_channels=cfg.min_channels,
                             channel_multiple=cfg.channel_multiple,
                             rewind_state=snapshots.get("rewind"), finetune=finetune, seed=seed)
        final, masks = ticket.model, ticket.masks
    else:
        # After a short run the BN running averages lag the fast-moving weights; re-estimating them is what
        # the ticket path does too, so every strategy's fitness is measured the same way.
        recalibrate_bn(final, splits.train, device=device, seed=seed)
    accuracy = evaluate(final, splits.val, device=device)["acc"]
    final = final.eval()
    latency = float(latency_fn(final)) if latency_fn is not None else None
    state = {k: v.detach().cpu().contiguous() for k, v in final.state_dict().items()}
    return TrialOutcome(candidate=candidate, genotype=final.genotype, state=state,
                        masks={k: v.cpu() for k, v in masks.items()}, accuracy=accuracy,
                        trained_accuracy=trained_accuracy, epochs=result.epochs, stopped_early=result.stopped_early,
                        seconds=time.perf_counter() - start, latency_ms=latency, inherit=inherit)
