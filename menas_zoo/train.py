"""The one train/eval loop: every trainer in menas-zoo (``train``, search trials, fine-tuning) calls it.

SGD (Nesterov) or AdamW with a per-step cosine schedule and linear warm-up, label smoothing,
channels_last, BN-gamma sparsity for network slimming (an L1 term in the loss, or a calibrated
proximal shrink), mixed precision on CUDA, a progress bar, an ``on_epoch_end`` hook that may stop
training early (the Early-Bird rule uses it) and a ``should_stop`` check between steps (a search's
wall-clock budget) that interrupts a run within one step.

BN sparsity, calibrated: an L1 term in the loss means different things to SGD and to AdamW (Adam
normalizes it away) and its effect scales with the number of steps, so a strength tuned for one run
length does nothing in another (1e-4 over 70 AdamW steps left every |gamma| in [0.93, 1.05]).
``bn_shrink`` instead sets the *total* amount every prunable |gamma| is pulled towards 0 over the run,
applied after each optimizer step as a soft threshold (``gamma <- sign(gamma) * max(|gamma| - eta_t,
0)``, the proximal step of L1) with ``eta_t`` following the learning-rate schedule. With AdamW the
gammas get their own learning rate, scaled so that a gamma the loss consistently defends can move as
far as the shrink pulls: defended channels hold, undefended ones fall, whatever the run length.

``ema_decay`` keeps an exponential moving average of the weights beside the run
(``torch.optim.swa_utils.AveragedModel``, updated after every step), returned as ``TrainResult.ema``
with its BN statistics re-estimated on training images (averaged running statistics do not fit averaged
weights: on mt-c they cost 5.4 validation points); the run itself is unchanged, so the caller can score
both networks on the same images.

``distill_alpha`` trains against a teacher's predictions as well as the labels (Hinton et al.'s knowledge
distillation): the loss is ``(1 - alpha) x`` the label-smoothed cross-entropy ``+ alpha x T^2 x`` the KL
divergence from the teacher's softened distribution to the student's, both at temperature ``T``
(``distill_temperature``). The teacher is ``train``'s ``teacher`` argument, run in eval mode on the same
augmented batch; ``teacher`` in the config names it for the record (and a resumed run must name the same).

With ``out_dir`` the loop is resumable: after every epoch it writes ``checkpoint.safetensors``
atomically (weights, optimizer and scheduler state, RNG states, history, the average), and a later call with the
same model and config continues after the last finished epoch, reaching the same weights as an
uninterrupted run. Nothing is pickled: tensors go to safetensors, the rest to JSON in its metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from menas_zoo.data import Augment, BatchLoader, DataSplits, ImageDataset, load_dataset
from menas_zoo.errors import MenasError
from menas_zoo.io import atomic_path
from menas_zoo.slim import bn_l1_penalty, hidden_bns

CHECKPOINT = "checkpoint.safetensors"
#: Batches of training images that re-estimate an average's BN statistics at the end of a run.
EMA_BN_BATCHES = 40


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) | "adamw"
    lr: float | None = None  # None: 0.1 x batch/256 for SGD, 2e-3 for AdamW
    weight_decay: float | None = None  # None: 5e-5 for SGD, 0.05 for AdamW; never on BN or biases
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    bn_l1: float = 0.0  # network slimming: lambda x sum |gamma| of prunable hidden BNs
    bn_shrink: float = 0.0  # calibrated sparsity: total |gamma| shrink over the run (see module doc) ...
    shrink_epochs: float | None = None  # ... or over its first this many epochs, after which it stops
    schedule_offset: int = 0  # epochs of this lr schedule already run (by the network this one was cut from)
    augment: Augment | None = field(default_factory=Augment)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    channels_last: bool = True
    amp: bool = True  # mixed precision where it pays (CUDA); ignored on CPU
    ema_decay: float = 0.0  # > 0: also keep an exponential moving average of the weights (TrainResult.ema)
    distill_alpha: float = 0.0  # > 0: that share of the loss follows train()'s teacher (see module doc)
    distill_temperature: float = 4.0
    teacher: str | None = None  # what the teacher is, recorded with the run

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 2e-3

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 5e-5 if self.optimizer == "sgd" else 0.05

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    epochs: int
    seconds: float
    stopped_early: bool = False
    ema: nn.Module | None = None  # with ``ema_decay``: the averaged network, its BN re-estimated, in eval mode

    @property
    def val_acc(self) -> float:
        return self.history[-1]["val_acc"] if self.history else float("nan")


EpochHook = Callable[[int, nn.Module, dict[str, float]], bool]


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MenasError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise MenasError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def make_optimizer(model: nn.Module, cfg: TrainConfig, gamma_lr: float | None = None) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights only; with ``gamma_lr`` the prunable BN gammas get their own
    learning rate (the calibrated BN shrink, see the module doc)."""
    gammas = {id(bn.weight) for bn in hidden_bns(model).values()} if gamma_lr is not None else set()
    decay, no_decay, gamma = [], [], []
    for p in model.parameters():
        if p.requires_grad:
            (gamma if id(p) in gammas else no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.resolved_weight_decay()},
              {"params": no_decay, "weight_decay": 0.0}]
    if gamma:
        groups.append({"params": gamma, "weight_decay": 0.0, "lr": gamma_lr})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.resolved_lr(), momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.resolved_lr())
    raise MenasError(f"unknown optimizer {cfg.optimizer!r}; use sgd or adamw")


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, start: int = 0):
    """Linear warm-up then cosine decay over ``total_steps``, entered at step ``start``."""
    def factor(step: int) -> float:
        step += start
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingInterrupted(MenasError):
    """``should_stop`` asked a run to stop between two steps (the last finished epoch is checkpointed)."""


def model_device(model: nn.Module) -> torch.device:
    """The device a model's weights live on (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageDataset, *, batch_size: int = 256,
             device: str | torch.device | None = None, channels_last: bool = True) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy on ``dataset`` (no augmentation), on the model's device
    unless ``device`` moves it."""
    device = model_device(model) if device is None else torch.device(device)
    model.to(device)
    model.eval()
    correct, loss_sum = 0, 0.0
    for x, y in BatchLoader(dataset, batch_size, device=device, channels_last=channels_last):
        with _autocast(device, True):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    n = max(1, len(dataset))
    return {"acc": correct / n, "loss": loss_sum / n}


def evaluate_test_split(model: nn.Module, dataset: str, data_dir: str | Path | None = None, *, mean=None,
                        std=None) -> float:
    """Top-1 accuracy of ``model`` on the test split of the named dataset, normalized with the model's own
    ``mean``/``std`` when given (an artifact's input spec: as it was trained), else the dataset's."""
    genotype = model.genotype
    test = load_dataset(dataset, data_dir, split="test", in_chans=genotype.in_chans, resolution=genotype.resolution)
    if (test.in_chans, test.resolution, len(test.classes)) != (genotype.in_chans, genotype.resolution,
                                                               genotype.num_classes):
        raise MenasError(f"--eval-test: {dataset} is {test.in_chans}x{test.resolution}x{test.resolution}, "
                         f"{len(test.classes)} classes; this model expects "
                         f"{genotype.in_chans}x{genotype.resolution}x{genotype.resolution}, "
                         f"{genotype.num_classes} classes")
    if mean is not None:
        test.mean, test.std = tuple(mean), tuple(std)
    return evaluate(model, test)["acc"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: ImageDataset, *, batches: int = 20, batch_size: int = 256,
                   device: str | torch.device | None = None, seed: int = 0) -> None:
    """Re-estimate BN running statistics with a cumulative average over a few training batches
    (needed after slicing channels or inheriting weights; the running stats no longer fit)."""
    device = model_device(model) if device is None else torch.device(device)
    model.to(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    loader = BatchLoader(dataset, batch_size, shuffle=True, device=device,
                         generator=torch.Generator().manual_seed(seed))
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        model(x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """``warmup_epochs`` of linear warm-up, but never more than a fifth of the run (a 1-epoch run must
    still spend most of its steps at a useful learning rate)."""
    epochs = cfg.schedule_offset + cfg.epochs
    return min(int(cfg.warmup_epochs * steps_per_epoch), epochs * steps_per_epoch // 5)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The run's schedule: warm-up and cosine over ``schedule_offset + epochs``, entered after the offset."""
    total = (cfg.schedule_offset + cfg.epochs) * steps_per_epoch
    return cosine_with_warmup(optimizer, total, warmup_steps(cfg, steps_per_epoch),
                              start=cfg.schedule_offset * steps_per_epoch)


def shrink_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Steps over which the calibrated BN shrink adds up to ``bn_shrink`` (then it stops)."""
    epochs = cfg.epochs if cfg.shrink_epochs is None else min(cfg.shrink_epochs, cfg.epochs)
    return max(1, int(epochs * steps_per_epoch))


def schedule_sum(cfg: TrainConfig, steps_per_epoch: int) -> float:
    """The sum of the schedule's lr factor (warm-up and cosine) over the shrink's steps."""
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    factor = make_scheduler(dummy, cfg, steps_per_epoch).lr_lambdas[0]
    return max(sum(factor(step) for step in range(shrink_steps(cfg, steps_per_epoch))), 1e-12)


@torch.no_grad()
def shrink_gammas(model: nn.Module, amount: float) -> None:
    """Soft-threshold every prunable |gamma| by ``amount`` (L1's proximal step)."""
    for bn in hidden_bns(model).values():
        gamma = bn.weight
        gamma.copy_(gamma.sign() * (gamma.abs() - amount).clamp_min(0))


def train(model: nn.Module, splits: DataSplits, cfg: TrainConfig, *, out_dir: str | Path | None = None,
          on_epoch_end: EpochHook | None = None, progress: bool = True, desc: str = "train",
          should_stop: Callable[[], bool] | None = None, validate: str = "each",
          teacher: nn.Module | None = None) -> TrainResult:
    """Train ``model`` in place; resumable from ``out_dir`` (see module doc). Returns the history.

    ``should_stop`` is checked before every step; when it answers True the run raises
    :class:`TrainingInterrupted` (with ``out_dir``, the last finished epoch is on disk to resume from).
    ``validate`` says when the validation split is scored: after ``each`` epoch, the ``last`` one only,
    or ``none`` (the caller scores the model itself, e.g. after recalibrating BN); unscored epochs
    record NaN. ``teacher``: the network a run with ``distill_alpha`` learns from.
    """
    if not 0.0 <= cfg.distill_alpha <= 1.0 or cfg.distill_temperature <= 0:
        raise MenasError(f"distillation needs 0 <= alpha <= 1 and a temperature > 0 "
                         f"(got {cfg.distill_alpha:g} and {cfg.distill_temperature:g})")
    if cfg.distill_alpha and teacher is None:
        raise MenasError("distill_alpha > 0 needs a teacher network to learn from")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    loader = BatchLoader(splits.train, cfg.batch_size, shuffle=True, augment=cfg.augment, device=device,
                         channels_last=cfg.channels_last, drop_last=len(splits.train) > cfg.batch_size,
                         generator=torch.Generator().manual_seed(cfg.seed))
    steps = max(1, len(loader))
    # Calibrated BN shrink: each step pulls every prunable |gamma| down by the gamma group's lr, which adds
    # up to bn_shrink over the run. With AdamW a gamma moves at most its lr per step, so a channel the
    # loss consistently defends holds its place while the undefended ones fall by up to bn_shrink.
    gamma_lr = cfg.bn_shrink / schedule_sum(cfg, steps) if cfg.bn_shrink and cfg.optimizer == "adamw" else None
    optimizer = make_optimizer(model, cfg, gamma_lr)
    scheduler = make_scheduler(optimizer, cfg, steps)
    use_fp16 = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.bn_shrink and gamma_lr is None:  # SGD: the shrink follows the schedule, summing to bn_shrink
        lr_sum = schedule_sum(cfg, steps) * cfg.resolved_lr()
        shrink_for = lambda group: cfg.bn_shrink * group["lr"] / lr_sum  # noqa: E731
    elif cfg.bn_shrink:
        shrink_for = lambda group: group["lr"]  # noqa: E731
    else:
        shrink_for = None
    shrink_until = shrink_steps(cfg, steps)
    distill = _distillation(teacher, cfg, device) if cfg.distill_alpha else None
    ema = None
    if cfg.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))

    history: list[dict[str, float]] = []
    start_epoch, elapsed = 0, 0.0
    checkpoint = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if checkpoint is not None and checkpoint.exists():
        start_epoch, history, elapsed = _load_checkpoint(checkpoint, model, optimizer, scheduler, loader, cfg, ema)
        if hasattr(on_epoch_end, "restore"):  # a stateful hook (Early-Bird) picks up its past epochs
            on_epoch_end.restore(history)
        if progress and start_epoch < cfg.epochs:
            tqdm.write(f"resuming {desc} after epoch {start_epoch}/{cfg.epochs}")

    stopped_early = bool(history) and history[-1].get("stopped_early", 0.0) > 0
    for epoch in range(start_epoch, cfg.epochs):
        if stopped_early:
            break
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress, unit="batch")
        for x, y in bar:
            if should_stop is not None and should_stop():
                raise TrainingInterrupted(f"{desc} interrupted in epoch {epoch + 1}/{cfg.epochs}")
            with _autocast(device, cfg.amp):
                logits = model(x)
                loss = criterion(logits, y)
                if distill is not None:
                    loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * distill(logits, x)
            if cfg.bn_l1:
                loss = loss + cfg.bn_l1 * bn_l1_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if shrink_for is not None and scheduler.last_epoch < shrink_until:
                shrink_gammas(model, shrink_for(optimizer.param_groups[-1]))
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach()
        train_seconds = time.perf_counter() - t0
        last = epoch + 1 == cfg.epochs
        if validate == "each" or (validate == "last" and last):
            val = evaluate(model, splits.val, device=device, channels_last=cfg.channels_last)
        else:
            val = {"acc": float("nan"), "loss": float("nan")}
        seconds = time.perf_counter() - t0
        elapsed += seconds
        metrics = {"epoch": epoch + 1, "train_loss": (loss_sum / steps).item(), "val_acc": val["acc"],
                   "val_loss": val["loss"], "lr": scheduler.get_last_lr()[0], "seconds": seconds,
                   "images_per_s": steps * cfg.batch_size / train_seconds}  # training steps only
        if on_epoch_end is not None and on_epoch_end(epoch + 1, model, metrics):
            stopped_early = True
            metrics["stopped_early"] = 1.0
            if validate != "none" and math.isnan(metrics["val_acc"]):  # stopped early: its end is what counts
                val = evaluate(model, splits.val, device=device, channels_last=cfg.channels_last)
                metrics.update(val_acc=val["acc"], val_loss=val["loss"])
        history.append(metrics)
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f}  "
                       f"val acc {val['acc']:.4f}  ({seconds:.1f}s, {metrics['images_per_s']:.0f} img/s)")
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, scheduler, loader, cfg, epoch + 1, history, elapsed, ema)
    model.eval()
    if ema is not None:
        recalibrate_bn(ema.module, splits.train, batches=EMA_BN_BATCHES, seed=cfg.seed)
    return TrainResult(history=history, epochs=len(history), seconds=elapsed, stopped_early=stopped_early,
                       ema=ema.module.eval() if ema is not None else None)


def _distillation(teacher: nn.Module, cfg: TrainConfig, device: torch.device):
    """The distillation term: T^2 x KL(teacher || student) at temperature T, the teacher frozen in eval mode."""
    teacher.to(device).eval().requires_grad_(False)
    if cfg.channels_last:
        teacher.to(memory_format=torch.channels_last)
    t = cfg.distill_temperature

    def term(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = nn.functional.log_softmax(teacher(x).float() / t, dim=1)
        student = nn.functional.log_softmax(logits.float() / t, dim=1)
        return t * t * nn.functional.kl_div(student, target, log_target=True, reduction="batchmean")

    return term


# -- checkpoints: tensors in safetensors, everything else as JSON in its metadata ------------------

def _save_checkpoint(path: Path, model, optimizer, scheduler, loader, cfg, epoch, history, elapsed, ema=None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    optim_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in optim_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = loader.generator.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"epoch": epoch, "history": history, "elapsed": elapsed, "config": _config_fingerprint(cfg),
            "param_groups": optim_state["param_groups"], "optim_scalars": scalars,
            "scheduler": scheduler.state_dict()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"menas_zoo_checkpoint": json.dumps(meta)})


def _load_checkpoint(path: Path, model, optimizer, scheduler, loader, cfg, ema=None) -> tuple[int, list, float]:
    try:
        with safe_open(str(path), "pt") as fh:
            meta = json.loads((fh.metadata() or {})["menas_zoo_checkpoint"])
        tensors = load_file(str(path))
    except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as exc:
        raise MenasError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from None
    current = _config_fingerprint(cfg)
    if meta["config"] != current:
        changed = sorted(k for k in set(current) | set(meta["config"]) if current.get(k) != meta["config"].get(k))
        detail = ", ".join(f"{k} {meta['config'].get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise MenasError(f"checkpoint {path} was written with other training settings ({detail}); "
                         "use the same command to resume, or a new --out to start over")
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise MenasError(f"checkpoint {path} belongs to another network; use a new --out") from None
    optim_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            optim_state["state"].setdefault(int(pid), {})[name] = value
    for pid, scalars in meta["optim_scalars"].items():
        optim_state["state"].setdefault(int(pid), {}).update(scalars)
    optimizer.load_state_dict(optim_state)
    scheduler.load_state_dict(meta["scheduler"])
    if ema is not None:
        ema.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})
    torch.set_rng_state(tensors["rng.torch"])
    loader.generator.set_state(tensors["rng.loader"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta["epoch"], meta["history"], meta["elapsed"]


def _config_fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    # The device may change between runs (resume a CPU run on a GPU); everything else must match.
    data = cfg.to_dict()
    data.pop("device")
    if not data["ema_decay"]:  # written before runs could keep an average: the same settings
        data.pop("ema_decay")
    if not data["distill_alpha"]:  # nor before runs could distil
        for key in ("distill_alpha", "distill_temperature", "teacher"):
            data.pop(key)
    return json.loads(json.dumps(data))


# -- a training run that ends in a zoo artifact -----------------------------------------------------

GENOTYPE_FILE = "genotype.json"
METRICS_FILE = "metrics.json"


@dataclass
class TrainedArtifact:
    """What :func:`train_artifact` leaves: the run folder (an artifact), the trained network in eval mode,
    the loop's result and the metrics written to ``metrics.json``."""

    path: Path
    model: nn.Module
    result: TrainResult
    metrics: dict[str, Any]


def train_artifact(genotype: Any, out: str | Path, cfg: TrainConfig | None = None, *,
                   dataset: str = "fashion-mnist", data_dir: str | Path | None = None, val_size: int = 5000,
                   train_subset: int | None = None, eval_test: bool = False,
                   progress: bool = True) -> TrainedArtifact:
    """Train ``genotype`` from scratch on ``dataset`` and leave ``out`` as a zoo artifact; ``menas-zoo
    train`` is this function.

    ``genotype`` is a :class:`~menas_zoo.space.Genotype` or anything ``resolve_genotype`` takes (a
    reference name, a JSON file, inline JSON, the one-line form). ``cfg.seed`` fixes the initial weights,
    the validation split (``val_size`` images carved from the training set) and the batch order, so on CPU
    the same call twice gives byte-identical weights. ``out`` is resumable: called again with the same
    arguments after a kill, training continues after the last finished epoch; a folder that holds a run of
    another genotype is refused. It ends holding ``genotype.json``, ``checkpoint.safetensors``,
    ``metrics.json`` and the artifact (``config.json``, ``model.safetensors``), loadable and pushable as
    is. ``eval_test`` measures test accuracy once, at the end; it never steers training.
    """
    from menas_zoo.artifact import save_artifact
    from menas_zoo.costs import genotype_cost
    from menas_zoo.data import load_splits
    from menas_zoo.io import write_json_atomic, write_text_atomic
    from menas_zoo.nets import build_model
    from menas_zoo.space import Genotype, resolve_genotype

    cfg = cfg or TrainConfig()
    out = Path(out)
    resolve_device(cfg.device)  # fail fast on a bad device
    if not isinstance(genotype, Genotype):
        genotype = resolve_genotype(str(genotype))
    genotype_file = out / GENOTYPE_FILE
    if genotype_file.exists() and resolve_genotype(str(genotype_file)) != genotype:
        raise MenasError(f"{out} holds a run of another genotype; use a new --out")
    splits = load_splits(dataset, data_dir, val_size=val_size, seed=cfg.seed, train_subset=train_subset,
                         with_test=eval_test, in_chans=genotype.in_chans, resolution=genotype.resolution)
    if (splits.train.in_chans, splits.train.resolution) != (genotype.in_chans, genotype.resolution):
        raise MenasError(f"genotype expects {genotype.in_chans}x{genotype.resolution}px input but {dataset} is "
                         f"{splits.train.in_chans}x{splits.train.resolution}px")
    if len(splits.train.classes) != genotype.num_classes:
        raise MenasError(f"genotype has {genotype.num_classes} classes but {dataset} has {len(splits.train.classes)}; "
                         f"pass --num-classes {len(splits.train.classes)} for a head that fits it")
    write_text_atomic(genotype_file, genotype.to_json() + "\n")
    torch.manual_seed(cfg.seed)  # the initial weights come from the seed too, so the same call gives the same weights
    model = build_model(genotype)
    result = train(model, splits, cfg, out_dir=out, progress=progress)
    cost = genotype_cost(genotype)
    metrics = {"dataset": dataset, "val_acc": result.val_acc, "epochs": result.epochs, "seconds": result.seconds,
               "params": cost.params, "macs": cost.macs, "config": cfg.to_dict(), "history": result.history}
    if eval_test:
        metrics["test_acc"] = evaluate(model, splits.test, device=model_device(model))["acc"]
    write_json_atomic(out / METRICS_FILE, metrics)
    # The run folder is also a zoo artifact (config.json + model.safetensors): loadable and pushable as is.
    accuracy = {"value": metrics["test_acc"], "dataset": dataset, "split": "test"} if eval_test else None
    save_artifact(out, model, input_spec=splits.input_spec(), labels=splits.train.classes,
                  metrics={"accuracy": accuracy, "val_accuracy": {"value": result.val_acc, "dataset": dataset,
                                                                  "split": f"validation ({val_size} train images, "
                                                                           f"seed {cfg.seed})"}},
                  provenance={"run_id": out.resolve().name, "seed": cfg.seed, "epochs": result.epochs,
                              "train_images": len(splits.train), "recipe": cfg.to_dict()})
    return TrainedArtifact(path=out, model=model, result=result, metrics=metrics)
